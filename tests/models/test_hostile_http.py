"""The OpenAI-compatible backend against servers that misbehave: redirects that would carry the
API key to another host, bodies cut short, replies that are not completions. Real HTTP servers on
127.0.0.1 (different ports are different origins; ``localhost`` is another host name), counting
every request they receive."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import datasets
import pytest
from openai_server import OpenAIServer, last_user_message

from hf_mig.annotate.taggers import InsTagTagger
from hf_mig.annotate.taggers.instag import build_instag_messages
from hf_mig.cli.main import main
from hf_mig.models.generation import OpenAIBackend, ResponseCache, cache_key
from hf_mig.models.generation.base import GenerationParams, GenerationResult

KEY_ENV = "HF_MIG_HOSTILE_TEST_KEY"
SECRET = "sk-hostile-test-secret"


def conv(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def completion(text: str | None, **message: Any) -> bytes:
    payload = {
        "id": "chatcmpl-hostile",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, **message},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    return json.dumps(payload).encode("utf-8")


class Recorder:
    """A real HTTP server on 127.0.0.1 that records every request (method, path, headers,
    body) and lets ``behave(handler, n, request)`` answer the ``n``-th one (1-based)."""

    def __init__(self, behave: Callable[[BaseHTTPRequestHandler, int, dict], None]) -> None:
        self.behave = behave
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _record(self) -> tuple[int, dict]:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                request = {
                    "method": self.command,
                    "path": self.path,
                    "host": self.headers.get("Host"),
                    "authorization": self.headers.get("Authorization"),
                    "body": raw.decode("utf-8", "replace"),
                }
                with recorder._lock:
                    recorder.requests.append(request)
                    return len(recorder.requests), request

            def do_POST(self) -> None:
                n, request = self._record()
                recorder.behave(self, n, request)

            do_GET = do_POST
            do_PUT = do_POST

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, host: str = "127.0.0.1", path: str = "/v1/chat/completions") -> str:
        return f"http://{host}:{self.port}{path}"

    @property
    def authorizations(self) -> list[str]:
        return [r["authorization"] for r in self.requests if r["authorization"] is not None]

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, **headers: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", headers.pop("content_type", "application/json"))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def answer_ok(handler: BaseHTTPRequestHandler, n: int, request: dict) -> None:
    send(handler, 200, completion("stolen reply"))


def backend_for(url_root: str, **kwargs: Any) -> OpenAIBackend:
    options: dict[str, Any] = dict(
        timeout=5.0, max_retries=3, backoff=0.01, progress=False, api_key_env=KEY_ENV
    )
    options.update(kwargs)
    return OpenAIBackend("test-model", base_url=url_root, **options)


# ---------------------------------------------------------------- redirects


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("where", ["other-port", "localhost-name", "same-origin"])
def test_redirected_post_is_an_error_and_no_credential_leaves(monkeypatch, tmp_path, status, where):
    monkeypatch.setenv(KEY_ENV, SECRET)
    with Recorder(answer_ok) as elsewhere:
        holder: dict[str, str] = {}

        def redirect(handler: BaseHTTPRequestHandler, n: int, request: dict) -> None:
            if request["path"] != "/v1/chat/completions":  # the redirect was followed
                send(handler, 200, completion("stolen reply"))
                return
            send(handler, status, b"", Location=holder["location"])

        with Recorder(redirect) as origin:
            holder["location"] = {
                "other-port": elsewhere.url(),
                "localhost-name": origin.url("localhost", "/v2/chat/completions"),
                "same-origin": origin.url("127.0.0.1", "/v2/chat/completions"),
            }[where]
            backend = backend_for(origin.url(path="/v1"), cache=tmp_path / "cache")
            result = backend.generate([conv("hello")], max_new_tokens=5)[0]
    assert elsewhere.requests == [] and elsewhere.authorizations == []
    assert len(origin.requests) == 1  # neither followed nor retried
    assert origin.requests[0]["authorization"] == f"Bearer {SECRET}"
    assert result.text is None and not result.ok
    assert f"HTTP {status}" in result.error
    assert origin.url(path="/v1/chat/completions") in result.error
    assert holder["location"] in result.error
    assert backend.attempts == 1
    assert len(ResponseCache(tmp_path / "cache")) == 0  # an error is not a cached success


def test_redirect_with_relative_location_names_both(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)

    def redirect(handler: BaseHTTPRequestHandler, n: int, request: dict) -> None:
        send(handler, 302, b"", Location="/elsewhere")

    with Recorder(redirect) as origin:
        result = backend_for(origin.url(path="/v1")).generate([conv("x")], max_new_tokens=5)[0]
    assert len(origin.requests) == 1
    assert "/elsewhere" in result.error and origin.url() in result.error


# ---------------------------------------------------------------- bodies cut short


def truncated(handler: BaseHTTPRequestHandler) -> None:
    """Promise 400 bytes, send a few, close: ``http.client.IncompleteRead`` in the client."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "400")
    handler.end_headers()
    handler.wfile.write(b'{"id": "x", "choices": [{"mess')
    handler.wfile.flush()
    handler.close_connection = True


def reset_mid_body(handler: BaseHTTPRequestHandler) -> None:
    """Send part of the body, then reset the connection (RST, not FIN)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "400")
    handler.end_headers()
    handler.wfile.write(b'{"id": "x", "cho')
    handler.wfile.flush()
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.close_connection = True


def hang_up(handler: BaseHTTPRequestHandler) -> None:
    """Close without any status line: ``http.client.RemoteDisconnected`` in the client."""
    handler.close_connection = True


FAULTS = {"incomplete-read": truncated, "reset-mid-body": reset_mid_body, "hang-up": hang_up}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_cut_short_bodies_are_retried_then_succeed(fault):
    def flaky(handler: BaseHTTPRequestHandler, n: int, request: dict) -> None:
        if n <= 2:
            FAULTS[fault](handler)
        else:
            send(handler, 200, completion("whole reply"))

    with Recorder(flaky) as server:
        backend = backend_for(server.url(path="/v1"), max_retries=3)
        result = backend.generate([conv("hello")], max_new_tokens=5)[0]
    assert result.ok, result.error
    assert result.text == "whole reply"
    assert len(server.requests) == 3 and backend.attempts == 3


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_cut_short_bodies_are_retried_a_bounded_number_of_times(fault, tmp_path):
    def broken(handler: BaseHTTPRequestHandler, n: int, request: dict) -> None:
        FAULTS[fault](handler)

    with Recorder(broken) as server:
        backend = backend_for(server.url(path="/v1"), max_retries=2, cache=tmp_path / "c")
        result = backend.generate([conv("hello")], max_new_tokens=5)[0]
    assert not result.ok and "failed after 3 attempts" in result.error
    assert len(server.requests) == 3 and backend.attempts == 3
    assert len(ResponseCache(tmp_path / "c")) == 0


# ---------------------------------------------------------------- replies that are not completions


def malformed(handler: BaseHTTPRequestHandler, n: int, request: dict) -> None:
    prompt = last_user_message(json.loads(request["body"]))
    if prompt == "not json":
        send(handler, 200, b"<html>upstream error</html>", content_type="text/html")
    elif prompt == "no choices":
        send(handler, 200, json.dumps({"object": "chat.completion"}).encode())
    elif prompt == "null content":
        send(handler, 200, completion(None))
    elif prompt == "tool calls only":
        calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
        send(handler, 200, completion(None, tool_calls=calls))
    else:
        send(handler, 200, completion(f"answer to {prompt}"))


BAD_PROMPTS = ["not json", "no choices", "null content", "tool calls only"]


def test_unparsable_replies_are_errors_and_a_rerun_asks_exactly_them(tmp_path):
    prompts = ["first", *BAD_PROMPTS, "second"]
    with Recorder(malformed) as server:
        first = backend_for(server.url(path="/v1"), max_retries=1, cache=tmp_path / "cache")
        a = first.generate([conv(p) for p in prompts], max_new_tokens=5)
        assert [r.text for r in (a[0], a[-1])] == ["answer to first", "answer to second"]
        for prompt, result in zip(BAD_PROMPTS, a[1:-1], strict=True):
            assert result.text is None and "failed after 2 attempts" in result.error, prompt
        assert len(server.requests) == 2 + 2 * len(BAD_PROMPTS)
        asked_before = len(server.requests)

        second = backend_for(server.url(path="/v1"), max_retries=1, cache=tmp_path / "cache")
        b = second.generate([conv(p) for p in prompts], max_new_tokens=5)
        again = [last_user_message(json.loads(r["body"])) for r in server.requests[asked_before:]]
    assert sorted(again) == sorted(BAD_PROMPTS * 2)  # exactly the failed rows, with one retry
    assert b[0].cached and b[-1].cached and second.stats.cache_hits == 2
    assert len(ResponseCache(tmp_path / "cache")) == 2


# ---------------------------------------------------------------- the InsTag tagger's parse


def tagging_responder(body: dict) -> str:
    """InsTag answers: one tag from the query's last word; prose or nothing for the markers."""
    query = last_user_message(body).split("[begin]\n", 1)[-1].split("\n[end]", 1)[0]
    if "PROSE" in query:
        return "This is about cooking, but I will not answer in JSON."
    if "SILENT" in query:
        return ""
    word = query.split()[-1].strip("?.!").lower()
    return json.dumps([{"tag": f"{word} topic", "explanation": "x"}])


QUERIES = [
    "Explain how tides work",
    "PROSE please tag my recipe",
    "Write a haiku about autumn",
    "SILENT what is the capital of Peru",
    "Summarise the plot of Hamlet",
]


def queries_asked(server: OpenAIServer, since: int = 0) -> list[str]:
    return sorted(q for b in server.bodies[since:] for q in QUERIES if q in last_user_message(b))


def tagger_for(server: OpenAIServer, cache: Path) -> InsTagTagger:
    options = {"base_url": server.base_url, "max_retries": 0, "progress": False}
    return InsTagTagger(
        "openai", "tagger-model", backend_options=options, prompt="instag", cache=cache
    )


def test_instag_outputs_that_do_not_parse_are_not_cached(tmp_path):
    ds = datasets.Dataset.from_dict({"messages": [conv(q) for q in QUERIES]})
    with OpenAIServer(tagging_responder) as server:
        tagger = tagger_for(server, tmp_path / "cache")
        first = ds.map(tagger, batched=True, with_indices=True)
        assert [e is not None for e in first["instag_error"]] == [0, 1, 0, 1, 0]
        assert first["labels"][0] == ["work topic"]
        assert server.requests == 5
        rerun = tagger_for(server, tmp_path / "cache")
        second = ds.map(rerun, batched=True, with_indices=True, load_from_cache_file=False)
        assert queries_asked(server, 5) == sorted([QUERIES[1], QUERIES[3]])
        assert server.requests == 7
    assert second["labels"] == first["labels"]
    assert second["instag_error"] == first["instag_error"]
    assert rerun.stats.cache_hits == 3
    assert len(ResponseCache(tmp_path / "cache")) == 3


def test_instag_ignores_unparsable_outputs_already_in_a_cache(tmp_path):
    """A cache written by a version that stored unparsable outputs: they are asked again."""
    with OpenAIServer(tagging_responder) as server:
        tagger = tagger_for(server, tmp_path / "cache")
        backend = tagger.backend()
        params = GenerationParams.build(256)
        messages = build_instag_messages(QUERIES[0], "instag")
        key = cache_key(backend.describe(), params.to_dict(), messages)
        stale = GenerationResult("sorry, no tags today", "stop")
        ResponseCache(tmp_path / "cache").put_many([(key, stale)])
        out = tagger({"messages": [conv(QUERIES[0])]}, [0])
        assert server.requests == 1
    assert out["labels"] == [["work topic"]] and out["instag_error"] == [None]
    assert ResponseCache(tmp_path / "cache").get(key).text != stale.text


@pytest.fixture
def pool_file(tmp_path, data_dir) -> Path:
    rows = json.loads((data_dir / "lima" / "lima.json").read_text(encoding="utf-8"))[:6]
    rows = [{"instruction": r["instruction"], "output": r["output"]} for r in rows]
    rows[1]["instruction"] = "PROSE " + rows[1]["instruction"]
    rows[4]["instruction"] = "SILENT " + rows[4]["instruction"]
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_cli_tag_rerun_retries_exactly_the_rows_with_errors(tmp_path, pool_file, capsys):
    def responder(body: dict) -> str:
        query = last_user_message(body)
        if "PROSE" in query:
            return "no JSON here"
        if "SILENT" in query:
            return ""
        return json.dumps([{"tag": "advice", "explanation": "x"}])

    out = tmp_path / "tagged.jsonl"
    with OpenAIServer(responder) as server:
        argv = [
            "tag", str(pool_file), str(out), "--backend", "openai", "--model", "tagger-model",
            "--base-url", server.base_url, "--max-retries", "0", "--prompt", "instag",
        ]  # fmt: skip
        assert main(argv) == 0
        printed = capsys.readouterr().out
        assert "rows with errors: 2 (unparsable: 2" in printed and "retry" in printed
        assert server.requests == 6
        assert main([*argv, "--overwrite"]) == 0
        retried = [last_user_message(b) for b in server.bodies[6:]]
    assert server.requests == 8
    assert all(("PROSE" in q) or ("SILENT" in q) for q in retried) and len(retried) == 2

