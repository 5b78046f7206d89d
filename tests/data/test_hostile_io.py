"""Hostile pool files: each loads exactly or fails with an error naming the file and the line.

Every case is a generated file (bytes) with either the rows it must load to, exactly, or the
1-based line (``None``: the whole file) and the words the :class:`PoolFormatError` must hold.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import datasets
import pytest

import hf_mig.data.text_scan as hio
from hf_mig.data.io import PoolFormatError, load_pool

datasets.disable_progress_bars()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def jl(*rows: Any) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)


GOOD = jl({"id": "a", "x": 1}, {"id": "b", "x": 2})


class Loads:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows


class Fails:
    def __init__(self, lineno: int | None, *words: str, offset: int | None = None) -> None:
        self.lineno, self.words, self.offset = lineno, words, offset


CASES: dict[str, tuple[str, bytes, Loads | Fails]] = {
    # ---- bad bytes
    "invalid utf-8 mid-file": (
        ".jsonl",
        GOOD + b'{"id": "c\xff\xfe", "x": 3}\n' + GOOD,
        Fails(3, "invalid UTF-8", "byte offset 49", "invalid start byte", offset=49),
    ),
    "invalid utf-8 in a json array": (
        ".json",
        b'[\n{"id": "a"},\n{"id": "\x80"}\n]\n',
        Fails(3, "invalid UTF-8", "byte offset 23", "byte 9 of the line"),
    ),
    "invalid utf-8 in csv": (
        ".csv",
        b'"id","x"\n"a",1\n"b\xc3",2\n',
        Fails(3, "invalid UTF-8", "byte offset 17"),
    ),
    "overlong slash": (".jsonl", GOOD + b'{"id": "\xc0\xaf"}\n', Fails(3, "invalid UTF-8")),
    "overlong 3-byte": (".jsonl", b'{"id": "\xe0\x80\xaf"}\n', Fails(1, "invalid UTF-8")),
    "encoded surrogate": (".jsonl", b'{"id": "\xed\xa0\x80"}\n', Fails(1, "invalid UTF-8")),
    "truncated sequence at end of file": (".jsonl", GOOD + b'{"id": "\xe2\x82', Fails(3, "UTF-8")),
    "lone high surrogate escape": (
        ".jsonl",
        GOOD + b'{"id": "x\\ud800y"}\n',
        Fails(3, "lone surrogate escape \\ud800", "byte offset 49"),
    ),
    "lone low surrogate escape": (".jsonl", b'{"id": "\\uDC00"}\n', Fails(1, "\\uDC00")),
    "surrogates in the wrong order": (
        ".jsonl",
        b'{"id": "\\udc00\\ud800"}\n',
        Fails(1, "lone surrogate escape \\udc00"),
    ),
    "lone surrogate in a json array": (
        ".json",
        b'[{"id": "ok"},\n {"id": "\\ud83d"}]',
        Fails(2, "lone surrogate"),
    ),
    "escaped backslash before u is text": (
        ".jsonl",
        b'{"id": "\\\\ud800"}\n{"id": "\\\\\\ud83d\\ude00"}\n',
        Loads([{"id": "\\ud800"}, {"id": "\\\U0001f600"}]),
    ),
    "surrogate pair escape": (
        ".jsonl",
        b'{"id": "\\ud83d\\ude00 \\u00e9"}\n',
        Loads([{"id": "\U0001f600 \u00e9"}]),
    ),
    "NUL escape": (".jsonl", b'{"id": "a\\u0000b"}\n', Loads([{"id": "a\x00b"}])),
    "raw NUL byte in a string": (".jsonl", b'{"id": "a\x00b"}\n', Fails(1, "invalid JSON")),
    "raw control character": (".jsonl", GOOD + b'{"id": "a\x01"}\n', Fails(3, "invalid JSON")),
    # ---- bad JSON
    "truncated record": (".jsonl", GOOD + b'{"id": "c", "x": \n', Fails(3, "invalid JSON")),
    "trailing comma": (".jsonl", b'{"id": "c",}\n', Fails(1, "invalid JSON")),
    "single quotes": (".jsonl", GOOD + b"{'id': 'c'}\n", Fails(3, "invalid JSON")),
    "array line": (".jsonl", GOOD + b"[1, 2]\n", Fails(3, "expected a JSON object, got an array")),
    "string line": (".jsonl", b'"hello"\n', Fails(1, "expected a JSON object, got a string")),
    "two objects on one line": (
        ".jsonl",
        GOOD + b'{"id": "c", "x": 3} {"id": "d", "x": 4}\n',
        Fails(3, "Extra data"),
    ),
    "object over two lines": (
        ".jsonl",
        GOOD + b'{"id": "c",\n "x": 3}\n',
        Fails(3, "invalid JSON"),
    ),
    "duplicate key": (".jsonl", GOOD + b'{"id": "c", "id": "d"}\n', Fails(3, "duplicate key 'id'")),
    "number beyond float64": (".jsonl", b'{"x": 1e400}\n', Fails(1, "too large")),
    "NaN token": (".jsonl", b'{"x": 1.5}\n{"x": NaN}\n', Loads([{"x": 1.5}, {"x": float("nan")}])),
    "unterminated array": (".json", b'[{"a": 1},\n{"a": 2}\n', Fails(3, "array is not closed")),
    "missing comma": (".json", b'[\n{"a": 1}\n{"a": 2}]', Fails(3, "Expecting ',' delimiter")),
    "garbage after array": (".json", b'[{"a": 1}]\n{"a": 2}\n', Fails(2, "extra data")),
    "array of numbers": (".json", b"[1, 2]", Fails(1, "expected a JSON object in the array")),
    # ---- mixed types
    "number then string": (
        ".jsonl",
        jl({"score": 1.5}, {"score": 2}, {"score": "high"}),
        Fails(3, "field 'score' is a string ('high') but a number in line 1"),
    ),
    "list then string": (
        ".jsonl",
        jl({"labels": ["a"]}, {"labels": None}, {"labels": "a"}),
        Fails(3, "field 'labels' is a string ('a') but an array in line 1"),
    ),
    "boolean then number": (
        ".jsonl",
        jl({"ok": True}, {"ok": 1}),
        Fails(2, "field 'ok' is a number (1) but a boolean in line 1"),
    ),
    "nested mixed": (
        ".jsonl",
        jl({"m": {"turns": [{"t": "x"}]}}, {"m": {"turns": [{"t": 3}]}}),
        Fails(2, "field 'm.turns[].t' is a number"),
    ),
    "mixed in a json array": (
        ".json",
        b'[\n{"s": "a"},\n{"s": "b"},\n{"s": [1]}\n]',
        Fails(4, "field 's' is an array ([1]) but a string in line 2"),
    ),
    "objects with other keys are fine": (
        ".jsonl",
        jl({"m": {"a": 1}}, {"m": {"b": "x"}}, {"m": {}}, {"m": None}),
        Loads(
            [
                {"m": {"a": 1, "b": None}},
                {"m": {"a": None, "b": "x"}},
                {"m": {"a": None, "b": None}},
                {"m": None},
            ]
        ),
    ),
    "integers and floats are numbers": (
        ".jsonl",
        jl({"x": 1}, {"x": 0.828462899430404}),
        Loads([{"x": 1.0}, {"x": 0.828462899430404}]),
    ),
    # ---- empty
    "empty jsonl": (".jsonl", b"", Fails(None, "holds no rows: it is empty")),
    "empty json": (".json", b"", Fails(None, "holds no rows: it is empty")),
    "empty csv": (".csv", b"", Fails(None, "holds no rows: it is empty")),
    "only blank lines": (".jsonl", b"\n\n  \r\n\t\n", Fails(None, "holds no rows", "blank lines")),
    "only a BOM": (".jsonl", b"\xef\xbb\xbf\n", Fails(None, "holds no rows")),
    "empty array": (".json", b" [ ] \n", Fails(None, "holds no rows: the array is empty")),
    "csv header only": (".csv", b'"a","b"\n', Fails(None, "holds no rows: only a header")),
    "csv with a short row": (
        ".csv",
        b'"a","b"\n1,2\n3\n',
        Fails(3, "expected 2 fields (as in the header), found 1"),
    ),
    # ---- BOM, CRLF, blank lines
    "BOM before JSON Lines": (
        ".jsonl",
        b"\xef\xbb\xbf" + GOOD,
        Loads([{"id": "a", "x": 1}, {"id": "b", "x": 2}]),
    ),
    "BOM before a JSON array": (
        ".json",
        b'\xef\xbb\xbf[{"id": "a"}]',
        Loads([{"id": "a"}]),
    ),
    "BOM before CSV": (".csv", b'\xef\xbb\xbf"id","x"\n"a",1\n', Loads([{"id": "a", "x": 1}])),
    "CRLF JSON Lines": (
        ".jsonl",
        GOOD.replace(b"\n", b"\r\n"),
        Loads([{"id": "a", "x": 1}, {"id": "b", "x": 2}]),
    ),
    "CRLF CSV with CRLF inside a value": (
        ".csv",
        b'"id","x"\r\n"a\r\nb",1\r\n"c",2\r\n',
        Loads([{"id": "a\r\nb", "x": 1}, {"id": "c", "x": 2}]),
    ),
    "blank lines between records": (
        ".jsonl",
        b'\n{"x": 1}\n\n\n  \n{"x": 2}\n\n',
        Loads([{"x": 1}, {"x": 2}]),
    ),
    "no newline at the end": (".jsonl", b'{"x": 1}\n{"x": 2}', Loads([{"x": 1}, {"x": 2}])),
    "date-like text stays text": (
        ".jsonl",
        jl({"t": "2024-01-02"}, {"t": "2024-01-02 03:04:05"}),
        Loads([{"t": "2024-01-02"}, {"t": "2024-01-02 03:04:05"}]),
    ),
}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (a != a and b != b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def check(path: Path, expected: Loads | Fails) -> None:
    if isinstance(expected, Loads):
        rows = load_pool(path).to_list()
        assert _same(rows, expected.rows), rows
        return
    with pytest.raises(PoolFormatError) as info:
        load_pool(path)
    err = info.value
    text = str(err)
    assert err.path == str(path) and text.startswith(str(path))
    assert err.lineno == expected.lineno, text
    if expected.lineno is not None:
        assert text.startswith(f"{path}: line {expected.lineno}: "), text
    for word in expected.words:
        assert word in text, text
    if expected.offset is not None:
        assert err.offset == expected.offset


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_file(tmp_path: Path, case: str) -> None:
    suffix, data, expected = CASES[case]
    path = tmp_path / f"pool{suffix}"
    path.write_bytes(data)
    check(path, expected)


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_file_in_small_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """The same with every line parsed in a piece of its own (pieces of 8 bytes)."""
    monkeypatch.setattr(hio, "CHUNK_BYTES", 8)
    suffix, data, expected = CASES[case]
    path = tmp_path / f"pool{suffix}"
    path.write_bytes(data)
    check(path, expected)


# --------------------------------------------------------------------------------------
# large and long


def test_huge_line(tmp_path: Path) -> None:
    """A 24 MB line: longer than a parsing piece and than pyarrow's block."""
    big = "\u00e9" * (12 << 20)
    path = tmp_path / "pool.jsonl"
    path.write_bytes(jl({"id": "a", "text": "short"}, {"id": "b", "text": big}, {"id": "c"}))
    ds = load_pool(path)
    assert ds["id"][:] == ["a", "b", "c"]
    assert ds[1]["text"] == big and ds[2]["text"] is None


def test_huge_csv_field(tmp_path: Path) -> None:
    big = "x\n" * (10 << 20)
    path = tmp_path / "pool.csv"
    path.write_text(f'"id","text"\n"a","{big}"\n"b","y"\n', encoding="utf-8")
    ds = load_pool(path)
    assert ds["id"][:] == ["a", "b"] and ds[0]["text"] == big


def _pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: list[bytes]) -> Path:
    monkeypatch.setattr(hio, "CHUNK_BYTES", 64)
    path = tmp_path / "pool.jsonl"
    path.write_bytes(b"".join(lines))
    return path


def test_type_conflict_across_pieces_string_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Text in the first rows and a number much later: an error, never the number as text."""
    lines = [jl({"id": i, "s": "high"}) for i in range(50)] + [jl({"id": 50, "s": 1.5})]
    with pytest.raises(PoolFormatError) as info:
        load_pool(_pieces(tmp_path, monkeypatch, lines))
    assert info.value.lineno == 51 and info.value.field == "s"
    assert "field 's' is a number (1.5) but a string in line 1" in str(info.value)


def test_type_conflict_across_pieces_number_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [jl({"id": i, "s": i / 3}) for i in range(50)] + [jl({"id": 50, "s": "x"})]
    with pytest.raises(PoolFormatError, match=r"line 51: field 's' is a string \('x'\)"):
        load_pool(_pieces(tmp_path, monkeypatch, lines))


def test_types_widen_across_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Null first, then text; integers, then a float; a key that appears late: all load."""
    rows = [{"id": i, "s": None, "n": i, "m": {"a": i}} for i in range(40)]
    rows.append({"id": 40, "s": "x", "n": 0.828462899430404, "m": {"a": 1, "b": [1.5]}, "z": 1})
    ds = load_pool(_pieces(tmp_path, monkeypatch, [jl(r) for r in rows]))
    want = [
        {
            "id": r["id"],
            "s": r["s"],
            "n": float(r["n"]),
            "m": {"a": r["m"]["a"], "b": r["m"].get("b")},
            "z": r.get("z"),
        }
        for r in rows
    ]
    assert _same(ds.to_list(), want)
    assert str(ds.features["n"]) == "Value('float64')"


def test_bad_line_far_into_a_large_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Line and byte offset are counted across pieces."""
    monkeypatch.setattr(hio, "CHUNK_BYTES", 1000)
    good = jl({"id": "aaaaaaaaaa"})  # 21 bytes
    path = tmp_path / "pool.jsonl"
    path.write_bytes(good * 5000 + b'{"id": "\xff"}\n' + good * 10)
    with pytest.raises(PoolFormatError) as info:
        load_pool(path)
    assert info.value.lineno == 5001
    assert len(good) == 21 and info.value.offset == 21 * 5000 + 8
    assert f"byte offset {21 * 5000 + 8}" in str(info.value)
