"""What the catalog holds: kinds, versions, and a version about to be inserted."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from casemate.security.labels import Label, format_label
from casemate.store.blobs import StagedBlob

BASE_KINDS = ("document", "image", "audio", "telemetry", "other")
DERIVED_KINDS = (
    "detections", "transcript", "conversation", "mission", "model", "index",
    "annotation", "dataset", "evaluation", "finding", "change",
)
KINDS = BASE_KINDS + DERIVED_KINDS
MAX_PAGE = 1000


def new_id() -> str:
    """A random, unguessable id (60 bits, base32): ids reveal nothing about order or count."""
    return base64.b32encode(os.urandom(8)).decode().lower()[:12]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Version:
    id: str
    asset_id: str
    sha256: str
    size: int
    kind: str
    label: Label
    name: str
    source_path: str | None
    created_by: str
    created_at: str
    metadata: dict[str, Any] = field(default_factory=dict)
    parents: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "asset_id": self.asset_id,
            "name": self.name,
            "kind": self.kind,
            "label": format_label(self.label),
            "sha256": self.sha256,
            "size": self.size,
            "source_path": self.source_path,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "metadata": self.metadata,
            "parents": list(self.parents),
        }


@dataclass
class NewVersion:
    """A version ready to be inserted: its blob is staged, its label checked."""

    blob: StagedBlob
    name: str
    kind: str
    label: Label
    parents: tuple[int, ...] = ()
    parent_ids: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    source_path: str | None = None
    source_key: str | None = None
    asset_pk: int | None = None
    action: str = "put"
    audit_detail: dict[str, Any] = field(default_factory=dict)
