import socket
import subprocess
import sys

import pytest
from casemate_airgap_guard import AirGapViolation


def test_non_loopback_connection_is_refused() -> None:
    s = socket.socket()
    with pytest.raises(OSError):
        s.connect(("192.0.2.1", 80))  # TEST-NET-1: never a real host
    s.close()


def test_loopback_connection_is_allowed() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    c = socket.socket()
    c.connect(srv.getsockname())
    c.close()
    srv.close()


def test_subprocesses_are_guarded_too() -> None:
    code = "import socket; s=socket.socket(); s.connect(('192.0.2.1', 80))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0
    assert "air gap" in out.stderr or "unreachable" in out.stderr.lower()


def test_guard_names_the_address() -> None:
    s = socket.socket()
    with pytest.raises(AirGapViolation, match="192.0.2.1"):
        s.connect(("192.0.2.1", 80))
    s.close()
