"""The summaries ``hf-mig tag`` and ``hf-mig score`` print: distinct labels vs label occurrences
vs rows without a label; rows with errors vs rows with the lowest score; score collapse."""

from __future__ import annotations

import json
import re
from pathlib import Path

import datasets
import pytest
from openai_server import OpenAIServer, last_user_message

from hf_mig.cli.commands.score import score_counts
from hf_mig.cli.commands.tag import format_tag_counts, tag_counts
from hf_mig.cli.main import main
from hf_mig.data.formats import to_messages
from hf_mig.data.io import load_pool


# ---------------------------------------------------------------- hf-mig tag
def tag_responder(body: dict) -> str:
    """InsTag-style answers: no tag for NOTAGS rows, prose for MALFORMED ones, else "writing"
    (on every row) plus "question" or "request", so labels repeat across rows."""
    text = last_user_message(body)
    query = re.search(r"\[begin\]\n(.*)\n\[end\]", text, re.DOTALL)
    text = query.group(1) if query else text
    if "MALFORMED" in text:
        return "These are several things, but I will not answer in JSON."
    if "NOTAGS" in text:
        return "[]"
    topic = "question" if "?" in text else "request"
    return json.dumps([{"tag": "Writing", "explanation": "x"}, {"tag": topic, "explanation": "y"}])


@pytest.fixture
def lima_pool(tmp_path, data_dir) -> Path:
    rows = json.loads((data_dir / "lima" / "lima.json").read_text(encoding="utf-8"))[:12]
    rows = [dict(r) for r in rows]
    rows[2]["instruction"] = "NOTAGS " + rows[2]["instruction"]
    rows[7]["instruction"] = "NOTAGS " + rows[7]["instruction"]
    rows[9]["instruction"] = "MALFORMED " + rows[9]["instruction"]
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_tag_summary_says_distinct_labels_occurrences_and_unlabelled(tmp_path, lima_pool, capsys):
    out = tmp_path / "tagged.jsonl"
    with OpenAIServer(tag_responder) as server:
        argv = [
            "tag", str(lima_pool), str(out), "--backend", "openai", "--model", "tagger-model",
            "--base-url", server.base_url, "--max-retries", "0", "--prompt", "instag",
        ]  # fmt: skip
        assert main(argv) == 0
    printed = capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    labels = [row["labels"] for row in rows]
    distinct = {x for row in labels for x in row}
    occurrences = sum(len(row) for row in labels)
    unlabelled = [i for i, row in enumerate(labels) if not row]
    assert unlabelled == [2, 7, 9] and len(distinct) == 3 and occurrences == 18
    assert (
        "rows: 12; rows with errors: 1 (unparsable: 1, generation failed: 0); "
        "rows without labels: 3 (25.0%)" in printed
    )
    assert "of the rows without labels, 2 were tagged without error and got no label" in printed
    assert "distinct labels: 3 (different labels in the output, as 'hf-mig select'" in printed
    assert "label occurrences: 18 (labels summed over rows, 2.00 per labelled row)" in printed
    assert "MIG selects them last" in printed


def test_tag_counts_on_the_demo_pool(demo_annotated):
    """The bundled pool tagged by the offline EmbeddingTagger: 42 rows without a label."""
    pool = load_pool(demo_annotated)
    counts = tag_counts(pool)
    labels = pool["labels"]
    assert counts["distinct_labels"] == len({x for row in labels for x in row}) == 967
    assert counts["label_occurrences"] == sum(len(row) for row in labels)
    assert counts["label_occurrences"] > counts["distinct_labels"]
    assert counts["rows_without_labels"] == sum(1 for row in labels if not row) == 42
    assert counts["rows_with_errors"] == 0
    text = format_tag_counts(counts)
    assert text.startswith("rows: 427; rows without labels: 42 (9.8%)")
    assert "distinct labels: 967 " in text
    assert f"label occurrences: {counts['label_occurrences']:,} " in text
    assert "were tagged without error" not in text  # no error column: nothing to split


# ---------------------------------------------------------------- hf-mig score
def test_score_summary_separates_errors_from_zero_scores(tmp_path, data_dir, capsys):
    """ShareGPT rows without an answered turn score 0 with LengthScorer: scored, not failed."""
    rows = json.loads(
        (data_dir / "sharegpt" / "sharegpt_v3_slice_a_0-1999.json").read_text(encoding="utf-8")
    )[:300]
    pool = tmp_path / "sharegpt.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "scored.jsonl"
    assert main(["score", str(pool), str(out), "--scorer", "length"]) == 0
    captured = capsys.readouterr()
    scores = load_pool(out)["score"]
    zeros = sum(1 for s in scores if s == 0)
    assert zeros == 8 and min(scores) == 0
    assert "rows: 300; rows with errors: 0; truncated sequences: 0" in captured.out
    assert "rows with errors: rows the scorer failed on (none with length)" in captured.out
    assert (
        f"rows at the lowest score (0): {zeros}; scored, not failed (LengthScorer gives 0 to a "
        "row with no turn having both a non-empty request and a non-empty answer)"
    ) in captured.out
    assert "score collapse" not in captured.err


def _ifeval_pool(data_dir, path: Path, with_responses: bool) -> int:
    name = (
        "input_response_data_gpt4_20231107_145030.jsonl" if with_responses else "input_data.jsonl"
    )
    lines = (data_dir / "ifeval" / name).read_text(encoding="utf-8").splitlines()
    records = []
    for i, line in enumerate(lines):
        row = json.loads(line)
        messages = [{"role": "user", "content": row["prompt"]}]
        if with_responses:
            messages.append({"role": "assistant", "content": row["response"]})
        records.append({"id": str(i), "messages": messages})
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return len(records)


def test_score_collapse_is_warned(tmp_path, data_dir, capsys):
    """IFEval's prompts alone (no answers) all score 0 with LengthScorer: a collapsed score."""
    pool = tmp_path / "prompts.jsonl"
    n = _ifeval_pool(data_dir, pool, with_responses=False)
    assert main(["score", str(pool), str(tmp_path / "a.jsonl"), "--scorer", "length"]) == 0
    captured = capsys.readouterr()
    assert f"rows at the lowest score (0): {n}; scored, not failed" in captured.out
    warning = next(line for line in captured.err.splitlines() if "score collapse" in line)
    assert warning.startswith("hf-mig score: warning: score collapse in column 'score': ")
    assert f"{n}" in warning and "0" in warning

    # the same prompts with GPT-4's answers spread out: no warning
    answered = tmp_path / "answered.jsonl"
    _ifeval_pool(data_dir, answered, with_responses=True)
    assert main(["score", str(answered), str(tmp_path / "b.jsonl"), "--scorer", "length"]) == 0
    captured = capsys.readouterr()
    assert "score collapse" not in captured.err
    assert "rows at the lowest score (" in captured.out


def test_score_counts_checks_every_deita_column(data_dir):
    """DEITA's per-turn complexity stuck at its floor of 1 while the combined score varies."""
    lima = datasets.Dataset.from_list(
        json.loads((data_dir / "lima" / "lima.json").read_text(encoding="utf-8"))[:40]
    ).map(to_messages, batched=True, with_indices=True)
    n = len(lima)
    quality = [[1.0 + (len(m[-1]["content"]) % 500) / 100] for m in lima["messages"]]
    scored = lima.add_column("deita_complexity", [[1.0]] * n)
    scored = scored.add_column("deita_quality", quality)
    scored = scored.add_column("score", [q[0] * 1.0 for q in quality])
    scored = scored.add_column("deita_error", [None] * n)
    scored = scored.add_column("deita_truncated", [0] * n)
    counts = score_counts(scored, "deita")
    assert counts["rows_with_errors"] == 0 and counts["rows_without_score"] == 0
    assert set(counts["collapse"]) == {"deita_complexity"}
    assert counts["collapse"]["deita_complexity"].startswith(
        "score collapse in column 'deita_complexity': "
    )
    assert counts["rows_at_min"] == sum(1 for q in quality if q[0] == min(quality)[0])
