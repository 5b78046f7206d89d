"""Generation backends: transformers (tiny Llama, SmolLM2 GGUF), vLLM (import only), HTTP."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from openai_server import OpenAIServer, echo_responder, tokens_of

from hf_mig.models.generation import (
    GenerationBackend,
    GenerationResult,
    OpenAIBackend,
    ResponseCache,
    TransformersBackend,
    VLLMBackend,
    cache_key,
    load_backend,
    resolve_device,
)
from hf_mig.testing import CHATML_TEMPLATE, build_tiny_llama

PROMPTS = [
    "Hi",
    "Write a short poem about the sea, the sky and the long road home.",
    "What is 2 + 2?",
    "List three fruits that are red.",
    "Explain gravity to a child in one long sentence with many simple words in it.",
    "Translate 'good morning' to French.",
    "Why?",
]


def conv(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def tiny(tiny_llama_path: Path) -> TransformersBackend:
    backend = TransformersBackend(tiny_llama_path, batch_size=4, device="cpu", progress=False)
    backend.load()
    return backend


# ---------------------------------------------------------------- tiny model builder


def test_build_tiny_llama_is_deterministic_and_reused(tmp_path, tiny_llama_path):
    other = build_tiny_llama(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (other / name).read_bytes() == (tiny_llama_path / name).read_bytes(), name
    stamp = (other / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_llama(tmp_path / "again") == other  # same arguments: not rebuilt
    assert (other / "model.safetensors").stat().st_mtime_ns == stamp
    different = build_tiny_llama(tmp_path / "seed1", seed=1)
    assert (different / "model.safetensors").read_bytes() != (
        other / "model.safetensors"
    ).read_bytes()
    with pytest.raises(ValueError):
        build_tiny_llama(tmp_path / "bad", vocab_size=10)


def test_tiny_tokenizer_round_trips_and_marks_assistant_tokens(tiny_llama_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_path)
    text = "Déjà vu: naïve café — 2 + 2 = 4 🙂"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert tok.padding_side == "left" and tok.pad_token == "<pad>" and tok.eos_token == "<|im_end|>"
    messages = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there"}]
    enc = tok.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    assistant = [t for t, m in zip(ids, mask) if m]
    assert tok.decode(assistant) == "Hi there<|im_end|>"
    assert tok.chat_template == CHATML_TEMPLATE


# ---------------------------------------------------------------- transformers backend


def test_batched_greedy_equals_one_by_one(tiny):
    convs = [conv(p) for p in PROMPTS]
    batched = tiny.generate(convs, max_new_tokens=12)
    single = TransformersBackend(tiny.model, batch_size=1, device="cpu", progress=False)
    alone = [single.generate([c], max_new_tokens=12)[0] for c in convs]
    assert len({r.prompt_tokens for r in batched}) > 3  # different lengths: padding was needed
    for b, a in zip(batched, alone):
        assert b.error is None and a.error is None
        assert b.text == a.text
        assert b.completion_tokens == a.completion_tokens
        assert b.finish_reason == a.finish_reason


def test_chat_template_is_applied_and_matches_plain_generate(tiny):
    import torch

    model, tok = tiny.load()
    messages = conv(PROMPTS[1])
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    text = tok.decode(ids)
    assert text.startswith("<s><|im_start|>user\n") and text.endswith("<|im_start|>assistant\n")
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=10,
            do_sample=False,
        )
    new = out[0, len(ids) :].tolist()
    if tok.eos_token_id in new:
        new = new[: new.index(tok.eos_token_id)]
    result = tiny.generate([messages], max_new_tokens=10)[0]
    assert result.prompt_tokens == len(ids)
    assert result.text == tok.decode(new, skip_special_tokens=True)


def test_logprobs_are_the_model_distribution(tiny):
    import torch

    model, tok = tiny.load()
    result = tiny.generate([conv("Hello there")], max_new_tokens=4, logprobs=True, top_logprobs=3)[
        0
    ]
    assert result.logprobs is not None and len(result.logprobs) == result.completion_tokens
    for entry in result.logprobs:
        assert len(entry.top) == 3
        assert entry.top[0][1] == pytest.approx(entry.logprob)  # greedy picks the argmax
        assert entry.top[0][1] >= entry.top[1][1] >= entry.top[2][1]
    assert "".join(e.token for e in result.logprobs) == result.text
    ids = tiny._prompt_ids(tok, conv("Hello there"))
    with torch.inference_mode():
        logits = model(torch.tensor([ids])).logits[0, -1]
    expected = torch.log_softmax(logits.float(), dim=-1).max().item()
    assert result.logprobs[0].logprob == pytest.approx(expected, abs=1e-4)


def test_length_and_stop_strings(tiny):
    base = tiny.generate([conv(PROMPTS[3])], max_new_tokens=16)[0]
    assert base.finish_reason == "length" and base.completion_tokens == 16
    short = tiny.generate([conv(PROMPTS[3])], max_new_tokens=3)[0]
    assert short.finish_reason == "length" and short.completion_tokens == 3
    assert base.text.startswith(short.text)
    stop = base.text[len(base.text) // 2 : len(base.text) // 2 + 3]
    assert stop.strip(), base.text
    stopped = tiny.generate([conv(PROMPTS[3])], max_new_tokens=16, stop=[stop])[0]
    assert stopped.finish_reason == "stop"
    assert stopped.text == base.text[: base.text.find(stop)]


def test_row_errors_do_not_break_the_batch(tiny_llama_path):
    backend = TransformersBackend(
        tiny_llama_path, device="cpu", max_input_tokens=20, batch_size=4, progress=False
    )
    results = backend.generate(
        [conv("Hi"), conv(PROMPTS[4]), [{"role": "robot", "content": "x"}], [], conv("Why?")],
        max_new_tokens=4,
    )
    assert results[0].ok and results[4].ok
    assert "limit is 20" in results[1].error and results[1].text is None
    assert results[2].error.startswith("invalid conversation") and "role" in results[2].error
    assert "empty" in results[3].error
    assert backend.stats.errors == 3


def test_missing_chat_template_is_a_clear_error(tmp_path, tiny_llama_path):
    import shutil

    plain = tmp_path / "no-template"
    shutil.copytree(tiny_llama_path, plain)
    (plain / "chat_template.jinja").unlink()
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    backend = TransformersBackend(plain, device="cpu", progress=False)
    with pytest.raises(ValueError, match="chat template"):
        backend.generate([conv("Hi")], max_new_tokens=2)
    fixed = TransformersBackend(plain, device="cpu", chat_template=CHATML_TEMPLATE, progress=False)
    assert fixed.generate([conv("Hi")], max_new_tokens=2)[0].ok


def test_transformers_cache_serves_a_rerun(tmp_path, tiny):
    first = TransformersBackend(tiny.model, device="cpu", cache=tmp_path / "c", progress=False)
    convs = [conv(p) for p in PROMPTS[:3]]
    a = first.generate(convs, max_new_tokens=6)
    second = TransformersBackend(tiny.model, device="cpu", cache=tmp_path / "c", progress=False)
    b = second.generate(convs, max_new_tokens=6)
    assert [r.text for r in a] == [r.text for r in b]
    assert all(r.cached for r in b) and not any(r.cached for r in a)
    assert second.stats.generated == 0 and second.stats.cache_hits == 3
    c = second.generate(convs, max_new_tokens=7)  # other parameters: other keys
    assert not any(r.cached for r in c)


def test_backends_pickle_without_their_model(tiny):
    import pickle

    clone = pickle.loads(pickle.dumps(tiny))
    assert clone._model is None and clone.model == tiny.model
    assert clone.describe() == tiny.describe()


def test_resolve_device(monkeypatch):
    import torch

    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:3", rank=1) == "cuda:3"
    if not torch.cuda.is_available():
        assert resolve_device("auto") in ("cpu", "mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto", rank=3) == "cuda:1"
    assert resolve_device(None) == "cuda:0"


@pytest.mark.slow
def test_smollm2_from_gguf_generates_sensible_text(smollm2_path):
    """The real SmolLM2-135M-Instruct, read from its GGUF file by the backend (conftest fixture)."""
    backend = TransformersBackend(smollm2_path, device="cpu", batch_size=3, progress=False)
    questions = [
        "What is the capital of France?",
        "What is the capital of Italy? Answer in one word.",
        "Say hello.",
    ]
    results = backend.generate([conv(q) for q in questions], max_new_tokens=8)
    assert all(r.ok for r in results), [r.error for r in results]
    assert "Paris" in results[0].text
    assert "Rome" in results[1].text
    assert len({r.prompt_tokens for r in results}) == 3  # left padding in a real batch


# ---------------------------------------------------------------- vLLM


def test_vllm_is_optional(tiny_llama_path):
    from hf_mig.models.identity import ModelIdentityError, model_identity

    local = VLLMBackend(str(tiny_llama_path))  # constructing never imports vllm
    assert local.describe() == {
        "backend": "vllm",
        "model": str(tiny_llama_path),
        "model_content": model_identity(tiny_llama_path),
    }
    backend = VLLMBackend("some/model")
    with pytest.raises(ModelIdentityError, match="'some/model'.*Hugging Face cache"):
        backend.describe()  # offline and not in the cache: nothing to key a cache by
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"hf-mig\[vllm\]"):
            backend.generate([conv("Hi")], max_new_tokens=2)
    else:  # pragma: no cover - only where vLLM is installed
        pytest.skip("vllm is installed here; the missing-package path cannot be exercised")


def test_load_backend_and_protocol():
    backend = load_backend("openai", "m", base_url="http://127.0.0.1:1/v1")
    assert isinstance(backend, OpenAIBackend) and isinstance(backend, GenerationBackend)
    assert isinstance(load_backend("vllm", "m"), VLLMBackend)
    with pytest.raises(ValueError, match="unknown generation backend"):
        load_backend("llamacpp", "m")
    with pytest.raises(ValueError, match="max_new_tokens"):
        backend.generate([conv("x")], max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        backend.generate([conv("x")], max_new_tokens=1, temperature=-1)


# ---------------------------------------------------------------- HTTP backend


@pytest.fixture
def server():
    with OpenAIServer() as srv:
        yield srv


def http(server: OpenAIServer, **kwargs) -> OpenAIBackend:
    options = dict(timeout=5.0, max_retries=3, backoff=0.01, progress=False)
    options.update(kwargs)
    return OpenAIBackend("test-model", base_url=server.base_url, **options)


def test_http_results_in_order_with_concurrency():
    with OpenAIServer(delay=0.25) as srv:
        backend = http(srv, concurrency=4)
        texts = [f"question number {i}" for i in range(8)]
        start = time.perf_counter()
        results = backend.generate([conv(t) for t in texts], max_new_tokens=50)
        elapsed = time.perf_counter() - start
    assert [r.text for r in results] == [f"echo: {t}" for t in texts]
    assert all(r.finish_reason == "stop" and r.ok for r in results)
    assert srv.max_in_flight == 4
    assert elapsed < 8 * 0.25 * 0.75  # at least ~2x faster than one at a time
    assert srv.requests == 8
    assert srv.bodies[0]["model"] == "test-model" and srv.bodies[0]["temperature"] == 0.0


def test_http_timeout_then_success_on_retry(server):
    backend = http(server, timeout=0.5)
    result = backend.generate([conv("slow start <<SLOWONCE:2>>")], max_new_tokens=20)[0]
    assert result.ok and result.text == "echo: slow start"
    assert server.requests == 2 and backend.attempts == 2


def test_http_retries_5xx_and_429(server):
    backend = http(server)
    results = backend.generate(
        [conv("flaky <<FAIL5XX:2>>"), conv("busy <<FAIL429:1>>"), conv("fine")], max_new_tokens=20
    )
    assert [r.text for r in results] == ["echo: flaky", "echo: busy", "echo: fine"]
    assert server.requests == 3 + 2 + 1


def test_http_permanent_failures_are_recorded_per_row(server):
    backend = http(server, max_retries=2)
    results = backend.generate(
        [
            conv("down <<FAIL5XX:100>>"),
            conv("bad <<FAIL400>>"),
            conv("ok"),
            conv("x <<NOCHOICES>>"),
        ],
        max_new_tokens=20,
    )
    down, bad, ok, empty = results
    assert down.text is None and "503" in down.error and "3 attempts" in down.error
    assert bad.text is None and "HTTP 400" in bad.error and "invalid request" in bad.error
    assert ok.ok and ok.text == "echo: ok"
    assert "no choices" in empty.error
    assert server.requests == 3 + 1 + 1 + 3  # a 400 is not retried
    assert backend.stats.errors == 3


def test_http_unreadable_body_is_retried(server):
    result = http(server).generate([conv("garbled <<BADBODY:1>>")], max_new_tokens=20)[0]
    assert result.ok and result.text == "echo: garbled" and server.requests == 2


def test_http_connection_refused_is_an_error_not_a_crash():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = OpenAIBackend(
        "m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, backoff=0.01, progress=False
    )
    result = backend.generate([conv("hi")], max_new_tokens=5)[0]
    assert result.text is None and "connection failed" in result.error


def test_http_logprobs_passthrough(server):
    backend = http(server)
    result = backend.generate(
        [conv("one two three")], max_new_tokens=10, logprobs=True, top_logprobs=2
    )[0]
    assert server.bodies[-1]["logprobs"] is True and server.bodies[-1]["top_logprobs"] == 2
    assert [t.token for t in result.logprobs] == tokens_of("echo: one two three")
    for k, entry in enumerate(result.logprobs):
        assert entry.logprob == pytest.approx(-0.1 * (k + 1))
        assert [alt for alt, _ in entry.top] == ["alt0", "alt1"]
        assert entry.top[1][1] == pytest.approx(-2 - 0.1 * (k + 1))
    assert result.completion_tokens == 4 and result.prompt_tokens == 3
    plain = backend.generate([conv("one")], max_new_tokens=10)[0]
    assert plain.logprobs is None and "logprobs" not in server.bodies[-1]


def test_http_length_stop_and_sampling_fields(server):
    backend = http(server, extra_body={"top_k": 5})
    cut = backend.generate([conv("a b c d e f")], max_new_tokens=3)[0]
    assert cut.text == "echo: a b" and cut.finish_reason == "length"
    stopped = backend.generate(
        [conv("a b c d e f")], max_new_tokens=30, stop=[" d"], temperature=0.7, top_p=0.9, seed=3
    )[0]
    assert stopped.text == "echo: a b c" and stopped.finish_reason == "stop"
    body = server.bodies[-1]
    assert body["stop"] == [" d"] and body["temperature"] == 0.7 and body["top_p"] == 0.9
    assert body["seed"] == 3 and body["top_k"] == 5 and body["max_tokens"] == 30


def test_http_api_key_from_environment(monkeypatch):
    with OpenAIServer(api_key="sekret") as srv:
        backend = http(srv, api_key_env="HF_MIG_TEST_KEY")
        monkeypatch.delenv("HF_MIG_TEST_KEY", raising=False)
        denied = backend.generate([conv("hi")], max_new_tokens=5)[0]
        assert "HTTP 401" in denied.error
        monkeypatch.setenv("HF_MIG_TEST_KEY", "sekret")
        assert backend.generate([conv("hi")], max_new_tokens=5)[0].text == "echo: hi"
    assert "sekret" not in json.dumps(backend.describe())


def test_http_cache_rerun_makes_no_request(tmp_path, server):
    convs = [conv(f"item {i}") for i in range(5)] + [conv("bad <<FAIL400>>")]
    first = http(server, cache=tmp_path / "cache")
    a = first.generate(convs, max_new_tokens=20)
    assert server.requests == 6 and not a[-1].ok
    second = http(server, cache=tmp_path / "cache", concurrency=2)  # concurrency: not in the key
    b = second.generate(convs, max_new_tokens=20)
    assert server.requests == 7  # only the failed row is asked again
    assert [r.text for r in b[:5]] == [r.text for r in a[:5]]
    assert all(r.cached for r in b[:5]) and not b[5].cached and b[5].error
    assert second.stats.cache_hits == 5
    other = http(server, cache=tmp_path / "cache").generate(convs[:1], max_new_tokens=21)
    assert not other[0].cached and server.requests == 8
    assert len(ResponseCache(tmp_path / "cache")) == 6


def test_rejected_texts_are_returned_but_never_cached(tmp_path, server):
    """``accept``: what the caller cannot use is neither stored nor served, so a re-run asks
    for exactly those conversations again."""
    convs = [conv("keep one"), conv("drop this"), conv("keep two")]

    def accept(text: str) -> bool:
        return "drop" not in text

    first = http(server, cache=tmp_path / "cache").generate(convs, max_new_tokens=20, accept=accept)
    assert [r.text for r in first] == ["echo: keep one", "echo: drop this", "echo: keep two"]
    assert all(r.ok for r in first) and server.requests == 3
    assert len(ResponseCache(tmp_path / "cache")) == 2
    rerun = http(server, cache=tmp_path / "cache")
    again = rerun.generate(convs, max_new_tokens=20, accept=accept)
    assert server.requests == 4 and server.bodies[-1]["messages"] == convs[1]
    assert [r.cached for r in again] == [True, False, True] and rerun.stats.cache_hits == 2
    # without the check, a stored text is served as it is: the check decides, not the cache
    plain = http(server, cache=tmp_path / "cache").generate(convs[:1], max_new_tokens=20)
    assert plain[0].cached and server.requests == 4


def test_http_cache_is_written_while_the_run_goes_on(tmp_path, server):
    """An interrupted run keeps what it had: responses reach the disk as they arrive."""
    backend = http(server, cache=tmp_path / "cache", concurrency=5)
    convs = [conv(f"fast {i}") for i in range(4)] + [conv("slow <<SLOW:3>>")]
    worker = threading.Thread(target=backend.generate, args=(convs,), kwargs={"max_new_tokens": 9})
    worker.start()
    db = tmp_path / "cache" / "responses.sqlite"
    stored = 0
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline and stored < 4:
        time.sleep(0.05)
        if db.exists():
            with sqlite3.connect(db) as conn:
                stored = conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert stored == 4 and worker.is_alive()
    worker.join()
    assert len(ResponseCache(tmp_path / "cache")) == 5


def test_cache_key_and_results_round_trip(tmp_path):
    described = {"backend": "openai", "model": "m"}
    params = {"max_new_tokens": 5, "temperature": 0.0}
    messages = [{"role": "user", "content": "é"}]
    key = cache_key(described, params, messages)
    assert key == cache_key(described, dict(reversed(list(params.items()))), messages)
    assert key != cache_key({**described, "model": "n"}, params, messages)
    assert key != cache_key(described, params, [{"role": "user", "content": "e"}])
    cache = ResponseCache(tmp_path / "c.sqlite")
    result = http_result = GenerationResult("ok", "stop", prompt_tokens=2, completion_tokens=1)
    assert cache.put_many([(key, result), ("k2", GenerationResult.failure("no"))]) == 1
    assert cache.get(key).text == "ok" and cache.get(key).cached and "k2" not in cache
    assert http_result.to_dict() == cache.get(key).to_dict()
    assert os.path.basename(cache.path) == "c.sqlite"


def test_echo_responder_strips_markers():
    assert echo_responder({"messages": conv("hi <<FAIL5XX:2>> there")}) == "echo: hi  there"
