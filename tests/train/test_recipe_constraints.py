"""A recipe's token budget and per-source quotas: checked at load time (errors name the field),
passed to MIG as ``MIGSelector(budget=..., quotas=...)`` would take them, and part of the
selection cache key.

Only the data step of a recipe runs (:func:`hf_mig.train.data.load_training_data`), on the
annotated demo pool with offline token counts: seconds, no training.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from hf_mig.annotate.tokens import TokenCounter
from hf_mig.data.io import load_pool
from hf_mig.selectors.mig import MIGSelector
from hf_mig.train import load_recipe
from hf_mig.train.config import DataConfig, SelectionSpec
from hf_mig.train.data import (
    load_prepared_pool,
    load_training_data,
    selection_key,
    selection_spec,
)

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny_cpu.yaml"
SEED, USER = "self_instruct_seed", "self_instruct_user_oriented"


@pytest.fixture(scope="module")
def token_pool(tmp_path_factory, demo_annotated) -> Path:
    """The annotated demo pool with ``num_tokens`` (offline: ceil(characters / 4))."""
    path = tmp_path_factory.mktemp("pool") / "demo_tokens.jsonl"
    load_pool(str(demo_annotated)).map(TokenCounter(), batched=True).to_json(path, lines=True)
    return path


def _commented_example() -> dict:
    """The budget and quotas example commented out in recipes/tiny_cpu.yaml, uncommented."""
    text = TINY.read_text(encoding="utf-8")
    block = text.split("Uncomment to use:\n", 1)[1].split("\neval_size:", 1)[0]
    lines = [line.removeprefix("# ") for line in block.splitlines()]
    example = yaml.safe_load("\n".join(lines))
    assert set(example) == {
        "selection_budget", "selection_cost_column", "selection_quotas", "selection_quota_column"
    }  # fmt: skip
    return example


def _tiny(pool: Path, cache: Path, **changes) -> dict:
    raw = yaml.safe_load(TINY.read_text(encoding="utf-8"))
    raw.update(pool=str(pool), selection_cache_dir=str(cache), eval_size=0, **changes)
    return raw


def _picks(data) -> np.ndarray:
    return np.load(data.cache_path / "indices.npy")


def test_the_commented_example_selects_within_its_budget_and_quotas(
    token_pool, demo_graph, tmp_path
):
    example = _commented_example()
    recipe = load_recipe(_tiny(token_pool, tmp_path, **example))
    sel = recipe.data.selection
    k, budget = sel.k, example["selection_budget"]
    assert sel.options == {
        "label_graph": str(demo_graph),
        "budget": float(budget),
        "cost_column": "num_tokens",
        "quotas": {SEED: (16, 0.5), USER: (0.25, None)},
        "quota_column": "source",
    }
    data = load_training_data(recipe.data)
    picks = _picks(data)
    rows = [json.loads(line) for line in token_pool.read_text(encoding="utf-8").splitlines()]
    cost = sum(rows[i]["num_tokens"] for i in picks)
    groups = Counter(rows[i]["source"] for i in picks)
    assert cost <= budget and 0 < len(picks) < k  # the budget binds before k
    assert 16 <= groups[SEED] <= k // 2 and groups[USER] >= k // 4
    assert sorted(data.train_rows["pool_index"]) == sorted(picks.tolist())
    # the same picks, in the same order, as MIG called directly with the same options
    _, pool, _ = load_prepared_pool(recipe.data)
    direct = MIGSelector(
        k,
        label_graph=str(demo_graph),
        budget=budget,
        cost_column="num_tokens",
        quotas={SEED: (16, 0.5), USER: (0.25, None)},
        quota_column="source",
    ).select_indices(pool)
    assert picks.tolist() == direct.tolist()
    # the manifest states what the picks used of the budget and the quotas
    facts = data.manifest["budget"]
    assert facts["cost_used"] == cost and facts["budget"] == budget
    assert facts["picks_per_group"] == dict(groups)
    assert facts["quotas"] == {SEED: [16, 0.5], USER: [0.25, None]}


def test_a_budget_alone_needs_no_selection_k(token_pool, demo_graph, tmp_path):
    alone = {"selection_k": None, "selection_budget": 3000, "selection_quotas": {SEED: [5, None]}}
    recipe = load_recipe(_tiny(token_pool, tmp_path, **alone))
    assert recipe.data.selection.k is None
    data = load_training_data(recipe.data)
    picks = _picks(data)
    costs = load_pool(str(token_pool))["num_tokens"]
    assert sum(costs[i] for i in picks) <= 3000 and len(picks) > 0
    _, pool, _ = load_prepared_pool(recipe.data)
    direct = MIGSelector(label_graph=str(demo_graph), budget=3000, quotas={SEED: (5, None)})
    assert picks.tolist() == direct.select_indices(pool).tolist()
    assert data.manifest["selection"]["k"] is None
    again = load_training_data(load_recipe(_tiny(token_pool, tmp_path, **alone)).data)
    assert again.cache_hit and _picks(again).tolist() == picks.tolist()


def _data(flags: list[str]):
    return load_training_data(load_recipe(TINY, flags).data)


def test_command_line_flags_set_the_budget_and_a_new_budget_is_a_new_selection(
    token_pool, tmp_path
):
    flags = ["--pool", str(token_pool), "--selection_cache_dir", str(tmp_path), "--eval_size", "0"]
    quotas = ["--selection_quotas", f"{{{SEED}: [10, null]}}"]
    first = _data([*flags, "--selection_budget", "1500", *quotas])
    again = _data([*flags, "--selection_budget", "1500", *quotas])
    other = _data([*flags, "--selection_budget", "2500", *quotas])
    assert (first.cache_hit, again.cache_hit, other.cache_hit) == (False, True, False)
    assert first.cache_path == again.cache_path != other.cache_path
    assert _picks(first).tolist() == _picks(again).tolist() != _picks(other).tolist()
    costs = load_pool(str(token_pool))["num_tokens"]
    for data, budget in ((first, 1500), (other, 2500)):
        assert sum(costs[i] for i in _picks(data)) <= budget
        assert data.manifest["budget"]["cost_used"] == sum(costs[i] for i in _picks(data))
    # the same budget without quotas is another selection, cached apart
    plain = _data([*flags, "--selection_budget", "1500"])
    assert plain.cache_hit is False and plain.cache_path not in (first.cache_path, other.cache_path)


def test_the_cache_key_holds_every_selector_option():
    def key(**options) -> str:
        config = DataConfig(pool="p", selection=SelectionSpec("mig", 64, options))
        return selection_key("sha256:pool", selection_spec(config))

    base = key(budget=2000.0, quotas={"a": (1, None)})
    assert base == key(budget=2000.0, quotas={"a": [1, None]})  # YAML lists or tuples
    changed = [
        key(budget=2001.0, quotas={"a": (1, None)}),
        key(budget=2000.0, quotas={"a": (2, None)}),
        key(budget=2000.0, quotas={"a": (1, 5)}),
        key(budget=2000.0, quotas={"a": (1, None)}, cost_column="words"),
        key(budget=2000.0, quotas={"a": (1, None)}, quota_column="origin"),
        key(budget=2000.0),
        key(quotas={"a": (1, None)}),
        key(engine="stochastic", seed=1),
        key(engine="stochastic", seed=2),
        key(engine="stochastic", seed=1, epsilon=0.1),
        key(explain=3),
    ]
    assert len({base, *changed}) == len(changed) + 1
    # the same budget from YAML (an int) and from the command line (a float): one key
    raw = {"model_name_or_path": "m", "pool": "p", "selection_k": 64}
    from_file = load_recipe({**raw, "selection_budget": 2000})
    from_flag = load_recipe(raw, ["--selection_budget", "2000"])
    spec = selection_spec(from_file.data)
    assert spec == selection_spec(from_flag.data) and spec["options"]["budget"] == 2000.0


def test_engine_epsilon_seed_and_explain_reach_the_selector(token_pool, demo_graph, tmp_path):
    options = {"label_graph": "hf-mig:demo-graph", "engine": "stochastic", "seed": 7,
               "epsilon": 0.2, "explain": 2}  # fmt: skip
    recipe = load_recipe(_tiny(token_pool, tmp_path, selection_options=options))
    assert recipe.data.selection.options == {**options, "label_graph": str(demo_graph)}
    picks = _picks(load_training_data(recipe.data))
    _, pool, _ = load_prepared_pool(recipe.data)
    direct = MIGSelector(
        64, label_graph=str(demo_graph), engine="stochastic", seed=7, epsilon=0.2
    ).select_indices(pool)
    assert picks.tolist() == direct.tolist()
    greedy = MIGSelector(64, label_graph=str(demo_graph)).select_indices(pool)
    assert picks.tolist() != greedy.tolist()


BASE = {"model_name_or_path": "m", "pool": "p.jsonl", "selection_k": 20}
Q = "selection_quotas"
CASES = [  # (recipe keys, command-line flags, what the error says)
    ({Q: {"math": [10, "x"]}}, [], "selection_quotas.math: max must be a count"),
    ({Q: {"math": [10]}}, [], "selection_quotas.math must be [min, max]"),
    ({Q: {"math": [1.5, None]}}, [], "selection_quotas.math: min 1.5 is a share"),
    ({Q: {"math": [-1, None]}}, [], "selection_quotas.math: min must be a count >= 0"),
    ({Q: {"math": [15, 10]}}, [], "selection_quotas.math: min 15 > max 10"),
    ({Q: {"math": [0.5, 0.4]}}, [], "selection_quotas.math: min 10 > max 8"),
    ({Q: {"a": [15, None], "b": [10, None]}}, [], "selection_quotas: the minimums sum to 25"),
    ({Q: [1, 2]}, [], "selection_quotas must map each group to [min, max]"),
    ({}, ["--selection_quotas", "{math: [1, 2"], "selection_quotas: not a YAML mapping"),
    ({"selection_budget": -1}, [], "selection_budget: budget must be a finite number > 0"),
    ({"selection_budget": "lots"}, [], "--selection_budget"),
    ({"selection_cost_column": "n"}, [], "selection_cost_column is read with selection_budget"),
    ({"selection_quota_column": "n"}, [], "selection_quota_column is read with selection_quotas"),
    (
        {"selection_budget": 5, "selection_options": {"budget": 4}},
        [],
        "give selection_budget or selection_options.budget, not both",
    ),
    (
        {"selection_options": {"quotas": {"code": [None, -2]}}},
        [],
        "selection_options.quotas.code: max must be a count >= 0",
    ),
    ({"selection_options": {"budget": 0}}, [], "selection_options.budget: budget must be"),
    ({"selection_k": None}, [], "it may be left out only with selection_budget"),
    (
        {"selection_k": None, "selection_budget": 9, Q: {"math": [0.5, None]}},
        [],
        "selection_quotas.math: a share of selection_k needs selection_k",
    ),
    (
        {"selection_method": "random", "selection_budget": 5},
        [],
        "selection_budget: method 'random' takes no 'budget' option (methods that do: mig)",
    ),
    (
        {"data": {"selection": {"quotas": {"a": [1, 2]}}}},
        [],
        "data.selection.quotas -> selection_quotas",
    ),
]


@pytest.mark.parametrize(("changes", "overrides", "message"), CASES)
def test_bad_budget_and_quotas_are_refused_naming_the_field(changes, overrides, message):
    with pytest.raises(ValueError) as err:
        load_recipe({**BASE, **changes}, overrides)
    assert message in str(err.value)


def test_a_python_data_config_is_checked_too():
    config = DataConfig(pool="p", selection=SelectionSpec("mig", 8, {"quotas": {"a": [9, None]}}))
    with pytest.raises(ValueError, match=re.escape("selection_options.quotas: the minimums sum")):
        config.validate()
