"""Cookie sessions for the console: HttpOnly, SameSite=Strict, Secure over TLS, a CSRF token per
session, idle and absolute timeouts, login attempts limited per client and user name."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from casemate.errors import CasemateError

COOKIE = "cm_console"
CSRF_HEADER = "x-csrf-token"
MAX_ATTEMPT_KEYS = 10_000


class TooManyAttempts(CasemateError):
    exit_code = 5
    http_status = 429


class NotSignedIn(CasemateError):
    exit_code = 5
    http_status = 401


@dataclass
class Session:
    user: str
    csrf: str
    created: float
    seen: float = field(default=0.0)


class SessionStore:
    """In-memory sessions (a restart signs everyone out, which is what an air-gapped site wants)."""

    def __init__(self, *, idle_s: float, max_s: float, login_per_minute: int) -> None:
        self.idle_s, self.max_s, self.login_per_minute = idle_s, max_s, login_per_minute
        self._sessions: dict[str, Session] = {}
        # keyed by client and user name as sent: bounded, least recently used first out
        self._attempts: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def check_attempt(self, key: str) -> None:
        """Count a login attempt; refuse once `login_per_minute` were made in the last minute."""
        now = time.monotonic()
        with self._lock:
            q = self._attempts.setdefault(key, deque())
            self._attempts.move_to_end(key)
            while q and now - q[0] > 60.0:
                q.popleft()
            while len(self._attempts) > 1:  # drop keys idle for a minute, and any past MAX_ATTEMPT_KEYS
                oldest_key, oldest = next(iter(self._attempts.items()))
                if oldest and now - oldest[-1] <= 60.0 and len(self._attempts) <= MAX_ATTEMPT_KEYS:
                    break
                del self._attempts[oldest_key]
            if len(q) >= self.login_per_minute:
                retry = max(1, int(60.0 - (now - q[0])) + 1)
                raise TooManyAttempts(f"too many login attempts: wait {retry} s and try again")
            q.append(now)

    def open(self, user: str) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        now = time.time()
        s = Session(user, secrets.token_urlsafe(24), now, now)
        with self._lock:
            for k in [k for k, v in self._sessions.items() if self._expired(v, now)]:
                del self._sessions[k]
            self._sessions[sid] = s
        return sid, s

    def _expired(self, s: Session, now: float) -> bool:
        return now - s.seen > self.idle_s or now - s.created > self.max_s

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        now = time.time()
        with self._lock:
            s = self._sessions.get(sid)
            if s is None:
                return None
            if self._expired(s, now):
                del self._sessions[sid]
                return None
            s.seen = now
            return s

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def close_user(self, user: str) -> None:
        with self._lock:
            for k in [k for k, v in self._sessions.items() if v.user == user]:
                del self._sessions[k]


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf, sent or "")
