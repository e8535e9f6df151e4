"""The one place the assistant and the server read their settings from the workspace's config.

Keys read (typed in `casemate.config`): assistant.engine (type, model, n_ctx, threads,
cache_prompt, base_url, api_key_env, sha256, parallel), assistant.embedder_path,
assistant.ranking (hybrid | dense | bm25).
"""

from __future__ import annotations

from typing import Any

from casemate.workspace import Workspace


def section(ws: Workspace, name: str) -> dict[str, Any]:
    """One section of the workspace configuration as a plain dict."""
    return dict(getattr(ws.config, name).model_dump(exclude_none=True))
