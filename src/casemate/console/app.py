"""The operator console: a REST API under /console/api and the pages under /console.

Every handler is a thin face over the service functions the CLI uses (`ws.catalog`, `ingest`,
`ws.users`, `ws.tokens`, `ws.audit`, the assistant, `transcribe_source`): the catalog applies the
read policy, so a hidden item is answered exactly like a missing one (404, same message).
Sessions are cookies (HttpOnly, SameSite=Strict, Secure over TLS); every call that changes
something must carry the session's CSRF token in the `X-CSRF-Token` header.
"""

from __future__ import annotations

import json
import mimetypes
import shutil
import tempfile
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from casemate.catalog.models import KINDS, Version
from casemate.console import render
from casemate.console.jobs import JobRunner
from casemate.console.queries import ListFilter, list_versions
from casemate.console.sessions import COOKIE, CSRF_HEADER, NotSignedIn, Session, SessionStore, csrf_ok
from casemate.console.settings import ConsoleSettings, settings_of
from casemate.errors import CasemateError, NotFound, PermissionDenied, UsageError
from casemate.security.labels import Label, format_label, lub, parse_label
from casemate.security.policy import User
from casemate.workspace import Workspace

PREFIX = "/console"
CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self'; connect-src 'self'; "
       "script-src 'self'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
       "object-src 'none'")
# Content served inline only for types a browser cannot run as script; the rest is a download.
INLINE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "audio/wav", "audio/x-wav", "audio/mpeg",
                "audio/ogg", "audio/flac", "audio/mp4", "video/mp4", "video/webm", "text/plain", "application/pdf"}
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html; charset=utf-8",
                ".svg": "image/svg+xml", ".md": "text/plain; charset=utf-8"}


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class DeclassifyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=2000)


class AskBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=4000)
    conversation_id: str | None = Field(default=None, max_length=128)


class UserBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    clearance: str = Field(min_length=1, max_length=200)
    roles: list[str] = Field(default_factory=lambda: ["analyst"], max_length=8)
    password: str | None = Field(default=None, max_length=1024)


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str | None = Field(default=None, max_length=64)
    note: str = Field(default="", max_length=200)


class DetectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
                              description="a model version id (default: the built-in detector)")


class PackRunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mission: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
                         description="a built-in scenario's name or a stored mission's id")
    seed: int = Field(default=0, ge=0, le=2**31)
    label: str | None = Field(default=None, max_length=200)
    pace: float | None = Field(default=None, gt=0, le=10_000,
                               description="simulated seconds per wall second: a paced run of a stored mission "
                                           "reads the officers' decisions stored while it runs")


class TranscribeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    language: str | None = Field(default=None, max_length=8)


def _static(name: str) -> bytes:
    return resources.files("casemate.console").joinpath("static", name).read_bytes()


def _label_json(label: Label) -> dict[str, Any]:
    return {"label": format_label(label), "label_display": label.display, "level": label.level.name}


def _version_json(v: Version) -> dict[str, Any]:
    out = v.to_json()
    out.update(_label_json(v.label))
    return out


def _page_label(labels: list[Label]) -> dict[str, Any]:
    """The banner's label: the highest (least upper bound) of what the response shows."""
    return _label_json(lub(labels) if labels else parse_label("NP"))


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "code": status}}, status_code=status)


def create_console(ws: Workspace, assistant: Any = None, *, settings: ConsoleSettings | None = None,
                   transcriber: Any = None) -> FastAPI:
    """The console as its own app (pages and API under /console); `mount` puts the server's app behind it."""
    conf = settings or settings_of(ws)
    sessions = SessionStore(idle_s=conf.idle_minutes * 60, max_s=conf.session_hours * 3600,
                            login_per_minute=conf.login_per_minute)
    jobs = JobRunner()
    upload_locks: dict[str, threading.Lock] = {}
    locks_guard = threading.Lock()

    def upload_lock(name: str) -> threading.Lock:
        """One upload at a time per user: a user's uploads share the folder their names live in."""
        with locks_guard:
            return upload_locks.setdefault(name, threading.Lock())
    state: dict[str, Any] = {"assistant": assistant}

    def get_assistant() -> Any:
        if state["assistant"] is None:
            from casemate.assistant.pipeline import Assistant

            state["assistant"] = Assistant(ws)
        return state["assistant"]

    app = FastAPI(title="Casemate console API", version="1", docs_url=None, redoc_url=None,
                  openapi_url=PREFIX + "/openapi.json",
                  description="The console's REST API: the catalog, audit, users and tokens, the "
                              "assistant and speech, under the catalog's read policy. Offline.")
    app.state.console_sessions = sessions
    app.state.console_jobs = jobs

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if request.url.path.startswith(PREFIX):
            length = request.headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > conf.max_upload_bytes):
                return _error(413, f"request too large: at most {conf.max_upload_bytes // (1024 * 1024)} MiB "
                                   "per upload; send fewer or smaller files")
        response = await call_next(request)
        if request.url.path.startswith(PREFIX):
            response.headers.setdefault("Content-Security-Policy", CSP)  # content keeps its stricter one
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers["X-Frame-Options"] = "DENY"
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(CasemateError)
    async def casemate_error(_: Request, exc: CasemateError) -> JSONResponse:
        return _error(exc.http_status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")) or "body"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return _error(400, "bad request: " + "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    # -- sessions -----------------------------------------------------------------------------
    def session_of(request: Request) -> tuple[Session, User]:
        s = sessions.get(request.cookies.get(COOKIE))
        if s is None:
            raise NotSignedIn("not signed in, or the session expired: sign in again")
        try:
            user = ws.acting_user(s.user)  # the current record: a disabled user loses access at once
        except CasemateError:
            user = None
        if user is None or user.disabled:
            sessions.close(request.cookies.get(COOKIE))
            raise NotSignedIn("not signed in, or the session expired: sign in again")
        if request.method not in ("GET", "HEAD") and not csrf_ok(s, request.headers.get(CSRF_HEADER)):
            raise PermissionDenied("missing or wrong CSRF token: reload the page")
        return s, user

    def current_user(request: Request) -> User:
        return session_of(request)[1]

    def admin(user: User = Depends(current_user)) -> User:
        if not user.has_role("admin"):
            raise PermissionDenied("only an admin can do this")
        return user

    def me_json(user: User, s: Session) -> dict[str, Any]:
        return {"user": user.name, "roles": sorted(user.roles), "clearance": format_label(user.clearance),
                "clearance_display": user.clearance.display, "csrf": s.csrf,
                "idle_minutes": conf.idle_minutes, **_page_label([])}

    api = APIRouter(prefix=PREFIX + "/api")

    @api.post("/login", tags=["session"])
    def login(body: LoginBody, request: Request, response: Response) -> dict[str, Any]:
        """Sign in: sets the session cookie; returns the CSRF token the page sends back."""
        client = request.client.host if request.client else "?"
        sessions.check_attempt(f"{client}|{body.username}")
        user = ws.users.authenticate(body.username, body.password)
        if user is None or user.disabled:
            ws.audit.record(body.username, "console.login.failed", None, {})
            raise NotSignedIn("wrong user name or password")
        sid, s = sessions.open(user.name)
        ws.audit.record(user.name, "console.login", None, {})
        response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path=PREFIX,
                            secure=request.url.scheme == "https", max_age=conf.session_hours * 3600)
        return me_json(user, s)

    @api.post("/logout", tags=["session"])
    def logout(request: Request, response: Response) -> dict[str, Any]:
        s = sessions.get(request.cookies.get(COOKIE))
        if s is not None:
            if not csrf_ok(s, request.headers.get(CSRF_HEADER)):
                raise PermissionDenied("missing or wrong CSRF token: reload the page")
            sessions.close(request.cookies.get(COOKIE))
            ws.audit.record(s.user, "console.logout", None, {})
        response.delete_cookie(COOKIE, path=PREFIX)
        return {"signed_out": True}

    @api.get("/session", tags=["session"])
    def session(request: Request) -> dict[str, Any]:
        s, user = session_of(request)
        return me_json(user, s)

    # -- catalog ------------------------------------------------------------------------------
    @api.get("/items", tags=["catalog"])
    def items(user: User = Depends(current_user),
              kind: str | None = Query(None, description="one of the catalog kinds"),
              label: str | None = Query(None, description="only versions with exactly this label, e.g. DR"),
              name: str | None = Query(None, max_length=200, description="part of the name (any case)"),
              since: str | None = Query(None, max_length=32, description="created at or after (ISO date)"),
              until: str | None = Query(None, max_length=32, description="created before (ISO date)"),
              q: str | None = Query(None, max_length=500, description="text search (the assistant's index)"),
              before: str | None = Query(None, max_length=64, description="cursor: last id of the previous page"),
              limit: int = Query(50, ge=1, le=200)) -> dict[str, Any]:
        """Versions the caller may read, newest first, filtered; `next` is the cursor of the next page."""
        if kind is not None and kind not in KINDS:
            raise UsageError(f"kind: unknown kind {kind!r}: use one of {', '.join(KINDS)}")
        want = parse_label(label) if label else None
        if q:
            hits = get_assistant().search(user, q, k=min(limit, 50))
            seen: dict[str, Version] = {}
            for h in hits:
                if h.version_id not in seen:
                    try:
                        seen[h.version_id] = ws.catalog.get(user, h.version_id, audit=False)
                    except NotFound:
                        continue
            rows = list(seen.values())
            cursor = None
        else:
            # every filter in one SQL query under the catalog's read filter (console/queries.py)
            rows, cursor = list_versions(ws, user, ListFilter(kind, want, name, since, until), limit=limit,
                                         before=before)
        rows = [v for v in rows if kind is None or v.kind == kind]
        if q:
            rows = [v for v in rows if _matches(v, want, name, since, until)]
        return {"items": [_version_json(v) for v in rows], "next": cursor, **_page_label([v.label for v in rows])}

    @api.get("/items/{vid}", tags=["catalog"])
    def item(vid: str, user: User = Depends(current_user)) -> dict[str, Any]:
        """One version's metadata, with the readable derived versions (detections, transcripts...)."""
        v = ws.catalog.get(user, vid)
        kids = ws.catalog.children(user, vid)
        labels = [v.label] + [k.label for k in kids]
        return {"item": _version_json(v), "children": [_version_json(k) for k in kids],
                "renderable": render.can_render(v), **_page_label(labels)}

    @api.get("/items/{vid}/content", tags=["catalog"])
    def content(vid: str, user: User = Depends(current_user)) -> Response:
        """The stored bytes: inline for images, audio, text and PDF; any other type is a download."""
        v = ws.catalog.get(user, vid, audit=False)
        path = ws.catalog.blob_path(user, vid)
        mtype = mimetypes.guess_type(v.name)[0] or "application/octet-stream"
        inline = mtype in INLINE_TYPES
        disposition = "inline" if inline else "attachment"
        headers = {"Content-Disposition": f"{disposition}; filename*=UTF-8''{_quote(v.name)}",
                   "Content-Security-Policy": "sandbox; default-src 'none'", "X-Label": format_label(v.label),
                   "Cache-Control": "private, no-store"}
        return FileResponse(path, media_type=mtype if inline else "application/octet-stream", headers=headers)

    @api.get("/items/{vid}/text", tags=["catalog"])
    def text(vid: str, user: User = Depends(current_user)) -> dict[str, Any]:
        v = ws.catalog.get(user, vid, audit=False)
        return {"id": vid, "text": ws.catalog.text(user, vid), **_label_json(v.label)}

    @api.get("/items/{vid}/lineage", tags=["catalog"])
    def lineage(vid: str, user: User = Depends(current_user)) -> dict[str, Any]:
        """Ancestors the caller may read (a hidden one is left out entirely)."""
        tree = ws.catalog.lineage(user, vid)
        labels: list[Label] = []

        def walk(n: dict[str, Any]) -> None:
            labels.append(parse_label(n["label"]))
            for p in n["parents"]:
                walk(p)

        walk(tree)
        return {"lineage": tree, **_page_label(labels)}

    @api.get("/items/{vid}/render.png", tags=["imagery"])
    def render_png(vid: str, user: User = Depends(current_user)) -> Response:
        """A PNG rendering of a stored image (the map draws detections over it; no basemap)."""
        v = ws.catalog.get(user, vid, audit=False)
        if not render.can_render(v):
            raise UsageError(f"{v.name} is a {v.kind}, not an image: only images can be drawn")
        png, _ = render.png_of(ws.catalog.blob_path(user, vid), v.sha256)
        return Response(png, media_type="image/png", headers={"X-Label": format_label(v.label),
                                                               "Cache-Control": "private, no-store"})

    @api.get("/items/{vid}/detections", tags=["imagery"])
    def detections(vid: str, user: User = Depends(current_user),
                   format: str = Query("geojson", pattern="^(geojson|compact)$")) -> Any:
        """Detections of an image (or of a detections version) in image pixels (x right, y down).

        `geojson`: a FeatureCollection; `compact`: arrays the map draws fast (50,000 and more).
        """
        layer, image = _detections_version(ws, user, vid)
        path = ws.catalog.blob_path(user, layer.id)  # the policy first; the cache is by content only
        size = render.size_of(ws.catalog.blob_path(user, image.id), image.sha256) if image else None
        if layer.kind == "change":  # drawn over the later image, through its detections' lon/lat fit
            after = ws.catalog.get(user, str(layer.metadata.get("after")), audit=False)
            feats, packed = render.change_layer(path, layer.sha256, ws.catalog.blob_path(user, after.id),
                                                after.sha256, size)
        else:
            feats, packed = render.layer_of(path, layer.sha256, size)
        labels = [layer.label] + ([image.label] if image else [])
        meta = {"layer": _version_json(layer), "image": _version_json(image) if image else None,
                "width": size[0] if size else None, "height": size[1] if size else None, **_page_label(labels)}
        # serialised here: FastAPI's encoder walks every coordinate and is many times slower
        body = {**meta, **packed} if format == "compact" else {
            "type": "FeatureCollection", "features": feats, "casemate": meta}
        return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), media_type="application/json")

    @api.post("/upload", tags=["catalog"])
    def upload(request: Request, files: list[UploadFile] = File(..., description="one or more files"),
               label: str = Form(..., description="the files' classification, e.g. DR or S//ALPHA"),
               user: User = Depends(current_user)) -> dict[str, Any]:
        """Ingest uploaded files under one label; one result per file (a bad file fails alone)."""
        from casemate.catalog.ingest import ingest

        if not label.strip():
            raise UsageError("label: required: choose the files' classification")
        lab, _ = ws.catalog.check_label(user, label)  # a bad label refuses everything before any write
        if not files:
            raise UsageError("files: choose at least one file")
        names = [Path(f.filename or "").name.strip() for f in files]
        for i, fname in enumerate(names):
            if not fname or fname in (".", "..") or "\x00" in fname:
                raise UsageError(f"files[{i}]: a file without a usable name: rename it and upload it again")
        if len(set(names)) != len(names):
            raise UsageError("files: two files with the same name: upload them one after the other")
        # Each file is ingested from the user's upload folder under its own name, so that the catalog
        # keeps the file's name, and the same name uploaded again by the same user is a new version
        # of the same asset (unchanged content is skipped), as `casemate ingest` does for a path.
        folder = _upload_root(ws) / _quote(user.name)
        results: list[dict[str, Any]] = []
        with upload_lock(user.name):
            folder.mkdir(parents=True, exist_ok=True)
            paths = [(fname, folder / fname) for fname in names]
            try:
                for f, (_, p) in zip(files, paths, strict=True):
                    with p.open("wb") as out:
                        shutil.copyfileobj(f.file, out, 1024 * 1024)
                report = ingest(ws, user, [str(p) for _, p in paths], lab, run_hooks=conf.upload_hooks)
            finally:
                for _, p in paths:
                    p.unlink(missing_ok=True)
        done = {v.source_path: v for v in report.ingested}
        failed = dict(report.failed)
        skipped = set(report.skipped)
        where = str(folder)
        for name, p in paths:
            key, resolved = str(p), str(p.resolve())
            if key in failed or resolved in failed:
                msg = failed.get(key) or failed.get(resolved) or "failed"
                results.append({"file": name, "ok": False, "error": str(msg).replace(where + "/", "")})
            elif resolved in done or key in done:
                v = done.get(resolved) or done[key]
                # the stored source path is on the server: not the browser's business
                results.append({"file": name, "ok": True, "item": {**_version_json(v), "source_path": None}})
            else:
                results.append({"file": name, "ok": True, "skipped": key in skipped or resolved in skipped})
        hook_errors = [msg.replace(where + "/", "") for _, msg in report.hook_errors]
        return {"results": results, "hook_errors": hook_errors, "label": format_label(lab),
                **_label_json(lab)}

    @api.post("/items/{vid}/declassify", tags=["catalog"])
    def declassify(vid: str, body: DeclassifyBody, user: User = Depends(current_user)) -> dict[str, Any]:
        """Officers: a new version of the asset under a lower label, with the reason (audited)."""
        v = ws.catalog.declassify(user, vid, body.to, body.reason)
        return {"item": _version_json(v), **_label_json(v.label)}

    # -- speech -------------------------------------------------------------------------------
    @api.get("/items/{vid}/transcript", tags=["speech"])
    def transcript(vid: str, user: User = Depends(current_user)) -> dict[str, Any]:
        """Segments (start, end, text) of a transcript, or of the newest readable transcript of a recording."""
        v = ws.catalog.get(user, vid, audit=False)
        if v.kind == "transcript":
            tv = v
        else:
            kids = ws.catalog.children(user, vid, kind="transcript")
            if not kids:
                raise NotFound(f"{vid}/transcript")
            tv = kids[-1]
        tv = ws.catalog.get(user, tv.id)  # audited read of the transcript itself
        audio_id = tv.parents[0] if tv.parents else None
        segs = [{"start": s.get("start"), "end": s.get("end"), "text": s.get("text", "")}
                for s in (tv.metadata or {}).get("segments", [])]
        return {"transcript": _version_json(tv), "audio": audio_id, "segments": segs,
                **_page_label([tv.label, v.label])}

    @api.post("/items/{vid}/transcribe", tags=["speech"])
    def transcribe(vid: str, body: TranscribeBody, user: User = Depends(current_user)) -> dict[str, Any]:
        """Start a transcription job of a stored recording; poll /jobs/{id} for progress."""
        from casemate.speech.transcribe import is_transcribable, transcribe_source

        v = ws.catalog.get(user, vid)
        if not is_transcribable(v):
            raise UsageError(f"{v.name} is a {v.kind}: only audio or video can be transcribed")
        duration = float((v.metadata or {}).get("duration") or 0) or None

        def work(progress: Any) -> dict[str, Any]:
            def step(done: float, total: float | None) -> None:
                t = total or duration
                if t:
                    progress(done / t)

            out = transcribe_source(ws, user, vid, language=body.language, engine=transcriber, progress=step)
            return {"item": out.transcript.id, "reused": out.reused}

        job = jobs.submit(user.name, "transcribe", vid, work)
        return {"job": job.to_json()}

    # -- imagery and the robot pack (their service functions, run as jobs) ---------------------
    @api.post("/items/{vid}/detect", tags=["imagery"])
    def detect(vid: str, body: DetectBody, user: User = Depends(current_user)) -> dict[str, Any]:
        """Start detection on a stored image; the job's result is the detections version."""
        from casemate.imagery.service import detect_source

        v = ws.catalog.get(user, vid)
        if v.kind != "image":
            raise UsageError(f"{v.name} is a {v.kind}, not an image: only images can be detected on")

        def work(progress: Any) -> dict[str, Any]:
            def step(_stage: str, done: int, total: int) -> None:
                if total:
                    progress(done / total)

            out = detect_source(ws, user, v.id, model=body.model, progress=step)
            return {"item": out.geojson.id if getattr(out, "geojson", None) else v.id, "image": v.id}

        return {"job": jobs.submit(user.name, "detect", vid, work).to_json()}

    @api.get("/pack/scenarios", tags=["pack"])
    def pack_scenarios(user: User = Depends(current_user)) -> dict[str, Any]:
        """The built-in scenarios (stored mission plans are in the catalog, kind mission)."""
        from casemate.pack.scenario import SCENARIO_DIR

        return {"scenarios": sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))}

    @api.post("/pack/runs", tags=["pack"])
    def pack_run(body: PackRunBody, user: User = Depends(current_user)) -> dict[str, Any]:
        """Run a built-in scenario or a stored mission as a job; the results go to the catalog."""
        from casemate.pack import service
        from casemate.pack.scenario import SCENARIO_DIR

        # a name or an id, never a path on the server
        if not (SCENARIO_DIR / f"{body.mission}.yaml").exists():
            ws.catalog.get(user, body.mission)
        paced = {}
        if body.pace is not None:
            import inspect

            if "pace" not in inspect.signature(service.run_scenario).parameters:
                raise UsageError("pace: this version of the pack cannot pace a run; leave it empty")
            paced = {"pace": body.pace}
        total: dict[str, int] = {}

        def work(progress: Any) -> dict[str, Any]:
            def started(sc: Any) -> None:
                total["steps"] = max(1, int(getattr(sc, "steps", 0) or 1))

            def step(n: int) -> None:
                if total.get("steps"):
                    progress(min(0.99, n / total["steps"]))

            tmp = Path(tempfile.mkdtemp(prefix="pack-", dir=_tmp_root(ws)))
            try:
                out = service.run_scenario(ws, user, body.mission, seed=body.seed, label=body.label,
                                           out_dir=tmp / "run", progress=step, start=started, **paced)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            m = out.result.metrics
            return {"item": out.results.id if out.results else None,
                    "replay": out.replay.id if out.replay else None,
                    "findings": [f.id for f in out.findings],
                    "metrics": {k: m.get(k) for k in ("steps", "coverage", "targets_found", "tasks_done",
                                                      "collisions")}}

        return {"job": jobs.submit(user.name, "pack-run", body.mission, work).to_json()}

    @api.get("/pack/missions/{mission}/tasks", tags=["pack"])
    def pack_tasks(mission: str, user: User = Depends(current_user)) -> dict[str, Any]:
        from casemate.pack import service

        return {"mission": mission, "tasks": service.mission_tasks(ws, user, mission)}

    # -- jobs ---------------------------------------------------------------------------------
    @api.get("/jobs", tags=["jobs"])
    def job_list(user: User = Depends(current_user)) -> dict[str, Any]:
        return {"jobs": [j.to_json() for j in jobs.list(user.name)]}

    @api.get("/jobs/{job_id}", tags=["jobs"])
    def job_get(job_id: str, user: User = Depends(current_user)) -> dict[str, Any]:
        return {"job": jobs.get(user.name, job_id).to_json()}

    # -- assistant ----------------------------------------------------------------------------
    @api.post("/ask", tags=["assistant"])
    def ask(body: AskBody, user: User = Depends(current_user)) -> StreamingResponse:
        """A streamed, cited, labelled answer: server-sent events `meta`, `delta`..., `done`."""
        stream = get_assistant().ask_stream(user, body.question, conversation_id=body.conversation_id)
        meta = {"type": "meta", **_label_json(stream.label), "found": stream.found,
                "citations": [c.to_json() for c in stream.citations]}

        def events() -> Iterator[bytes]:
            yield _sse(meta)
            try:
                for piece in stream:
                    yield _sse({"type": "delta", "text": piece})
            except CasemateError as exc:
                yield _sse({"type": "error", "message": exc.message})
                return
            yield _sse({"type": "done", "conversation_id": stream.answer.conversation_id if stream.answer else None})

        return StreamingResponse(events(), media_type="text/event-stream")

    # -- administration -----------------------------------------------------------------------
    @api.get("/audit", tags=["audit"])
    def audit(n: int = Query(50, ge=1, le=1000), user: User = Depends(admin)) -> dict[str, Any]:
        """Admins: the last entries they may see (the read policy applies to the log too)."""
        return {"entries": [e.to_json() for e in ws.audit.tail_for(user, n)]}

    @api.post("/audit/verify", tags=["audit"])
    def audit_verify(user: User = Depends(admin)) -> dict[str, Any]:
        r = ws.audit.verify()
        ws.audit.record(user.name, "audit.verify", None, {"ok": r.ok, "entries": r.entries})
        return {"ok": r.ok, "entries": r.entries, "checkpoints": r.checkpoints, "first_bad": r.first_bad,
                "reason": r.reason}

    @api.get("/users", tags=["users"])
    def users(user: User = Depends(admin)) -> dict[str, Any]:
        return {"users": [_user_json(u) for u in ws.users.list(user)]}

    @api.post("/users", tags=["users"])
    def user_add(body: UserBody, user: User = Depends(admin)) -> dict[str, Any]:
        if body.password is not None and len(body.password) < 12:
            raise UsageError("password: too short: use at least 12 characters")
        parse_label(body.clearance)  # validate everything before the first write
        u = ws.users.add(user, body.name, body.clearance, body.roles)
        if body.password:
            ws.users.set_password(user, body.name, body.password)
        return {"user": _user_json(u)}

    @api.post("/users/{name}/disable", tags=["users"])
    def user_disable(name: str, user: User = Depends(admin)) -> dict[str, Any]:
        ws.users.disable(user, name)
        sessions.close_user(name)
        return {"disabled": name}

    @api.get("/tokens", tags=["tokens"])
    def tokens(user: User = Depends(current_user)) -> dict[str, Any]:
        """Your tokens, or everyone's for an admin (never their secret)."""
        return {"tokens": [t.to_json() for t in ws.tokens.list(user)]}

    @api.post("/tokens", tags=["tokens"])
    def token_create(body: TokenBody, user: User = Depends(current_user)) -> dict[str, Any]:
        """A new API token: its secret is shown in this answer only."""
        secret = ws.tokens.create(user, for_user=body.user or None, label=body.note)
        return {"token": secret, "user": body.user or user.name}

    @api.post("/tokens/{token_id}/revoke", tags=["tokens"])
    def token_revoke(token_id: int, user: User = Depends(current_user)) -> dict[str, Any]:
        return {"token": ws.tokens.revoke(user, token_id).to_json()}

    from casemate.console import factory_routes, imagery_routes, pack_routes

    for part in (imagery_routes, pack_routes, factory_routes):
        api.include_router(part.router(ws, jobs, current_user, _label_json, _version_json))
    app.include_router(api)

    # -- pages --------------------------------------------------------------------------------
    @app.get(PREFIX, include_in_schema=False)
    @app.get(PREFIX + "/", include_in_schema=False)
    def index() -> Response:
        return Response(_static("index.html"), media_type="text/html; charset=utf-8")

    @app.get(PREFIX + "/static/{name:path}", include_in_schema=False)
    def static(name: str) -> Response:
        parts = name.split("/")
        if any(p in ("", ".", "..") for p in parts) or Path(name).suffix not in STATIC_TYPES:
            raise NotFound(name)
        try:
            data = _static(name)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(name) from None
        return Response(data, media_type=STATIC_TYPES[Path(name).suffix],
                        headers={"Cache-Control": "private, max-age=300"})

    return app


def mount(app: FastAPI, ws: Workspace, assistant: Any = None, **options: Any) -> FastAPI:
    """The console in front of `app` (the server's): /console/... is the console, the rest is `app`.

    Returns the app to serve. The console is an outer app rather than routes added to `app` so that
    its uploads are not held to the server's 64 KiB JSON body limit.
    """
    console = create_console(ws, assistant, **options)
    console.mount("/", app)
    return console


def _detections_version(ws: Workspace, user: User, vid: str) -> tuple[Version, Version | None]:
    v = ws.catalog.get(user, vid)
    if v.kind == "change":  # drawn over the later date's image
        after = ws.catalog.get(user, str(v.metadata.get("after")), audit=False)
        return v, _detections_version(ws, user, after.id)[1]
    if v.kind == "detections":
        image = None
        for pid in v.parents:
            try:
                p = ws.catalog.get(user, pid, audit=False)
            except NotFound:
                continue
            if p.kind == "image":
                image = p
        return v, image
    layers = [k for k in ws.catalog.children(user, vid, kind="detections")
              if (k.metadata or {}).get("format", "geojson") == "geojson" and k.name.endswith(".geojson")]
    if not layers:
        raise NotFound(f"{vid}/detections")
    return layers[-1], v


def _matches(v: Version, want: Label | None, name: str | None, since: str | None, until: str | None) -> bool:
    if want is not None and v.label != want:
        return False
    if name and name.lower() not in v.name.lower():
        return False
    if since and v.created_at < since:
        return False
    return not (until and v.created_at >= until)


def _user_json(u: User) -> dict[str, Any]:
    return {"name": u.name, "clearance": format_label(u.clearance), "clearance_display": u.clearance.display,
            "roles": sorted(u.roles), "disabled": u.disabled}


def _sse(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def _upload_root(ws: Workspace) -> Path:
    return Path(ws.home) / "uploads"


def _tmp_root(ws: Workspace) -> Path:
    root = Path(ws.home) / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return root
