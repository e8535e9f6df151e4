"""FastAPI app: OpenAI-compatible chat completions, /api/search, login, and the offline chat page.

Every request is authenticated (a session token from /api/login, or an API token from `casemate
token create`) and resolved to the *current* user record, so a disabled user loses access at
once. Bodies are size-limited, requests rate-limited per user, errors are OpenAI-style JSON with a
clear message. The answer's label and citations travel in extra fields of the OpenAI objects.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterator
from importlib import resources
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from casemate.assistant import hooks
from casemate.assistant.pipeline import MAX_K, MAX_QUERY_CHARS, Assistant
from casemate.errors import CasemateError
from casemate.pack.api import pack_router
from casemate.security.labels import format_label
from casemate.security.policy import User
from casemate.workspace import Workspace

MODEL_ID = "casemate-assistant"
MAX_BODY_BYTES = 64 * 1024
SESSION_SECONDS = 8 * 3600
STATIC_FILES = {"app.js": "text/javascript", "docs.js": "text/javascript", "style.css": "text/css"}
CSP = ("default-src 'self'; img-src 'self'; connect-src 'self'; script-src 'self'; style-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers or {}


class RateLimiter:
    """Sliding one-minute window per key, in bounded memory.

    Keys come from requests (a login's address and user name), so a flood of new names must not
    grow the table: keys idle for a minute are dropped as others arrive (least recently used
    first), and past `max_keys` live keys the least recently used one is forgotten.
    """

    WINDOW_S = 60.0

    def __init__(self, per_minute: int, max_keys: int = 10_000) -> None:
        self.per_minute = per_minute
        self.max_keys = max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._hits)

    def check(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            q = self._hits.get(key)
            if q is None:
                q = self._hits[key] = deque()
            else:
                self._hits.move_to_end(key)
            while q and now - q[0] > self.WINDOW_S:
                q.popleft()
            # the oldest keys first: drop those whose last hit left the window, then any over the cap
            while self._hits:
                oldest_key, oldest = next(iter(self._hits.items()))
                if oldest_key == key or (oldest and now - oldest[-1] <= self.WINDOW_S and
                                         len(self._hits) <= self.max_keys):
                    break
                del self._hits[oldest_key]
            if len(q) >= self.per_minute:
                retry = max(1, int(self.WINDOW_S - (now - q[0])) + 1)
                raise ApiError(429, f"too many requests: at most {self.per_minute} a minute; retry in {retry} s",
                               "rate_limit_error", {"Retry-After": str(retry)})
            q.append(now)


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_QUERY_CHARS * 4)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str = MODEL_ID
    messages: list[Message] = Field(min_length=1, max_length=64)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=2048)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=2048)
    # extra field: the conversation_id of the previous answer, to link this turn to it
    conversation_id: str | None = Field(default=None, min_length=1, max_length=128)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    k: int = Field(default=10, ge=1, le=MAX_K)


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


def _static(name: str) -> bytes:
    return resources.files("casemate.server").joinpath("static", name).read_bytes()


def create_app(ws: Workspace, assistant: Assistant | None = None, *, rate_per_minute: int | None = None,
               login_per_minute: int = 10) -> FastAPI:
    """The app over an open workspace (the caller closes it). Without `assistant`, one is built
    with the serving embedder (server/embedders.py). The assistant also indexes what is uploaded
    into `ws` in this process (assistant/hooks.py)."""
    if assistant is None:
        from casemate.server.embedders import serving_assistant

        assistant = serving_assistant(ws)
    if isinstance(assistant, Assistant):
        hooks.share(ws, assistant)
    limiter = RateLimiter(rate_per_minute or ws.config.server.rate_per_minute)
    login_limiter = RateLimiter(login_per_minute)
    sessions: dict[str, tuple[str, float]] = {}
    lock = threading.Lock()  # guards `sessions` (the workspace's services are thread-safe themselves)

    app = FastAPI(title="Casemate assistant", version="1", docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json",
                  description="Clearance-filtered, cited, labelled answers from the catalog. Offline.")
    app.state.limiters = {"requests": limiter, "login": login_limiter}  # their sizes, for the fault tests

    # -- plumbing -------------------------------------------------------------------------------
    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return _error(413, f"request body too large: at most {MAX_BODY_BYTES} bytes")
        if request.method in ("POST", "PUT", "PATCH") and length is None:
            return _error(411, "a Content-Length header is required (chunked uploads are refused)")
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.kind, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return _error(400, "bad request: " + "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(CasemateError)
    async def casemate_error(_: Request, exc: CasemateError) -> JSONResponse:
        # each error class carries its status; NotFound (404) covers "hidden" too, on purpose
        status = int(getattr(exc, "http_status", 500))
        return _error(status, exc.message, _ERROR_KINDS.get(status, "server_error" if status >= 500
                                                                   else "invalid_request_error"))

    def current_user(request: Request) -> User:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "authentication required: send 'Authorization: Bearer <token>' "
                                "(log in at /api/login or use `casemate token create`)", "authentication_error",
                           {"WWW-Authenticate": "Bearer"})
        token = token.strip()
        user: User | None = None
        with lock:
            session = sessions.get(token)
        try:
            if session is not None and session[1] > time.time():
                user = ws.acting_user(session[0])
            elif session is None:
                user = ws.tokens.authenticate(token)
        except CasemateError:
            user = None  # disabled or removed since the session began
        if user is None or user.disabled:
            raise ApiError(401, "invalid or expired token", "authentication_error", {"WWW-Authenticate": "Bearer"})
        limiter.check(user.name)
        return user

    # The pack's face: missions from detections, officers' decisions, runs (same service functions).
    app.include_router(pack_router(ws, current_user))

    # -- pages ----------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index_page() -> HTMLResponse:
        return HTMLResponse(_static("index.html"))

    @app.get("/docs", include_in_schema=False)
    def docs_page() -> HTMLResponse:
        return HTMLResponse(_static("docs.html"))

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> Response:
        if name not in STATIC_FILES:
            raise ApiError(404, f"no such file: {name}", "not_found_error")
        return Response(_static(name), media_type=STATIC_FILES[name])

    @app.get("/api/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    # -- auth -----------------------------------------------------------------------------------
    @app.post("/api/login")
    def login(body: LoginRequest, request: Request) -> dict[str, Any]:
        """Exchange a user name and password for a session token (8 hours)."""
        client = request.client.host if request.client else "?"
        login_limiter.check(f"{client}|{body.username}")
        user = ws.users.authenticate(body.username, body.password)  # argon2: slow, outside any lock
        if user is None or user.disabled:
            raise ApiError(401, "wrong user name or password", "authentication_error")
        token = "cms_" + secrets.token_urlsafe(32)
        with lock:
            now = time.time()
            for t in [t for t, (_, exp) in sessions.items() if exp < now]:
                del sessions[t]
            sessions[token] = (user.name, now + SESSION_SECONDS)
        return {"token": token, "user": user.name, "clearance": format_label(user.clearance),
                "clearance_display": user.clearance.display, "expires_in": SESSION_SECONDS}

    @app.get("/api/me")
    def me(user: User = Depends(current_user)) -> dict[str, Any]:
        return {"user": user.name, "clearance": format_label(user.clearance),
                "clearance_display": user.clearance.display}

    # -- search ---------------------------------------------------------------------------------
    @app.post("/api/search")
    def search(body: SearchRequest, user: User = Depends(current_user)) -> dict[str, Any]:
        """Hybrid search among the chunks the caller may read."""
        hits = assistant.search(user, body.query, k=body.k)
        return {"query": body.query, "results": [h.to_json() for h in hits]}

    # -- OpenAI-compatible ----------------------------------------------------------------------
    @app.get("/v1/models")
    def models(user: User = Depends(current_user)) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0,
                                            "owned_by": "casemate"}]}

    @app.post("/v1/chat/completions", response_model=None)
    def chat(body: ChatRequest, user: User = Depends(current_user)) -> Any:
        """Answer the last user message from the catalog; label and citations in extra fields."""
        if body.messages[-1].role != "user":
            raise ApiError(400, "bad request: messages: the last message must have role 'user'")
        if body.model != MODEL_ID:
            raise ApiError(404, f"no such model: {body.model!r}: use {MODEL_ID!r}", "not_found_error")
        question = body.messages[-1].content
        history = [{"role": m.role, "content": m.content} for m in body.messages[:-1] if m.role != "system"]
        max_tokens = body.max_completion_tokens or body.max_tokens or 256
        stream = assistant.ask_stream(user, question, history=history[-8:], max_tokens=max_tokens,
                                      conversation_id=body.conversation_id)
        cid = "chatcmpl-" + uuid.uuid4().hex
        created = int(time.time())
        extra = {"label": format_label(stream.label), "label_display": stream.label.display,
                 "citations": [c.to_json() for c in stream.citations], "found": stream.found}
        if not body.stream:
            answer = stream.run()
            return {"id": cid, "object": "chat.completion", "created": created, "model": MODEL_ID,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": answer.text}}],
                    "usage": _usage(stream.stats),
                    **extra, "found": answer.found, "cited": answer.cited, "withdrawn": answer.withdrawn,
                    "conversation_id": answer.conversation_id}

        def events() -> Iterator[bytes]:
            def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> bytes:
                obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **more}
                return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()

            yield chunk({"role": "assistant", "content": ""}, **extra)
            try:
                for piece in stream:
                    yield chunk({"content": piece})
            except CasemateError as exc:
                err = {"error": {"message": exc.message, "type": "server_error"}}
                yield f"data: {json.dumps(err)}\n\n".encode()
                return
            done = stream.answer
            assert done is not None
            # the checked answer: what is stored, and what a client shows once the stream ends
            yield chunk({}, "stop", **{**extra, "found": done.found}, conversation_id=done.conversation_id,
                        answer=done.text, cited=done.cited, withdrawn=done.withdrawn)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


_ERROR_KINDS = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                429: "rate_limit_error"}


def _usage(stats: dict[str, Any]) -> dict[str, int]:
    """The engine's own token counts (zeros when nothing was generated, or the engine reports none)."""
    usage = stats.get("usage") or {}
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _error(status: int, message: str, kind: str = "invalid_request_error",
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status,
                        headers=headers)
