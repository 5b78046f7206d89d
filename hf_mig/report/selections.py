"""Selections to report on: indices, ids, subsets and the files ``hf-mig select`` writes (with
the facts of their dataset cards)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from hf_mig.data.hub import FACTS_HEADING, card_path


# ---------------------------------------------------------------------------- selections
def detect_id_column(dataset: Dataset) -> str | None:
    """``"id"`` (or the first ``*_id``/``idx`` column) when the dataset has one, else ``None``."""
    for name in ("id", "idx", "uid", "sample_id", "example_id"):
        if name in dataset.column_names:
            return name
    return None


def _json(text: str, where: str) -> Any:
    """``json.loads(text)``; ``ValueError`` naming ``where`` and the place of the error."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{where}: invalid JSON ({err.msg} at line {err.lineno}, column {err.colno})"
        ) from err


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_positions(path: Path, data: Mapping[str, Any], pool_rows: int | None) -> np.ndarray:
    """Check and return the ``positions`` of a ``hf-mig select --indices-out`` file."""
    positions = data["positions"]
    if not isinstance(positions, list) or not all(_is_int(x) for x in positions):
        bad = positions
        if isinstance(positions, list):
            bad = next(x for x in positions if not _is_int(x))
        raise ValueError(
            f"selection {path}: 'positions' must be a list of integers (0-based row positions "
            f"in the pool); found {bad!r}"
        )
    if not positions:
        raise ValueError(f"selection {path}: 'positions' is empty; a selection needs rows")
    written = data.get("pool_rows")
    if not _is_int(written) or written < 1:
        raise ValueError(
            f"selection {path}: 'pool_rows' must be the number of rows of the pool the positions "
            f"were taken from (an integer >= 1, as 'hf-mig select --indices-out' writes it); "
            f"found {written!r}"
        )
    if pool_rows is not None and written != pool_rows:
        raise ValueError(
            f"selection {path} was written for a pool of {written:,} rows ('pool_rows'), but this "
            f"pool has {pool_rows:,} rows: the positions belong to another pool"
        )
    for i, x in enumerate(positions):
        if not 0 <= x < written:
            raise ValueError(
                f"selection {path}: position {x} (entry {i}) is out of range 0..{written - 1} "
                f"for a pool of {written:,} rows"
            )
    first: dict[int, int] = {}
    for i, x in enumerate(positions):
        if x in first:
            raise ValueError(
                f"selection {path}: position {x} is listed twice (entries {first[x]} and {i}); "
                "a selection holds each row once"
            )
        first[x] = i
    return np.asarray(positions, dtype=np.int64)


def read_selection_facts(path: str | Path) -> dict[str, Any] | None:
    """The facts of the dataset card ``hf-mig select`` wrote beside the selection ``path``
    (``path`` + ``.README.md``), or ``None`` when there is no card (``--no-card``, a file of ids
    or positions). A card whose facts block is missing or not JSON raises ``ValueError`` naming
    the card."""
    card = card_path(path)
    if not card.is_file():
        return None
    text = card.read_text(encoding="utf-8")
    _, found, rest = text.partition(FACTS_HEADING)
    block = rest.split("```json", 1)[-1].split("```", 1)[0] if found else ""
    where = f"dataset card {card}: the '{FACTS_HEADING[3:]}' block (what 'hf-mig select' writes)"
    facts = _json(block, where)
    if not isinstance(facts, dict) or not isinstance(facts.get("selection"), dict):
        raise ValueError(f"dataset card {card}: the selection facts hold no 'selection'")
    return facts


def read_selection_file(
    path: str | Path, pool_rows: int | None = None
) -> Dataset | list[str] | np.ndarray:
    """A selection on disk: a file of ids (``.txt``/``.ids``, one per line, or a JSON list), the
    row positions written by ``hf-mig select --indices-out`` (a JSON object with ``positions``
    and ``pool_rows``), or a selected subset in any format :func:`hf_mig.data.io.load_pool` reads
    (with an id column).

    A positions file is checked in full: ``positions`` a non-empty list of distinct integers in
    ``0..pool_rows - 1``, ``pool_rows`` the length of the pool they were taken from; with
    ``pool_rows`` given (the length of the pool at hand) a file written for a pool of another
    length is refused. Errors are ``ValueError`` naming the file.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"selection {p} not found")
    if p.is_file() and p.suffix.lower() in (".txt", ".ids", ".lst", ""):
        return [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if p.is_file() and p.suffix.lower() == ".json":
        text = p.read_text(encoding="utf-8").lstrip()
        if text.startswith(("[", "{")):
            data = _json(text, f"selection {p}")
            if isinstance(data, list) and all(not isinstance(x, dict) for x in data):
                return [str(x) for x in data]
            if isinstance(data, dict) and "positions" in data:
                return _read_positions(p, data, pool_rows)
    from hf_mig.data.io import load_pool

    return load_pool(p)


def resolve_selection(
    pool: Dataset, selection: Any, *, id_column: str | None = None, name: str = "selection"
) -> np.ndarray:
    """Row indices into ``pool`` (pick order kept) of ``selection``: indices, ids or a subset.

    Integers are taken as row indices; strings (or a ``Dataset``) are matched on ``id_column``
    (default: the pool's ``id`` column). Unknown ids, repeated rows and out-of-range indices raise
    ``ValueError`` naming the selection.
    """
    ids: list | None = None
    if isinstance(selection, Dataset):
        col = id_column or detect_id_column(selection)
        if col is None or col not in selection.column_names:
            raise ValueError(
                f"selection {name!r}: no id column to match with the pool "
                f"(columns: {selection.column_names}); pass id_column"
            )
        ids = selection[col]
    else:
        values = list(np.asarray(selection).tolist()) if selection is not None else []
        if values and all(isinstance(v, (int, np.integer)) for v in values):
            idx = np.asarray(values, dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= len(pool)):
                raise ValueError(f"selection {name!r}: row index out of range 0..{len(pool) - 1}")
        else:
            ids = [str(v) for v in values]
            idx = None
    if ids is not None:
        col = id_column or detect_id_column(pool)
        if col is None or col not in pool.column_names:
            raise ValueError(
                f"selection {name!r} is given by ids but the pool has no id column "
                f"(columns: {pool.column_names}); pass id_column"
            )
        where = {str(v): i for i, v in enumerate(pool[col])}
        missing = [v for v in ids if str(v) not in where]
        if missing:
            raise ValueError(
                f"selection {name!r}: {len(missing)} ids are not in the pool, e.g. {missing[:3]}"
            )
        idx = np.asarray([where[str(v)] for v in ids], dtype=np.int64)
    if len(np.unique(idx)) != len(idx):
        raise ValueError(f"selection {name!r} repeats rows")
    return idx
