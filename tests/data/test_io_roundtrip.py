"""save_dataset -> load_pool gives back the same values, bit for bit, in every format.

Generated datasets hold the values that broke earlier writers: subnormal, huge and negative-zero
floats, floats that need 17 significant digits, nested lists and structs, nulls at every level,
text with emoji, right-to-left scripts, NUL and line separators, and a 1 MB string.
"""

from __future__ import annotations

import json
import math
import struct
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pytest

from hf_mig.data.io import OutputFormatError, load_pool, save_dataset

datasets.disable_progress_bars()

FLOATS = [
    5e-324,  # smallest subnormal
    2.2250738585072014e-308,  # smallest normal
    2.225073858507201e-308,  # largest subnormal
    1e300,
    1.7976931348623157e308,
    -0.0,
    0.0,
    1.234e-12,
    0.828462899430404,
    1.5326087474822998,  # a score the old JSON reader rounded to 1.5326087475
    0.1,
    1 / 3,
    -123456789.98765432,
    1.0,
    None,
]
TEXTS = [
    "plain",
    "",
    "emoji \U0001f600\U0001f469\u200d\U0001f4bb and flags \U0001f1ef\U0001f1f5",
    "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 (RTL) \u202eevil\u202c",
    "NUL\x00inside",
    "quotes \" ' and \\ backslashes \\u0041 and {braces} [1, 2], and % signs %s",
    "line\nbreaks\r\nand\ttabs\rand \u2028 \u2029 separators \x85",
    "\ufeffBOM-led text",
    "x" * (1 << 20),  # 1 MB
    None,
    "2024-01-02",  # date-like text stays text
    "42",
    "null",
    "NaN",
    "true",
]
N = len(FLOATS)
assert len(TEXTS) == N


def _bits_equal(a: Any, b: Any) -> bool:
    """Deep equality where floats compare by their 64-bit pattern (-0.0 != 0.0)."""
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, float)
            and isinstance(b, float)
            and struct.pack("<d", a) == struct.pack("<d", b)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_bits_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_bits_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def assert_identical(back: datasets.Dataset, ds: datasets.Dataset, *, types: bool = True) -> None:
    assert back.column_names == ds.column_names
    assert back.num_rows == ds.num_rows
    if types:
        assert back.features == ds.features
    for name in ds.column_names:
        got, want = back[name][:], ds[name][:]
        for row, (a, b) in enumerate(zip(got, want)):
            assert _bits_equal(a, b), f"column {name!r} row {row}: {a!r:.200} != {b!r:.200}"


def flat_dataset() -> datasets.Dataset:
    """Scalar columns only (what CSV can hold)."""
    return datasets.Dataset.from_dict(
        {
            "f": FLOATS,
            "i": [0, -1, 2**63 - 1, -(2**63), 2**53 + 1, None, *range(N - 6)],
            "b": [True, False, None] * (N // 3),
            "s": TEXTS,
        },
        features=datasets.Features(
            f=datasets.Value("float64"),
            i=datasets.Value("int64"),
            b=datasets.Value("bool"),
            s=datasets.Value("string"),
        ),
    )


def nested_dataset() -> datasets.Dataset:
    """Flat columns plus lists, structs, lists of structs and lists of lists, with nulls."""
    flat = flat_dataset().to_dict()
    rows = range(N)
    flat["labels"] = [[f"l{i}", TEXTS[i % 4] or "", "\U0001f600"][: i % 4] for i in rows]
    flat["labels"][5] = None
    flat["meta"] = [
        {"score": FLOATS[i], "tags": [t for t in TEXTS[:3]][: i % 3], "n": i} for i in rows
    ]
    flat["meta"][7] = None
    flat["meta"][8] = {"score": None, "tags": None, "n": None}
    flat["turns"] = [
        [{"role": "user", "content": TEXTS[i]}, {"role": "assistant", "content": None}]
        for i in rows
    ]
    flat["turns"][2] = []
    flat["grid"] = [[[FLOATS[i], FLOATS[(i + 1) % N]], [], None] for i in rows]
    features = flat_dataset().features.copy()
    features.update(
        labels=datasets.List(datasets.Value("string")),
        meta={
            "score": datasets.Value("float64"),
            "tags": datasets.List(datasets.Value("string")),
            "n": datasets.Value("int64"),
        },
        turns=datasets.List(
            {"role": datasets.Value("string"), "content": datasets.Value("string")}
        ),
        grid=datasets.List(datasets.List(datasets.Value("float64"))),
    )
    return datasets.Dataset.from_dict(flat, features=features)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


# --------------------------------------------------------------------------------------
# identity in every format


@pytest.mark.parametrize("name", ["out.jsonl", "out.json", "out.parquet", "out_folder"])
def test_nested_identity(tmp_path: Path, name: str) -> None:
    ds = nested_dataset()
    out = tmp_path / name
    save_dataset(ds, out)
    assert_identical(load_pool(out), ds)


def test_csv_identity(tmp_path: Path) -> None:
    ds = flat_dataset()
    out = tmp_path / "out.csv"
    save_dataset(ds, out)
    assert_identical(load_pool(out), ds)


@pytest.mark.parametrize("name", ["out.jsonl", "out.json", "out.parquet", "out.csv", "folder"])
def test_identity_after_select(tmp_path: Path, name: str) -> None:
    """A selection (an indices mapping over the table) writes the selected rows, in order."""
    ds = flat_dataset() if name.endswith(".csv") else nested_dataset()
    order = [9, 1, 8, 3, 3]
    out = tmp_path / name
    save_dataset(ds.select(order), out)
    assert_identical(load_pool(out), ds.select(order).flatten_indices())


@pytest.mark.parametrize("name", ["out.jsonl", "out.json"])
def test_json_text_is_exact_and_plain(tmp_path: Path, name: str) -> None:
    """The file itself holds the shortest exact float text and unescaped UTF-8."""
    ds = nested_dataset()
    out = tmp_path / name
    save_dataset(ds, out)
    text = out.read_text(encoding="utf-8")
    assert "0.828462899430404," in text and "1.234e-12," in text and "5e-324," in text
    assert "-0.0," in text
    assert "\U0001f600" in text and "\u05e9\u05dc\u05d5\u05dd" in text  # not \\u-escaped
    assert "NUL\\u0000inside" in text  # control characters are escaped, as JSON requires
    # and so are the characters that str.splitlines() takes for line ends
    assert "\u2028" not in text and "\u2029" not in text and "\x85" not in text
    assert "\\u2028 \\u2029 separators \\u0085" in text
    if name == "out.json":
        rows = json.loads(text)
        assert len(rows) == N and text.startswith("[\n{") and text.endswith("}\n]\n")
    else:
        rows = [json.loads(line) for line in text.splitlines()]
    assert len(rows) == N
    assert _bits_equal([r["f"] for r in rows], FLOATS)
    assert rows[5]["labels"] is None and rows[7]["meta"] is None


def test_float32_values_round_trip_exactly(tmp_path: Path) -> None:
    values = [0.1, 1 / 3, 3.4028234663852886e38, 1e-45, -0.0]
    ds = datasets.Dataset.from_dict(
        {"x": values}, features=datasets.Features(x=datasets.Value("float32"))
    )
    for name in ("a.jsonl", "a.csv", "a.parquet"):
        back = load_pool(_saved(ds, tmp_path / name))
        as_f32 = back.cast(ds.features)["x"][:]
        assert _bits_equal(as_f32, ds["x"][:]), name


def _saved(ds: datasets.Dataset, out: Path) -> Path:
    save_dataset(ds, out)
    return out


def test_many_batches_stream_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hf_mig.data.text_scan as text_scan
    import hf_mig.data.writers as writers

    monkeypatch.setattr(writers, "WRITE_BATCH_ROWS", 7)
    monkeypatch.setattr(text_scan, "CHUNK_BYTES", 4096)  # and read back in many pieces
    ds = datasets.Dataset.from_dict(
        {
            "i": list(range(1000)),
            "x": [i / 7 for i in range(1000)],
            "l": [["a"] * (i % 3) for i in range(1000)],
        }
    )
    for name in ("b.jsonl", "b.json", "b.csv"):
        if name.endswith(".csv"):
            sub = ds.remove_columns("l")
        else:
            sub = ds
        assert_identical(load_pool(_saved(sub, tmp_path / name)), sub)


# --------------------------------------------------------------------------------------
# what JSON cannot hold


@pytest.mark.parametrize("name", ["out.jsonl", "out.json"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_json_refuses_nan_naming_row_and_column(tmp_path: Path, name: str, bad: float) -> None:
    ds = datasets.Dataset.from_dict({"id": list("abcde"), "score": [0.5, 1.0, 2.0, bad, 3.0]})
    out = tmp_path / "sub" / name
    with pytest.raises(
        OutputFormatError, match=r"row 3, column 'score': (nan|inf|-inf) holds"
    ) as e:
        save_dataset(ds, out)
    assert str(e.value).startswith(f"{out}: row 3, column 'score'")
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no temporary left behind


def test_json_refuses_nested_nan(tmp_path: Path) -> None:
    ds = datasets.Dataset.from_dict({"v": [[1.0], [2.0, math.nan]]})
    with pytest.raises(OutputFormatError, match=r"row 1, column 'v': \[2\.0, nan\]"):
        save_dataset(ds, tmp_path / "x.jsonl")


def test_json_refuses_bytes_and_decimals_before_writing(tmp_path: Path) -> None:
    table = pa.table(
        {
            "ok": ["a"],
            "blob": pa.array([b"\x00\xff"], pa.binary()),
            "price": pa.array([Decimal("1.10")], pa.decimal128(5, 2)),
        }
    )
    ds = datasets.Dataset(datasets.table.InMemoryTable(table))
    out = tmp_path / "new" / "x.jsonl"
    with pytest.raises(OutputFormatError) as info:
        save_dataset(ds, out)
    assert "'blob' (binary), 'price' (decimal128(5, 2))" in str(info.value)
    assert ".parquet" in str(info.value)
    assert not out.parent.exists()  # refused before anything was created
    save_dataset(ds, tmp_path / "x.parquet")  # parquet holds them
    back = load_pool(tmp_path / "x.parquet")
    assert back[0] == {"ok": "a", "blob": b"\x00\xff", "price": Decimal("1.10")}


def test_json_refuses_invalid_utf8_text(tmp_path: Path) -> None:
    """Text that is not UTF-8 (made outside load_pool) is refused with its row, not written."""
    raw = pa.array([b"ok", b"bad \xff", b"fine"], pa.binary())
    text = pa.Array.from_buffers(pa.string(), len(raw), raw.buffers())
    ds = datasets.Dataset(datasets.table.InMemoryTable(pa.table({"s": text, "n": [1, 2, 3]})))
    out = tmp_path / "x.jsonl"
    with pytest.raises(
        OutputFormatError, match=r"x\.jsonl: row 1, column 's': the text is not valid"
    ):
        save_dataset(ds, out)
    assert list(tmp_path.iterdir()) == []


def test_json_writes_timestamps_as_iso_text(tmp_path: Path) -> None:
    ds = datasets.Dataset.from_dict(
        {"t": [datetime(2024, 1, 2, 3, 4, 5), None]},
        features=datasets.Features(t=datasets.Value("timestamp[s]")),
    )
    back = load_pool(_saved(ds, tmp_path / "t.jsonl"))
    assert back["t"][:] == ["2024-01-02 03:04:05", None]
    assert back.features["t"] == datasets.Value("string")


def test_json_feature_column_is_written_as_json(tmp_path: Path) -> None:
    ds = datasets.Dataset.from_dict(
        {"j": [{"a": 0.5}, {"a": "x", "b": [1, 2]}, None]},
        features=datasets.Features(j=datasets.Json()),
    )
    out = _saved(ds, tmp_path / "j.jsonl")
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines == ['{"j":{"a":0.5}}', '{"j":{"a":"x","b":[1,2]}}', '{"j":null}']


# --------------------------------------------------------------------------------------
# what CSV cannot hold


def test_csv_refuses_nested_columns(tmp_path: Path) -> None:
    out = tmp_path / "n" / "x.csv"
    with pytest.raises(OutputFormatError) as info:
        save_dataset(nested_dataset(), out)
    text = str(info.value)
    assert "'labels' (list<item: string>)" in text and "'meta' (struct<" in text
    assert "'turns'" in text and "'grid'" in text and "'f'" not in text
    assert "write .jsonl or .parquet instead" in text
    assert not out.parent.exists()


@pytest.mark.parametrize(
    ("values", "row", "shown"),
    [
        (["007", "42"], 0, "'007' and reads back as 7"),
        (["1.5", "2"], 0, "'1.5' and reads back as 1.5"),
        (["true", "false"], 0, "'true' and reads back as True"),
    ],
)
def test_csv_refuses_text_that_changes_type(
    tmp_path: Path, values: list[str], row: int, shown: str
) -> None:
    ds = datasets.Dataset.from_dict({"id": [1, 2], "code": values})
    out = tmp_path / "x.csv"
    with pytest.raises(OutputFormatError, match=f"column 'code' does not survive CSV: row {row}"):
        save_dataset(ds, out)
    with pytest.raises(OutputFormatError, match=shown):
        save_dataset(ds, out)
    assert list(tmp_path.iterdir()) == []


def test_csv_refuses_all_null_row_of_one_column(tmp_path: Path) -> None:
    ds = datasets.Dataset.from_dict({"s": ["a", None, "b"]})
    with pytest.raises(OutputFormatError, match=r"1 row\(s\) do not survive CSV"):
        save_dataset(ds, tmp_path / "x.csv")
    two = datasets.Dataset.from_dict({"s": ["a", None, "b"], "n": [1, 2, 3]})
    assert_identical(load_pool(_saved(two, tmp_path / "y.csv")), two)


def test_csv_keeps_empty_text_apart_from_null(tmp_path: Path) -> None:
    ds = datasets.Dataset.from_dict({"input": ["", None, "x", ""], "n": [1, 2, 3, 4]})
    back = load_pool(_saved(ds, tmp_path / "x.csv"))
    assert back["input"][:] == ["", None, "x", ""]


def test_csv_nan_and_infinity_round_trip(tmp_path: Path) -> None:
    ds = datasets.Dataset.from_dict({"x": [math.nan, math.inf, -math.inf, 1.0]})
    back = load_pool(_saved(ds, tmp_path / "x.csv"))["x"][:]
    assert math.isnan(back[0]) and back[1:] == [math.inf, -math.inf, 1.0]
