"""The one place the assistant and the server read their settings from the workspace's config.

`ws.config` is the typed WorkspaceConfig (sections as attributes; a plain dict is read too).
Keys read: assistant.engine (type, model, n_ctx, threads, cache_prompt, base_url, api_key_env, and
once the config declares them: sha256, parallel), assistant.embedder_path, assistant.ranking
(hybrid | dense | bm25, once declared).
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
