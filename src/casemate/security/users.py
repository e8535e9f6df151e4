"""Users, passwords (argon2id) and API tokens, stored in the workspace database."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select

from casemate.errors import CasemateError, PermissionDenied, UsageError
from casemate.security.audit import AuditLog
from casemate.security.labels import Label, format_label, parse_label
from casemate.security.policy import ROLES, User
from casemate.store import db
from casemate.store.unit import Database

NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
TOKEN_PREFIX = "cm_"
# A hash to verify against when the user does not exist, so a login for an unknown name costs the
# same time as one for a known name with a wrong password.
_hasher = PasswordHasher()
_dummy_hash: str | None = None


def _dummy() -> str:
    # Made on first use: an argon2 hash costs a large fraction of a second, too much for every start.
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash("casemate-dummy-password")
    return _dummy_hash


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _row_to_user(row) -> User:  # type: ignore[no-untyped-def]
    return User(
        name=row.name,
        clearance=parse_label(row.clearance),
        roles=frozenset(r for r in row.roles.split(",") if r),
        disabled=bool(row.disabled),
    )


def check_roles(roles: Iterable[str]) -> frozenset[str]:
    out = set()
    for role in roles:
        if role not in ROLES:
            raise UsageError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        out.add(role)
    return frozenset(out)


class UserStore:
    def __init__(self, database: Database, audit: AuditLog) -> None:
        self.db = database
        self.audit = audit

    def require_admin(self, actor: User, action: str) -> None:
        """PermissionDenied (audited) unless `actor` is an admin."""
        if not actor.has_role("admin"):
            self.audit.record(actor.name, "refused", None, {"action": action, "reason": "not admin"})
            raise PermissionDenied(f"only an admin can {action}")

    def get(self, name: str) -> User | None:
        with self.db.read() as conn:
            row = conn.execute(select(db.users).where(db.users.c.name == name)).first()
        return _row_to_user(row) if row else None

    def list(self, actor: User) -> list[User]:
        self.require_admin(actor, "list users")
        with self.db.read() as conn:
            rows = conn.execute(select(db.users).order_by(db.users.c.name)).all()
        return [_row_to_user(r) for r in rows]

    def add(
        self,
        actor: User,
        name: str,
        clearance: str | Label,
        roles: Iterable[str] = ("analyst",),
        *,
        _bootstrap: bool = False,
    ) -> User:
        if not _bootstrap:
            self.require_admin(actor, "add users")
        if not NAME_RE.match(name):
            raise UsageError(
                f"bad user name {name!r}: use lower-case letters, digits, '.', '_' or '-', starting with a letter"
            )
        label = parse_label(clearance)
        role_set = check_roles(roles)
        if self.get(name) is not None:
            raise UsageError(f"user {name!r} exists already")
        user = User(name, label, role_set, False)
        with self.db.transaction() as conn:
            self.audit.record(
                actor.name, "user.add", name, {"clearance": format_label(label), "roles": sorted(role_set)}
            )
            conn.execute(
                db.users.insert().values(
                    name=name,
                    clearance=format_label(label),
                    roles=",".join(sorted(role_set)),
                    disabled=False,
                    created_at=_now(),
                )
            )
        return user

    def disable(self, actor: User, name: str) -> None:
        self.require_admin(actor, "disable users")
        if self.get(name) is None:
            raise UsageError(f"no user named {name!r}")
        if name == actor.name:
            raise UsageError("you cannot disable yourself")
        with self.db.transaction() as conn:
            self.audit.record(actor.name, "user.disable", name, {})
            conn.execute(db.users.update().where(db.users.c.name == name).values(disabled=True))

    def set_password(self, actor: User, name: str, password: str) -> None:
        if actor.name != name:
            self.require_admin(actor, "set another user's password")
        if self.get(name) is None:
            raise UsageError(f"no user named {name!r}")
        if len(password) < 12:
            raise UsageError("password too short: use at least 12 characters")
        digest = _hasher.hash(password)
        with self.db.transaction() as conn:
            self.audit.record(actor.name, "user.password", name, {})
            conn.execute(db.users.update().where(db.users.c.name == name).values(password_hash=digest))

    def authenticate(self, name: str, password: str) -> User | None:
        """The user for a correct name and password; None otherwise (same time either way)."""
        with self.db.read() as conn:
            row = conn.execute(select(db.users).where(db.users.c.name == name)).first()
        stored = row.password_hash if row is not None and row.password_hash else _dummy()
        try:
            _hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if row is None or not row.password_hash or row.disabled:
            return None
        return _row_to_user(row)


@dataclass(frozen=True)
class TokenInfo:
    id: int
    user: str
    label: str
    created_at: str
    revoked: bool

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "user": self.user, "label": self.label, "created_at": self.created_at,
                "revoked": self.revoked}


class TokenStore:
    """API tokens: only their SHA-256 is stored; the token itself is shown once."""

    def __init__(self, database: Database, audit: AuditLog, users: UserStore) -> None:
        self.db = database
        self.audit = audit
        self.users = users

    def create(self, actor: User, for_user: str | None = None, label: str = "") -> str:
        name = for_user or actor.name
        if name != actor.name and not actor.has_role("admin"):
            raise PermissionDenied("only an admin can create a token for another user")
        user = self.users.get(name)
        if user is None:
            raise UsageError(f"no user named {name!r}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.db.transaction() as conn:
            self.audit.record(actor.name, "token.create", name, {"note": label})
            uid = conn.execute(select(db.users.c.id).where(db.users.c.name == name)).scalar_one()
            conn.execute(
                db.tokens.insert().values(
                    user_id=uid,
                    token_hash=hashlib.sha256(token.encode()).hexdigest(),
                    label=label,
                    created_at=_now(),
                    revoked=False,
                )
            )
        return token

    def list(self, actor: User, *, for_user: str | None = None) -> list[TokenInfo]:
        """Tokens (never their secret): your own, or anyone's for an admin."""
        if for_user not in (None, actor.name) or (for_user is None and actor.has_role("admin")):
            if not actor.has_role("admin"):
                raise PermissionDenied("only an admin can list another user's tokens")
        q = (
            select(db.tokens.c.id, db.users.c.name, db.tokens.c.label, db.tokens.c.created_at, db.tokens.c.revoked)
            .join(db.users, db.users.c.id == db.tokens.c.user_id)
            .order_by(db.tokens.c.id)
        )
        name = for_user if for_user is not None else (None if actor.has_role("admin") else actor.name)
        if name is not None:
            q = q.where(db.users.c.name == name)
        with self.db.read() as conn:
            return [TokenInfo(r[0], r[1], r[2], r[3], bool(r[4])) for r in conn.execute(q)]

    def revoke(self, actor: User, token_id: int) -> TokenInfo:
        """Revoke a token at once (yours, or anyone's for an admin); revoking twice is a no-op."""
        with self.db.transaction() as conn:
            row = conn.execute(
                select(db.tokens.c.id, db.users.c.name, db.tokens.c.label, db.tokens.c.created_at,
                       db.tokens.c.revoked)
                .join(db.users, db.users.c.id == db.tokens.c.user_id)
                .where(db.tokens.c.id == token_id)
            ).first()
            # Another user's token is reported exactly like a missing one.
            if row is None or (row[1] != actor.name and not actor.has_role("admin")):
                raise UsageError(f"no token with id {token_id}: see `casemate token ls`")
            if not row[4]:
                self.audit.record(actor.name, "token.revoke", row[1], {"token_id": token_id})
                conn.execute(db.tokens.update().where(db.tokens.c.id == token_id).values(revoked=True))
        return TokenInfo(row[0], row[1], row[2], row[3], True)

    def authenticate(self, token: str) -> User | None:
        if not token.startswith(TOKEN_PREFIX):
            return None
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self.db.read() as conn:
            row = conn.execute(
                select(db.users)
                .join(db.tokens, db.tokens.c.user_id == db.users.c.id)
                .where(db.tokens.c.token_hash == digest, db.tokens.c.revoked.is_(False))
            ).first()
        if row is None or row.disabled:
            return None
        return _row_to_user(row)


def acting_user(users: UserStore, name: str) -> User:
    user = users.get(name)
    if user is None:
        raise CasemateError(f"no user named {name!r} in this workspace: an admin adds one with `casemate user add`")
    if user.disabled:
        raise CasemateError(f"user {name!r} is disabled")
    return user
