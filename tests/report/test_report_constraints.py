"""``hf-mig report`` shows what each selection used of its token budget and quotas, read from the
card ``hf-mig select`` writes; selections made without either get no such section.

The numbers are recomputed here from the selected rows, independently of the report. Runs the
real commands on the annotated demo pool (427 rows) with offline token counts: seconds.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

SEED, USER = "self_instruct_seed", "self_instruct_user_oriented"
BUDGET = 2000


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _section(page: str, anchor: str) -> str | None:
    found = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    return found.group(1) if found else None


def _cells(table_html: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first``."""
    row = re.search(rf'<tr><td class="l">{re.escape(first)}</td>(.*?)</tr>', table_html, re.S)
    assert row, f"no row {first!r}"
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))


@pytest.fixture
def pool(tmp_path, run_main, demo_annotated) -> Path:
    out = tmp_path / "pool.jsonl"
    code, _, err = run_main(["score", demo_annotated, out, "--scorer", "tokens"])
    assert code == 0, err
    return out


def _select(run_main, pool: Path, out: Path, graph: Path, *flags: str) -> list[dict]:
    code, _, err = run_main(["select", pool, "--out", out, "--num", 64, "--graph", graph, *flags])
    assert code == 0, err
    return _rows(out)


def test_report_shows_budget_and_quota_use(tmp_path, run_main, pool, demo_graph):
    quotas = ["--quota", f"{SEED}=16:0.5", "--quota", f"{USER}=0.25:"]
    budgeted = _select(
        run_main, pool, tmp_path / "b.jsonl", demo_graph, "--budget", BUDGET, *quotas
    )
    quota_only = _select(run_main, pool, tmp_path / "q.jsonl", demo_graph, *quotas)
    _select(run_main, pool, tmp_path / "plain.jsonl", demo_graph)
    code, _, err = run_main(
        ["report", pool, "--out", tmp_path / "report", "--graph", demo_graph]
        + [f"--selection=budgeted={tmp_path / 'b.jsonl'}"]
        + [f"--selection=quotas={tmp_path / 'q.jsonl'}"]
        + [f"--selection=plain={tmp_path / 'plain.jsonl'}"]
    )
    assert code == 0, err
    page = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    section = _section(page, "constraints")
    assert section is not None and '<a href="#constraints">Budget and quotas</a>' in page

    # budgeted: the total cost and the share of the budget, from the selected rows
    cost = sum(row["num_tokens"] for row in budgeted)
    assert cost <= BUDGET and len(budgeted) < 64  # the budget bound before k
    budgeted_html = section.split("<h3>budgeted</h3>", 1)[1].split("<h3>", 1)[0]
    assert _cells(budgeted_html, "cost column") == ["&#x27;num_tokens&#x27;"]
    assert _cells(budgeted_html, "budget") == [f"{BUDGET:,}"]
    assert _cells(budgeted_html, "total cost of the picks") == [f"{cost:,}"]
    assert _cells(budgeted_html, "share of the budget used") == [f"{100 * cost / BUDGET:.1f}%"]

    # per group: picks, bounds as counts of k = 64, share of the selection and of the pool
    pool_sizes = Counter(row["source"] for row in _rows(pool))
    for name, rows in (("budgeted", budgeted), ("quotas", quota_only)):
        part = section.split(f"<h3>{name}</h3>", 1)[1].split("<h3>", 1)[0]
        picks = Counter(row["source"] for row in rows)
        assert 16 <= picks[SEED] <= 32 and picks[USER] >= 16
        for group, low, high in (
            (SEED, "16", "32 (0.5 of k)"),
            (USER, "16 (0.25 of k)", "no bound"),
        ):
            assert _cells(part, group) == [
                f"{picks[group]:,}",
                low,
                high,
                f"{100 * picks[group] / len(rows):.1f}%",
                f"{100 * pool_sizes[group] / 427:.1f}% ({pool_sizes[group]:,} rows)",
            ]
    quota_html = section.split("<h3>quotas</h3>", 1)[1]
    assert "total cost of the picks" not in quota_html  # quotas alone: no budget table
    assert "<h3>plain</h3>" not in section  # made without either: not listed

    numbers = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    assert set(numbers["constraints"]) == {"budgeted", "quotas"}
    assert numbers["constraints"]["budgeted"]["budget"]["cost"] == cost
    assert "budget" not in numbers["constraints"]["quotas"]


def test_no_section_without_a_budget_or_quotas(tmp_path, run_main, pool, demo_graph):
    _select(run_main, pool, tmp_path / "plain.jsonl", demo_graph)
    ids = tmp_path / "ids.txt"  # a file of ids has no card
    ids.write_text("\n".join(row["id"] for row in _rows(tmp_path / "plain.jsonl")[:20]) + "\n")
    code, _, err = run_main(
        ["report", pool, "--out", tmp_path / "report", "--graph", demo_graph]
        + [f"--selection=plain={tmp_path / 'plain.jsonl'}", f"--selection=ids={ids}"]
    )
    assert code == 0, err
    page = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert _section(page, "constraints") is None and "Budget and quotas" not in page
    numbers = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    assert "constraints" not in numbers


def test_a_card_without_its_facts_is_refused_before_the_pool_is_read(tmp_path, run_main):
    subset = tmp_path / "sub.jsonl"
    subset.write_text('{"id": "a"}\n')
    card = tmp_path / "sub.jsonl.README.md"
    card.write_text("# a selection\n\n## Selection facts (JSON)\n\n```json\n{broken\n```\n")
    code, _, err = run_main(
        ["report", tmp_path / "missing_pool.jsonl", "--out", tmp_path / "r"]
        + [f"--selection=s={subset}"]
    )
    assert code != 0 and str(card) in err and "Selection facts (JSON)" in err
    assert not (tmp_path / "r").exists()


def test_a_null_group_is_refused_not_counted_as_the_text_none():
    import numpy as np
    import pytest
    from datasets import Dataset

    from hf_mig.report.constraints import constraint_use

    facts = {"selection": {"k": 2}, "budget": {"quotas": {"a": [0, 2]}, "quota_column": "source"}}
    pool = Dataset.from_dict({"source": ["a", None, "a", "None"]})
    with pytest.raises(ValueError, match=r"row 1: column 'source' is null"):
        constraint_use(pool, np.array([0, 3]), facts)
    counted = constraint_use(pool.select([0, 2, 3]), np.array([0, 2]), facts)
    assert {g["group"]: g["picks"] for g in counted["quotas"]["groups"]} == {"None": 1, "a": 1}
