"""A small OpenAI-compatible `/v1/chat/completions` server on 127.0.0.1 for tests (stdlib only).

It answers every known model deterministically from the request (`answer_text`, or the `answer`
function it was given), can be told to fail the next requests (any status with any headers, or a
dropped connection), and records what it received and how many requests were in flight at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from typing_extensions import Self


@dataclass(frozen=True)
class Reply:
    """A scripted reply: an HTTP error status with headers, or (`drop=True`) closing without answering."""

    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    #: the error message, as the server would word it (default: "scripted HTTP <status>")
    message: str | None = None


def answer_text(body: dict) -> str:
    """What the stub says to a request: the last user message, echoed with the seed it was sent."""
    last_user = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
    return f"seed {body.get('seed')}: {last_user}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Silence the per-request log lines."""

    def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        stub = self.server.stub
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        reply = stub.record(self.path, body, {k.lower(): v for k, v in self.headers.items()}, self.client_address)
        try:
            if reply is not None and reply.drop:
                self.close_connection = True
                return
            if reply is not None:
                message = reply.message or f"scripted HTTP {reply.status}"
                error = {"message": message, "type": "stub_error", "code": reply.status}
                self._send(reply.status, {"error": error}, reply.headers)
                return
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            if body.get("model") not in stub.models:
                error = {"message": f"The model `{body.get('model')}` does not exist", "type": "invalid_request_error"}
                self._send(404, {"error": error})
                return
            if stub.delay_s:
                time.sleep(stub.delay_s)
            text = (stub.answer or answer_text)(body)
            prompt_words = sum(len(m["content"].split()) for m in body["messages"])
            self._send(
                200,
                {
                    "id": "chatcmpl-stub",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": {
                        "prompt_tokens": prompt_words,
                        "completion_tokens": len(text.split()),
                        "total_tokens": prompt_words + len(text.split()),
                    },
                },
            )
        finally:
            stub.done()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stub: StubOpenAIServer


class StubOpenAIServer:
    """Context manager: `with StubOpenAIServer() as stub: ... stub.url ...` serves on a free loopback port."""

    def __init__(
        self,
        models: tuple[str, ...] = ("stub-model",),
        delay_s: float = 0.0,
        answer: Callable[[dict], str] | None = None,
    ):
        """`answer(body)` gives the reply text of a successful request (default: `answer_text`)."""
        self.models = set(models)
        self.delay_s = delay_s
        self.answer = answer
        self.bodies: list[dict] = []
        self.headers: list[dict[str, str]] = []
        #: the (host, port) each request came from: one port per connection the client opened
        self.peers: list[tuple] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base_url to give the client (ends in /v1)."""
        assert self._server is not None, "start the server with `with StubOpenAIServer() as stub:`"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def fail_next(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, before answering normally again."""
        with self._lock:
            self._script.extend(replies)

    def record(self, path: str, body: dict, headers: dict[str, str], peer: tuple = ()) -> Reply | None:
        """Note a request (header names lower-cased) and the client address it came from; return the scripted
        reply it gets, if any."""
        with self._lock:
            self.bodies.append(body)
            self.headers.append(headers)
            self.peers.append(peer)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            return self._script.pop(0) if self._script else None

    def done(self) -> None:
        """Note that a request finished."""
        with self._lock:
            self._in_flight -= 1

    def __enter__(self) -> Self:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.stub = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
