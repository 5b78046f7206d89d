"""The MIG paper's comparison table from the result files of several models.

Columns (as in the paper's Table 1): ARC-c, BBH, GSM8K, HumanEval, MMLU, IFEval (percent), their
mean ``Avg_obj``; AE (AlpacaEval 2 win rate, percent), MT (MT-Bench, 1-10), Wild (WildBench
pairwise reward averaged over the references, in [-100, 100]) and
``Avg_sub = mean(AE, 10 * MT, (Wild + 100) / 2)``; ``Avg = (Avg_obj + Avg_sub) / 2``. An average is
only computed when every one of its inputs is present; missing cells stay empty (never 0).

Result files are the JSON written by the benchmarks' ``score --out`` (``eval/alpaca_eval.py``,
``eval/mt_bench.py``, ``eval/wildbench.py``, ``eval/tasks.py``, ``eval/ifeval.py``), or lm-eval's
own results JSON; they are grouped by their ``model`` field (``--rename OLD=NEW`` to relabel). The
AlpacaEval column is always the plain ``win_rate`` (the paper's metric), whatever mode judged it; a
result of the AlpacaEval protocol on another instruction set (``instruction_set`` other than
``alpaca_eval``, e.g. MT-Bench questions against GPT-4's reference answers) is not AlpacaEval: it is
shown as ``AE*`` beside ``AE``, with a footnote, and enters no average; a WildBench WB-Score result
(the official single-answer mode) is not the paper's Wild column and is shown separately.
``--paper`` appends the paper's published rows of Table 1 (Llama-3.1-8B); ``--paper-table NAME``
those of another table of ``hf_mig/eval/paper_tables.json`` (only the numbers the project's sources
record; other cells and tables are missing, and say so)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hf_mig.eval.base import BENCHMARKS, is_number

__all__ = [
    "COLUMNS",
    "OBJECTIVE",
    "bar_chart",
    "build_table",
    "collect",
    "load_paper_rows",
    "paper_table_names",
    "main",
    "to_csv",
    "to_markdown",
]

OBJECTIVE = ("ARC-c", "BBH", "GSM8K", "HumanEval", "MMLU", "IFEval")
SUBJECTIVE = ("AE", "MT", "Wild")
COLUMNS = (*OBJECTIVE, "Avg_obj", *SUBJECTIVE, "Avg_sub", "Avg")
PAPER_TABLES = Path(__file__).parent / "paper_tables.json"
DEFAULT_PAPER_TABLE = "table1/llama-3.1-8b"
#: What the ``AE*`` column is (the table's footnote).
AE_STAR_NOTE = (
    "AlpacaEval 2's judging protocol (win rate against reference outputs) on another instruction "
    "set than AlpacaEval's, named in the result file's instruction_set; not comparable with AE "
    "or the paper"
)


def values_of(result: dict[str, Any]) -> dict[str, float]:
    """The table cells one result file contributes: those of every registered benchmark that
    reads it (:meth:`~hf_mig.eval.base.Benchmark.table_cells`; empty for unknown files)."""
    cells: dict[str, float] = {}
    for cls in BENCHMARKS.values():
        cells.update(cls().table_cells(result))
    return cells


def _model_of(result: dict[str, Any]) -> str:
    if result.get("model"):
        return str(result["model"])
    args = result.get("config", {}).get("model_args")  # lm-eval
    if isinstance(args, str) and "pretrained=" in args:
        return args.split("pretrained=")[1].split(",")[0].rstrip("/").split("/")[-1]
    return "model"


def collect(paths: Sequence[str | Path], rename: dict[str, str] | None = None) -> dict[str, dict]:
    """``{model: {column: value}}`` from result files (a file with a list holds several
    results). Raises ``ValueError`` when two files give the same model different values for a
    cell, and names the file that contributed nothing."""
    rename = rename or {}
    table: dict[str, dict[str, float]] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        if isinstance(data, list):
            results = data
        elif isinstance(data.get("results"), list):  # several WB-Score results in one file
            results = data["results"]
        else:
            results = [data]
        found = False
        for res in results:
            vals = values_of(res)
            if not vals:
                continue
            found = True
            model = rename.get(_model_of(res), _model_of(res))
            row = table.setdefault(model, {})
            for k, v in vals.items():
                if k in row and not math.isclose(row[k], v, rel_tol=0, abs_tol=1e-9):
                    raise ValueError(f"{path}: {model} {k} = {v}, another file says {row[k]}")
                row[k] = v
        if not found:
            raise ValueError(f"{path}: no result the table can use")
    return table


def derive(row: dict[str, Any]) -> dict[str, Any]:
    """Add ``Avg_obj``, ``Avg_sub`` and ``Avg`` where all their inputs are present (a row that
    already carries a published average keeps it)."""
    out = dict(row)
    if "Avg_obj" not in out or out["Avg_obj"] is None:
        if all(is_number(out.get(k)) for k in OBJECTIVE):
            out["Avg_obj"] = sum(out[k] for k in OBJECTIVE) / len(OBJECTIVE)
    if "Avg_sub" not in out or out["Avg_sub"] is None:
        if all(is_number(out.get(k)) for k in SUBJECTIVE):
            out["Avg_sub"] = (out["AE"] + 10 * out["MT"] + (out["Wild"] + 100) / 2) / 3
    if "Avg" not in out or out["Avg"] is None:
        if is_number(out.get("Avg_obj")) and is_number(out.get("Avg_sub")):
            out["Avg"] = (out["Avg_obj"] + out["Avg_sub"]) / 2
    return out


def paper_table_names(path: str | Path = PAPER_TABLES) -> list[str]:
    """Names of the paper's tables in ``path``."""
    return list(json.loads(Path(path).read_text())["tables"])


def paper_table(name: str = DEFAULT_PAPER_TABLE, path: str | Path = PAPER_TABLES) -> dict:
    """One table of ``paper_tables.json`` (``setting``, ``note``, ``rows``); ``KeyError`` naming
    the known tables when ``name`` is not one."""
    tables = json.loads(Path(path).read_text())["tables"]
    if name not in tables:
        raise KeyError(f"no paper table {name!r}; known: {', '.join(tables)}")
    return tables[name]


def load_paper_rows(
    table: str = DEFAULT_PAPER_TABLE, path: str | Path = PAPER_TABLES
) -> list[dict[str, Any]]:
    """The published rows of one of the paper's tables (method names suffixed ``(paper)``);
    empty when the table's numbers are not recorded (see its ``note``)."""
    rows = []
    for r in paper_table(table, path)["rows"]:
        row = {k: v for k, v in r.items() if k != "method" and v is not None}
        row["model"] = f"{r['method']} (paper)"
        rows.append(row)
    return rows


def build_table(
    measured: dict[str, dict[str, float]], paper_rows: Sequence[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """Rows (dicts with ``model`` and the columns) with the averages derived."""
    rows = [derive({"model": m, **vals}) for m, vals in measured.items()]
    rows += [derive(dict(r)) for r in paper_rows]
    return rows


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    cols = list(COLUMNS)
    if any("AE*" in r for r in rows):
        cols.insert(cols.index("AE") + 1, "AE*")
    if any("WB-Score" in r for r in rows):
        cols.append("WB-Score")
    return cols


def _fmt(v: Any) -> str:
    return f"{v:.2f}" if is_number(v) else ""


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table (empty cells for missing values), then a footnote for ``AE*``, the one
    column that looks like the paper's and is not."""
    cols = _columns(rows)
    lines = ["| Model | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for r in rows:
        lines.append(f"| {r['model']} | " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    if "AE*" in cols:
        lines += ["", f"AE*: {AE_STAR_NOTE}."]
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV with full precision (empty for missing values)."""
    cols = _columns(rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", *cols])
    for r in rows:
        w.writerow([r["model"], *(repr(float(r[c])) if is_number(r.get(c)) else "" for c in cols)])
    return buf.getvalue()


def bar_chart(rows: Sequence[dict[str, Any]], path: str | Path) -> str | None:
    """Grouped bars of Avg_obj, Avg_sub and Avg per model into ``path`` (PNG).

    Returns None on success, or the reason no chart was written (matplotlib missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no chart written"
    metrics = ["Avg_obj", "Avg_sub", "Avg"]
    n = len(rows)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * n + 2), 4))
    width = 0.8 / len(metrics)
    for k, m in enumerate(metrics):
        xs = [i + (k - 1) * width for i in range(n)]
        ys = [r.get(m) if is_number(r.get(m)) else 0.0 for r in rows]
        bars = ax.bar(xs, ys, width, label=m)
        for b, r in zip(bars, rows):
            if not is_number(r.get(m)):
                b.set_hatch("//")
                b.set_alpha(0.2)
    ax.set_xticks(range(n))
    ax.set_xticklabels([r["model"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("score")
    ax.legend()
    ax.set_title("MIG paper table: averages (missing values hatched)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def build_parser() -> argparse.ArgumentParser:
    """The ``eval/compare.py`` argument parser."""
    p = argparse.ArgumentParser(prog="compare.py", description="the MIG paper's table")
    p.add_argument("results", nargs="+", help="result JSON files (any of the eval scripts)")
    p.add_argument("--rename", nargs="*", default=[], help="OLD=NEW model labels")
    p.add_argument("--paper", action="store_true", help="append the paper's published Table 1 rows")
    p.add_argument(
        "--paper-table",
        help="append the published rows of this table of paper_tables.json "
        "(e.g. table1/qwen2.5-7b, threshold, scaling)",
    )
    p.add_argument("--md", help="write the Markdown table here")
    p.add_argument("--csv", help="write the CSV table here")
    p.add_argument("--png", help="write a bar chart here (needs matplotlib)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``eval/compare.py``: prints the Markdown table; returns the exit status."""
    args = build_parser().parse_args(argv)
    rename = dict(r.split("=", 1) for r in args.rename)
    name = args.paper_table or (DEFAULT_PAPER_TABLE if args.paper else None)
    paper_rows: list[dict[str, Any]] = []
    if name:
        try:
            paper_rows = load_paper_rows(name)
        except KeyError as err:
            raise SystemExit(f"compare.py: {err.args[0]}") from None
    rows = build_table(collect(args.results, rename), paper_rows)
    md = to_markdown(rows)
    if name and not paper_rows:
        md += f"\n(paper table {name}: {paper_table(name)['note']})\n"
    print(md, end="")
    for out in (args.md, args.csv, args.png):
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
    if args.md:
        Path(args.md).write_text(md)
    if args.csv:
        Path(args.csv).write_text(to_csv(rows))
    if args.png:
        why = bar_chart(rows, args.png)
        print(why if why else f"chart written to {args.png}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
