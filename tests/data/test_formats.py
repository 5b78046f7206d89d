"""Tests for hf_mig.data.formats on real pools: the shared data folder's (skipped without it), the
InsTag vocabulary shipped in hf_mig/data/bundled, and the parity pool's conversations."""

from __future__ import annotations

import json
import math
import pickle
from collections import Counter
from pathlib import Path

import datasets
import pytest
from datasets.fingerprint import Hasher

from hf_mig.data.formats import (
    MIGAnnotations,
    detect_shape,
    load_vocabulary,
    to_messages,
)
from hf_mig.data.io import load_pool
from hf_mig.data.resources import bundled_path

datasets.disable_progress_bars()

SHAREGPT = "sharegpt/sharegpt_v3_slice_a_0-1999.json"
EXAMPLE = "mig_authors/data/example.jsonl"

# ``datasets`` fingerprints module-level functions by name, not by code: never reuse a cached
# map result, so that every run exercises the current code.
FRESH = {"load_from_cache_file": False}


# --------------------------------------------------------------------------------------
# fixtures (real files, read in place)


@pytest.fixture(scope="module")
def sharegpt(data_dir: Path) -> datasets.Dataset:
    return load_pool(data_dir / SHAREGPT)


@pytest.fixture(scope="module")
def sharegpt_messages(sharegpt: datasets.Dataset) -> datasets.Dataset:
    return sharegpt.map(to_messages, batched=True, with_indices=True, **FRESH)


@pytest.fixture(scope="module")
def example(data_dir: Path) -> datasets.Dataset:
    with pytest.warns(UserWarning, match="skipped 1 malformed"):
        return load_pool(data_dir / EXAMPLE, skip_bad_lines=True)


@pytest.fixture(scope="module")
def vocabulary() -> list[str]:
    """The authors' ``configs/valid_tag_path.json`` as shipped in hf_mig/data/bundled
    (``hf-mig:instag``, a byte-for-byte copy: test_tagger.py checks it against the shared
    folder's)."""
    return load_vocabulary(bundled_path("hf-mig:instag"))


# --------------------------------------------------------------------------------------
# detect_shape


@pytest.mark.parametrize(
    ("columns", "shape"),
    [
        (["id", "conversations"], "conversations"),
        (["messages"], "messages"),
        (["instruction", "input", "output", "history"], "alpaca"),
        (["instruction", "output"], "alpaca"),
        (["dialogs", "source", "_id", "ifd_score", "annotation"], "dialogs"),
    ],
)
def test_detect_shape(columns: list[str], shape: str) -> None:
    assert detect_shape(columns) == shape


def test_detect_shape_unknown_lists_columns_and_shapes() -> None:
    with pytest.raises(ValueError) as info:
        detect_shape(["prompt", "response"])
    text = str(info.value)
    assert "['prompt', 'response']" in text
    for shape in ("'messages'", "'conversations'", "'alpaca'", "'dialogs'"):
        assert shape in text


def test_detect_shape_ambiguous() -> None:
    with pytest.raises(
        ValueError, match=r"several conversation shapes \['messages', 'conversations'\]"
    ):
        detect_shape(["conversations", "messages"])


def test_alpaca_needs_output() -> None:
    with pytest.raises(ValueError, match="cannot detect"):
        detect_shape(["instruction", "input"])


# --------------------------------------------------------------------------------------
# to_messages on real pools


def test_sharegpt_end_to_end(
    sharegpt: datasets.Dataset, sharegpt_messages: datasets.Dataset
) -> None:
    ds = sharegpt_messages
    assert ds.num_rows == sharegpt.num_rows == 2000
    assert ds.column_names == ["id", "conversations", "messages"]
    assert ds.features["messages"] == datasets.List(
        {"role": datasets.Value("string"), "content": datasets.Value("string")}
    )
    row = ds[1]
    assert row["id"] == "i6IyJda_0"
    assert len(row["messages"]) == 2
    assert row["messages"][0] == {
        "role": "user",
        "content": "How to tell if a customer segment is well segmented? In 3 bullet points.",
    }
    assert row["messages"][1]["role"] == "assistant"
    assert row["messages"][1]["content"].startswith("1. Homogeneity: The segment should consist")
    assert row["messages"][1]["content"] == row["conversations"][1]["value"]


def test_sharegpt_empty_conversations_are_kept(sharegpt_messages: datasets.Dataset) -> None:
    lengths = [len(m) for m in sharegpt_messages["messages"]]
    empty = [i for i, n in enumerate(lengths) if n == 0]
    assert empty == [
        71,
        176,
        522,
        542,
        569,
        809,
        949,
        1021,
        1153,
        1161,
        1251,
        1511,
        1635,
        1646,
        1782,
    ]
    assert sum(lengths) == 14109  # every turn kept: 7.0545 turns per conversation


def test_sharegpt_role_mapping(sharegpt_messages: datasets.Dataset) -> None:
    roles = Counter(m["role"] for conv in sharegpt_messages["messages"] for m in conv)
    assert roles == {"assistant": 7433, "user": 6671, "system": 5}
    row = sharegpt_messages[1160]
    assert row["id"] == "gzNNzD1_0"
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    assert row["messages"][0]["content"].startswith("*This chat conversation is shared from")
    assert row["messages"][1] == {"role": "user", "content": "write js hello world"}


def test_lima_history_comes_first(data_dir: Path) -> None:
    raw = json.loads((data_dir / "lima" / "lima.json").read_text(encoding="utf-8"))
    ds = load_pool(data_dir / "lima" / "lima.json").map(
        to_messages, batched=True, with_indices=True, **FRESH
    )
    assert ds.num_rows == 1029
    lengths = Counter(len(m) for m in ds["messages"])
    # 1,000 single-turn rows; 29 multi-turn rows with 1, 2, 3 or 9 earlier exchanges
    assert lengths == {2: 1000, 4: 15, 6: 10, 8: 3, 20: 1}
    row = ds[1000]["messages"]
    assert [m["role"] for m in row] == ["user", "assistant", "user", "assistant"]
    assert row[0]["content"].startswith("Most of the books I read give examples using <code>printf")
    assert row[0]["content"] == raw[1000]["history"][0][0]
    assert row[1]["content"] == raw[1000]["history"][0][1]
    assert row[2]["content"] == (
        "Could you elaborate on the unintuitive bit?  I'm always on the lookout for new "
        "cognitive traps that I haven't noticed before."
    )
    assert row[3]["content"] == raw[1000]["output"]
    long = ds[1005]["messages"]
    assert long[0]["content"] == raw[1005]["history"][0][0]
    assert long[-2]["content"] == raw[1005]["instruction"]


def test_alpaca_input_is_joined_with_newline(data_dir: Path) -> None:
    ds = load_pool(data_dir / "llama_factory_demo" / "alpaca_en_demo.json")
    out = ds.map(
        to_messages, batched=True, with_indices=True, **FRESH, remove_columns=ds.column_names
    )
    assert out.column_names == ["messages"]
    assert out.num_rows == 999
    assert out[5]["messages"] == [
        {
            "role": "user",
            "content": "Given the parameters of a triangle, find out its perimeter.\n"
            "Side 1 = 4\nSide 2 = 6\nSide 3 = 8",
        },
        {"role": "assistant", "content": ds[5]["output"]},
    ]
    # empty input: the instruction alone
    assert out[0]["messages"][0] == {
        "role": "user",
        "content": "Describe a process of making crepes.",
    }
    assert all(len(m) == 2 for m in out["messages"])


def test_dialogs_parity_pool_passes_through(parity_text_pool: Path) -> None:
    ds = load_pool(parity_text_pool)
    out = ds.map(to_messages, batched=True, with_indices=True, **FRESH)
    assert out.num_rows == 2000
    assert out["messages"] == ds["dialogs"]
    assert out[0]["id"] == "p00000"
    assert out[0]["messages"][0]["role"] == "user"
    assert out[0]["messages"][0]["content"].startswith("I have been cautioned against blending:")


def test_example_dialogs(example: datasets.Dataset) -> None:
    out = example.map(to_messages, batched=True, with_indices=True, **FRESH)
    assert out[0]["messages"][0]["content"].startswith("i'm moving my project to perl")
    assert [m["role"] for m in out[0]["messages"]] == ["user", "assistant"]


# --------------------------------------------------------------------------------------
# to_messages: synthetic shapes and errors


def test_alpaca_system_history_order() -> None:
    batch = {
        "instruction": ["What next?"],
        "input": [None],
        "output": ["Done."],
        "history": [[["Hi", "Hello!"]]],
        "system": ["Be brief."],
    }
    assert to_messages(batch)["messages"] == [
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "What next?"},
            {"role": "assistant", "content": "Done."},
        ]
    ]


def test_messages_passthrough_keeps_role_and_content_only() -> None:
    conv = [{"role": "user", "content": "a", "name": None}, {"role": "assistant", "content": ""}]
    out = to_messages({"messages": [conv, []]}, [0, 1])
    assert out["messages"] == [
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}],
        [],
    ]


def test_sharegpt_from_is_case_insensitive() -> None:
    batch = {
        "conversations": [[{"from": "Human", "value": "x"}, {"from": "ChatGPT", "value": "y"}]]
    }
    assert to_messages(batch)["messages"][0] == [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "y"},
    ]


def test_unknown_sharegpt_role_names_row_and_field() -> None:
    conv = [{"from": "human", "value": "a"}] * 3 + [{"from": "robot", "value": "b"}]
    with pytest.raises(ValueError) as info:
        to_messages({"conversations": [conv]}, [17])
    text = str(info.value)
    assert text.startswith("row 17, field 'conversations'[3]['from']: expected one of [")
    assert "'human'" in text and "'gpt'" in text
    assert text.endswith("got 'robot'")


@pytest.mark.parametrize(
    ("batch", "fragment"),
    [
        ({"messages": [[{"role": "tool", "content": "x"}]]}, "row 4, field 'messages'[0]['role']"),
        (
            {"messages": [[{"role": "user", "content": None}]]},
            "field 'messages'[0]['content']: expected a string, got None",
        ),
        ({"dialogs": [None]}, "row 4, field 'dialogs': expected a list of turns, got None"),
        ({"dialogs": [["hi"]]}, "row 4, field 'dialogs'[0]: expected a dict, got str"),
        ({"conversations": [[{"value": "x"}]]}, "row 4, field 'conversations'[0]['from']: missing"),
        ({"instruction": [None], "output": ["o"]}, "row 4, field 'instruction': expected a string"),
        (
            {"instruction": ["i"], "output": [3]},
            "row 4, field 'output': expected a string, got int",
        ),
        (
            {"instruction": ["i"], "output": ["o"], "history": [[["only one"]]]},
            "row 4, field 'history'[0]: expected a [user, assistant] pair",
        ),
    ],
)
def test_errors_name_row_and_field(batch: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        to_messages(batch, [4])
    assert fragment in str(info.value)


def test_error_without_indices_uses_batch_position() -> None:
    batch = {"dialogs": [[{"role": "user", "content": "ok"}], [{"role": "bot", "content": "x"}]]}
    with pytest.raises(ValueError, match=r"^row 1, field 'dialogs'\[0\]\['role'\]"):
        to_messages(batch)


def test_forced_shape_and_bad_shape() -> None:
    batch = {"conversations": [[]], "messages": [[{"role": "user", "content": "m"}]]}
    assert to_messages(batch, shape="messages")["messages"] == [[{"role": "user", "content": "m"}]]
    assert to_messages(batch, shape="conversations")["messages"] == [[]]
    with pytest.raises(ValueError, match="shape 'dialogs' needs columns"):
        to_messages(batch, shape="dialogs")
    with pytest.raises(ValueError, match="shape: expected 'auto' or one of"):
        to_messages(batch, shape="sharegpt")  # type: ignore[arg-type]


def test_map_error_names_dataset_row(sharegpt: datasets.Dataset) -> None:
    rows = sharegpt.select(range(5)).to_list()
    rows[3]["conversations"][1]["from"] = "robot"
    ds = datasets.Dataset.from_list(rows)
    with pytest.raises(
        ValueError, match=r"row 3, field 'conversations'\[1\]\['from'\].*got 'robot'"
    ):
        ds.map(to_messages, batched=True, with_indices=True, **FRESH, batch_size=2)


def test_map_first_batch_all_empty(sharegpt: datasets.Dataset) -> None:
    # the first written batch holds only empty conversations
    ds = sharegpt.select([71, 176, 0, 1])
    out = ds.map(to_messages, batched=True, with_indices=True, **FRESH, batch_size=2)
    assert [len(m) for m in out["messages"]] == [0, 0, 12, 2]
    assert out.features["messages"] == datasets.List(
        {"role": datasets.Value("string"), "content": datasets.Value("string")}
    )


def test_map_with_fn_kwargs_shape(sharegpt: datasets.Dataset) -> None:
    out = sharegpt.select(range(3)).map(
        to_messages, batched=True, with_indices=True, **FRESH, fn_kwargs={"shape": "conversations"}
    )
    assert out[1]["messages"][0]["role"] == "user"


# --------------------------------------------------------------------------------------
# MIGAnnotations


def test_annotations_real_example(example: datasets.Dataset, vocabulary: list[str]) -> None:
    out = example.map(MIGAnnotations(vocabulary), batched=True, with_indices=True, **FRESH)
    assert out.num_rows == 9
    # line 1 of example.jsonl: one turn, quality 3.5785536465098664, complexity 2.035370713781308
    assert out[0]["score"] == pytest.approx(3.5785536465098664 * 2.035370713781308, rel=1e-12)
    assert out[0]["score"] == pytest.approx(7.28368328980149, rel=1e-12)
    # line 2: 2.980803492688863 * 1.999543748914027
    assert out[1]["score"] == pytest.approx(5.960246990547114, rel=1e-12)
    assert out[0]["labels"] == ["code translation", "code understanding", "code comment"]
    assert out[0]["labels_dropped"] == 0
    # line 4 (row 2 once line 3 is skipped): one of four tags is outside the Tulu 3 vocabulary
    assert out[2]["labels"] == ["character development", "format", "tension building"]
    assert out[2]["labels_dropped"] == 1
    assert sum(out["labels_dropped"]) + sum(len(x) for x in out["labels"]) == sum(
        len(set(a["instag"]["content"])) for a in example["annotation"]
    )


def test_annotations_without_vocabulary_keep_all(example: datasets.Dataset) -> None:
    out = example.map(MIGAnnotations(), batched=True, with_indices=True, **FRESH)
    assert out[2]["labels"] == [
        "creative writing assistance",
        "character development",
        "format",
        "tension building",
    ]
    assert set(out["labels_dropped"]) == {0}


def _record(tags: list, quality: list, complexity: list) -> dict:
    return {
        "annotation": {
            "instag": {"content": tags},
            "deita": {"quality_scores": quality, "complexity_scores": complexity},
        }
    }


def _batch(*records: dict) -> dict[str, list]:
    return {"annotation": [r["annotation"] for r in records]}


def test_annotations_multi_turn_mean_and_sum() -> None:
    batch = _batch(_record(["b", "a", "b", "c", "a"], [2.0, 4.0, 1.0], [3.0, 0.5, 5.0]))
    mean = MIGAnnotations(["a", "b"])(batch, [0])
    assert mean["labels"] == [["b", "a", "b", "a"]]  # order and repeats kept, "c" filtered
    assert mean["labels_dropped"] == [1]
    assert mean["score"] == [pytest.approx((6.0 + 2.0 + 5.0) / 3)]
    total = MIGAnnotations(reduce="sum")(batch, [0])
    assert total["labels"] == [["b", "a", "b", "c", "a"]]
    assert total["score"] == [pytest.approx(13.0)]


def test_annotations_flattened_columns() -> None:
    batch = {
        "annotation.instag.content": [["x"]],
        "annotation.deita.quality_scores": [[2]],
        "annotation.deita.complexity_scores": [[3]],
    }
    assert MIGAnnotations()(batch)["score"] == [6.0]


def test_annotations_custom_fields() -> None:
    batch = {"tags": [["t"]], "q": [[1.5]], "c": [[2.0]]}
    ann = MIGAnnotations(labels_field="tags", quality_field="q", complexity_field="c")
    assert ann(batch, [0]) == {"labels": [["t"]], "labels_dropped": [0], "score": [3.0]}


@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        (
            _record(["a"], [1.0, 2.0], [1.0]),
            "row 9, fields 'annotation.deita.quality_scores' and "
            "'annotation.deita.complexity_scores': expected per-turn lists of the same "
            "length, got 2 and 1",
        ),
        (
            _record(["a"], [], []),
            "row 9, field 'annotation.deita.quality_scores': expected at least "
            "one per-turn score, got an empty list",
        ),
        (
            _record(["a"], [1.0, "3"], [1.0, 1.0]),
            "row 9, field 'annotation.deita.quality_scores'[1]: expected a finite number, got '3'",
        ),
        (
            _record(["a"], [1.0], [math.nan]),
            "row 9, field 'annotation.deita.complexity_scores'[0]: "
            "expected a finite number, got nan",
        ),
        (
            _record(["a"], [True], [1.0]),
            "field 'annotation.deita.quality_scores'[0]: expected a finite number, got True",
        ),
        (_record(["a"], None, [1.0]), "row 9, field 'annotation.deita.quality_scores': missing"),
        (
            _record(["a", 7], [1.0], [1.0]),
            "row 9, field 'annotation.instag.content'[1]: expected a string, got 7",
        ),
        (
            {"annotation": {"instag": {"content": ["a"]}}},
            "row 9, field "
            "'annotation.deita.quality_scores': missing; no key 'deita' in 'annotation'",
        ),
        (
            {"annotation": None},
            "row 9, field 'annotation.instag.content': missing; 'annotation' is None",
        ),
    ],
)
def test_annotation_errors(record: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        MIGAnnotations()(_batch(record), [9])
    assert fragment in str(info.value)


def test_annotation_missing_column() -> None:
    with pytest.raises(
        ValueError, match="field 'annotation.instag.content': missing; no column 'annotation'"
    ):
        MIGAnnotations()({"dialogs": [[]]}, [0])


def test_annotation_config_errors() -> None:
    with pytest.raises(ValueError, match="reduce: expected 'mean' or 'sum', got 'max'"):
        MIGAnnotations(reduce="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="vocabulary is empty"):
        MIGAnnotations([])
    with pytest.raises(TypeError, match="single string"):
        MIGAnnotations("tag")
    with pytest.raises(TypeError, match=r"vocabulary\[1\]: expected a string, got int"):
        MIGAnnotations(["a", 1])  # type: ignore[list-item]


def test_annotation_fingerprint_stable(vocabulary: list[str]) -> None:
    first = MIGAnnotations(vocabulary)
    assert Hasher.hash(first) == Hasher.hash(MIGAnnotations(vocabulary))
    assert Hasher.hash(first) == Hasher.hash(MIGAnnotations(list(reversed(vocabulary))))
    assert Hasher.hash(first) != Hasher.hash(MIGAnnotations(vocabulary, reduce="sum"))
    assert Hasher.hash(first) != Hasher.hash(MIGAnnotations(vocabulary[:-1]))
    assert Hasher.hash(first) != Hasher.hash(MIGAnnotations())
    copy = pickle.loads(pickle.dumps(first))
    assert Hasher.hash(copy) == Hasher.hash(first)
    assert copy(_batch(_record(["mathematics", "zzz"], [1.0], [2.0])), [0])["labels"] == [
        ["mathematics"]
    ]


def test_annotation_map_fingerprint(example: datasets.Dataset, vocabulary: list[str]) -> None:
    a = example.map(MIGAnnotations(vocabulary), batched=True, with_indices=True, **FRESH)
    b = example.map(MIGAnnotations(vocabulary), batched=True, with_indices=True, **FRESH)
    c = example.map(
        MIGAnnotations(vocabulary, reduce="sum"), batched=True, with_indices=True, **FRESH
    )
    assert a._fingerprint == b._fingerprint != c._fingerprint


def test_annotation_map_first_batch_all_dropped(example: datasets.Dataset) -> None:
    out = example.map(
        MIGAnnotations(["information retrieval"]),
        batched=True,
        with_indices=True,
        **FRESH,
        batch_size=1,
    )
    assert out["labels"][:2] == [[], ["information retrieval"]]
    assert out["labels_dropped"][:2] == [3, 2]
    assert out.features["labels"] == datasets.List(datasets.Value("string"))


def test_annotation_repr(vocabulary: list[str]) -> None:
    assert repr(MIGAnnotations(vocabulary, reduce="sum")) == (
        "MIGAnnotations(vocabulary=<4531 labels>, reduce='sum', "
        "labels_field='annotation.instag.content', "
        "quality_field='annotation.deita.quality_scores', "
        "complexity_field='annotation.deita.complexity_scores')"
    )
    assert repr(MIGAnnotations()).startswith("MIGAnnotations(vocabulary=None, reduce='mean'")


# --------------------------------------------------------------------------------------
# load_vocabulary


def test_load_vocabulary_real(vocabulary: list[str]) -> None:
    assert len(vocabulary) == 4531
    assert vocabulary[:5] == [
        "mathematics",
        "problem solve",
        "data analysis",
        "logic",
        "information retrieval",
    ]


def test_load_vocabulary_text(tmp_path: Path) -> None:
    path = tmp_path / "vocab.txt"
    path.write_text("  alpha \nbeta\ngamma\n", encoding="utf-8")
    assert load_vocabulary(path) == ["alpha", "beta", "gamma"]


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("v.txt", "a\nb\n a\n", "line 3: duplicate label 'a' (first at line 1)"),
        ("v.txt", "a\n\nb\n", "line 2: empty label"),
        ("v.txt", "", "no labels in file"),
        ("v.json", '["a", "b", "b"]', "position 2: duplicate label 'b' (first at position 1)"),
        ("v.json", '["a", " "]', "position 1: empty label"),
        ("v.json", '["a", 3]', "position 1: expected a string label, got 3"),
        ("v.json", '{"a": 1}', "expected a JSON list of labels, got dict"),
        ("v.json", '["a", ', "not valid JSON at line 1"),
    ],
)
def test_load_vocabulary_errors(tmp_path: Path, name: str, content: str, fragment: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as info:
        load_vocabulary(path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)
