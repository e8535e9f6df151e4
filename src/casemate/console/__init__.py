"""The operator console: pages and a REST API for analysts, officers and administrators.

`mount(app, ws)` returns the app to serve: the console under /console in front of the server's app.
"""

from __future__ import annotations

from casemate.console.app import create_console, mount

__all__ = ["create_console", "mount"]
