"""One exception hierarchy: a caller catches CasemateError; the CLI prints its message, never a traceback."""

from __future__ import annotations


class CasemateError(Exception):
    """A failure a person can act on. `exit_code` is what the CLI exits with, `http_status` what
    the HTTP API answers with: every face maps an error the same way, from the class alone."""

    exit_code = 1
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(CasemateError):
    """Bad input from the user: a bad label, a missing file, a malformed field."""

    exit_code = 2
    http_status = 400


class NotFound(CasemateError):
    """No such item, or one the user may not read: the two are indistinguishable on purpose."""

    exit_code = 4
    http_status = 404

    def __init__(self, item_id: str) -> None:
        super().__init__(f"no such item: {item_id}")
        self.item_id = item_id


class PermissionDenied(CasemateError):
    """The user exists and is known, but lacks the role for an action (never used for reads)."""

    exit_code = 5
    http_status = 403


class WorkspaceError(CasemateError):
    """Missing, foreign or damaged workspace."""

    exit_code = 6
    http_status = 503


class IntegrityError(CasemateError):
    """Stored data failed a check (a blob hash, the audit chain)."""

    exit_code = 7
    http_status = 500


class ModelMissing(CasemateError):
    """A model file or package is not installed; the message says how to provide it."""

    exit_code = 8
    http_status = 503
