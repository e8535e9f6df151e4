"""The console's settings: the `console` section of config.json (typed in `casemate.config`)."""

from __future__ import annotations

from casemate.config import ConsoleConfig as ConsoleSettings
from casemate.workspace import Workspace

__all__ = ["ConsoleSettings", "settings_of"]


def settings_of(ws: Workspace) -> ConsoleSettings:
    return ws.config.console
