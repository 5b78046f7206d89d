"""One contract for every registered tagger and scorer (and the sample embedder), run offline.

Each step is built from two configurations that differ in one option. Checked for each:
pickling round-trips to a step with the same outputs; ``datasets``' fingerprint is equal for
equal configurations and differs when the configuration does; a batched ``Dataset.map`` gives
the rows that one-row calls give; the output columns have the Arrow types the step declares,
even when the first batch holds only failed or empty rows; calls are deterministic.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset
from datasets.fingerprint import Hasher

from hf_mig.annotate.base import MapStep
from hf_mig.annotate.embeddings import SampleEmbedder
from hf_mig.annotate.scorers import (
    SCORERS,
    ConstantScorer,
    DeitaScorer,
    IFDScorer,
    LabelCountScorer,
    LengthScorer,
    RewardModelScorer,
    TokenCounter,
)
from hf_mig.annotate.taggers import TAGGERS, EmbeddingTagger, InsTagTagger

VOCABULARY = [
    "python programming",
    "cooking",
    "travel planning",
    "poetry",
    "mathematics",
    "translation",
    "data analysis",
    "history",
]

ROWS = [
    [
        {"role": "user", "content": "Write a short poem about the sea."},
        {"role": "assistant", "content": "Waves fold in silver light, the tide keeps time."},
    ],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "Sort a Python list of numbers in place."},
        {"role": "assistant", "content": "Call numbers.sort()."},
    ],
    [
        {"role": "user", "content": "Plan a three-day trip to Rome."},
        {"role": "assistant", "content": "Day 1: the Colosseum. Day 2: the Vatican."},
    ],
    [{"role": "user", "content": "Translate 'good morning' into French."}],
    [{"role": "assistant", "content": "An answer without a question."}],
]
LABELS = [["poetry"], ["mathematics", "python programming"], [], ["translation"], []]


@pytest.fixture(scope="module")
def tiny(tiny_llama_path: Path) -> str:
    return str(tiny_llama_path)


@pytest.fixture(scope="module")
def reward_model(tiny_llama_path: Path, tmp_path_factory) -> str:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig.from_pretrained(tiny_llama_path)
    config.num_labels = 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = transformers.LlamaForSequenceClassification(config)
    out = tmp_path_factory.mktemp("models") / "tiny-reward"
    model.save_pretrained(out)
    transformers.AutoTokenizer.from_pretrained(tiny_llama_path).save_pretrained(out)
    return str(out)


def _lm(cls: type, **options: Any) -> Callable[[dict[str, Any]], MapStep]:
    return lambda models: cls(**{"device": "cpu", "batch_size": 3, **models, **options})


def _instag(models: dict[str, Any], **options: Any) -> InsTagTagger:
    backend = {"device": "cpu", "progress": False, "batch_size": 3}
    return InsTagTagger(
        "transformers", models["model"], backend_options=backend, max_new_tokens=4, **options
    )


#: name -> (make(models, variant) where variant 0/1 differ in one option, models it needs)
CASES: dict[str, tuple[Callable[[dict[str, Any], int], MapStep], tuple[str, ...]]] = {
    "length": (lambda m, v: LengthScorer(output_column=("score", "length")[v]), ()),
    "constant": (lambda m, v: ConstantScorer((1.0, 2.5)[v]), ()),
    "label-count": (lambda m, v: LabelCountScorer(output_column=("score", "n")[v]), ()),
    "deita": (lambda m, v: _lm(DeitaScorer, reduce=("mean", "sum")[v])(m), ("model",)),
    "ifd": (lambda m, v: _lm(IFDScorer, padding_side=("left", "right")[v])(m), ("model",)),
    "reward": (lambda m, v: _lm(RewardModelScorer, max_length=(None, 64)[v])(m), ("reward",)),
    "tokens": (lambda m, v: TokenCounter((None, m["model"])[v]), ("model",)),
    "embedding": (
        lambda m, v: EmbeddingTagger(VOCABULARY, threshold=0.2, top_m=(3, 2)[v], batch_size=4),
        (),
    ),
    "instag": (lambda m, v: _instag(m, turns=("first", "all")[v]), ("model",)),
    "sample-embedder": (lambda m, v: SampleEmbedder(max_chars=(2000, 20)[v]), ()),
}


def test_every_registered_step_has_a_contract_case():
    assert set(TAGGERS) | set(SCORERS) <= set(CASES)


@pytest.fixture(params=sorted(CASES))
def make(request) -> Callable[[int], MapStep]:
    build, needs = CASES[request.param]
    models: dict[str, Any] = {}
    if "model" in needs:
        models["model"] = request.getfixturevalue("tiny")
    if "reward" in needs:
        models["model"] = request.getfixturevalue("reward_model")
    return lambda variant=0: build(models, variant)


def _batch(rows: range) -> dict[str, list]:
    return {"messages": [ROWS[i] for i in rows], "labels": [LABELS[i] for i in rows]}


def _rows(out: dict[str, Any]) -> list[dict[str, Any]]:
    columns = {name: list(values) for name, values in out.items()}
    n = len(next(iter(columns.values())))
    return [{name: _plain(values[i]) for name, values in columns.items()} for i in range(n)]


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def test_pickle_round_trip_gives_the_same_outputs(make):
    step = make()
    batch = _batch(range(len(ROWS)))
    clone = pickle.loads(pickle.dumps(step))
    assert type(clone) is type(step) and clone.config == step.config
    assert _same(_rows(clone(batch, list(range(len(ROWS))))), _rows(step(batch, [0, 1, 2, 3, 4])))


def test_fingerprint_follows_the_configuration(make):
    assert Hasher.hash(make()) == Hasher.hash(make())
    assert Hasher.hash(make()) != Hasher.hash(make(1))
    assert make().fingerprint == Hasher.hash(make())


def test_batched_map_equals_one_row_calls_and_is_deterministic(make):
    step = make()
    ds = Dataset.from_dict(_batch(range(len(ROWS))))
    mapped = ds.map(step, batched=True, batch_size=2, with_indices=True)
    columns = list(step.output_types())
    batched = [{name: row[name] for name in columns} for row in mapped]
    single = [_rows(step(_batch(range(i, i + 1)), [i]))[0] for i in range(len(ROWS))]
    assert _same(batched, single)
    again = [_rows(step(_batch(range(i, i + 1)), [i]))[0] for i in range(len(ROWS))]
    assert again == single


def test_output_types_are_fixed(make):
    step = make()
    types = step.output_types()
    # the first batch holds only a row without a user turn: nothing to score or tag
    ds = Dataset.from_dict(_batch(range(len(ROWS) - 1, len(ROWS))))
    ds = Dataset.from_dict({name: values * 3 for name, values in ds.to_dict().items()})
    mapped = ds.map(step, batched=True, batch_size=1, with_indices=True)
    got = {name: mapped.data.table.schema.field(name).type for name in types}
    assert got == types
    full = Dataset.from_dict(_batch(range(len(ROWS)))).map(step, batched=True, with_indices=True)
    assert {name: full.data.table.schema.field(name).type for name in types} == types
