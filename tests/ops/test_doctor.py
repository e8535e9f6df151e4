"""`casemate doctor`: each check passes on a sound installation and fails, saying what to fix, on
a broken one. Real workspaces, real SQLite, real /proc; only Slurm's answer is simulated."""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
import subprocess
import sys
from collections import namedtuple
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from casemate.ops import doctor, verify
from casemate.ops.cli import doctor_cmd
from casemate.ops.doctor import DoctorSettings
from casemate.store import db
from casemate.workspace import Workspace


@pytest.fixture
def ws_home(tmp_path: Path) -> Path:
    home = tmp_path / "ws"
    with Workspace.init(home) as ws:
        ws.users.add(ws.acting_user("admin"), "dana", "DR", ["analyst"])
    return home


def _by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


# -- python and packages -------------------------------------------------------------------------

def test_python_ok_here_and_fails_below_311(monkeypatch: pytest.MonkeyPatch) -> None:
    assert doctor.check_python().status == "ok"
    vi = namedtuple("vi", "major minor micro releaselevel serial")
    monkeypatch.setattr(sys, "version_info", vi(3, 10, 12, "final", 0))
    check = doctor.check_python()
    assert check.status == "fail" and "3.11" in check.fix


def test_packages_ok_here() -> None:
    check = doctor.check_packages()
    assert check.status == "ok", check.detail
    assert "sqlalchemy" in check.data["versions"]


def test_packages_fail_names_missing_and_wrong_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = tmp_path / "fakeapp-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fakeapp\nVersion: 1.0\n"
        "Requires-Dist: no-such-package-xyz>=1\nRequires-Dist: click<1\n"
        "Requires-Dist: pytest-nonexistent; extra == \"dev\"\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    check = doctor.check_packages("fakeapp")
    assert check.status == "fail"
    assert "no-such-package-xyz missing" in check.detail and "click" in check.detail
    assert "pytest-nonexistent" not in check.detail  # an extra is optional
    assert "install.sh" in check.fix


# -- models --------------------------------------------------------------------------------------

def _fake_model_package(root: Path, name: str, content: bytes) -> None:
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('never imported')\n")
    (pkg / "model.gguf").write_bytes(content)


def test_models_all_verified_here() -> None:
    checks = doctor.check_models()
    assert checks and all(c.status == "ok" for c in checks), [c for c in checks if c.status != "ok"]


def test_model_mismatch_fails_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_model_package(tmp_path, "fakemodelpkg", b"tampered weights")
    monkeypatch.syspath_prepend(str(tmp_path))
    pin = verify.PinnedFile("fake-llm", "fakemodelpkg", "model.gguf", hashlib.sha256(b"weights").hexdigest(),
                            "MIT", "fake-llm==1", "assistant")
    monkeypatch.setattr(doctor, "PINNED_MODELS", (pin,))
    (check,) = doctor.check_models()
    assert check.status == "fail"
    assert str(tmp_path / "fakemodelpkg" / "model.gguf") in check.detail and "expected" in check.detail
    assert "fake-llm==1" in check.fix


def test_missing_model_fails_but_missing_speech_model_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pins = (
        verify.PinnedFile("gone-llm", "no_such_pkg_a", "m.gguf", "0" * 64, "MIT", "gone-llm==1", "assistant"),
        verify.PinnedFile("gone-asr", "no_such_pkg_b", "m.bin", "0" * 64, "MIT", "gone-asr==1", "speech"),
    )
    monkeypatch.setattr(doctor, "PINNED_MODELS", pins)
    checks = _by_name(doctor.check_models())
    assert checks["model:gone-llm"].status == "fail" and "gone-llm==1" in checks["model:gone-llm"].fix
    assert checks["model:gone-asr"].status == "warn" and "transcription" in checks["model:gone-asr"].detail


def test_damaged_assembled_whisper_fails(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "whisper-base"
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes(b"not whisper")
    checks = _by_name(doctor.check_models(tmp_path / "models"))
    assert checks["model:whisper-base:assembled"].status == "fail"
    assert str(folder / "model.bin") in checks["model:whisper-base:assembled"].detail
    assert "delete" in checks["model:whisper-base:assembled"].fix


# -- workspace, database, audit, clock -----------------------------------------------------------

def test_workspace_sound(ws_home: Path) -> None:
    checks, settings = doctor.check_workspace(ws_home)
    by = _by_name(checks)
    assert settings is not None
    assert [by[n].status for n in ("workspace", "database", "audit", "clock")] == ["ok"] * 4, checks
    assert by["database"].data["schema_version"] >= 1


def test_no_workspace_fails_with_init_hint(tmp_path: Path) -> None:
    checks, _ = doctor.check_workspace(tmp_path / "nothing")
    assert checks[0].status == "fail" and "casemate init" in checks[0].fix


def test_bad_config_fails_naming_the_key(ws_home: Path) -> None:
    (ws_home / "config.json").write_text(json.dumps({"no_such_key": 1}))
    checks, _ = doctor.check_workspace(ws_home)
    assert checks[0].status == "fail" and "no_such_key" in checks[0].detail


def test_missing_database_fails(ws_home: Path) -> None:
    (ws_home / "catalog.db").unlink()
    by = _by_name(doctor.check_workspace(ws_home)[0])
    assert by["database"].status == "fail" and "backup" in by["database"].fix


@pytest.mark.parametrize("version, words", [(1, "opening migrates"), (99, "upgrade Casemate")])
def test_schema_behind_or_ahead_fails(ws_home: Path, version: int, words: str) -> None:
    with sqlite3.connect(ws_home / "catalog.db") as conn:
        conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
    by = _by_name(doctor.check_workspace(ws_home)[0])
    assert by["database"].status == "fail" and words in by["database"].fix
    assert by["database"].data["schema_version"] == version
    assert "audit" not in by  # nothing else is read from a database of another schema


def test_database_unreachable_fails(ws_home: Path) -> None:
    # a PostgreSQL URL on a loopback port nobody listens on
    (ws_home / "config.json").write_text(json.dumps({"database_url": "postgresql+psycopg://u:secret@127.0.0.1:9/x"}))
    by = _by_name(doctor.check_workspace(ws_home)[0])
    assert by["database"].status == "fail" and "database_url" in by["database"].fix
    assert "secret" not in by["database"].detail  # never print a password


def _tamper(home: Path) -> sqlite3.Connection:
    """A connection of someone who bypasses Casemate (and its append-only triggers)."""
    conn = sqlite3.connect(home / "catalog.db")
    conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    return conn


def _audit_check(home: Path) -> doctor.Check:
    engine = db.make_engine(home / "catalog.db")
    try:
        return doctor.check_audit(home, engine, full=False)
    finally:
        engine.dispose()


def _unsigned_entries(home: Path, n: int) -> None:
    """Write n audit entries that no checkpoint covers yet (as a running server leaves them)."""
    ws = Workspace.open(home)
    for i in range(n):
        ws.audit.record("admin", "test.note", None, {"i": i})
    ws._closed = True  # skip the closing checkpoint on purpose
    ws.blobs.close()
    ws.db.dispose()


def test_audit_quick_covers_entries_since_the_checkpoint(ws_home: Path) -> None:
    _unsigned_entries(ws_home, 3)
    check = _audit_check(ws_home)
    assert check.status == "ok" and check.data["entries_since"] == 3


def test_audit_bad_checkpoint_signature_fails(ws_home: Path) -> None:
    with _tamper(ws_home) as conn:
        conn.execute("UPDATE audit_checkpoints SET body=replace(body, 'start_seq', 'start_seq ')")
    check = _audit_check(ws_home)
    assert check.status == "fail" and "bad signature" in check.detail and "audit verify" in check.fix


def test_audit_signed_entry_edited_fails(ws_home: Path) -> None:
    with _tamper(ws_home) as conn:
        seq = conn.execute("SELECT max(end_seq) FROM audit_checkpoints").fetchone()[0]
        conn.execute("UPDATE audit SET line=replace(line, 'admin', 'mallory') WHERE seq=?", (seq,))
    check = _audit_check(ws_home)
    assert check.status == "fail" and "differs from the last signed checkpoint" in check.detail


def test_audit_unsigned_entry_edited_or_removed_fails(ws_home: Path) -> None:
    _unsigned_entries(ws_home, 3)
    with _tamper(ws_home) as conn:
        top = conn.execute("SELECT max(seq) FROM audit").fetchone()[0]
        conn.execute("UPDATE audit SET line=replace(line, '\"i\":1', '\"i\":7') WHERE seq=?", (top - 1,))
    check = _audit_check(ws_home)
    assert check.status == "fail" and f"entry {top} does not chain" in check.detail
    with _tamper(ws_home) as conn:
        conn.execute("DELETE FROM audit WHERE seq>=?", (top - 1,))
    check = _audit_check(ws_home)
    assert check.status == "fail" and "entries were written" in check.detail


def test_full_audit_mode_walks_everything(ws_home: Path) -> None:
    engine = db.make_engine(ws_home / "catalog.db")
    try:
        assert doctor.check_audit(ws_home, engine, full=True).status == "ok"
        with _tamper(ws_home) as conn:
            conn.execute("UPDATE audit SET line=replace(line, 'dana', 'dora') WHERE line LIKE '%dana%'")
        bad = doctor.check_audit(ws_home, engine, full=True)
        assert bad.status == "fail" and "entry" in bad.detail
    finally:
        engine.dispose()


def test_clock(ws_home: Path) -> None:
    engine = db.make_engine(ws_home / "catalog.db")
    try:
        assert doctor.check_clock(engine).status == "ok"
        early = doctor.check_clock(engine, now=datetime(2019, 5, 1, tzinfo=UTC))
        assert early.status == "fail" and "NTP" in early.fix
        back = doctor.check_clock(engine, now=datetime.now(UTC) - timedelta(hours=1))
        assert back.status == "fail" and "went back" in back.detail
    finally:
        engine.dispose()


# -- machine -------------------------------------------------------------------------------------

def test_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert doctor.check_disk(tmp_path / "not" / "yet").status in ("ok", "warn")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda _p: usage(10 << 30, (10 << 30) - (200 << 20), 200 << 20))
    check = doctor.check_disk(tmp_path)
    assert check.status == "fail" and "1 GiB" in check.fix


def test_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    assert doctor.check_slurm(None).status == "skip"
    assert doctor.check_slurm(DoctorSettings()).status == "skip"
    conf = DoctorSettings(slurm={"partition": "debug"})
    monkeypatch.setattr(doctor.shutil, "which", lambda name: "/usr/bin/" + name)

    def answer(code: int, out: str):  # stands in for a cluster this machine may not have
        return lambda *a, **k: subprocess.CompletedProcess(a[0], code, out, "")

    assert doctor.check_slurm(conf, run=answer(0, "Slurmctld(primary) at ctl is UP\n")).status == "ok"
    down = doctor.check_slurm(conf, run=answer(1, "Slurmctld(primary) at ctl is DOWN\n"))
    assert down.status == "fail" and "slurmctld" in down.fix
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    missing = doctor.check_slurm(conf)
    assert missing.status == "fail" and "slurm-client" in missing.fix


def test_settings_read_from_the_typed_config(ws_home: Path) -> None:
    from casemate.config import load_config

    s = doctor.settings_of(load_config(ws_home / "config.json"))
    assert s.server_host == "127.0.0.1" and s.slurm is None and s.database_url is None
    conf = type("C", (), {"factory": {"executor": "slurm", "slurm_conf": "/etc/slurm/x.conf"}})()
    assert doctor.settings_of(conf).slurm == {"slurm_conf": "/etc/slurm/x.conf", "partition": None}


def test_listeners_real_proc_loopback_only() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        socks = doctor.listening_sockets()
        assert {"address": "127.0.0.1", "port": port} in [{k: x[k] for k in ("address", "port")} for x in socks]
        assert doctor.check_listeners(DoctorSettings()).status in ("ok", "warn")


def _fake_proc(root: Path, rows: list[tuple[str, int]], cmd: str) -> Path:
    (root / "net").mkdir(parents=True)
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    lines = [f"   {i}: {addr} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 {inode} 1"
             for i, (addr, inode) in enumerate(rows)]
    (root / "net" / "tcp").write_text(header + "\n".join(lines) + "\n")
    (root / "net" / "tcp6").write_text(header)
    pid = root / "4242"
    (pid / "fd").mkdir(parents=True)
    (pid / "cmdline").write_bytes(cmd.replace(" ", "\0").encode())
    for _addr, inode in rows:
        (pid / "fd" / str(inode)).symlink_to(f"socket:[{inode}]")
    return root


def test_casemate_listening_beyond_loopback_fails(tmp_path: Path) -> None:
    # 0.0.0.0:8080 and 127.0.0.1:8081 as /proc/net/tcp prints them (little-endian hex)
    proc = _fake_proc(tmp_path, [("00000000:1F90", 111), ("0100007F:1F91", 112)], "python -m casemate serve")
    check = doctor.check_listeners(DoctorSettings(), proc_root=proc)
    assert check.status == "fail" and "0.0.0.0:8080" in check.detail and "4242" in check.detail
    assert "127.0.0.1:8081" not in check.detail
    # the configured address is allowed
    assert doctor.check_listeners(DoctorSettings(server_host="0.0.0.0"), proc_root=proc).status == "ok"


def test_other_program_beyond_loopback_warns(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, [("00000000:0016", 120)], "/usr/sbin/sshd -D")
    check = doctor.check_listeners(DoctorSettings(), proc_root=proc)
    assert check.status == "warn" and "0.0.0.0:22" in check.detail


# -- the command ---------------------------------------------------------------------------------

def test_doctor_command_json_passes_on_a_sound_workspace(ws_home: Path) -> None:
    res = CliRunner().invoke(doctor_cmd, ["--json", "--home", str(ws_home)])
    out = json.loads(res.output)
    assert res.exit_code == 0, [c for c in out["checks"] if c["status"] == "fail"]
    assert out["ok"] is True
    names = {c["name"] for c in out["checks"]}
    assert {"python", "packages", "workspace", "database", "audit", "clock", "slurm", "disk", "listeners"} <= names
    assert any(n.startswith("model:") for n in names)


def test_doctor_command_fails_with_fixes(tmp_path: Path) -> None:
    res = CliRunner().invoke(doctor_cmd, ["--home", str(tmp_path / "missing")])
    assert res.exit_code == 1
    assert "FAIL workspace" in res.output and "fix: create one with `casemate init" in res.output
    assert "check(s) failed: workspace" in res.output


def test_doctor_module_entry_point(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "casemate.ops.cli", "doctor", "--no-workspace", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["ok"] is True


def test_doctor_under_the_main_cli_takes_the_global_home(ws_home: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # the entries the lead adds to casemate.cli.LAZY_COMMANDS
    import casemate.cli as main_cli

    monkeypatch.setitem(main_cli.LAZY_COMMANDS, "doctor", "casemate.ops.cli:doctor_cmd")
    monkeypatch.setitem(main_cli.LAZY_COMMANDS, "bundle", "casemate.ops.cli:bundle_cmd")
    assert main_cli.main(["--json", "doctor", "--home", str(ws_home)]) == 0  # --home after, --json before
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and any(c["name"] == "database" and c["status"] == "ok" for c in report["checks"])
    assert main_cli.main(["doctor", "--home", str(ws_home / "nope")]) == 1
    assert "FAIL workspace" in capsys.readouterr().out
