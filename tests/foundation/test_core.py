"""The core redesign's guarantees: global options anywhere, typed configuration, errors carrying
their exit code and HTTP status, token revocation, label interning that survives a rollback, and
units of work that audit a refusal although it raises."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from casemate.catalog.models import NewVersion
from casemate.cli import hoist_global_options
from casemate.errors import (
    CasemateError,
    IntegrityError,
    ModelMissing,
    NotFound,
    PermissionDenied,
    UsageError,
    WorkspaceError,
)
from casemate.security.labels import format_label, parse_label
from casemate.workspace import Workspace


def cli(home, *args, env_user=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEMATE_")}
    if env_user:
        env["CASEMATE_USER"] = env_user
    return subprocess.run([sys.executable, "-m", "casemate.cli", *args], capture_output=True, text=True, env=env,
                          cwd=home.parent)


def test_global_options_before_or_after_the_subcommand(home) -> None:
    out = cli(home, "init", "--home", str(home))
    assert out.returncode == 0, out.stderr
    assert cli(home, "user", "add", "dana", "--clearance", "DR", "--home", str(home)).returncode == 0
    doc = home.parent / "d.txt"
    doc.write_text("x")
    assert cli(home, "--home", str(home), "ingest", str(doc), "--label", "DR").returncode == 0
    after = cli(home, "ls", "--as", "dana", "--json", "--home", str(home))
    before = cli(home, "--home", str(home), "--as", "dana", "--json", "ls")
    assert after.returncode == before.returncode == 0, after.stderr + before.stderr
    assert [v["name"] for v in json.loads(after.stdout)] == ["d.txt"] == [v["name"] for v in json.loads(before.stdout)]
    assert cli(home, "ls", "--as=nobody", f"--home={home}").returncode == 1  # the option took effect


def test_hoisting_keeps_values_and_stops_at_double_dash() -> None:
    assert hoist_global_options(["ls", "--as", "dana", "--json"]) == ["--as", "dana", "ls", "--json"]
    assert hoist_global_options(["--json", "audit", "tail", "-n", "3"]) == ["audit", "tail", "-n", "3", "--json"]
    assert hoist_global_options(["ask", "--", "--as", "x"]) == ["ask", "--", "--as", "x"]
    assert hoist_global_options(["--home=/w", "ls"]) == ["--home=/w", "ls"]


def test_a_bad_config_key_is_named_with_what_is_allowed(home) -> None:
    Workspace.init(home).close()
    (home / "config.json").write_text(json.dumps({"speech": {"beam": 3}}))
    out = cli(home, "--home", str(home), "ls")
    assert out.returncode == UsageError.exit_code
    assert "speech.beam" in out.stderr and "beam_size" in out.stderr and "Traceback" not in out.stderr
    (home / "config.json").write_text(json.dumps({"assistant": {"engine": {"type": "cloud"}}}))
    out = cli(home, "--home", str(home), "ls")
    assert "assistant.engine.type" in out.stderr and "'xllamacpp' or 'openai'" in out.stderr
    (home / "config.json").write_text("{not json")
    out = cli(home, "--home", str(home), "ls")
    assert out.returncode == UsageError.exit_code and "not valid JSON" in out.stderr


def test_each_error_carries_its_exit_code_and_http_status() -> None:
    table = {UsageError: (2, 400), NotFound: (4, 404), PermissionDenied: (5, 403), WorkspaceError: (6, 503),
             IntegrityError: (7, 500), ModelMissing: (8, 503), CasemateError: (1, 400)}
    for cls, (code, status) in table.items():
        assert (cls.exit_code, cls.http_status) == (code, status), cls


def test_revoked_token_no_longer_authenticates(home) -> None:
    with Workspace.init(home) as ws:
        admin = ws.acting_user("admin")
        ws.users.add(admin, "dana", "DR", ["analyst"])
        dana = ws.acting_user("dana")
        token = ws.tokens.create(dana, label="laptop")
        assert ws.tokens.authenticate(token) == dana
        mine = ws.tokens.list(dana)
        assert [t.label for t in mine] == ["laptop"] and not mine[0].revoked
        other = ws.tokens.create(admin, label="admin's")
        with pytest.raises(UsageError, match="no token with id"):  # another's token looks missing
            ws.tokens.revoke(dana, ws.tokens.list(admin, for_user="admin")[0].id)
        ws.tokens.revoke(dana, mine[0].id)
        assert ws.tokens.authenticate(token) is None
        assert ws.tokens.authenticate(other) is not None
        assert [e.action for e in ws.audit.tail(1)] == ["token.revoke"]


def test_a_rolled_back_label_is_not_cached_under_a_reused_id(home) -> None:
    """SQLite reuses the id of a label whose transaction rolled back: a cache that kept it would
    later file a Très Secret version under the label that took the id (a leak)."""
    with Workspace.init(home) as ws:
        admin = ws.acting_user("admin")
        ws.catalog.put(admin, b"a", name="a", kind="other", label="DR")
        # A version of an asset that does not exist: the insert fails after its label was interned.
        doomed = NewVersion(blob=ws.blobs.stage_bytes(b"doomed"), name="doomed", kind="other",
                            label=parse_label("TS"), asset_pk=999_999)
        with pytest.raises(Exception):  # noqa: B017 - the database's own integrity error
            ws.catalog.insert_batch(admin, [doomed])
        s = ws.catalog.put(admin, b"s", name="s", kind="other", label="S")  # takes the freed id
        ts = ws.catalog.put(admin, b"ts", name="ts", kind="other", label="TS")
        assert format_label(ws.catalog.get(admin, ts.id).label) == "TS"
        assert format_label(ws.catalog.get(admin, s.id).label) == "S"
        ws.users.add(admin, "sam", "S", ["analyst"])
        assert sorted(v.name for v in ws.catalog.list(ws.acting_user("sam"))) == ["a", "s"]


def test_a_refusal_is_audited_although_it_raises(home) -> None:
    with Workspace.init(home) as ws:
        admin = ws.acting_user("admin")
        ws.users.add(admin, "dana", "DR", ["analyst"])
        secret = ws.catalog.put(admin, b"s", name="s", kind="other", label="S")
        with pytest.raises(NotFound):
            ws.catalog.get(ws.acting_user("dana"), secret.id)
        last = ws.audit.tail(1)[0]
        assert (last.actor, last.action, last.target) == ("dana", "refused", secret.id)
