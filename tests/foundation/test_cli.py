"""The CLI as a person uses it: real processes, real workspace."""

import json
import os
import subprocess
import sys

import pytest


def run(home, *args, user=None, stdin=None):
    env = dict(os.environ)
    env.pop("CASEMATE_HOME", None)
    if user:
        env["CASEMATE_USER"] = user
    return subprocess.run(
        [sys.executable, "-m", "casemate.cli", "--home", str(home), *args],
        capture_output=True, text=True, env=env, input=stdin,
    )


@pytest.fixture
def ws_home(home, tmp_path):
    assert run(home, "init").returncode == 0
    assert run(home, "user", "add", "dana", "--clearance", "DR").returncode == 0
    assert run(home, "user", "add", "sam", "--clearance", "Secret//alpha", "--role", "officer").returncode == 0
    src = tmp_path / "docs"
    src.mkdir()
    (src / "public.txt").write_text("public words")
    (src / "sub").mkdir()
    (src / "sub" / "secret.md").write_text("# Plan\nsecret words")
    assert run(home, "ingest", str(src / "public.txt"), "--label", "NP").returncode == 0
    out = run(home, "ingest", str(src / "sub"), "--label", "S//ALPHA", "--json", user="sam")
    assert out.returncode == 0, out.stderr
    secret_id = json.loads(out.stdout)["ingested"][0]["id"]
    return home, secret_id


def test_missing_and_foreign_workspace(tmp_path) -> None:
    out = run(tmp_path / "nowhere", "ls")
    assert out.returncode == 6 and "no workspace at" in out.stderr and "casemate init" in out.stderr
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "x").write_text("x")
    out = run(tmp_path / "foreign", "ls")
    assert out.returncode == 6 and "not a Casemate workspace" in out.stderr
    out = run(tmp_path / "foreign", "init")
    assert out.returncode == 6 and "not empty" in out.stderr
    assert "Traceback" not in out.stderr


def test_hidden_is_exactly_missing_on_every_read_command(ws_home) -> None:
    home, secret_id = ws_home
    for cmd in ("show", "cat", "lineage"):
        hidden = run(home, cmd, secret_id, user="dana")
        missing = run(home, cmd, "aaaaaaaaaaaa", user="dana")
        assert hidden.returncode == missing.returncode == 4
        assert hidden.stdout == missing.stdout == ""
        assert hidden.stderr.replace(secret_id, "ID") == missing.stderr.replace("aaaaaaaaaaaa", "ID")
    allowed = run(home, "cat", secret_id, user="sam")
    assert allowed.returncode == 0 and "secret words" in allowed.stdout


def test_json_listings(ws_home) -> None:
    home, secret_id = ws_home
    rows = json.loads(run(home, "ls", "--json", user="sam").stdout)
    assert {"id", "name", "kind", "label", "sha256"} <= set(rows[0])
    assert {r["label"] for r in rows} == {"NP", "S//ALPHA"}
    dana_rows = json.loads(run(home, "ls", "--json", user="dana").stdout)
    assert [r["name"] for r in dana_rows] == ["public.txt"]
    assert json.loads(run(home, "ls", "--kind", "image", "--json").stdout) == []
    shown = json.loads(run(home, "show", secret_id, "--json", user="sam").stdout)
    assert shown["id"] == secret_id and shown["label"] == "S//ALPHA"
    tree = json.loads(run(home, "lineage", secret_id, "--json", user="sam").stdout)
    assert tree["id"] == secret_id and tree["parents"] == []
    users = json.loads(run(home, "user", "ls", "--json").stdout)
    assert {u["name"] for u in users} == {"admin", "dana", "sam"}


def test_declassify_and_roles_from_the_cli(ws_home) -> None:
    home, secret_id = ws_home
    denied = run(home, "declassify", secret_id, "--to", "DR", "--reason", "r", user="dana")
    assert denied.returncode == 4  # dana cannot see it at all
    out = run(home, "declassify", secret_id, "--to", "DR", "--reason", "released", "--json", user="sam")
    assert out.returncode == 0, out.stderr
    new_id = json.loads(out.stdout)["id"]
    assert "secret words" in run(home, "cat", new_id, user="dana").stdout
    assert run(home, "user", "add", "eve", "--clearance", "TS", user="dana").returncode == 5
    assert run(home, "user", "disable", "dana").returncode == 0
    out = run(home, "ls", user="dana")
    assert out.returncode != 0 and "disabled" in out.stderr
    assert run(home, "audit", "verify").returncode == 0
    tail = json.loads(run(home, "audit", "tail", "-n", "50", "--json").stdout)
    actions = [e["action"] for e in tail]
    assert "declassify" in actions and "user.disable" in actions and "refused" in actions


def test_password_and_token_commands(ws_home) -> None:
    home, _ = ws_home
    out = run(home, "user", "passwd", "dana", "--password-stdin", stdin="a long enough password\n")
    assert out.returncode == 0, out.stderr
    token = run(home, "token", "create", user="dana").stdout.strip()
    assert token.startswith("cm_") and len(token) > 30
