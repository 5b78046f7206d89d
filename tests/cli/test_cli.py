"""The hf-mig command line, run as a user would (console script in a subprocess)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from datasets import load_dataset

import hf_mig


def hf_mig_cli(*args, check=True):
    exe = shutil.which("hf-mig")
    cmd = [exe] if exe else [sys.executable, "-m", "hf_mig"]
    out = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"hf-mig {args} failed ({out.returncode}):\n{out.stderr}")
    return out


def test_select_with_saved_graph_matches_reference(parity_dir, tmp_path):
    expected = json.loads((parity_dir / "expected.json").read_text())["configs"][0]
    out = tmp_path / "subset.jsonl"
    summary = tmp_path / "summary.json"
    res = hf_mig_cli(
        "select",
        parity_dir / "pool.jsonl",
        "--num",
        600,
        "--out",
        out,
        "--graph",
        parity_dir / "label_graph_t0.9.npz",
        "--record-gains",
        "--summary-json",
        summary,
        "--indices-out",
        tmp_path / "indices.json",
    )
    assert "selected 600 of 2,000 rows" in res.stdout
    pool_ids = hf_mig.load_pool(parity_dir / "pool.jsonl")["id"]
    positions = json.loads((tmp_path / "indices.json").read_text())
    assert positions["pool_rows"] == 2000 and positions["method"] == "mig"
    assert [pool_ids[i] for i in positions["positions"]] == expected["selected_ids"]
    subset = load_dataset("json", data_files=str(out), split="train")
    assert subset["id"] == expected["selected_ids"]
    assert subset["mig_rank"] == list(range(600))
    assert set(hf_mig.load_pool(parity_dir / "pool.jsonl").column_names) <= set(subset.column_names)
    numbers = json.loads(summary.read_text())
    assert numbers["lazy_greedy"]["engine"] == "lazy"
    assert numbers["label_graph"]["num_edges"] == 15
    assert numbers["selected_labels"] <= numbers["pool_labels"]


@pytest.mark.parametrize("suffix", [".parquet", ".json", "_folder"])
def test_select_random_writes_any_format(parity_dir, tmp_path, suffix):
    expected = json.loads((parity_dir / "expected.json").read_text())["random_seed42"]
    out = tmp_path / f"subset{suffix}"
    hf_mig_cli("select", parity_dir / "pool.jsonl", "--method", "random", "-k", 500, "-o", out)
    assert hf_mig.load_pool(out)["id"] == expected["selected_ids"]


def test_select_authors_format_with_vocabulary(data_dir, tmp_path):
    """The authors' example pool: line 3 is malformed; skipping it is reported."""
    pool = data_dir / "mig_authors" / "data" / "example.jsonl"
    vocab = data_dir / "mig_authors" / "configs" / "valid_tag_path.json"
    bad = hf_mig_cli("select", pool, "-k", 3, "-o", tmp_path / "x.jsonl", check=False)
    assert bad.returncode == 2
    assert "line 3" in bad.stderr
    graph = tmp_path / "g.npz"
    ok = hf_mig_cli(
        "select",
        pool,
        "-k",
        3,
        "-o",
        tmp_path / "s.jsonl",
        "--skip-bad-lines",
        "--vocabulary",
        vocab,
        "--threshold",
        0.7,
        "--save-graph",
        graph,
    )
    assert "selected 3 of 9 rows" in ok.stdout
    assert "skipped 1" in ok.stderr.lower() or "1 malformed" in ok.stderr.lower()
    assert "outside the vocabulary" in ok.stderr  # the tag not in the 4,531 is reported
    subset = load_dataset("json", data_files=str(tmp_path / "s.jsonl"), split="train")
    assert len(subset) == 3 and "labels_dropped" in subset.column_names
    assert hf_mig.LabelGraph.load(graph).threshold == 0.7


def test_graph_command_from_vocabulary(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("python programming\npython coding\ncooking recipe\n")
    res = hf_mig_cli("graph", "--vocabulary", vocab, "--out", tmp_path / "g.npz")
    assert "3 labels, 1 edges" in res.stdout
    g = hf_mig.LabelGraph.load(tmp_path / "g.npz")
    assert [n for n, _ in g.neighbors("python coding")] == ["python programming"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["-k", "0"], "k must be >= 1"),
        (["-k", "2001"], "exceeds the pool size"),
        (["-k", "5", "--labels-column", "tags"], "expected 'tags' and 'score' columns"),
        (["-k", "5", "--option", "bogus=1"], "unexpected keyword argument 'bogus'"),
    ],
)
def test_select_errors_are_clear(parity_dir, tmp_path, args, message):
    res = hf_mig_cli(
        "select",
        parity_dir / "pool.jsonl",
        "-o",
        tmp_path / "o.jsonl",
        "--graph",
        parity_dir / "label_graph_t0.9.npz",
        *args,
        check=False,
    )
    assert res.returncode == 2
    assert message in res.stderr


def test_demo_runs_offline_and_explains(tmp_path):
    res = hf_mig_cli("demo", "--num", 20, "--out", tmp_path)
    assert "MIG picked 20 rows" in res.stdout
    lines = {
        line.split()[0]: line
        for line in res.stdout.splitlines()
        if line.strip()[:3] in ("mig", "top", "ran")
    }
    covered = {name: int(line.split()[1]) for name, line in lines.items()}
    assert covered["mig"] > covered["top_score"] and covered["mig"] > covered["random"]
    subset = load_dataset("json", data_files=str(tmp_path / "mig_subset.jsonl"), split="train")
    assert len(subset) == 20
    # rows without a label: a column per selection and the pool's count
    assert "rows without a label" in res.stdout
    unlabelled = {name: int(line.split()[-1]) for name, line in lines.items()}
    assert unlabelled["mig"] == sum(1 for labels in subset["labels"] if not labels)
    pool_line = next(line for line in res.stdout.splitlines() if line.split()[:1] == ["pool"])
    in_pool = int(pool_line.split()[-1])
    assert f"({in_pool} of 427 rows got no label" in res.stdout
    assert in_pool > 0 and all(0 <= n <= min(in_pool, 20) for n in unlabelled.values())


def _select_actions():
    import argparse

    from hf_mig.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices["select"]._actions}


def test_select_flags_keep_their_names_types_and_defaults():
    actions = _select_actions()
    expected = {
        "seed": (["--seed"], int, 42, None),
        "phi": (["--phi"], None, "pow", ["pow", "exp"]),
        "phi_a": (["--phi-a"], float, 1e-6, None),
        "phi_b": (["--phi-b"], float, 0.8, None),
        "phi_alpha": (["--phi-alpha"], float, 1.0, None),
        "prop_weight": (["--prop-weight"], float, 1.0, None),
        "norm": (["--norm"], None, False, None),
        "gain": (["--gain"], None, "gradient", ["gradient", "exact"]),
        "engine": (["--engine"], None, "auto", ["auto", "lazy", "scan"]),
        "record_gains": (["--record-gains"], None, False, None),
        "overwrite_gain_columns": (["--overwrite-gain-columns"], None, False, None),
        "min_coverage": (["--min-coverage"], float, None, None),
        "max_edges": (["--max-edges"], int, None, None),
        "max_degree": (["--max-degree"], int, None, None),
        "graph_cache": (["--no-graph-cache"], None, True, None),
        "graph": (["--graph"], None, None, None),
        "embedder": (["--embedder"], None, None, None),
        "threshold": (["--threshold"], float, None, None),
        "labels_column": (["--labels-column"], None, "labels", None),
        "score_column": (["--score-column"], None, "score", None),
        "vocabulary": (["--vocabulary"], None, None, None),
        "num": (["--num", "-k"], int, None, None),
        "out": (["--out", "-o"], None, None, None),
        "overwrite": (["--overwrite"], None, False, None),
    }
    for dest, (flags, kind, default, choices) in expected.items():
        action = actions[dest]
        got = (action.option_strings, action.type, action.default, action.choices)
        assert got == (flags, kind, default, choices), dest


def test_a_selector_option_reaches_select_from_the_signature(monkeypatch):
    """A registered selector's keyword parameter is a flag of 'hf-mig select', passed to that
    method only when set."""
    from hf_mig.cli.main import build_parser
    from hf_mig.cli.selector_flags import selector_options
    from hf_mig.selectors import SELECTORS, RandomSelector

    class StrideSelector(RandomSelector):
        def __init__(self, k: int, *, stride: int = 3, seed: int = 42):
            super().__init__(k, seed=seed)
            self.stride = stride

    monkeypatch.setitem(SELECTORS, "stride", StrideSelector)
    assert _select_actions()["stride"].option_strings == ["--stride"]
    argv = ["select", "pool.jsonl", "-k", "5", "-o", "out.jsonl", "--method", "stride"]
    args = build_parser().parse_args(argv)
    assert args.stride == 3 and selector_options(args, "stride") == {}
    args = build_parser().parse_args([*argv, "--stride", "7", "--seed", "1", "--phi", "exp"])
    assert selector_options(args, "stride") == {"stride": 7, "seed": 1}
    assert selector_options(args, "mig")["phi"] == "exp"


def test_every_command_module_follows_the_contract_and_is_listed():
    """Each public module of hf_mig.cli.commands declares NAME, HELP, add_arguments and run,
    calls no registration helper, and is a subcommand of 'hf-mig --help' under its NAME."""
    import importlib
    import pkgutil

    from hf_mig.cli import commands
    from hf_mig.cli.main import build_parser, command_modules

    names = [i.name for i in pkgutil.iter_modules(commands.__path__) if not i.name.startswith("_")]
    modules = command_modules()
    assert sorted(m.__name__.rsplit(".", 1)[1] for m in modules) == sorted(names)
    text = build_parser().format_help()
    for name in names:
        module = importlib.import_module(f"hf_mig.cli.commands.{name}")
        assert isinstance(module.NAME, str) and isinstance(module.HELP, str), name
        assert callable(module.add_arguments) and callable(module.run), name
        assert not hasattr(module, "register"), name
        assert f"    {module.NAME} " in text, name
    listed = [m.NAME for m in modules]
    assert listed[:4] == ["select", "graph", "demo", "methods"]
    assert listed[4:] == sorted(listed[4:])


def _write_package(root, name, modules):
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module, text in modules.items():
        (package / f"{module}.py").write_text(text)


HELLO_COMMAND = '''"""``hf-mig hello``: say hello.

::

    hf-mig hello --times 2
"""
import argparse

NAME = "hello"
HELP = "say hello"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--times", type=int, default=1)


def run(args: argparse.Namespace) -> int:
    print("hello " * args.times)
    return 7
'''


def test_a_command_module_dropped_into_the_package_is_discovered(tmp_path, monkeypatch, capsys):
    """A module with NAME, HELP, add_arguments and run is a subcommand: its help line, its
    docstring (up to the example block) as description, its arguments and its exit status."""
    from hf_mig.cli.main import build_parser

    helper = "raise AssertionError('helper modules are not commands')\n"
    _write_package(tmp_path, "extra_commands", {"hello": HELLO_COMMAND, "_shared": helper})
    monkeypatch.syspath_prepend(str(tmp_path))
    parser = build_parser("extra_commands")
    assert "hello" in parser.format_help() and "say hello" in parser.format_help()
    args = parser.parse_args(["hello", "--times", "2"])
    assert args.command == "hello" and args.func(args) == 7
    assert capsys.readouterr().out.strip() == "hello hello"
    with pytest.raises(SystemExit):
        parser.parse_args(["hello", "--help"])
    shown = capsys.readouterr().out
    assert "``hf-mig hello``: say hello." in shown and "--times 2" not in shown


def test_a_command_module_missing_the_contract_is_refused(tmp_path, monkeypatch):
    from hf_mig.cli.main import build_parser

    _write_package(tmp_path, "broken_commands", {"half": 'NAME = "half"\nHELP = "no run"\n'})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match=r"broken_commands\.half.*add_arguments, run"):
        build_parser("broken_commands")
