"""TokenCounter: the per-row token counts MIG's token budget reads."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from datasets import Dataset

from hf_mig.annotate.scorers import SCORERS
from hf_mig.annotate.tokens import TokenCounter

ROWS = [
    [
        {"role": "system", "content": "Be brief."},  # 9 chars -> 3
        {"role": "user", "content": "Hi"},  # 2 -> 1
        {"role": "assistant", "content": "Hello there!"},  # 12 -> 3
    ],
    [
        {"role": "user", "content": [{"type": "text", "text": "abcde"}]},  # 5 -> 2
        {"role": "assistant", "content": None},  # 0 -> 0
    ],
    [],  # no text -> 1
    [{"role": "user", "content": ""}],  # no text -> 1
]
#: Arrow needs one content type per column: the content-parts row as a string.
STRING_ROWS = [ROWS[0], [{"role": "user", "content": "abcde"}], *ROWS[2:]]


def test_registered_as_tokens():
    assert SCORERS["tokens"] is TokenCounter


def test_chars_over_four_by_hand():
    out = TokenCounter()({"messages": ROWS})
    assert list(out["num_tokens"]) == [7, 2, 1, 1]
    assert TokenCounter().output_types() == {"num_tokens": pa.int64()}


def test_tokenizer_counts_every_message_content(tiny_llama_path: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_path)

    def n(text: str) -> int:
        return len(tok(text, add_special_tokens=False).input_ids)

    expected = [
        n("Be brief.") + n("Hi") + n("Hello there!"),
        max(n("abcde"), 1),
        1,
        1,
    ]
    counter = TokenCounter(tiny_llama_path, output_column="n")
    assert list(counter({"messages": ROWS})["n"]) == expected
    assert counter.stats.rows == len(ROWS)


@pytest.mark.parametrize("tokenizer", [None, "tiny"])
def test_batched_map_equals_one_row_calls(tokenizer, tiny_llama_path: Path):
    counter = TokenCounter(None if tokenizer is None else tiny_llama_path)
    ds = Dataset.from_dict({"messages": STRING_ROWS})
    mapped = ds.map(counter, batched=True, batch_size=3)
    single = [counter({"messages": [row]})["num_tokens"][0] for row in STRING_ROWS]
    assert mapped["num_tokens"] == single
    assert mapped.features["num_tokens"].dtype == "int64"


def test_tokenizer_that_cannot_load_is_an_error(tmp_path: Path):
    counter = TokenCounter(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="cannot load the tokenizer"):
        counter({"messages": ROWS})


def test_tokenizer_files_change_the_fingerprint(tiny_llama_path: Path):
    assert TokenCounter(tiny_llama_path).fingerprint != TokenCounter().fingerprint
    assert TokenCounter(tiny_llama_path).fingerprint == TokenCounter(tiny_llama_path).fingerprint


def test_malformed_row_names_the_row():
    with pytest.raises(ValueError, match="row 3"):
        TokenCounter()({"messages": [[{"content": "x"}]]}, [3])


def test_cli_counts_then_selects_under_a_budget(
    run_main, demo_annotated: Path, demo_graph: Path, tiny_llama_path: Path, tmp_path: Path
):
    counted = tmp_path / "counted.jsonl"
    args = ["score", demo_annotated, counted, "--scorer", "tokens"]
    code, out, err = run_main([*args, "--tokenizer", tiny_llama_path, "--output-column", "n"])
    assert code == 0, err
    rows = [json.loads(line) for line in counted.read_text().splitlines()]
    assert all(isinstance(r["n"], int) and r["n"] >= 1 for r in rows)
    budget = sum(sorted(r["n"] for r in rows)[:10])
    subset = tmp_path / "subset.jsonl"
    code, out, err = run_main(
        [
            "select", counted, "--out", subset, "--graph", demo_graph,
            "--budget", budget, "--cost-column", "n",
        ]
    )  # fmt: skip
    assert code == 0, err
    picked = [json.loads(line) for line in subset.read_text().splitlines()]
    assert picked and sum(r["n"] for r in picked) <= budget
    capped = tmp_path / "capped.jsonl"
    code, out, err = run_main(
        [
            "select", counted, "--num", len(rows), "--out", capped, "--graph", demo_graph,
            "--budget", budget, "--cost-column", "n",
        ]
    )  # fmt: skip
    assert code == 0, err
    assert capped.read_text() == subset.read_text()  # no --num: the budget alone binds


def test_cli_needs_num_without_a_budget(run_main, demo_annotated: Path, tmp_path: Path):
    code, out, err = run_main(["select", demo_annotated, "--out", tmp_path / "s.jsonl"])
    assert code != 0 and "-k/--num is required" in err
    assert not (tmp_path / "s.jsonl").exists()


def test_cli_refuses_a_budget_the_method_would_ignore(
    run_main, demo_annotated: Path, tmp_path: Path
):
    out = tmp_path / "s.jsonl"
    argv = ["select", demo_annotated, "-k", "5", "--out", out, "--method", "score"]
    code, _, err = run_main([*argv, "--budget", "100", "--cost-column", "score"])
    assert code != 0 and not out.exists()
    assert "--budget applies to --method mig, not 'score'" in err
    assert "--cost-column applies to --method mig, not 'score'" in err
    code, _, err = run_main(argv)
    assert code == 0 and out.exists(), err
    # how the pool is read applies to every method
    renamed = tmp_path / "renamed.jsonl"
    rows = [json.loads(line) for line in Path(demo_annotated).read_text().splitlines()]
    renamed.write_text("".join(json.dumps({**r, "q": r["score"]}) + "\n" for r in rows[:50]))
    argv = ["select", renamed, "-k", "5", "--out", tmp_path / "r.jsonl", "--method", "random"]
    code, _, err = run_main([*argv, "--score-column", "q", "--labels-column", "labels"])
    assert code == 0, err
