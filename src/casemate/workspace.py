"""A workspace: one folder holding the metadata database, the blobs, the audit key and the models.

    home/
      workspace.json      marker: format, id, created_at
      config.json         optional settings (database_url, hooks, speech, assistant, ...)
      catalog.db          SQLite metadata (unless config names a PostgreSQL database_url)
      blobs/ab/<sha256>   content-addressed blobs
      keys/audit_ed25519  the key that signs audit checkpoints (0600)
      models/             model store (assembled or registered models)
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection, Engine

from casemate.catalog.labels import LabelRegistry
from casemate.catalog.service import Catalog
from casemate.config import WorkspaceConfig, load_config
from casemate.errors import WorkspaceError
from casemate.fileutil import write_atomic
from casemate.security.audit import AuditLog
from casemate.security.labels import Label, Level
from casemate.security.policy import User
from casemate.security.users import TokenStore, UserStore, acting_user
from casemate.store import db
from casemate.store.blobs import FileBlobStore
from casemate.store.migrations import migrate
from casemate.store.unit import Database, UnitOfWork

MARKER = "workspace.json"
FORMAT = "casemate-workspace"


def resolve_home(home: str | Path | None) -> Path:
    if home:
        return Path(home).expanduser()
    env = os.environ.get("CASEMATE_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".casemate"


class Workspace:
    """Assembles the services over one workspace folder; holds no logic of its own."""

    def __init__(self, home: Path, info: dict[str, Any], config: WorkspaceConfig) -> None:
        self.home = home
        self.info = info
        self.config = config
        self.models_dir = home / "models"
        engine = db.make_engine(config.database_url or str(home / "catalog.db"))
        migrate(engine)
        self.db = Database(engine)
        self.blobs = FileBlobStore(home / "blobs")
        private, public = self._load_keys()
        self.audit = AuditLog(self.db, private, public, checkpoint_every=config.audit_checkpoint_every)
        self.labels = LabelRegistry(self.db)
        self.users = UserStore(self.db, self.audit)
        self.tokens = TokenStore(self.db, self.audit, self.users)
        self.catalog = Catalog(self.db, self.blobs, self.labels, self.audit)
        self._closed = False

    @property
    def engine(self) -> Engine:
        return self.db.engine

    # -- life cycle -------------------------------------------------------------------------
    @classmethod
    def init(cls, home: str | Path | None = None, database_url: str | None = None) -> Workspace:
        """Create a workspace; `database_url` puts the metadata in PostgreSQL instead of SQLite."""
        path = resolve_home(home)
        if (path / MARKER).exists():
            raise WorkspaceError(f"a workspace exists already at {path}")
        if path.exists() and not path.is_dir():
            raise WorkspaceError(f"{path} is a file, not a folder: choose another --home")
        if path.exists() and any(path.iterdir()):
            raise WorkspaceError(f"{path} is not empty and holds no workspace: choose an empty or new folder")
        config = WorkspaceConfig(database_url=database_url)
        if database_url:
            engine = db.make_engine(database_url)
            try:
                with engine.connect() as conn:
                    if engine.dialect.has_table(conn, "versions"):
                        raise WorkspaceError("that database already holds a Casemate catalog: give an empty one")
            except WorkspaceError:
                raise
            except Exception as exc:
                raise WorkspaceError(f"cannot connect to the database ({type(exc).__name__}): check --database-url") from None
            finally:
                engine.dispose()
        path.mkdir(parents=True, exist_ok=True)
        (path / "keys").mkdir(mode=0o700, exist_ok=True)
        (path / "models").mkdir(exist_ok=True)
        key = Ed25519PrivateKey.generate()
        write_atomic(
            path / "keys" / "audit_ed25519",
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            mode=0o600,
        )
        write_atomic(
            path / "keys" / "audit_ed25519.pub",
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        )
        info = {"format": FORMAT, "version": 1, "id": str(uuid.uuid4()), "created_at": datetime.now(UTC).isoformat()}
        if config.to_json():
            write_atomic(path / "config.json", json.dumps(config.to_json(), indent=2).encode())
        ws = cls(path, info, config)
        admin = User("admin", Label(Level.TS), frozenset({"admin"}))
        with ws.db.transaction():
            ws.users.add(admin, "admin", admin.clearance, ["admin"], _bootstrap=True)
            ws.audit.record("admin", "workspace.init", info["id"], {})
        # The marker last: a folder without it is an unfinished init, not a workspace.
        write_atomic(path / MARKER, json.dumps(info, indent=2).encode())
        return ws

    @classmethod
    def open(cls, home: str | Path | None = None) -> Workspace:
        path = resolve_home(home)
        marker = path / MARKER
        if not path.exists():
            raise WorkspaceError(f"no workspace at {path}: create one with `casemate init --home {path}`")
        if not marker.is_file():
            raise WorkspaceError(
                f"{path} is not a Casemate workspace (no {MARKER}): use `casemate init` on a new folder"
            )
        try:
            info = json.loads(marker.read_text())
        except (OSError, ValueError) as exc:
            raise WorkspaceError(f"{marker} is unreadable ({exc}): this is not a usable workspace") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise WorkspaceError(f"{path} holds a foreign {MARKER}: not a Casemate workspace")
        if info.get("version") != 1:
            raise WorkspaceError(f"{path} is a workspace of format version {info.get('version')}: upgrade Casemate")
        return cls(path, info, load_config(path / "config.json"))

    def _load_keys(self) -> tuple[Ed25519PrivateKey | None, Ed25519PublicKey]:
        keys = self.home / "keys"
        try:
            pub = serialization.load_pem_public_key((keys / "audit_ed25519.pub").read_bytes())
        except (OSError, ValueError) as exc:
            raise WorkspaceError(f"the audit public key in {keys} is missing or damaged ({exc})") from None
        private: Ed25519PrivateKey | None = None
        try:
            loaded = serialization.load_pem_private_key((keys / "audit_ed25519").read_bytes(), password=None)
            if isinstance(loaded, Ed25519PrivateKey):
                private = loaded
        except (OSError, ValueError):
            private = None  # read-only copy of a workspace: entries are chained but not signed
        if not isinstance(pub, Ed25519PublicKey):
            raise WorkspaceError("the audit public key is not an ed25519 key")
        return private, pub

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.audit.checkpoint_now()
        finally:
            self.blobs.close()
            self.db.dispose()

    # -- units of work -----------------------------------------------------------------------
    @contextmanager
    def unit(self) -> Iterator[UnitOfWork]:
        """One unit of work for several service calls (they share its connection and audit queue)."""
        with self.db.unit() as unit:
            yield unit

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction; audit entries recorded inside are written in it before commit."""
        with self.db.transaction() as conn:
            yield conn

    def acting_user(self, name: str) -> User:
        return acting_user(self.users, name)
