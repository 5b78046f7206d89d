"""A small deterministic OpenAI-compatible chat server on 127.0.0.1, for tests.

``POST /v1/chat/completions`` answers like a chat model whose reply is computed from the request by
a *responder* (by default :func:`echo_responder`: ``"echo: <last user message>"``), so tests can
work out every expected output by hand. It is a real HTTP server (``http.server``, one thread per
request) on a free port, started in a background thread::

    with OpenAIServer() as server:
        backend = OpenAIBackend("test-model", base_url=server.base_url)

What it implements: ``model`` and ``messages`` are required (HTTP 400 otherwise); ``max_tokens`` /
``max_completion_tokens`` cut the reply to that many *tokens*, where a token is a run of
non-spaces with its leading spaces (``finish_reason`` is then ``"length"``); ``stop`` cuts the reply
before the first stop string (``"stop"``); ``logprobs`` / ``top_logprobs`` return, for token ``k``
(0-based), ``logprob = -0.1 * (k + 1)`` and alternatives ``alt0``, ``alt1``... with
``logprob = -(j + 1) - 0.1 * (k + 1)``; ``usage`` counts tokens the same way. With ``api_key`` set,
a request without ``Authorization: Bearer <api_key>`` gets HTTP 401.

Fault injection by markers anywhere in the last user message (``n`` counts requests carrying
the same messages):

* ``<<FAIL5XX:n>>``: HTTP 503 to the first ``n`` requests (JSON error body);
* ``<<FAIL429:n>>``: HTTP 429 with ``Retry-After: 0`` to the first ``n`` requests;
* ``<<FAIL400>>``: HTTP 400 always (a permanent error);
* ``<<SLOW:s>>``: sleep ``s`` seconds before every answer; ``<<SLOWONCE:s>>``: only the first;
* ``<<BADBODY:n>>``: HTTP 200 with a truncated, unparsable JSON body to the first ``n`` requests;
* ``<<NOCHOICES>>``: HTTP 200 with a JSON body without ``choices``, always.

``delay`` adds a fixed sleep to every request (to observe concurrency). ``requests`` counts every
POST; ``bodies`` keeps every parsed request body; ``max_in_flight`` is the highest number of
requests handled at the same time.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[dict[str, Any]], str]

_MARKER = re.compile(r"<<([A-Z0-9]+)(?::([0-9.]+))?>>")
_TOKEN = re.compile(r"\s*\S+|\s+$")


def last_user_message(body: dict[str, Any]) -> str:
    """Content of the last ``user`` message of a request body ("" if none)."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else ""
    return ""


def echo_responder(body: dict[str, Any]) -> str:
    """``"echo: " + <last user message>`` with the fault markers removed."""
    return "echo: " + _MARKER.sub("", last_user_message(body)).strip()


def instag_responder(body: dict[str, Any]) -> str:
    """An InsTag tagger's answer: up to three long words of the last message as tags (JSON), or
    text without JSON when the message says ``MALFORMED``."""
    query = body["messages"][-1]["content"]
    if "MALFORMED" in query:
        return "no json here"
    words = [w for w in query.split() if w.isalpha() and len(w) > 5][:3]
    return json.dumps([{"tag": w.title(), "explanation": "x"} for w in words])


def tokens_of(text: str) -> list[str]:
    """The server's tokenisation: runs of non-spaces with their leading whitespace."""
    return _TOKEN.findall(text)


class OpenAIServer:
    """A deterministic OpenAI-compatible server; see the module docstring.

    Args:
        responder: ``request body -> reply text``; default :func:`echo_responder`.
        delay: seconds to sleep in every request before answering.
        api_key: when set, requests must carry ``Authorization: Bearer <api_key>``.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        delay: float = 0.0,
        api_key: str | None = None,
    ) -> None:
        self.responder = responder or echo_responder
        self.delay = float(delay)
        self.api_key = api_key
        self.requests = 0
        self.bodies: list[dict[str, Any]] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> OpenAIServer:
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Zero the counters and forget how often each prompt was seen."""
        with self._lock:
            self.requests = 0
            self.bodies.clear()
            self.max_in_flight = 0
            self._seen.clear()

    # ------------------------------------------------------------------ answering

    def _enter(self, body: dict[str, Any]) -> int:
        key = hashlib.sha256(
            json.dumps(body.get("messages"), sort_keys=True).encode("utf-8")
        ).hexdigest()
        with self._lock:
            self.requests += 1
            self.bodies.append(body)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            self._seen[key] = self._seen.get(key, 0) + 1
            return self._seen[key]

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def answer(self, body: dict[str, Any], nth: int) -> tuple[int, dict[str, str], bytes]:
        """``(status, headers, payload)`` for the ``nth`` request with these messages."""
        text = last_user_message(body)
        markers = {name: value for name, value in _MARKER.findall(text)}
        if "SLOW" in markers:
            time.sleep(float(markers["SLOW"] or 1))
        if "SLOWONCE" in markers and nth == 1:
            time.sleep(float(markers["SLOWONCE"] or 1))
        if "FAIL5XX" in markers and nth <= int(float(markers["FAIL5XX"] or 1)):
            return _error(503, "server overloaded (injected)")
        if "FAIL429" in markers and nth <= int(float(markers["FAIL429"] or 1)):
            status, headers, payload = _error(429, "rate limited (injected)")
            headers["Retry-After"] = "0"
            return status, headers, payload
        if "FAIL400" in markers:
            return _error(400, "invalid request (injected)")
        if "BADBODY" in markers and nth <= int(float(markers["BADBODY"] or 1)):
            return 200, {"Content-Type": "application/json"}, b'{"id": "x", "choices": [{"mess'
        if "NOCHOICES" in markers:
            return _json(200, {"id": "chatcmpl-test", "object": "chat.completion"})
        if not isinstance(body.get("model"), str) or not isinstance(body.get("messages"), list):
            return _error(400, "'model' (string) and 'messages' (list) are required")

        reply = self.responder(body)
        finish = "stop"
        stops = body.get("stop") or []
        if isinstance(stops, str):
            stops = [stops]
        cut = min((p for p in (reply.find(s) for s in stops) if p >= 0), default=-1)
        if cut >= 0:
            reply = reply[:cut]
        tokens = tokens_of(reply)
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if isinstance(limit, int) and len(tokens) > limit:
            tokens = tokens[:limit]
            reply = "".join(tokens)
            finish = "length"
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": reply},
            "finish_reason": finish,
        }
        if body.get("logprobs"):
            k = int(body.get("top_logprobs") or 0)
            choice["logprobs"] = {
                "content": [
                    {
                        "token": token,
                        "logprob": -0.1 * (t + 1),
                        "top_logprobs": [
                            {"token": f"alt{j}", "logprob": -(j + 1) - 0.1 * (t + 1)}
                            for j in range(k)
                        ],
                    }
                    for t, token in enumerate(tokens)
                ]
            }
        prompt_tokens = sum(
            len(tokens_of(str(m.get("content", ""))))
            for m in body["messages"]
            if isinstance(m, dict)
        )
        return _json(
            200,
            {
                "id": f"chatcmpl-{nth}",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [choice],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(tokens),
                    "total_tokens": prompt_tokens + len(tokens),
                },
            },
        )


def _json(status: int, payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode("utf-8")


def _error(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    return _json(status, {"error": {"message": message, "type": "test_error", "code": status}})


def _make_handler(server: OpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            return

        def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (e.g. its timeout); nothing to do

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(*_error(404, f"no route {self.path}"))
                return
            if server.api_key is not None:
                if self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    self._send(*_error(401, "invalid API key"))
                    return
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                self._send(*_error(400, "body is not JSON"))
                return
            if not isinstance(body, dict):
                self._send(*_error(400, "body is not a JSON object"))
                return
            nth = server._enter(body)
            try:
                if server.delay:
                    time.sleep(server.delay)
                reply = server.answer(body, nth)
            finally:
                # leave before replying: once the client has a reply it may send the next
                # request, which must not overlap this one in the in-flight count
                server._leave()
            self._send(*reply)

    return Handler
