"""The factory's settings: the one place that reads the workspace configuration.

Keys (section "factory" of config.json): executor ("local" | "slurm"), slurm_conf (path to a
slurm.conf; else $SLURM_CONF), partition, cpus_per_task, python (interpreter the jobs run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from casemate.workspace import Workspace


@dataclass(frozen=True)
class FactorySettings:
    executor: str = "local"
    slurm_conf: str | None = None
    partition: str | None = None
    cpus_per_task: int = 1
    python: str | None = None


def factory_settings(ws: Workspace) -> FactorySettings:
    cfg: Any = ws.config
    section = cfg.get("factory", {}) if isinstance(cfg, dict) else getattr(cfg, "factory", None) or {}
    if not isinstance(section, dict):
        section = section.model_dump() if hasattr(section, "model_dump") else dict(section)
    known = {k: section[k] for k in FactorySettings.__dataclass_fields__ if k in section}
    return FactorySettings(**known)
