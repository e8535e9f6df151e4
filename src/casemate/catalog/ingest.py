"""Ingest files and folders into the catalog.

Files are read, typed, their text extracted and their blob staged one by one; every `batch_size`
files the blobs are made durable and the versions and audit entries committed in one transaction.
A file that fails gets its own error and is left out; the others go on. Re-running the same ingest
creates nothing new (same path, same content, same label: skipped).
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from casemate.catalog.extract import ExtractError, extract, sniff
from casemate.catalog.models import NewVersion, Version
from casemate.errors import CasemateError, UsageError
from casemate.security.labels import Label, format_label, parse_label
from casemate.security.policy import User, can_read
from casemate.workspace import Workspace

SMALL = 16 * 1024 * 1024
# Creating files is latency-bound on virtual disks: a few threads overlap the waits (measured: 4
# threads create small files 4-10x faster than one).
IO_THREADS = 4
MAX_DOCUMENT = 512 * 1024 * 1024


@dataclass
class IngestReport:
    ingested: list[Version] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    hook_errors: list[tuple[str, str]] = field(default_factory=list)
    derived: list[Version] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        return f"ingested {len(self.ingested)}, skipped {len(self.skipped)} (unchanged), failed {len(self.failed)}"


@dataclass(frozen=True, slots=True)
class Found:
    path: str  # as the user named it (for messages)
    key: str  # resolved absolute path: the asset's identity
    size: int
    name: str


def walk(paths: Iterable[str | Path], report: IngestReport) -> Iterator[Found]:
    """Files under `paths`, following symbolic links once; loops and unreadable entries are reported.

    One stat per entry, and a real-path resolution only for links: ingest is syscall-bound.
    """
    seen_dirs: set[tuple[int, int]] = set()

    def visit(p: str, name: str, key: str | None, chain: tuple[tuple[int, int], ...]) -> Iterator[Found]:
        try:
            st = os.stat(p)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                report.failed.append((p, "symbolic link loop: fix or remove the link"))
            elif exc.errno == errno.ENOENT:
                what = "broken symbolic link" if os.path.islink(p) else "no such file or folder"
                report.failed.append((p, what))
            else:
                report.failed.append((p, f"cannot read: {exc.strerror}"))
            return
        if key is None:
            key = os.path.realpath(p)
        if stat.S_ISDIR(st.st_mode):
            ident = (st.st_dev, st.st_ino)
            if ident in chain:
                report.failed.append((p, "symbolic link loop (the folder contains itself): fix the link"))
                return
            if ident in seen_dirs:
                return
            seen_dirs.add(ident)
            try:
                with os.scandir(p) as it:
                    entries = sorted(((e.name, e.path, e.is_symlink()) for e in it), key=lambda e: e[0])
            except OSError as exc:
                report.failed.append((p, f"cannot list folder: {exc.strerror}"))
                return
            inner = chain + (ident,)
            for child_name, child_path, is_link in entries:
                yield from visit(child_path, child_name, None if is_link else f"{key}/{child_name}", inner)
        elif stat.S_ISREG(st.st_mode):
            yield Found(p, key, st.st_size, name)
        else:
            report.failed.append((p, "not a regular file (device, socket or pipe): skipped"))

    for raw in paths:
        raw_s = os.fspath(raw)
        yield from visit(raw_s, os.path.basename(os.path.normpath(raw_s)), None, ())


def _read_file(path: str | Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


class Ingester:
    def __init__(
        self,
        ws: Workspace,
        user: User,
        label: str | Label,
        *,
        batch_size: int = 500,
        progress: Callable[[int], None] | None = None,
        run_hooks: bool = True,
    ) -> None:
        self.ws = ws
        self.user = user
        self.label = parse_label(label)
        if not can_read(user, self.label):
            raise UsageError(
                f"label {format_label(self.label)} is above your clearance: you could not read what you ingest"
            )
        self.batch_size = batch_size
        self.progress = progress
        self.run_hooks = run_hooks
        self.catalog = ws.catalog

    def run(self, paths: Sequence[str | Path]) -> IngestReport:
        report = IngestReport()
        if not paths:
            raise UsageError("nothing to ingest: name at least one file or folder")
        # One unit of work: failures are audited with the next batch's transaction.
        with self.ws.unit(), ThreadPoolExecutor(IO_THREADS, thread_name_prefix="ingest") as self._pool:
            return self._run(paths, report)

    def _run(self, paths: Sequence[str | Path], report: IngestReport) -> IngestReport:
        batch: list[Found] = []
        seen: set[str] = set()
        # Pipelined: the pool prepares batch N+1 (reads, hashes, creates blob files) while this
        # thread makes batch N durable and commits it.
        in_flight: tuple | None = None
        for found in walk(paths, report):
            if found.key in seen:
                continue
            seen.add(found.key)
            batch.append(found)
            if len(batch) >= self.batch_size:
                submitted = self._submit(batch)
                if in_flight is not None:
                    self._finish(in_flight, report)
                in_flight, batch = submitted, []
        if batch:
            submitted = self._submit(batch)
            if in_flight is not None:
                self._finish(in_flight, report)
            in_flight = submitted
        if in_flight is not None:
            self._finish(in_flight, report)
        self._audit_failures(report)
        if self.run_hooks and report.ingested:
            self._hooks(report)
        return report

    def _prepare(self, found: Found, existing: tuple[int, str, int] | None) -> NewVersion | str:
        """A staged version, or the string "skip" for unchanged content."""
        if found.size == 0:
            raise ExtractError("empty file (0 bytes): nothing to ingest")
        blobs = self.ws.blobs
        if found.size <= SMALL:
            data = _read_file(found.path)
            if not data:
                raise ExtractError("empty file (0 bytes): nothing to ingest")
            sha = hashlib.sha256(data).hexdigest()
            if existing is not None and self.catalog.same_or_newer(existing, sha, self.label, "this file"):
                return "skip"
            sniffed = sniff(data[:8192], found.name)
            text, meta = extract(sniffed.fmt, data) if sniffed.kind in ("document", "telemetry") else (None, {})
            blob = blobs.stage_bytes(data, sha)
        else:
            with open(found.path, "rb") as fh:
                head = fh.read(8192)
            sniffed = sniff(head, found.name)
            text, meta = None, {}
            if sniffed.kind in ("document", "telemetry"):
                if found.size > MAX_DOCUMENT:
                    raise ExtractError(f"document larger than {MAX_DOCUMENT // (1 << 20)} MiB: split it first")
                data = _read_file(found.path)
                text, meta = extract(sniffed.fmt, data)
                blob = blobs.stage_bytes(data)
            else:
                blob = blobs.stage_file(Path(found.path))
            if existing is not None and self.catalog.same_or_newer(existing, blob.sha256, self.label, "this file"):
                return "skip"  # its staged copy is already stored under the same hash
        meta = {"format": sniffed.fmt, **meta}
        return NewVersion(
            blob=blob,
            name=found.name,
            kind=sniffed.kind,
            label=self.label,
            metadata=meta,
            text=text,
            source_path=found.key,
            source_key=found.key,
            asset_pk=existing[0] if existing else None,
            action="ingest",
        )

    _audited_failures = 0

    def _audit_failures(self, report: IngestReport) -> None:
        for path, reason in report.failed[self._audited_failures :]:
            self.ws.audit.record(self.user.name, "ingest.failed", None, {"path": path, "reason": reason})
        self._audited_failures = len(report.failed)

    def _prepare_safe(
        self, found: Found, existing: tuple[int, str, int] | None
    ) -> NewVersion | str | tuple[str]:
        try:
            return self._prepare(found, existing)
        except CasemateError as exc:
            return (exc.message,)
        except OSError as exc:
            reason = "symbolic link loop" if exc.errno == errno.ELOOP else (exc.strerror or str(exc))
            return (f"cannot read: {reason}",)
        except MemoryError:
            return ("too large to read into memory",)

    def _submit(self, batch: list[Found]) -> tuple[list[Found], list[Future]]:
        existing = self.catalog.find_by_source(self.user, [f.key for f in batch])
        return batch, [self._pool.submit(self._prepare_safe, f, existing.get(f.key)) for f in batch]

    def _finish(self, submitted: tuple[list[Found], list[Future]], report: IngestReport) -> None:
        batch, futures = submitted
        items: list[NewVersion] = []
        for found, future in zip(batch, futures, strict=True):
            prepared = future.result()
            if isinstance(prepared, tuple):
                report.failed.append((found.path, prepared[0]))
            elif prepared == "skip":
                report.skipped.append(found.path)
            else:
                items.append(prepared)  # type: ignore[arg-type]
            if self.progress:
                self.progress(1)
        self._audit_failures(report)
        # Renames run here, while the pool prepares the next batch.
        report.ingested.extend(self.catalog.insert_batch(self.user, items))

    def _hooks(self, report: IngestReport) -> None:
        versions = list(report.ingested)
        for spec in self.ws.config.hooks.after_ingest:
            module_name, _, attr = spec.partition(":")
            try:
                fn = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                report.hook_errors.append((spec, f"cannot load this hook ({exc}): fix hooks.after_ingest in config.json"))
                continue
            try:
                derived = fn(self.ws, self.user, list(versions))
            except CasemateError as exc:
                report.hook_errors.append((spec, exc.message))
                continue
            if derived:  # versions a hook created (transcripts) go to the hooks after it
                versions.extend(derived)
                report.derived.extend(derived)


def ingest(
    ws: Workspace,
    user: User,
    paths: Sequence[str | Path],
    label: str | Label,
    *,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
    run_hooks: bool = True,
) -> IngestReport:
    return Ingester(ws, user, label, batch_size=batch_size, progress=progress, run_hooks=run_hooks).run(paths)
