"""The judge client against a real HTTP judge on 127.0.0.1: retries, timeouts, malformed replies,
the cache, logprob-weighted versus discrete judging, and the API key."""

from __future__ import annotations

import math

import pytest
from judge_server import JudgeServer, alpaca_p_first, mt_rating

from hf_mig.eval import alpaca_eval as ae
from hf_mig.eval import mt_bench as mt
from hf_mig.eval.judge import DISCRETE, LOGPROB_WEIGHTED, JudgeClient, JudgeRequest


def _mt_request(key: str, answer: str) -> JudgeRequest:
    q = {"question_id": 1, "category": "writing", "turns": ["Write a haiku.", "Again."]}
    _, messages = mt.build_judge_messages(q, [answer, ""], 1, mt.load_judge_prompts())
    return JudgeRequest(key, messages, lambda t: r if (r := mt.parse_rating(t)) != -1 else None)


def _ae_request(key: str, first: str, second: str) -> JudgeRequest:
    template = (ae.TEMPLATES / ae.TEMPLATE_OFFICIAL).read_text()
    messages = ae.build_judge_messages("Say hi.", first, second, template)
    return JudgeRequest(
        key,
        messages,
        lambda t: {"m": 1.0, "M": 0.0}.get(ae.parse_discrete(t) or ""),
        max_tokens=1,
        top_logprobs=5,
        parse_logprobs=ae.preference_from_logprobs,
    )


def test_logprob_weighted_versus_discrete():
    reqs = [_ae_request("a", "short", "a much longer answer"), _ae_request("b", "long " * 9, "x")]
    with JudgeServer() as server:
        got = JudgeClient("judge", base_url=server.base_url).judge(reqs)
    assert [j.method for j in got] == [LOGPROB_WEIGHTED, LOGPROB_WEIGHTED]
    assert got[0].value == pytest.approx(alpaca_p_first("short", "a much longer answer"))
    assert got[1].value == pytest.approx(alpaca_p_first("long " * 9, "x"))
    assert set(got[0].top_logprobs) == {"m", "M"}
    with JudgeServer(logprobs=False) as server:
        client = JudgeClient("judge", base_url=server.base_url)
        got = client.judge(reqs)
    # same replies, read as text: the first output loses (M), the second wins (m)
    assert [(j.method, j.value) for j in got] == [(DISCRETE, 0.0), (DISCRETE, 1.0)]
    assert client.stats.discrete == 2 and client.stats.logprob_weighted == 0


def test_5xx_is_retried_until_it_succeeds_or_the_retries_run_out():
    req = _mt_request("r", "a poem <<FAIL5XX:2>>")
    with JudgeServer() as server:
        client = JudgeClient("judge", base_url=server.base_url, max_retries=3, backoff=0.01)
        (j,) = client.judge([req])
        assert j.ok and j.value == mt_rating("a poem <<FAIL5XX:2>>")
        assert server.requests == 3 and client.stats.http_attempts == 3
    with JudgeServer() as server:
        client = JudgeClient("judge", base_url=server.base_url, max_retries=1, backoff=0.01)
        (j,) = client.judge([req])
        assert not j.ok and "HTTP 503" in j.error and j.method is None
        assert server.requests == 2 and client.stats.errors == 1
        assert "error" in client.stats.examples[0]


def test_timeouts_are_errors_not_hangs():
    with JudgeServer() as server:
        client = JudgeClient(
            "judge", base_url=server.base_url, timeout=0.3, max_retries=1, backoff=0.01
        )
        reqs = [_mt_request("f", "fine"), _mt_request("s", "late <<SLOW:1.5>>")]
        fast, slow = client.judge(reqs)
    assert fast.ok and fast.value == mt_rating("fine")
    assert not slow.ok and "timed out" in slow.error
    assert client.stats.errors == 1


def test_malformed_replies_are_kept_and_counted():
    with JudgeServer() as server:
        client = JudgeClient("judge", base_url=server.base_url)
        got = client.judge([_mt_request("ok", "good"), _mt_request("bad", "x <<MALFORMED>>")])
    assert got[0].ok
    assert got[1].malformed and got[1].value is None and got[1].text.startswith("The answer")
    assert client.stats.malformed == 1 and "malformed reply" in client.stats.examples[0]
    assert "1 malformed" in client.stats.summary()


def test_cache_makes_reruns_free_and_is_keyed_by_model_and_prompt(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_TEST_KEY", "sk-secret-123")
    cache = tmp_path / "judge.sqlite"
    reqs = [_mt_request(str(i), "answer " * i) for i in range(1, 5)]
    with JudgeServer(api_key="sk-secret-123") as server:
        # the key is read from the named environment variable (the server rejects others)
        first = JudgeClient(
            "judge", base_url=server.base_url, cache=cache, api_key_env="JUDGE_TEST_KEY"
        ).judge(reqs)
        assert all(j.ok for j in first) and server.requests == 4
        again_client = JudgeClient(
            "judge", base_url=server.base_url, cache=cache, api_key_env="JUDGE_TEST_KEY"
        )
        again = again_client.judge(reqs)
        assert server.requests == 4 and again_client.stats.cache_hits == 4
        assert all(j.cached for j in again)
        assert [j.value for j in again] == [j.value for j in first]
        # another judge model, or another prompt, is a miss
        JudgeClient(
            "other-judge", base_url=server.base_url, cache=cache, api_key_env="JUDGE_TEST_KEY"
        ).judge(reqs[:1])
        assert server.requests == 5
        JudgeClient(
            "judge", base_url=server.base_url, cache=cache, api_key_env="JUDGE_TEST_KEY"
        ).judge([_mt_request("new", "a different answer")])
        assert server.requests == 6
        # without the key: HTTP 401, a permanent error, no retry
        (bad,) = JudgeClient(
            "judge", base_url=server.base_url, api_key_env="NO_SUCH_VARIABLE"
        ).judge([_mt_request("x", "unseen")])
        assert not bad.ok and "HTTP 401" in bad.error
    assert b"sk-secret-123" not in cache.read_bytes()


def test_errors_are_not_cached(tmp_path):
    cache = tmp_path / "judge.sqlite"
    req = _mt_request("r", "flaky <<FAIL5XX:1>>")
    with JudgeServer() as server:
        client = JudgeClient("judge", base_url=server.base_url, cache=cache, max_retries=0)
        (j,) = client.judge([req])
        assert not j.ok
        (j,) = JudgeClient("judge", base_url=server.base_url, cache=cache).judge([req])
        assert j.ok and not j.cached and server.requests == 2


def test_judge_preferences_match_alpaca_eval_convention():
    # P(first shown better) -> AlpacaEval preference (2 = the model wins)
    p = alpaca_p_first("ref", "model answer")
    assert 2 - p == pytest.approx(1 + (1 - p))  # not swapped: first shown is the baseline
    assert ae.preference_from_logprobs({"m": math.log(0.2), "M": math.log(0.6)}) == pytest.approx(
        0.25
    )
    assert ae.preference_from_logprobs({"The": -0.1}) is None
    assert ae.parse_discrete("M") == "M" and ae.parse_discrete("Model m is best") == "m"
    assert ae.parse_discrete("I cannot tell.") is None
