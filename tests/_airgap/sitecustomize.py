"""Loaded by every Python process the tests start (PYTHONPATH): refuse non-loopback connections."""

from casemate_airgap_guard import install

install()
