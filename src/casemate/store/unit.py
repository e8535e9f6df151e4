"""Units of work: one database connection and its own queue of audit entries.

Every service call runs in a unit. A call made inside another one (same database, same thread or
task) joins it; otherwise it opens its own and closes it when it returns. The unit belongs to the
context that opened it (a `ContextVar`), so two threads never share a queue or a connection:
thread safety by construction, no lock borrowed across modules.

Audit entries recorded in a write transaction are written in that transaction, before its commit
(a crash never leaves a change without its entry, nor an entry for a change that did not happen:
a failed transaction drops the entries it queued). Entries recorded outside one (reads, refusals)
are written when the unit closes, in one small transaction, even when the unit closes on an
error: a refusal is audited although it raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine

from casemate.store import db


@dataclass(frozen=True, slots=True)
class PendingEntry:
    ts: str
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any]


# Writes queued entries inside an open write transaction (the audit log's chain and checkpoints).
AuditSink = Callable[[Connection, list[PendingEntry]], None]


@dataclass(eq=False)
class UnitOfWork:
    """One unit of work: a read connection, a write transaction when needed, its audit queue."""

    engine: Engine
    sink: AuditSink
    _pending: list[PendingEntry] = field(default_factory=list)
    _read: Connection | None = None
    _write: Connection | None = None

    def record(self, actor: str, action: str, target: str | None, detail: dict[str, Any] | None = None) -> None:
        """Queue an audit entry: written with the open transaction, else when the unit closes."""
        ts = datetime.now(UTC).isoformat(timespec="microseconds")
        self._pending.append(PendingEntry(ts, actor, action, target, dict(detail or {})))

    @property
    def in_transaction(self) -> bool:
        return self._write is not None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection to read with: the open write transaction's (it sees its own writes), else
        the unit's read connection, whose implicit transaction ends with the block (no stale
        snapshot is kept between two reads)."""
        if self._write is not None:
            yield self._write
            return
        if self._read is None:
            self._read = self.engine.connect()
        try:
            yield self._read
        finally:
            if self._read.in_transaction():
                self._read.rollback()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction (writers take turns on SQLite and PostgreSQL alike); a nested call
        joins the open one. The entries queued so far are written in it before it commits."""
        if self._write is not None:
            yield self._write
            return
        mark = len(self._pending)
        conn = db.write_connection(self.engine)
        self._write = conn
        written: list[PendingEntry] = []
        try:
            with conn.begin():
                db.lock_for_append(conn)
                yield conn
                if self._pending:
                    written, self._pending = self._pending, []
                    self.sink(conn, written)
        except BaseException:
            # Entries queued before the transaction still stand; those queued in it described a
            # change that did not happen.
            self._pending = (written + self._pending)[:mark]
            raise
        finally:
            self._write = None
            conn.close()

    def close(self) -> None:
        try:
            if self._pending:
                with self.transaction():
                    pass
        finally:
            if self._read is not None:
                self._read.close()
                self._read = None


class Database:
    """The metadata store as services see it: an engine, and units of work over it."""

    def __init__(self, engine: Engine, sink: AuditSink | None = None) -> None:
        self.engine = engine
        self._sink = sink
        self._current: ContextVar[UnitOfWork | None] = ContextVar(f"casemate_unit_{id(self)}", default=None)

    def set_audit_sink(self, sink: AuditSink) -> None:
        self._sink = sink

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def unit(self) -> Iterator[UnitOfWork]:
        """The current unit of work, or a new one for the duration of the block."""
        current = self._current.get()
        if current is not None:
            yield current
            return
        if self._sink is None:
            raise RuntimeError("Database.unit() before an audit sink was set")
        unit = UnitOfWork(self.engine, self._sink)
        token = self._current.set(unit)
        try:
            yield unit
        finally:
            self._current.reset(token)
            unit.close()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.unit() as u, u.read() as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.unit() as u, u.transaction() as conn:
            yield conn

    def record(self, actor: str, action: str, target: str | None, detail: dict[str, Any] | None = None) -> None:
        with self.unit() as u:
            u.record(actor, action, target, detail)

    def dispose(self) -> None:
        self.engine.dispose()
