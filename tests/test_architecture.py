"""The package's layout rules (ARCHITECTURE.md): rooms by pipeline stage importing only rooms
below them, no test support in production code, and the 0.1 import paths kept for one release."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import hf_mig
from hf_mig import _compat

PACKAGE = Path(hf_mig.__file__).resolve().parent

#: rooms in flow order: each may import only the rooms before it
ROOMS = [
    "core",
    "data",
    "models",
    "annotate",
    "selectors",
    "train",
    "eval",
    "report",
    "runtime",
    "reproduce",
    "cli",
]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every absolute ``hf_mig`` import in ``path``, function-level
    imports included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "hf_mig":
                out += [(node.lineno, f"hf_mig.{a.name}") for a in node.names]
            elif node.module.startswith("hf_mig."):
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("hf_mig.")]
    return out


def upward_imports(package: Path) -> list[str]:
    rank = {room: i for i, room in enumerate(ROOMS)}
    found = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).parts
        if len(parts) < 2 or parts[0] not in rank:
            continue
        for line, module in imported_modules(path):
            target = module.split(".")[1]
            where = f"{path.relative_to(package)}:{line} imports {module}"
            if target == "testing":
                found.append(where + " (test support)")
            elif target in rank and rank[target] > rank[parts[0]]:
                found.append(where)
    return found


def test_rooms_import_only_rooms_below_them():
    assert upward_imports(PACKAGE) == []


def test_the_rule_catches_an_upward_import(tmp_path):
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "x.py").write_text(
        "def f():\n"
        "    from hf_mig.selectors.mig import MIGSelector\n"
        "    from hf_mig import testing\n"
    )
    assert upward_imports(tmp_path) == [
        "core/x.py:2 imports hf_mig.selectors.mig",
        "core/x.py:3 imports hf_mig.testing (test support)",
    ]


def test_top_level_has_the_rooms_and_at_most_fifteen_entries():
    entries = sorted(p.name for p in PACKAGE.iterdir() if p.name != "__pycache__")
    assert len(entries) <= 15, entries
    assert set(ROOMS) <= set(entries)


@pytest.mark.parametrize("old", sorted(_compat.MOVED))
def test_old_import_paths_resolve_to_the_same_module_with_a_warning(old):
    new = f"hf_mig.{_compat.MOVED[old]}"
    sys.modules.pop(f"hf_mig.{old}", None)
    with pytest.warns(DeprecationWarning, match=rf"hf_mig\.{old} moved to {new}"):
        module = importlib.import_module(f"hf_mig.{old}")
    assert module is importlib.import_module(new)
    assert module.__spec__.name == new


def test_submodules_of_old_packages_are_not_loaded_twice():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = importlib.import_module("hf_mig.scorers.deita")
    assert old is importlib.import_module("hf_mig.annotate.scorers.deita")


def test_the_package_and_its_commands_import_without_deprecation_warnings():
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "import hf_mig, hf_mig.cli.main, hf_mig.train, hf_mig.report, hf_mig.reproduce\n"
        "hf_mig.cli.main.build_parser()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_reproduce_runner_knows_which_commands_take_overwrite():
    """The runner adds ``--overwrite`` on a re-run to exactly the commands that have it."""
    import argparse

    from hf_mig.cli.main import build_parser
    from hf_mig.reproduce.runner import OVERWRITE_COMMANDS

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    with_flag = {
        name
        for name, parser in sub.choices.items()
        if any("--overwrite" in a.option_strings for a in parser._actions)
    }
    assert OVERWRITE_COMMANDS == with_flag
