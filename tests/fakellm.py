"""A scripted fake LLM server on 127.0.0.1 that real clients talk to over real HTTP.

It speaks three wire formats, each in streaming (SSE) and non-streaming form:

- the Anthropic Messages API — ``POST /v1/messages`` (also ``?beta=true``), as the Claude Code CLI
  and the ``anthropic`` SDK send it: named ``event:`` lines, ``tool_use`` blocks whose input
  arrives as ``input_json_delta`` chunks, ``message_delta`` with the stop reason and usage;
- the OpenAI Chat Completions API — ``POST /v1/chat/completions`` with ``tool_calls``;
- the OpenAI Responses API — ``POST /v1/responses`` (what the Codex CLI speaks):
  ``response.output_item.done`` with ``function_call`` / ``message`` items, then
  ``response.completed``.

A test scripts the model's answers as a list of turns::

    fake_llm.script([
        tool("Write", {"file_path": "/abs/a.txt", "content": "hi"}),
        tool("Bash", {"command": "ls"}),
        text("Done."),
    ])

Each turn is text, one or more tool calls, an HTTP error or a slow answer (``delay=`` on any turn).
The turn for a request is chosen deterministically: by default by counting the tool results the
request carries (``tool_result`` blocks / ``role: "tool"`` messages / ``function_call_output``
items), so client retries get the same answer; with ``by="calls"`` by call order. Past the end of
the script the last turn is repeated. Every request is recorded (path, headers, JSON body, turn).
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["FakeLLM", "Turn", "ToolCall", "Recorded", "text", "tool", "tools", "error", "slow"]


@dataclass(frozen=True)
class ToolCall:
    """A tool call. ``input`` may be a callable taking the Recorded request (e.g. to build an absolute
    path from the client's working directory: ``lambda req: {"file_path": req.cwd + "/a.txt"}``)."""

    name: str
    input: dict[str, Any] | Callable[[Recorded], dict[str, Any]]

    def resolve(self, request: Recorded) -> ToolCall:
        return ToolCall(self.name, dict(self.input(request))) if callable(self.input) else self


@dataclass(frozen=True)
class Turn:
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    status: int = 200
    error_body: Any = None
    delay: float = 0.0
    input_tokens: int = 100
    output_tokens: int = 20
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def is_error(self) -> bool:
        return self.status >= 400


def text(content: str, **kw: Any) -> Turn:
    """The model answers with text and ends its turn."""
    return Turn(text=content, **kw)


def tool(
    name: str,
    input: dict[str, Any] | Callable[[Recorded], dict[str, Any]] | None = None,
    *,
    say: str = "",
    **kw: Any,
) -> Turn:
    """The model calls one tool (optionally saying something first)."""
    return Turn(text=say, tool_calls=(ToolCall(name, input if callable(input) else dict(input or {})),), **kw)


def tools(*calls: tuple[str, Any], say: str = "", **kw: Any) -> Turn:
    """The model calls several tools in one turn: ``tools(("Read", {...}), ("Bash", {...}))``."""
    return Turn(
        text=say, tool_calls=tuple(ToolCall(n, i if callable(i) else dict(i)) for n, i in calls), **kw
    )


def error(status: int, body: Any = None, **kw: Any) -> Turn:
    """The server answers with an HTTP error; ``body`` (dict or str) defaults to an API-shaped error."""
    return Turn(status=status, error_body=body, **kw)


def slow(seconds: float, turn: Turn | None = None) -> Turn:
    """``turn`` (default: a short text) answered after ``seconds``; the wait ends early when the
    server stops."""
    base = turn or text("(slow answer)")
    return Turn(**{**base.__dict__, "delay": seconds})


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    api: str  # "anthropic" | "chat" | "responses" | "other"
    turn: int | None
    at: float = field(default_factory=time.monotonic)

    @property
    def api_key(self) -> str:
        """The key the client sent (``x-api-key`` or ``Authorization: Bearer``)."""
        auth = self.headers.get("authorization", "")
        return self.headers.get("x-api-key") or (auth[7:] if auth.lower().startswith("bearer ") else "")

    @property
    def cwd(self) -> str:
        """The client's working directory as Claude Code announces it ("Primary working directory: …")."""
        import re

        match = re.search(r"Primary working directory: ([^\\\n\"]+)", json.dumps(self.body))
        return match.group(1).strip() if match else ""

    @property
    def stream(self) -> bool:
        return bool(isinstance(self.body, dict) and self.body.get("stream"))

    def user_texts(self) -> list[str]:
        """Every user-authored text in the request (all three formats), in order."""
        out: list[str] = []
        body = self.body if isinstance(self.body, dict) else {}
        items = body.get("messages") or []
        if isinstance(body.get("input"), str):
            out.append(body["input"])
        elif isinstance(body.get("input"), list):
            items = list(items) + body["input"]
        for m in items:
            if not isinstance(m, dict) or m.get("role") != "user":
                continue
            content = m.get("content")
            if isinstance(content, str):
                out.append(content)
            elif isinstance(content, list):
                for block in content:
                    if isinstance(block, dict) and block.get("type") in ("text", "input_text"):
                        out.append(block.get("text", ""))
        return out


def count_tool_results(api: str, body: dict[str, Any]) -> int:
    if api == "anthropic":
        n = 0
        for m in body.get("messages") or []:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, list):
                n += sum(1 for b in content if isinstance(b, dict) and b.get("type") == "tool_result")
        return n
    if api == "chat":
        return sum(1 for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "tool")
    if api == "responses":
        items = body.get("input")
        if not isinstance(items, list):
            return 0
        return sum(1 for i in items if isinstance(i, dict) and i.get("type") == "function_call_output")
    return 0


class FakeLLM:
    """The server. Start with ``start()`` (or the ``fake_llm`` pytest fixture), script with ``script()``."""

    def __init__(self, *, model: str = "fake-model") -> None:
        self.model = model
        self._turns: list[Turn] = [text("OK.")]
        self._by = "tool_results"
        self._lock = threading.Lock()
        self._calls = 0
        self._ids = itertools.count(1)
        self.requests: list[Recorded] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()

    # -- scripting ---------------------------------------------------------------------------------

    def script(self, turns: list[Turn], *, by: str = "tool_results") -> FakeLLM:
        if by not in ("tool_results", "calls"):
            raise ValueError("by must be 'tool_results' or 'calls'")
        if not turns:
            raise ValueError("a script needs at least one turn")
        with self._lock:
            self._turns = list(turns)
            self._by = by
            self._calls = 0
        return self

    # -- inspection --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url_v1(self) -> str:
        """For OpenAI clients, whose base URL includes ``/v1``."""
        return self.url + "/v1"

    def model_requests(self) -> list[Recorded]:
        """The requests that asked the model for a turn (any of the three APIs)."""
        with self._lock:
            return [r for r in self.requests if r.api != "other"]

    def wait_for_requests(self, n: int, timeout: float = 30.0) -> list[Recorded]:
        """Poll until at least ``n`` model requests arrived (or fail after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reqs = self.model_requests()
            if len(reqs) >= n:
                return reqs
            time.sleep(0.02)
        raise AssertionError(
            f"expected {n} model requests within {timeout}s, got {len(self.model_requests())}"
        )

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, port: int = 0) -> FakeLLM:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fakellm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is None:
            return
        self._server.shutdown()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------------

    def _choose(self, api: str, body: dict[str, Any]) -> tuple[int, Turn]:
        with self._lock:
            if self._by == "calls":
                index = self._calls
            else:
                index = count_tool_results(api, body)
            self._calls += 1
            turn = self._turns[min(index, len(self._turns) - 1)]
        return index, turn

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def _sleep(self, seconds: float) -> bool:
        """Wait; False when the server is stopping."""
        return not self._stopping.wait(seconds)


# ---- wire formats -------------------------------------------------------------------------------------


def _sse(event: str | None, data: Any) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {payload}\n\n".encode()


def _anthropic_usage(turn: Turn) -> dict[str, int]:
    return {
        "input_tokens": turn.input_tokens,
        "output_tokens": turn.output_tokens,
        "cache_read_input_tokens": turn.cache_read_tokens,
        "cache_creation_input_tokens": turn.cache_write_tokens,
    }


def anthropic_message(fake: FakeLLM, turn: Turn, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if turn.text:
        content.append({"type": "text", "text": turn.text})
    for call in turn.tool_calls:
        content.append(
            {"type": "tool_use", "id": fake._next_id("toolu_fake"), "name": call.name, "input": call.input}
        )
    return {
        "id": fake._next_id("msg_fake"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if turn.tool_calls else "end_turn",
        "stop_sequence": None,
        "usage": _anthropic_usage(turn),
    }


def anthropic_stream(message: dict[str, Any], turn: Turn) -> list[bytes]:
    start = {**message, "content": [], "stop_reason": None, "usage": {**message["usage"], "output_tokens": 1}}
    out = [_sse("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            out.append(
                _sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
            t = block["text"]
            for piece in (t[: len(t) // 2], t[len(t) // 2 :]):
                if piece:
                    out.append(
                        _sse(
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": index,
                                "delta": {"type": "text_delta", "text": piece},
                            },
                        )
                    )
        else:
            out.append(
                _sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": block["id"],
                            "name": block["name"],
                            "input": {},
                        },
                    },
                )
            )
            raw = json.dumps(block["input"])
            cut = len(raw) // 2
            for piece in (raw[:cut], raw[cut:]):
                out.append(
                    _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        },
                    )
                )
        out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    out.append(
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {
                    "output_tokens": turn.output_tokens,
                    "input_tokens": turn.input_tokens,
                    "cache_read_input_tokens": turn.cache_read_tokens,
                    "cache_creation_input_tokens": turn.cache_write_tokens,
                },
            },
        )
    )
    out.append(_sse("message_stop", {"type": "message_stop"}))
    return out


def _chat_usage(turn: Turn) -> dict[str, Any]:
    return {
        "prompt_tokens": turn.input_tokens,
        "completion_tokens": turn.output_tokens,
        "total_tokens": turn.input_tokens + turn.output_tokens,
        "prompt_tokens_details": {"cached_tokens": turn.cache_read_tokens},
    }


def chat_completion(fake: FakeLLM, turn: Turn, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
    if turn.tool_calls:
        message["tool_calls"] = [
            {
                "id": fake._next_id("call_fake"),
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.input)},
            }
            for c in turn.tool_calls
        ]
    return {
        "id": fake._next_id("chatcmpl-fake"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if turn.tool_calls else "stop",
            }
        ],
        "usage": _chat_usage(turn),
    }


def chat_stream(completion: dict[str, Any], turn: Turn, include_usage: bool) -> list[bytes]:
    base = {k: completion[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    message = completion["choices"][0]["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse(
            None,
            {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]},
        )

    out = [chunk({"role": "assistant", "content": ""})]
    if message.get("content"):
        t = message["content"]
        for piece in (t[: len(t) // 2], t[len(t) // 2 :]):
            if piece:
                out.append(chunk({"content": piece}))
    for i, call in enumerate(message.get("tool_calls") or []):
        out.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }
                    ]
                }
            )
        )
        args = call["function"]["arguments"]
        cut = len(args) // 2
        for piece in (args[:cut], args[cut:]):
            out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
    out.append(chunk({}, completion["choices"][0]["finish_reason"]))
    if include_usage:
        out.append(_sse(None, {**base, "choices": [], "usage": completion["usage"]}))
    out.append(_sse(None, "[DONE]"))
    return out


def responses_object(fake: FakeLLM, turn: Turn, model: str) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    if turn.text:
        output.append(
            {
                "type": "message",
                "id": fake._next_id("msg_fake"),
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": turn.text, "annotations": []}],
            }
        )
    for call in turn.tool_calls:
        output.append(
            {
                "type": "function_call",
                "id": fake._next_id("fc_fake"),
                "call_id": fake._next_id("call_fake"),
                "name": call.name,
                "arguments": json.dumps(call.input),
                "status": "completed",
            }
        )
    return {
        "id": fake._next_id("resp_fake"),
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "temperature": None,
        "top_p": None,
        "usage": {
            "input_tokens": turn.input_tokens,
            "output_tokens": turn.output_tokens,
            "total_tokens": turn.input_tokens + turn.output_tokens,
            "input_tokens_details": {"cached_tokens": turn.cache_read_tokens},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


def responses_stream(response: dict[str, Any]) -> list[bytes]:
    seq = itertools.count()
    pending = {**response, "status": "in_progress", "output": [], "usage": None}
    out = [
        _sse(
            "response.created",
            {"type": "response.created", "sequence_number": next(seq), "response": pending},
        ),
        _sse(
            "response.in_progress",
            {"type": "response.in_progress", "sequence_number": next(seq), "response": pending},
        ),
    ]
    for index, item in enumerate(response["output"]):
        added = {**item, "status": "in_progress"}
        if item["type"] == "message":
            added["content"] = []
        else:
            added["arguments"] = ""
        out.append(
            _sse(
                "response.output_item.added",
                {
                    "type": "response.output_item.added",
                    "sequence_number": next(seq),
                    "output_index": index,
                    "item": added,
                },
            )
        )
        if item["type"] == "message":
            text_ = item["content"][0]["text"]
            out.append(
                _sse(
                    "response.output_text.delta",
                    {
                        "type": "response.output_text.delta",
                        "sequence_number": next(seq),
                        "item_id": item["id"],
                        "output_index": index,
                        "content_index": 0,
                        "delta": text_,
                        "logprobs": [],
                    },
                )
            )
        else:
            out.append(
                _sse(
                    "response.function_call_arguments.delta",
                    {
                        "type": "response.function_call_arguments.delta",
                        "sequence_number": next(seq),
                        "item_id": item["id"],
                        "output_index": index,
                        "delta": item["arguments"],
                    },
                )
            )
        out.append(
            _sse(
                "response.output_item.done",
                {
                    "type": "response.output_item.done",
                    "sequence_number": next(seq),
                    "output_index": index,
                    "item": item,
                },
            )
        )
    out.append(
        _sse(
            "response.completed",
            {"type": "response.completed", "sequence_number": next(seq), "response": response},
        )
    )
    return out


def _error_body(api: str, turn: Turn) -> bytes:
    body = turn.error_body
    if body is None:
        message = f"fake error {turn.status}"
        if api == "anthropic":
            kind = {
                400: "invalid_request_error",
                401: "authentication_error",
                429: "rate_limit_error",
                529: "overloaded_error",
            }.get(turn.status, "api_error")
            body = {"type": "error", "error": {"type": kind, "message": message}}
        else:
            body = {
                "error": {
                    "message": message,
                    "type": "server_error" if turn.status >= 500 else "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            }
    return body.encode() if isinstance(body, str) else json.dumps(body).encode()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLLM
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by default
        pass

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake._conns.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.fake._lock:
                self.fake._conns.discard(self.connection)

    # -- plumbing ----------------------------------------------------------------------------------

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _send_json(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if status >= 500:
            self.send_header("x-should-retry", "true")
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _send_stream(self, chunks: list[bytes]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for c in chunks:
            self.wfile.write(f"{len(c):x}\r\n".encode() + c + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _record(self, api: str, body: Any, turn: int | None) -> Recorded:
        parts = urlsplit(self.path)
        rec = Recorded(
            method=self.command,
            path=parts.path,
            query=parts.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            api=api,
            turn=turn,
        )
        with self.fake._lock:
            self.fake.requests.append(rec)
        return rec

    # -- verbs -------------------------------------------------------------------------------------

    def do_HEAD(self) -> None:  # noqa: N802
        self._record("other", None, None)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        self._record("other", None, None)
        path = urlsplit(self.path).path.rstrip("/")
        if path.endswith("/models"):
            model = self.fake.model
            payload = {
                "object": "list",
                "data": [
                    {
                        "id": model,
                        "object": "model",
                        "created": 0,
                        "owned_by": "fake",
                        "type": "model",
                        "display_name": model,
                        "created_at": "2025-01-01T00:00:00Z",
                    }
                ],
                "has_more": False,
                "first_id": model,
                "last_id": model,
            }
            self._send_json(200, json.dumps(payload).encode())
            return
        self._send_json(404, b'{"error": {"message": "not found"}}')

    def do_POST(self) -> None:  # noqa: N802
        body = self._read_body()
        path = urlsplit(self.path).path.rstrip("/")
        api = {"/v1/messages": "anthropic", "/v1/chat/completions": "chat", "/v1/responses": "responses"}.get(
            path
        )
        if api is None or not isinstance(body, dict):
            self._record("other", body, None)
            if path.endswith("/count_tokens"):
                self._send_json(200, b'{"input_tokens": 10}')
            else:
                self._send_json(404, b'{"error": {"message": "unknown endpoint"}}')
            return
        index, turn = self.fake._choose(api, body)
        rec = self._record(api, body, index)
        if any(callable(c.input) for c in turn.tool_calls):
            turn = Turn(**{**turn.__dict__, "tool_calls": tuple(c.resolve(rec) for c in turn.tool_calls)})
        if turn.delay and not self.fake._sleep(turn.delay):
            self.close_connection = True
            return
        try:
            self._answer(api, body, turn)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _answer(self, api: str, body: dict[str, Any], turn: Turn) -> None:
        if turn.is_error:
            self._send_json(turn.status, _error_body(api, turn))
            return
        model = str(body.get("model") or self.fake.model)
        stream = bool(body.get("stream"))
        fake = self.fake
        if api == "anthropic":
            message = anthropic_message(fake, turn, model)
            if stream:
                self._send_stream(anthropic_stream(message, turn))
            else:
                self._send_json(200, json.dumps(message).encode())
        elif api == "chat":
            completion = chat_completion(fake, turn, model)
            if stream:
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                self._send_stream(chat_stream(completion, turn, include_usage))
            else:
                self._send_json(200, json.dumps(completion).encode())
        else:
            response = responses_object(fake, turn, model)
            if stream:
                self._send_stream(responses_stream(response))
            else:
                self._send_json(200, json.dumps(response).encode())
