"""The console's settings: read in this one place (the `console` section of config.json when the
typed configuration has one, else the defaults), so a change of configuration is one line here."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from casemate.workspace import Workspace


class ConsoleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    idle_minutes: int = Field(30, ge=1, le=24 * 60)
    session_hours: int = Field(8, ge=1, le=72)
    login_per_minute: int = Field(10, ge=1, le=1000)
    max_upload_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    upload_hooks: bool = True  # index (and transcribe) uploads as `casemate ingest` does


def settings_of(ws: Workspace) -> ConsoleSettings:
    section = getattr(ws.config, "console", None)
    if section is None:
        return ConsoleSettings()
    if isinstance(section, ConsoleSettings):
        return section
    data = section.model_dump() if hasattr(section, "model_dump") else dict(section)
    return ConsoleSettings(**data)
