"""Label interning: each distinct label is stored once and versions point to it by id.

The cache only ever holds labels read from committed data: a label inserted by a transaction that
then rolls back must not stay cached (SQLite reuses the id it had), or a version could be shown
under another label than its own.
"""

from __future__ import annotations

import threading

from sqlalchemy import Connection, select

from casemate.errors import UsageError
from casemate.security.labels import Label, format_label, parse_label
from casemate.security.policy import User, can_read
from casemate.store import db
from casemate.store.unit import Database


class LabelRegistry:
    def __init__(self, database: Database) -> None:
        self.db = database
        self._by_id: dict[int, Label] = {}
        self._id_by_text: dict[str, int] = {}
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Read the labels other writers (threads, processes) committed since the last refresh."""
        # Its own connection, outside any transaction of the caller: committed labels only.
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(db.labels.c.id, db.labels.c.text)).all()
        with self._lock:
            for lid, text in rows:
                if lid not in self._by_id:
                    self._by_id[lid] = parse_label(text)
                    self._id_by_text[text] = lid

    def label(self, label_id: int) -> Label:
        found = self._by_id.get(label_id)
        if found is None:
            self.refresh()
            found = self._by_id.get(label_id)
        if found is None:
            # A label made by the caller's own open transaction: read through it, never cached
            # (the transaction may still roll back).
            with self.db.read() as conn:
                text = conn.execute(select(db.labels.c.text).where(db.labels.c.id == label_id)).scalar()
            if text is None:
                raise KeyError(label_id)
            found = parse_label(text)
        return found

    def known(self) -> dict[int, Label]:
        return dict(self._by_id)

    def readable_ids(self, user: User) -> list[int]:
        """Ids of every label `user` may read: the filter applied before any row is fetched."""
        self.refresh()
        return [lid for lid, label in self._by_id.items() if can_read(user, label)]

    def intern(self, conn: Connection, label: Label, local: dict[str, int]) -> int:
        """The id of `label` in the write transaction `conn`, inserting it when new. `local`
        remembers this transaction's own inserts (they are cached only once committed)."""
        text = format_label(label)
        lid = self._id_by_text.get(text) or local.get(text)
        if lid is None:
            lid = conn.execute(select(db.labels.c.id).where(db.labels.c.text == text)).scalar()
            if lid is None:
                lid = conn.execute(db.labels.insert().values(text=text)).inserted_primary_key[0]
            local[text] = lid
        return lid

    def same_or_newer(self, existing: tuple[int, str, int], sha256: str, label: Label, what: str) -> bool:
        """For content arriving at a source already in the catalog (`existing`: asset pk, sha256,
        label id): True when unchanged (same content, same label); False when it makes a new
        version; UsageError when its label is below the one there (only declassify goes down)."""
        old = self.label(existing[2])
        if existing[1] == sha256 and old == label:
            return True
        if not label.dominates(old):
            raise UsageError(
                f"{what} is already in the catalog labelled {format_label(old)}; a new version cannot carry "
                f"the lower label {format_label(label)} (an officer can `casemate declassify` it)"
            )
        return False
