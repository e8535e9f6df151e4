"""Ingest hook: `casemate ingest` calls `after_ingest` with the versions it just committed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from casemate.security.policy import User
from casemate.workspace import Workspace


def after_ingest(ws: Workspace, user: User, versions: Sequence[Any]) -> None:
    """Index the new documents and transcripts (the others are skipped, cheaply)."""
    from casemate.assistant.pipeline import INDEXED_KINDS, Assistant

    todo = [v for v in versions if getattr(v, "kind", None) in INDEXED_KINDS]
    if todo:
        Assistant(ws).index_versions(user, todo)
