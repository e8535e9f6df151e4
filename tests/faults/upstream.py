"""A slow OpenAI-compatible model server on loopback: the fault tests' stand-in for the LLM.

`casemate serve` talks to it through its real `openai` engine (assistant.engine.type), so the
server under test is the shipped one, end to end; only the model is replaced (answers are about
storage and availability, not about what the model writes).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = ("Le ravitaillement en carburant des véhicules de la base se fait chaque mardi au dépôt nord "
          "selon la note de logistique [1].")


class Upstream:
    """Streams ANSWER word by word, `delay` seconds apart; counts the requests it started and ended."""

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.started = threading.Event()  # set when a request begins streaming
        self.finished = threading.Event()  # set once a request's [DONE] is sent
        self.requests = 0
        self.lock = threading.Lock()
        self.url = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        up = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("content-length") or 0)
                json.loads(self.rfile.read(length) or b"{}")
                with up.lock:
                    up.requests += 1
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                up.started.set()
                try:
                    for word in ANSWER.split(" "):
                        obj = {"choices": [{"index": 0, "delta": {"content": word + " "}}]}
                        self.wfile.write(f"data: {json.dumps(obj)}\n\n".encode())
                        self.wfile.flush()
                        time.sleep(up.delay)
                    usage = {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 20,
                                                      "total_tokens": 30}}
                    self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return  # the server under test was killed mid-answer
                finally:
                    up.finished.set()
                self.close_connection = True

        return Handler


@contextmanager
def upstream(delay: float = 0.02) -> Iterator[Upstream]:
    up = Upstream(delay)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), up.handler())
    httpd.daemon_threads = True
    up.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield up
    finally:
        httpd.shutdown()
        httpd.server_close()
