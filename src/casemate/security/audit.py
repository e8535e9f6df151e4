"""The tamper-evident audit log.

Each entry is one line of canonical JSON (sorted keys, no spaces) holding its position `seq` and
`prev`, the SHA-256 of the previous line: a hash chain. Every `checkpoint_every` entries, and when
the workspace closes, a checkpoint signs (ed25519) the Merkle root of the entries since the last
checkpoint, the chain head and the previous checkpoint. Entries are queued in the caller's unit of
work (`casemate.store.unit`) and written in the same database transaction as the change they
describe, so a crash never leaves one without the other.

`verify` names the first bad position for an edited, deleted, inserted, reordered or truncated
entry.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection, select

from casemate.errors import UsageError
from casemate.security.labels import parse_label
from casemate.security.policy import User, can_read
from casemate.store import db
from casemate.store.unit import Database, PendingEntry

GENESIS = "0" * 64
HEAD_KEY = "audit_head"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def merkle_root(hashes: Iterable[bytes]) -> str:
    """Merkle root of entry hashes; internal nodes are prefixed with 0x01 (RFC 6962 style).

    Leaves are the entries' SHA-256 as they are: a leaf is the hash of a JSON line, which no
    internal node (a hash of 0x01 || left || right) can be made to equal.
    """
    level = list(hashes)
    if not level:
        return hashlib.sha256(b"").hexdigest()
    sha = hashlib.sha256
    while len(level) > 1:
        nxt = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].hex()


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    ts: str
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any]
    prev: str

    @staticmethod
    def from_line(line: str) -> AuditEntry:
        d = json.loads(line)
        return AuditEntry(d["seq"], d["ts"], d["actor"], d["action"], d.get("target"), d["detail"], d["prev"])

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    checkpoints: int
    first_bad: int | None = None
    reason: str = ""


def _chunks(cursor: Any, size: int = 10_000) -> Iterator[list[tuple[str]]]:
    while rows := cursor.fetchmany(size):
        yield rows


def _extract(line: str) -> tuple[str | None, int | None]:
    """`prev` and `seq` of a canonical line without a full parse.

    Keys sort as action, actor, detail, prev, seq, target, ts: `"prev":"<64 hex>",` stands right
    before `"seq":`. Only `detail` (before them) nests objects, and a string cannot hold an
    unescaped quote, so the last `"seq":` is the top-level one.
    """
    j = line.rfind('"seq":')
    if j < 74 or not line.startswith('"prev":"', j - 74):
        return None, None
    end = line.find(",", j)
    try:
        return line[j - 66 : j - 2], int(line[j + 6 : end])
    except ValueError:
        return line[j - 66 : j - 2], None


class AuditLog:
    def __init__(
        self,
        database: Database,
        private_key: Ed25519PrivateKey | None,
        public_key: Ed25519PublicKey,
        checkpoint_every: int = 1024,
    ) -> None:
        self.db = database
        self._key = private_key
        self._pub = public_key
        self.checkpoint_every = checkpoint_every
        database.set_audit_sink(self.write_entries)

    # -- writing -----------------------------------------------------------------------------
    def record(self, actor: str, action: str, target: str | None, detail: dict[str, Any] | None = None) -> None:
        """Audit an action: written with the caller's open transaction, else by the call itself
        (or when the caller's unit of work closes)."""
        self.db.record(actor, action, target, detail)

    def _head(self, conn: Connection) -> tuple[int, str]:
        row = conn.execute(select(db.audit.c.seq, db.audit.c.line).order_by(db.audit.c.seq.desc()).limit(1)).first()
        if row is None:
            return 0, GENESIS
        return row[0] + 1, hashlib.sha256(row[1].encode()).hexdigest()

    def _last_checkpoint(self, conn: Connection) -> tuple[int, str]:
        row = conn.execute(
            select(db.audit_checkpoints.c.end_seq, db.audit_checkpoints.c.body)
            .order_by(db.audit_checkpoints.c.end_seq.desc())
            .limit(1)
        ).first()
        if row is None:
            return -1, ""
        return row[0], hashlib.sha256(row[1].encode()).hexdigest()

    def write_entries(self, conn: Connection, entries: list[PendingEntry]) -> int:
        """Append entries inside the caller's write transaction; sign checkpoints as they fall due."""
        if not entries:
            return 0
        db.lock_for_append(conn)
        seq, prev = self._head(conn)
        rows = []
        dumps = canonical_json
        sha = hashlib.sha256
        due: list[int] = []
        for e in entries:
            line = dumps(
                {"seq": seq, "ts": e.ts, "actor": e.actor, "action": e.action, "target": e.target,
                 "detail": e.detail, "prev": prev}
            )
            rows.append({"seq": seq, "line": line})
            prev = sha(line.encode()).hexdigest()
            if (seq + 1) % self.checkpoint_every == 0:
                due.append(seq)
            seq += 1
        conn.execute(db.audit.insert(), rows)
        self._set_head(conn, seq, prev)
        for end in due:
            self._checkpoint(conn, end)
        return len(entries)

    def _set_head(self, conn: Connection, count: int, head: str) -> None:
        conn.execute(db.meta.delete().where(db.meta.c.key == HEAD_KEY))
        conn.execute(db.meta.insert().values(key=HEAD_KEY, value=f"{count}:{head}"))

    def _checkpoint(self, conn: Connection, end_seq: int) -> None:
        if self._key is None:
            return
        last_end, last_hash = self._last_checkpoint(conn)
        if end_seq <= last_end:
            return
        start = last_end + 1
        lines = conn.execute(
            select(db.audit.c.line).where(db.audit.c.seq >= start, db.audit.c.seq <= end_seq).order_by(db.audit.c.seq)
        ).scalars()
        hashes = [hashlib.sha256(line.encode()).digest() for line in lines]
        body = canonical_json(
            {
                "start_seq": start,
                "end_seq": end_seq,
                "merkle_root": merkle_root(hashes),
                "head": hashes[-1].hex(),
                "prev_checkpoint": last_hash,
                "signed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        signature = base64.b64encode(self._key.sign(body.encode())).decode()
        conn.execute(db.audit_checkpoints.insert().values(end_seq=end_seq, body=body, signature=signature))

    def checkpoint_now(self) -> None:
        """Sign the entries written since the last checkpoint (on close)."""
        with self.db.transaction() as conn:
            count, _ = self._head(conn)
            if count:
                self._checkpoint(conn, count - 1)

    # -- reading -----------------------------------------------------------------------------
    def tail(self, n: int = 20) -> list[AuditEntry]:
        """The last `n` entries, unfiltered: for administration code, never shown to a user as is."""
        with self.db.read() as conn:
            lines = conn.execute(select(db.audit.c.line).order_by(db.audit.c.seq.desc()).limit(n)).scalars().all()
        return [AuditEntry.from_line(line) for line in reversed(lines)]

    def tail_for(self, reader: User, n: int = 20) -> list[AuditEntry]:
        """The last `n` entries `reader` may see: those about an item above their clearance are left
        out, as if they did not exist (the policy decides, as for every read)."""
        out: list[AuditEntry] = []
        for e in self.tail(n):
            label = e.detail.get("label") if isinstance(e.detail, dict) else None
            if isinstance(label, str):
                try:
                    parsed = parse_label(label)
                except UsageError:  # not a classification (a note written by an older version)
                    parsed = None
                if parsed is not None and not can_read(reader, parsed):
                    continue
            out.append(e)
        return out

    def verify(self) -> VerifyResult:
        with self.db.read() as conn:
            head_row = conn.execute(select(db.meta.c.value).where(db.meta.c.key == HEAD_KEY)).first()
            checkpoints = conn.execute(
                select(db.audit_checkpoints.c.end_seq, db.audit_checkpoints.c.body, db.audit_checkpoints.c.signature)
                .order_by(db.audit_checkpoints.c.end_seq)
            ).all()
            # The raw DB-API cursor (any dialect): SQLAlchemy's row processing would double the cost.
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute("SELECT line FROM audit ORDER BY seq")
                return self._verify_lines(_chunks(cursor), checkpoints, head_row[0] if head_row else None)
            finally:
                cursor.close()

    def _verify_lines(self, chunks: Iterable[list[tuple[str]]], checkpoints: list[Any], head: str | None) -> VerifyResult:
        sha = hashlib.sha256
        hashes: list[bytes] = []
        append = hashes.append
        prev_hex = GENESIS
        prev2_hex = None
        n_cp = len(checkpoints)
        cp_index = 0
        next_cp_end = checkpoints[0][0] if checkpoints else -1
        last_cp_hash = ""
        seg_start = 0
        i = 0
        # The hot loop: `_extract` inlined (see its docstring for why the slicing is sound).
        for chunk in chunks:
            for (line,) in chunk:
                j = line.rfind('"seq":')
                end = line.find(",", j)
                line_prev = line[j - 66 : j - 2]
                if line_prev != prev_hex or line[j + 6 : end] != str(i) or not line.startswith('"prev":"', j - 74):
                    line_prev, line_seq = _extract(line)
                    return self._diagnose(i, line_prev, line_seq, prev_hex, prev2_hex, cp_index)
                digest = sha(line.encode()).digest()
                append(digest)
                prev2_hex = prev_hex
                prev_hex = digest.hex()
                if i == next_cp_end:
                    err = self._check_checkpoint(checkpoints[cp_index], seg_start, hashes[seg_start:], last_cp_hash)
                    if err:
                        return self._locate(err, seg_start, i, cp_index)
                    last_cp_hash = sha(checkpoints[cp_index][1].encode()).hexdigest()
                    seg_start = i + 1
                    cp_index += 1
                    next_cp_end = checkpoints[cp_index][0] if cp_index < n_cp else -1
                i += 1
        count = i
        if next_cp_end >= 0:
            return VerifyResult(
                False,
                count,
                cp_index,
                count,
                f"the log ends at entry {count} but a signed checkpoint covers entry {next_cp_end}: entries were removed",
            )
        if head is not None:
            h_count, _, h_hash = head.partition(":")
            if int(h_count) != count:
                pos = min(int(h_count), count)
                return VerifyResult(
                    False, count, cp_index, pos, f"the log holds {count} entries but {h_count} were written"
                )
            if count and h_hash != prev_hex:
                return VerifyResult(False, count, cp_index, count - 1, f"entry {count - 1} was altered")
        return VerifyResult(True, count, cp_index)

    @staticmethod
    def _diagnose(
        i: int, line_prev: str | None, line_seq: int | None, prev_hex: str, prev2_hex: str | None, cp_index: int
    ) -> VerifyResult:
        """Name the first bad position when entry i does not fit after entry i-1."""
        if line_prev == prev_hex:  # chains fine but claims another position
            return VerifyResult(False, i, cp_index, i, f"entry {i} is out of place (it says it is entry {line_seq})")
        if prev2_hex is not None and line_prev == prev2_hex:
            return VerifyResult(False, i, cp_index, i - 1, f"entry {i - 1} was inserted into the chain")
        if line_seq is not None and line_seq != i:
            return VerifyResult(False, i, cp_index, i, f"entry {i} is out of place (it says it is entry {line_seq})")
        if i == 0:
            return VerifyResult(False, i, cp_index, 0, "entry 0 does not start the chain")
        return VerifyResult(False, i, cp_index, i - 1, f"entry {i - 1} was altered (entry {i} no longer chains to it)")

    def _check_checkpoint(self, cp: Any, start: int, seg_hashes: list[bytes], last_cp_hash: str) -> str | None:
        end_seq, body, signature = cp
        try:
            self._pub.verify(base64.b64decode(signature), body.encode())
        except (InvalidSignature, ValueError):
            return f"checkpoint at entry {end_seq} has a bad signature"
        d = json.loads(body)
        if d["start_seq"] != start or d["end_seq"] != end_seq:
            return f"checkpoint at entry {end_seq} does not follow the previous one"
        if d["prev_checkpoint"] != last_cp_hash:
            return f"checkpoint at entry {end_seq} does not chain to the previous checkpoint"
        if d["merkle_root"] != merkle_root(seg_hashes) or d["head"] != seg_hashes[-1].hex():
            return "merkle"
        return None

    def _locate(self, err: str, start: int, end: int, cp_index: int) -> VerifyResult:
        if err == "merkle":
            # Earlier entries chained correctly, so the difference from what was signed ends at the
            # segment's last entry: an edit there (a longer rewritten suffix cannot be told apart).
            return VerifyResult(
                False, end + 1, cp_index, end, f"entry {end} differs from the signed checkpoint (entries {start}..{end})"
            )
        return VerifyResult(False, end + 1, cp_index, end, err)
