"""The model registry: signed models in the catalog, verified at every load, promoted behind a gate.

A registered model is a catalog version of kind "model" (its blob: the ONNX file, so the
detector's own `--model ID` works) derived from its dataset (and base model), with a registry
manifest: taxonomy, input size, GSD range, metrics, training configuration, the hashes of every
training input and of every file of the model, the code version. The manifest is signed with the
workspace's model key (ed25519, keys/models_ed25519, made on first use) and kept both in the
version's metadata and beside the files (models/registry/<digest>/registry.json + .sig).

Every load (`load_model`) checks the signature, the catalog blob and every file's SHA-256; a
model altered, unsigned or incomplete is refused with an IntegrityError naming what failed.

Aliases ("production") name a model; `promote` moves one only when the candidate beats the
current holder on a gate dataset, `rollback` moves it back; both are audited.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select

from casemate.catalog.service import Version
from casemate.errors import IntegrityError, NotFound, PermissionDenied, UsageError, WorkspaceError
from casemate.fileutil import write_atomic
from casemate.security.labels import format_label, lub
from casemate.security.policy import User
from casemate.store import db

if TYPE_CHECKING:
    from casemate.workspace import Workspace

FORMAT = "casemate-model/1"
KEY_NAME = "models_ed25519"
SIGNED_FILES = ("registry.json", "registry.sig")
ALIAS_RE = r"^[a-z][a-z0-9_-]{0,63}$"


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# -- keys ----------------------------------------------------------------------------------------
def _key_paths(ws: Workspace) -> tuple[Path, Path]:
    return ws.home / "keys" / KEY_NAME, ws.home / "keys" / f"{KEY_NAME}.pub"


def signing_key(ws: Workspace) -> Ed25519PrivateKey:
    """The workspace's model-signing key, made on first use (0600, like the audit key)."""
    priv_path, pub_path = _key_paths(ws)
    if priv_path.exists():
        try:
            key = serialization.load_pem_private_key(priv_path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise WorkspaceError(f"{priv_path} is unreadable or damaged ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise WorkspaceError(f"{priv_path} is not an ed25519 key")
        return key
    if pub_path.exists():
        raise WorkspaceError(f"{pub_path} exists without its private key: this copy of the workspace can verify "
                             "models but not sign new ones")
    key = Ed25519PrivateKey.generate()
    write_atomic(priv_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()), mode=0o600)
    write_atomic(pub_path, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    return key


def verify_key(ws: Workspace) -> Ed25519PublicKey:
    _, pub_path = _key_paths(ws)
    try:
        pub = serialization.load_pem_public_key(pub_path.read_bytes())
    except (OSError, ValueError):
        raise IntegrityError(f"no model verification key at {pub_path}: models of this workspace cannot be "
                             "verified (was the keys folder copied?)") from None
    if not isinstance(pub, Ed25519PublicKey):
        raise IntegrityError(f"{pub_path} is not an ed25519 public key")
    return pub


def key_id(pub: Ed25519PublicKey) -> str:
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def code_version() -> dict[str, str]:
    """The package version and a digest of its Python sources (what produced the model)."""
    import casemate

    root = Path(casemate.__file__).parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return {"casemate": getattr(casemate, "__version__", "unknown"), "source_sha256": h.hexdigest()}


# -- registering ---------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def register_model(ws: Workspace, user: User, folder: Path, *, dataset: Version, dataset_manifest: dict[str, Any],
                   base: Version | None = None, training: dict[str, Any] | None = None,
                   metrics: dict[str, Any] | None = None, job_id: str | None = None,
                   label: str | None = None) -> Version:
    """Sign and store the detector in `folder` (model.onnx + manifest.json + what training wrote)."""
    folder = Path(folder)
    if not (folder / "model.onnx").is_file() or not (folder / "manifest.json").is_file():
        raise UsageError(f"{folder}: a model folder holds model.onnx and manifest.json")
    det_manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    inputs: list[dict[str, Any]] = [{
        "role": "dataset", "id": dataset.id, "sha256": dataset.sha256, "label": format_label(dataset.label),
        "items": [[it["image_sha256"], it["annotation_sha256"]] for it in dataset_manifest["items"]],
    }]
    parents = [dataset]
    if base is not None:
        inputs.append({"role": "base", "id": base.id, "sha256": base.sha256, "label": format_label(base.label)})
        parents.append(base)
    return register_folder(ws, user, folder, main="model.onnx", role="imagery-detector", parents=parents,
                           inputs=inputs, fields={
                               "name": det_manifest.get("name") or folder.name,
                               "taxonomy": det_manifest.get("classes"),
                               "input_size": det_manifest.get("input_size"),
                               "gsd_m": det_manifest.get("training_gsd_m"),
                               "training": training or det_manifest.get("training") or {},
                           }, metrics=metrics, job_id=job_id, label=label)


def register_folder(ws: Workspace, user: User, folder: Path, *, main: str, role: str, parents: list[Version],
                    inputs: list[dict[str, Any]], fields: dict[str, Any], metrics: dict[str, Any] | None = None,
                    job_id: str | None = None, label: str | None = None) -> Version:
    """Sign a model folder (its `main` file is the catalog blob; manifest.json its own manifest)
    and store it as a version derived from `parents` (label: at least their lub)."""
    folder = Path(folder)
    own_manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    files = {p.name: {"sha256": _sha256_file(p), "size": p.stat().st_size}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name not in SIGNED_FILES}
    if main not in files:
        raise UsageError(f"{folder}: {main} is missing")
    bad = [n for n in files if n.endswith((".pt", ".pth", ".pkl", ".pickle", ".bin"))]
    if bad:
        raise UsageError(f"{folder}: pickle-format files are not accepted ({', '.join(bad)}): use safetensors")
    bound = lub([p.label for p in parents]) if parents else None
    manifest = {
        "format": FORMAT,
        "role": role,
        "main": main,
        "created_at": _now(),
        "created_by": user.name,
        "label": label or (format_label(bound) if bound is not None else "NP"),
        "metrics": metrics or {},
        "inputs": inputs,
        "files": files,
        "code": code_version(),
        "job": job_id,
        **fields,
    }
    key = signing_key(ws)
    body = canonical(manifest)
    sig = base64.b64encode(key.sign(body)).decode()
    digest = hashlib.sha256(body).hexdigest()
    reg_root = _mk(ws.models_dir / "registry")
    dest = reg_root / digest[:24]
    if not dest.exists():
        tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=reg_root))
        try:
            for name in files:
                shutil.copyfile(folder / name, tmp / name)
                if _sha256_file(tmp / name) != files[name]["sha256"]:
                    raise IntegrityError(f"{folder / name} changed while it was being registered")
            (tmp / "registry.json").write_bytes(body)
            (tmp / "registry.sig").write_text(sig + "\n")
            for p in tmp.iterdir():
                os.chmod(p, 0o444)
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    meta = {"manifest": own_manifest, "role": role, "registry": manifest, "signature": sig,
            "key_id": key_id(key.public_key()), "folder": str(dest.relative_to(ws.home))}
    v = ws.catalog.put(user, dest / main, name=f"{manifest.get('name') or folder.name}{Path(main).suffix}",
                       kind="model", label=manifest["label"], parents=[p.id for p in parents], metadata=meta,
                       source_key=f"registry:{digest}")
    ws.audit.record(user.name, "model.register", v.id, {"role": role, "parents": [p.id for p in parents][:20],
                                                        "job": job_id, "label": format_label(v.label)})
    return v


def _mk(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


# -- loading (always verified) -------------------------------------------------------------------
@dataclass(frozen=True)
class VerifiedModel:
    version: Version
    folder: Path
    manifest: dict[str, Any]

    @property
    def taxonomy(self) -> list[str]:
        return list(self.manifest.get("taxonomy") or [])


def verify_version(ws: Workspace, v: Version) -> VerifiedModel:
    """Check a model version's signature, blob and files; IntegrityError naming what failed."""
    what = f"model {v.id}"
    manifest, sig = v.metadata.get("registry"), v.metadata.get("signature")
    if v.kind != "model" or not isinstance(manifest, dict) or not isinstance(sig, str):
        raise IntegrityError(f"{what} is not signed by this workspace's registry: register it through a "
                             "training job (`casemate train detector`) before using it")
    pub = verify_key(ws)
    body = canonical(manifest)
    try:
        pub.verify(base64.b64decode(sig), body)
    except (InvalidSignature, ValueError):
        raise IntegrityError(f"{what}: its manifest's signature does not verify (altered manifest, or signed with "
                             "another key)") from None
    files = manifest.get("files") or {}
    main = manifest.get("main", "model.onnx")
    if main not in files or files[main]["sha256"] != v.sha256:
        raise IntegrityError(f"{what}: the catalog's blob is not the signed {main}")
    if not ws.blobs.verify(v.sha256):
        raise IntegrityError(f"{what}: its stored blob {v.sha256[:12]}... is damaged or missing")
    folder = ws.home / str(v.metadata.get("folder", ""))
    if not folder.is_dir() or folder == ws.home:
        raise IntegrityError(f"{what}: its files are missing ({folder})")
    present = {p.name for p in folder.iterdir()}
    extra = sorted(present - set(files) - set(SIGNED_FILES))
    if extra:
        raise IntegrityError(f"{what}: {folder / extra[0]} is not part of the signed model: remove it")
    for name, info in sorted(files.items()):
        p = folder / name
        if not p.is_file():
            raise IntegrityError(f"{what}: {p} is missing")
        if p.stat().st_size != info["size"] or _sha256_file(p) != info["sha256"]:
            raise IntegrityError(f"{what}: {p} does not match its signed SHA-256 (altered or damaged)")
    try:
        on_disk = (folder / "registry.json").read_bytes()
        sig_disk = (folder / "registry.sig").read_text().strip()
    except OSError:
        raise IntegrityError(f"{what}: {folder}/registry.json or registry.sig is missing") from None
    if on_disk != body:
        raise IntegrityError(f"{what}: {folder / 'registry.json'} differs from the signed manifest")
    if sig_disk != sig:
        raise IntegrityError(f"{what}: {folder / 'registry.sig'} differs from the signature in the catalog")
    det = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    if det != v.metadata.get("manifest"):
        raise IntegrityError(f"{what}: the model manifest in the catalog differs from the signed manifest.json")
    return VerifiedModel(v, folder, manifest)


def alias_target(ws: Workspace, alias: str) -> str | None:
    with ws.engine.connect() as conn:
        row = conn.execute(select(db.versions.c.public_id).join(db.aliases, db.aliases.c.version_id == db.versions.c.id)
                           .where(db.aliases.c.name == alias)).first()
    return row[0] if row else None


def load_model(ws: Workspace, user: User, ref: str) -> VerifiedModel:
    """A model by alias ("production") or version id, read through the policy and verified."""
    target = alias_target(ws, ref) or ref
    v = ws.catalog.get(user, target)
    if v.kind != "model":
        raise UsageError(f"{ref} is a {v.kind}, not a model: see `casemate models ls`")
    return verify_version(ws, v)


def resolve_model(ws: Workspace, user: User, ref: str) -> VerifiedModel:
    """For `casemate detect --model REF`: an alias or id -> a verified model (folder with
    model.onnx and manifest.json, and its catalog version)."""
    return load_model(ws, user, ref)


def list_models(ws: Workspace, user: User, limit: int = 100) -> list[tuple[Version, list[str]]]:
    with ws.engine.connect() as conn:
        rows = conn.execute(select(db.aliases.c.name, db.versions.c.public_id)
                            .join(db.versions, db.versions.c.id == db.aliases.c.version_id)).all()
    by_version: dict[str, list[str]] = {}
    for name, vid in rows:
        by_version.setdefault(vid, []).append(name)
    vs = [v for v in ws.catalog.list(user, kind="model", limit=limit) if "registry" in v.metadata]
    return [(v, sorted(by_version.get(v.id, []))) for v in vs]


# -- evaluation ----------------------------------------------------------------------------------
def evaluate_model(ws: Workspace, user: User, ref: str, dataset_ref: str, *, class_map: Any = None) -> Version:
    """Score a verified model on a dataset (imagery's evaluator) and store an evaluation version
    derived from both (label: their least upper bound)."""
    from casemate.factory.datasets import ClassMap, export_dataset, get_dataset
    from casemate.factory.taxonomy import default_class_map

    model = load_model(ws, user, ref)
    ds, manifest = get_dataset(ws, user, dataset_ref)
    from casemate.imagery.evaluate import evaluate

    with tempfile.TemporaryDirectory(prefix="eval-", dir=ws.home / "jobs" if (ws.home / "jobs").exists()
                                     else _mk(ws.home / "jobs")) as tmp:
        cmap = class_map or default_class_map(manifest["classes"], model.taxonomy)
        exp = export_dataset(ws, user, ds.id, Path(tmp) / "data", fmt="dota",
                             class_map=cmap if isinstance(cmap, ClassMap) else None, taxonomy=model.taxonomy,
                             link=True)
        res = evaluate(model.folder, Path(tmp) / "data")
    body = {"format": "casemate-evaluation/1", "model": model.version.id, "dataset": ds.id,
            "metric": "map50", "map50": res["map50"], "per_class": res["per_class"],
            "per_level": res["per_level"], "images": res["images"], "iou": res["iou"],
            "dropped_classes": exp["dropped"]}
    return ws.catalog.put(user, canonical(body), name=f"eval-{model.version.id}-{ds.id}.json", kind="evaluation",
                          parents=[model.version.id, ds.id],
                          metadata={"model": model.version.id, "dataset": ds.id, "map50": res["map50"]})


# -- aliases -------------------------------------------------------------------------------------
def _set_alias(ws: Workspace, user: User, alias: str, v: Version | None, action: str, detail: dict[str, Any]) -> None:
    with ws.transaction() as conn:
        old = conn.execute(select(db.aliases.c.version_id).where(db.aliases.c.name == alias)).first()
        old_pub = None
        if old is not None:
            old_pub = conn.execute(select(db.versions.c.public_id).where(db.versions.c.id == old[0])).scalar()
            conn.execute(db.aliases.delete().where(db.aliases.c.name == alias))
        if v is not None:
            pk = conn.execute(select(db.versions.c.id).where(db.versions.c.public_id == v.id)).scalar_one()
            conn.execute(db.aliases.insert().values(name=alias, version_id=pk, set_by=user.name, set_at=_now()))
        ws.audit.record(user.name, action, alias, {"from": old_pub, "to": v.id if v else None, **detail})


def _check_alias_name(alias: str) -> None:
    import re

    if not re.match(ALIAS_RE, alias):
        raise UsageError(f"alias {alias!r}: use lower-case letters, digits, '-' or '_' (e.g. production)")


def _may_set_aliases(ws: Workspace, user: User, alias: str) -> None:
    if not (user.has_role("officer") or user.has_role("admin")):
        ws.audit.record(user.name, "refused", alias, {"action": "alias.set", "reason": "role"})
        raise PermissionDenied("only an officer or an admin can move a model alias")


def promote(ws: Workspace, user: User, ref: str, *, alias: str = "production", gate: str | None = None,
            min_gain: float = 0.0) -> dict[str, Any]:
    """Point `alias` at a model, if it beats the current holder on the gate dataset by more than
    `min_gain` (mAP50). Refused (UsageError) otherwise; every change audited."""
    _check_alias_name(alias)
    _may_set_aliases(ws, user, alias)
    cand = load_model(ws, user, ref)
    current_id = alias_target(ws, alias)
    if current_id == cand.version.id:
        raise UsageError(f"{alias} already points to {cand.version.id}")
    current = None
    if current_id is not None:
        try:
            current = load_model(ws, user, current_id)
        except NotFound:
            raise PermissionDenied(f"alias {alias} points to a model you may not read: ask someone who may "
                                   "to promote") from None
        except IntegrityError:
            current = None  # a holder that no longer verifies is no bar to its replacement
    detail: dict[str, Any] = {"gate": gate, "min_gain": min_gain}
    if current is not None and gate is None:
        raise UsageError(f"{alias} is held by {current.version.id}: give --gate DATASET to show the new model beats it")
    if gate is not None:
        ev_new = evaluate_model(ws, user, cand.version.id, gate)
        detail["candidate"] = {"model": cand.version.id, "evaluation": ev_new.id, "map50": ev_new.metadata["map50"]}
        if current is not None:
            ev_old = evaluate_model(ws, user, current.version.id, gate)
            detail["holder"] = {"model": current.version.id, "evaluation": ev_old.id,
                                "map50": ev_old.metadata["map50"]}
            gain = ev_new.metadata["map50"] - ev_old.metadata["map50"]
            detail["gain"] = round(gain, 4)
            if gain <= 0 or gain < min_gain:
                ws.audit.record(user.name, "refused", alias, {"action": "alias.set", **detail})
                raise UsageError(f"refused: {cand.version.id} scores mAP50 {ev_new.metadata['map50']:.4f} on {gate}, "
                                 f"the holder {current.version.id} {ev_old.metadata['map50']:.4f} (gain {gain:+.4f}, "
                                 f"needed > {max(min_gain, 0):.4f}); {alias} unchanged")
    _set_alias(ws, user, alias, cand.version, "alias.set", detail)
    return {"alias": alias, "model": cand.version.id, "previous": current_id, **detail}


def rollback(ws: Workspace, user: User, alias: str = "production") -> dict[str, Any]:
    """Point `alias` back at the model it named before its last promotion (audited)."""
    _check_alias_name(alias)
    _may_set_aliases(ws, user, alias)
    current = alias_target(ws, alias)
    if current is None:
        raise UsageError(f"alias {alias} is not set: nothing to roll back")
    previous = _previous_holder(ws, alias, current)
    if previous is None:
        _set_alias(ws, user, alias, None, "alias.rollback", {})
        return {"alias": alias, "model": None, "previous": current}
    v = load_model(ws, user, previous).version  # still readable and intact, or refused
    _set_alias(ws, user, alias, v, "alias.rollback", {})
    return {"alias": alias, "model": v.id, "previous": current}


def _previous_holder(ws: Workspace, alias: str, current: str) -> str | None:
    """From the audit log (the record of every alias change): the model the promotion that set
    `current` replaced."""
    from casemate.security.audit import AuditEntry

    with ws.engine.connect() as conn:
        rows = conn.execute(select(db.audit.c.line).where(db.audit.c.line.like('%"action":"alias.set"%'))
                            .order_by(db.audit.c.seq.desc())).all()
    for (line,) in rows:
        e = AuditEntry.from_line(line)
        if e.target == alias and e.detail.get("to") == current:
            return e.detail.get("from")
    return None


def resolve_detector_ref(ws: Workspace, user: User, ref: str | None) -> str | None:
    """What `casemate detect --model REF` should load: an alias ("production") or a registered
    model's id becomes that model's version id, after the full check of `load_model` (signature,
    blob, every file); anything else (a path, "default", an unsigned id) is returned unchanged."""
    if not ref:
        return ref
    target = alias_target(ws, ref)
    if target is None:
        try:
            v = ws.catalog.get(user, ref, audit=False)
        except NotFound:
            return ref
        if v.kind != "model" or "registry" not in v.metadata:
            return ref
    return load_model(ws, user, ref).version.id
