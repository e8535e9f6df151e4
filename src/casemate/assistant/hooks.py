"""Ingest hook: `casemate ingest` (and the console's upload) call `after_ingest` with the versions
just committed.

In `casemate serve`, the server's assistant is registered for its workspace (`share`): an upload is
then indexed by it (its embedder, no second model), and its in-memory index is rebuilt on the
upload's own thread, so the next search finds the new snapshot ready instead of building it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from casemate.security.policy import User
from casemate.workspace import Workspace

if TYPE_CHECKING:
    from casemate.assistant.pipeline import Assistant

_shared: weakref.WeakKeyDictionary[Workspace, Assistant] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def share(ws: Workspace, assistant: Assistant) -> None:
    """Make `assistant` the one that indexes what is ingested into `ws` in this process."""
    with _shared_lock:
        _shared[ws] = assistant


def shared(ws: Workspace) -> Assistant | None:
    with _shared_lock:
        return _shared.get(ws)


def after_ingest(ws: Workspace, user: User, versions: Sequence[Any]) -> None:
    """Index the new documents and transcripts (the others are skipped, cheaply)."""
    from casemate.assistant.pipeline import INDEXED_KINDS, Assistant

    todo = [v for v in versions if getattr(v, "kind", None) in INDEXED_KINDS]
    if not todo:
        return
    assistant = shared(ws)
    if assistant is None:
        Assistant(ws).index_versions(user, todo)
        return
    if assistant.index_versions(user, todo).indexed:
        assistant.search_index()  # the new snapshot, built here rather than by the next search
