"""An OpenAI-compatible HTTP server (FastAPI + uvicorn) whose one model is an architecture.

`POST /v1/chat/completions` runs the architecture on the conversation and answers with one assistant
message; `usage` sums every internal LM call. Sampling fields of the request (temperature, max_tokens,
top_p, ...) and its `model` are accepted and ignored: the architecture sets them per unit. `n` > 1 is
refused with a 400, because with the response cache on, n runs would give n copies of one answer.
`stream: true` sends the finished answer as one SSE chunk. Errors use OpenAI's body shape
`{"error": {"message", "type", "param", "code"}}`: malformed requests get 400, a missing or wrong key
401, a failing model 502.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from typing_extensions import Self

from archon_search.core.errors import ArchonError, BackendError
from archon_search.runtime.api import Answer, Architecture, ConversationError

log = logging.getLogger(__name__)

OWNER = "archon-search"
SERVER_START_TIMEOUT_S = 30.0


@dataclass
class APIError(Exception):
    """An error answered in OpenAI's shape."""

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None

    def response(self) -> JSONResponse:
        """The JSON error response."""
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(body, status_code=self.status, headers=headers)


class StreamOptions(BaseModel):
    """OpenAI's `stream_options`: whether a last chunk carries the usage."""

    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The request fields the server reads; any other OpenAI field is accepted and ignored.

    Messages are checked by `archon_search.runtime.api.conversation`, so the API and the server agree on what a
    conversation may hold.
    """

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1)


def api_key_from_env(var: str) -> str:
    """The key clients must send, read from environment variable `var`."""
    value = os.environ.get(var, "")
    if not value:
        raise ArchonError(f"--api-key-env {var}: the environment variable {var} is not set or empty; export it first")
    return value


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return f"the request body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}", None
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    field = ".".join(loc) or None
    if first.get("type") == "missing" and not loc:
        return "the request needs a JSON body with 'messages'", None
    return f"{field or 'body'}: {first.get('msg', 'invalid value')}", field


def _usage(answer: Answer) -> dict[str, int]:
    prompt, completion = answer.usage.prompt_tokens, answer.usage.completion_tokens
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion(reply_id: str, created: int, model: str, answer: Answer) -> dict[str, Any]:
    return {
        "id": reply_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(answer),
    }


def _chunks(reply_id: str, created: int, model: str, answer: Answer, include_usage: bool) -> Iterator[dict[str, Any]]:
    head = {"id": reply_id, "object": "chat.completion.chunk", "created": created, "model": model}
    delta = {"role": "assistant", "content": answer.text}
    yield head | {"choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}
    yield head | {"choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]}
    if include_usage:
        yield head | {"choices": [], "usage": _usage(answer)}


async def _sse(chunks: Iterator[dict[str, Any]]) -> AsyncIterator[str]:
    for chunk in chunks:
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"


def create_app(arch: Architecture, api_key: str | None = None) -> FastAPI:
    """The server app for `arch`. The app owns it: backends open at startup and close at shutdown.

    With `api_key`, every `/v1` route needs `Authorization: Bearer <api_key>`; `/health` never does.
    """

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await arch.aopen()
        try:
            yield
        finally:
            await arch.aclose()

    app = FastAPI(title=f"archon-search: {arch.name}", lifespan=lifespan)
    _answer_errors_as_openai_does(app)
    _add_routes(app, arch, Depends(_authorizer(api_key)))
    return app


def _upstream_error(reply_id: str, exc: BackendError) -> APIError:
    """An upstream model's failure as the client should see it: a request the upstream refused (4xx) stays a 4xx of
    the same status, which clients do not retry; anything else is a 502."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if exc.status is not None and 400 <= exc.status < 500:
        log.warning("%s: an upstream model refused the request: %s", reply_id, reason)
        return APIError(exc.status, f"an upstream model refused the request: {reason}", code="upstream_refused")
    log.error("%s: the architecture failed: %s", reply_id, reason)
    return APIError(502, f"an upstream model failed: {reason}", "upstream_error", "upstream_failed")


def _authorizer(api_key: str | None) -> Callable[[Request], Awaitable[None]]:
    """The dependency that checks a request's bearer token against `api_key` (no check without one)."""

    async def authorize(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")

    return authorize


def _answer_errors_as_openai_does(app: FastAPI) -> None:
    """Every error, ours or FastAPI's, as an OpenAI-style JSON error body."""

    @app.exception_handler(APIError)
    async def on_api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if "json" not in request.headers.get("content-type", "json"):
            # FastAPI leaves a non-JSON body unparsed, which would read as a confusing type error
            message, param = "send the body as JSON with 'Content-Type: application/json'", None
        else:
            message, param = _validation_message(exc)
        return APIError(400, message, param=param, code="invalid_request").response()

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"{request.method} {request.url.path}: {exc.detail}"
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        return APIError(exc.status_code, message, code=code).response()


def _add_routes(app: FastAPI, arch: Architecture, authorized: Any) -> None:
    """/health, /v1/models and /v1/chat/completions; the /v1 routes behind `authorized`."""

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": arch.name}

    def model_card() -> dict[str, Any]:
        return {"id": arch.name, "object": "model", "created": 0, "owned_by": OWNER}

    @app.get("/v1/models", dependencies=[authorized])
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model}", dependencies=[authorized])
    async def get_model(model: str) -> dict[str, Any]:
        if model != arch.name:
            raise APIError(404, f"model {model!r} not found; this server has {arch.name!r}", code="model_not_found")
        return model_card()

    @app.post("/v1/chat/completions", dependencies=[authorized], response_model=None)
    async def chat_completions(body: ChatCompletionRequest) -> JSONResponse | StreamingResponse:
        return await _chat_reply(arch, body)


async def _chat_reply(arch: Architecture, body: ChatCompletionRequest) -> JSONResponse | StreamingResponse:
    """Run the architecture on the request's conversation; the answer as one body or as server-sent events."""
    if body.n > 1:
        raise APIError(400, "n > 1 is not supported; send n separate requests", param="n", code="unsupported_value")
    reply_id = f"chatcmpl-{uuid.uuid4().hex}"
    started = time.perf_counter()
    try:
        answer = await arch.arun_with_usage(body.messages)
    except ConversationError as exc:
        raise APIError(400, str(exc), param="messages", code="invalid_messages") from None
    except BackendError as exc:
        raise _upstream_error(reply_id, exc) from None
    except Exception as exc:
        log.exception("%s: the architecture failed", reply_id)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise APIError(502, f"an upstream model failed: {reason}", "upstream_error", "upstream_failed") from None
    log.info(
        "%s: %d LM calls (%d to models), %d tokens, %.2fs",
        reply_id,
        answer.usage.calls,
        answer.usage.backend_calls,
        answer.usage.tokens,
        time.perf_counter() - started,
    )
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = _chunks(reply_id, created, arch.name, answer, include_usage)
        return StreamingResponse(_sse(chunks), media_type="text/event-stream")
    return JSONResponse(_completion(reply_id, created, arch.name, answer))


def serve(arch: Architecture, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None) -> None:
    """Serve `arch` until interrupted; its backends open first, so a bad key or model fails here, in one line."""
    arch.open()
    log.info("serving %s on http://%s:%d/v1", arch.name, host, port)
    uvicorn.run(create_app(arch, api_key), host=host, port=port, log_level="info")


class BackgroundServer:
    """`create_app(arch)` served by uvicorn in a daemon thread (tests, notebooks, demos).

    `with BackgroundServer(arch) as server:` starts it on a free port (`port=0`) and `server.base_url`
    is the `/v1` URL to give an OpenAI client; leaving the block stops the server and closes `arch`.
    """

    def __init__(self, arch: Architecture, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None):
        config = uvicorn.Config(create_app(arch, api_key), host=host, port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.host = host
        self._thread = threading.Thread(target=self.server.run, name="archon-serve", daemon=True)

    @property
    def port(self) -> int:
        """The port the server listens on (the free one picked when started with port 0)."""
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def base_url(self) -> str:
        """The URL an OpenAI client takes as `base_url`."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> Self:
        """Start serving; returns once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ArchonError("the server did not start; see the log above for why")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread (shutdown closes the architecture)."""
        self.server.should_exit = True
        self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
