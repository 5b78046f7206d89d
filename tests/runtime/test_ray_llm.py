"""The CPU half of the vLLM path through ``ray.data.llm`` (``hf_mig.runtime.ray_llm``): the
requests built from rows and the columns parsed from processor outputs equal what the local
InsTag tagger (against the 127.0.0.1 test server) and DEITA scorer (on the tiny Llama) give. The
processor itself needs vLLM and a GPU and is not run here."""

from __future__ import annotations

import math

import pytest
from openai_server import OpenAIServer
from openai_server import instag_responder as instag_answer

from hf_mig.annotate.scorers import DeitaScorer
from hf_mig.annotate.taggers import InsTagTagger
from hf_mig.annotate.taggers.instag import build_instag_messages
from hf_mig.runtime.ray_llm import (
    REQUEST_KEY,
    deita_columns,
    deita_expectation,
    deita_requests,
    instag_columns,
    instag_requests,
)


def conversation(user: str, answer: str = "") -> list[dict]:
    out = [{"role": "user", "content": user}]
    return out + ([{"role": "assistant", "content": answer}] if answer else [])


BATCH = {
    "messages": [
        conversation("Explain recursion with python examples", "It calls itself."),
        conversation("MALFORMED weather request"),
        conversation("Explain recursion with python examples", "Again."),  # same query
        [{"role": "system", "content": "no user"}],
        conversation("Refused <<FAIL400>> gardening question"),
        conversation("Write a budget spreadsheet", "Columns: ...") + conversation("and taxes?"),
    ]
}


def test_instag_requests_and_columns_match_the_local_tagger():
    with OpenAIServer(instag_answer) as server:
        options = {"base_url": server.base_url, "max_retries": 0, "progress": False}
        tagger = InsTagTagger("openai", "m", backend_options=options, turns="all")
        want = tagger(BATCH, list(range(6)))
    requests = instag_requests(tagger, BATCH)
    queries = [
        "Explain recursion with python examples", "MALFORMED weather request",
        "Refused <<FAIL400>> gardening question", "Write a budget spreadsheet", "and taxes?",
    ]  # fmt: skip
    assert [r["messages"] for r in requests] == [build_instag_messages(q) for q in queries]
    assert requests[0]["sampling_params"] == {"max_tokens": 256, "temperature": 0.0}
    outputs = [
        {REQUEST_KEY: r[REQUEST_KEY], "generated_text": instag_answer(r),
         "__inference_error__": "HTTP 400" if "FAIL400" in r["messages"][-1]["content"] else ""}
        for r in requests
    ]  # fmt: skip
    got = instag_columns(tagger, BATCH, outputs)
    assert got["labels"] == want["labels"] and len(got["labels"][5]) >= 3  # two turns' tags
    assert got["instag_raw"] == want["instag_raw"]
    for a, b in zip(got["instag_error"], want["instag_error"], strict=True):
        assert (a is None) == (b is None)
    assert "generation failed: vLLM: HTTP 400" in got["instag_error"][4]
    assert got["instag_error"][1] == want["instag_error"][1]  # the same unparsable output


def test_deita_expectation_is_the_softmax_over_the_six_digits():
    digits = [11, 12, 13, 14, 15, 16]
    logprobs = [{str(t): {"logprob": -float(k)} for k, t in enumerate(digits)}]
    weights = [math.exp(-k) for k in range(6)]
    expected = sum((k + 1) * w for k, w in enumerate(weights)) / sum(weights)
    assert deita_expectation(logprobs, digits) == pytest.approx(expected, abs=1e-12)
    shifted = [{t: {"logprob": -float(k) - 3.0} for k, t in enumerate(digits)}]
    assert deita_expectation(shifted, digits) == pytest.approx(expected, abs=1e-12)
    missing = [{str(t): {"logprob": -1.0} for t in digits[:5]}]
    assert isinstance(deita_expectation(missing, digits), ValueError)
    assert isinstance(deita_expectation(None, digits), ValueError)


def test_deita_requests_and_columns_match_the_local_scorer(tiny_llama_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_llama_path)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.float32)
    window = model.config.max_position_embeddings
    scorer = DeitaScorer(model=str(tiny_llama_path), batch_size=4, device="cpu")
    want = scorer(BATCH, list(range(6)))

    tokenizers = {"complexity_model": (tokenizer, window), "quality_model": (tokenizer, window)}
    by_role = deita_requests(scorer, BATCH, tokenizers)
    requests = [r for rows in by_role.values() for r in rows]
    assert len(requests) == 2 * 6 - 1  # 6 turns; rows 0 and 2 share one complexity prompt
    outputs = []
    for request in requests:  # what vLLM returns for one generated token, top-20 logprobs
        ids = torch.tensor([request["tokenized_prompt"]])
        with torch.inference_mode():
            logits = model(input_ids=ids).logits[0, -1].double()
        top = torch.log_softmax(logits, -1).topk(20)
        row = {int(i): {"logprob": float(v)} for v, i in zip(top.values, top.indices)}
        for token in request["sampling_params"]["allowed_token_ids"]:
            row[token] = {"logprob": float(torch.log_softmax(logits, -1)[token])}
        outputs.append({REQUEST_KEY: request[REQUEST_KEY], "logprobs": [row]})
    got = deita_columns(scorer, BATCH, tokenizers, outputs)
    assert got["deita_error"] == want["deita_error"]
    assert got["deita_error"][3] == "no user turn to score"
    # float32 batched forward passes (local) against one prompt at a time: scores to 1e-6
    assert got["score"][3] is None is want["score"][3]
    for a, b in zip(got["score"], want["score"], strict=True):
        assert a == b or a == pytest.approx(b, rel=1e-6)
    for column in ("deita_complexity", "deita_quality"):
        for a, b in zip(got[column], want[column], strict=True):
            assert a == pytest.approx(b, abs=1e-6)
    assert got["deita_truncated"] == want["deita_truncated"]
