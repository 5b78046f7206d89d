"""ZIP: greedy selection of a subset whose text compresses badly (Yin et al., 2024).

"Entropy Law: The Story Behind Data Compression and LLM Performance" (arXiv 2407.06645) finds
that a model trained on a subset does better when the subset's *compression ratio* is low
(little redundancy). ZIP selects greedily in rounds, with three stages per round:

1. **global filter**: the ``k1`` rows with the lowest stored ratio. Initially a row's stored
   ratio is its own compression ratio.
2. **conditional ratio**: for each of them, the ratio of (all text selected so far + the row);
   these values replace the stored ones, and the ``k2`` lowest go on to stage 3. All ``k2``
   leave the candidate pool (their stored value becomes "used").
3. **local greedy**: starting from an empty text, ``k3`` times take the candidate whose
   addition gives the lowest ratio of (text taken in this stage + candidate).

The ``k3`` rows of stage 3 join the selection, in the order taken; rounds repeat until ``k``.

**Compression ratio** = uncompressed bytes / zlib-compressed bytes (``zlib.compress`` at
``level``, default 9), so *higher* means more redundant; ZIP keeps the *lowest*.

**Text**: a row's conversation rendered as one ``"{role}: {content}"`` line per message, joined
by newlines, plus a trailing newline, UTF-8 encoded; a set's text is its rows' texts
concatenated in selection order. (The original script compresses Python's ``str()`` of the
list of records, so field names and metadata are compressed too.)

Speed: the compressor state of the selected text is kept (``zlib.compressobj``) and copied for
each candidate, so a candidate costs one compression of its own bytes, never a recompression of
the whole selection; the result is byte-for-byte the length ``zlib.compress`` gives for the
concatenation. Differences from the original script, all at the edges: ties go to the lowest
row index (``torch.topk`` leaves them unspecified); the last round takes only the rows still
needed (the script overshoots to a multiple of ``k3``); when fewer unused rows than ``k1``
remain, used-but-not-selected rows come back as candidates while selected rows never do.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset
from tqdm.auto import tqdm

from hf_mig.core.encoding import arrow_columns
from hf_mig.data.formats import SHAPES, detect_shape, to_messages
from hf_mig.selectors.base import BaseSelector, check_int, register_selector

logger = logging.getLogger(__name__)

_LARGE = pa.large_string()
#: Stored ratio of a stage-2 candidate that stage 3 did not take (the script's 1,000,000).
_USED = float(np.finfo(np.float64).max)


def _first_null_row(arr: pa.Array) -> int:
    return int(np.flatnonzero(np.asarray(arr.is_null()))[0])


def _render_turns(arr: pa.Array, column: str) -> pa.Array:
    """``list<struct<role, content>>`` -> one ``"role: content"``-lines string per row."""
    if arr.null_count:
        row = _first_null_row(arr)
        raise ValueError(f"row {row}, field {column!r}: expected a list of turns, got None")
    flat = pc.list_flatten(arr)
    parents = np.asarray(pc.list_parent_indices(arr))
    parts = []
    for field in ("role", "content"):
        part = pc.struct_field(flat, field)
        if part.null_count:
            pos = _first_null_row(part)
            turn = pos - int(np.searchsorted(parents, parents[pos]))
            raise ValueError(
                f"row {int(parents[pos])}, field {column!r}[{turn}][{field!r}]: expected a "
                "string, got None"
            )
        parts.append(part.cast(_LARGE))
    lines = pc.binary_join_element_wise(parts[0], parts[1], pa.scalar(": ", _LARGE))
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    grouped = pa.LargeListArray.from_arrays(pa.array(offsets), lines)
    return pc.binary_join(grouped, pa.scalar("\n", _LARGE))


def _is_turn_list(kind: pa.DataType) -> bool:
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        return False
    value = kind.value_type
    if not pa.types.is_struct(value):
        return False
    names = {value.field(i).name: value.field(i).type for i in range(value.num_fields)}
    return all(
        name in names and (pa.types.is_string(names[name]) or pa.types.is_large_string(names[name]))
        for name in ("role", "content")
    )


def conversation_texts(dataset: Dataset, text_column: str | None = None) -> pa.Array:
    """One string per row: the text ZIP compresses (without the trailing newline).

    ``text_column`` may be a string column (used as is) or a ``list<struct<role, content>>``
    column (rendered as ``"role: content"`` lines). Without it, a ``messages`` or ``dialogs``
    column of that type is rendered directly (through Arrow); other shapes (ShareGPT
    ``conversations``, Alpaca ``instruction``/``input``/``output``) are first normalised with
    :func:`hf_mig.to_messages`. Errors name the row and the field.
    """
    if text_column is not None:
        col = arrow_columns(dataset, [text_column]).column(text_column)
        arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            if arr.null_count:
                row = _first_null_row(arr)
                raise ValueError(f"row {row}, field {text_column!r}: expected a string, got None")
            return arr.cast(_LARGE)
        if _is_turn_list(arr.type):
            return _render_turns(arr, text_column)
        raise ValueError(
            f"text_column {text_column!r} must hold strings or lists of {{role, content}} turns, "
            f"got type {arr.type}"
        )
    for name in ("messages", "dialogs"):
        if name in dataset.column_names:
            kind = dataset.features.arrow_schema.field(name).type
            if _is_turn_list(kind):
                col = arrow_columns(dataset, [name]).column(name)
                arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
                return _render_turns(arr, name)
    try:
        shape = detect_shape(dataset.column_names)
    except ValueError as err:
        raise ValueError(f"ZIP needs conversation text: {err}; or pass text_column=") from None
    wanted = set(SHAPES[shape]) | {"input", "history", "system"}
    columns = [c for c in dataset.column_names if c in wanted]
    converted = dataset.select_columns(columns).map(
        to_messages,
        batched=True,
        with_indices=True,
        fn_kwargs={"shape": shape},
        remove_columns=columns,
        desc="ZIP: reading conversations",
    )
    col = arrow_columns(converted, ["messages"]).column("messages")
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return _render_turns(arr, "messages")


class _Units:
    """Each row's bytes (its text plus a newline), sliced from one Arrow buffer."""

    def __init__(self, texts: pa.Array):
        units = pc.binary_join_element_wise(texts, pa.scalar("", _LARGE), pa.scalar("\n", _LARGE))
        if isinstance(units, pa.ChunkedArray):
            units = units.combine_chunks()
        self._keep = units
        n = len(units)
        _, offsets, data = units.buffers()
        self.offsets = np.frombuffer(offsets, dtype=np.int64)[units.offset : units.offset + n + 1]
        self.data = memoryview(data)
        self.lengths = np.diff(self.offsets)

    def __len__(self) -> int:
        return int(self.lengths.size)

    def __getitem__(self, row: int) -> memoryview:
        return self.data[int(self.offsets[row]) : int(self.offsets[row + 1])]


class _Stream:
    """A zlib stream over a growing text; ``ratio_with`` prices one more piece without
    recompressing the text already fed."""

    def __init__(self, level: int):
        self.level = level
        self.obj = zlib.compressobj(level)
        self.bytes_in = 0
        self.bytes_out = 0

    def add(self, piece: memoryview) -> None:
        self.bytes_out += len(self.obj.compress(piece))
        self.bytes_in += len(piece)

    def ratio_with(self, piece: memoryview) -> float:
        if self.bytes_in == 0:
            return len(piece) / len(zlib.compress(piece, self.level))
        obj = self.obj.copy()
        out = self.bytes_out + len(obj.compress(piece)) + len(obj.flush())
        return (self.bytes_in + len(piece)) / out

    def ratio(self) -> float:
        """Compression ratio of everything fed so far (NaN when empty)."""
        if self.bytes_in == 0:
            return float("nan")
        return self.bytes_in / (self.bytes_out + len(self.obj.copy().flush()))


def _smallest(values: np.ndarray, rows: np.ndarray | None, m: int) -> np.ndarray:
    """The ``m`` entries of ``rows`` (default: all) with the smallest ``values[row]``, ordered
    by (value, row index); ties go to the lowest index."""
    if rows is None:
        rows = np.arange(values.size, dtype=np.int64)
    if m < rows.size:
        vals = values[rows]
        cut = np.partition(vals, m - 1)[m - 1]
        less = rows[vals < cut]
        equal = rows[vals == cut]
        rows = np.concatenate([less, np.sort(equal)[: m - less.size]])
    return rows[np.lexsort((rows, values[rows]))]


@register_selector("zip")
@dataclass(repr=False, eq=False, kw_only=True)
class ZIPSelector(BaseSelector):
    """ZIP (Entropy Law): a subset with a low zlib compression ratio, chosen greedily.

    Parameters
    ----------
    k: number of rows to select.
    k1: rows passed by the global filter each round (default 10,000, as the original).
    k2: rows kept by the conditional-ratio stage each round (default 200).
    k3: rows taken by the local greedy each round (default 100). Needs ``k1 >= k2 >= k3 >= 1``.
    text_column: where the text is: a string column or a list of ``{role, content}`` turns.
        Default: the conversation in ``messages`` / ``dialogs`` / ``conversations`` / Alpaca
        columns (see :func:`conversation_texts`).
    level: zlib compression level (1-9, default 9 as the original).
    n_jobs: threads that compress candidates in parallel (zlib releases the GIL); picks do not
        depend on it.
    progress: show progress bars (``None``: only for large runs).

    See the module docstring for the algorithm, the text and the ratio definitions. Each round
    compresses ``k1 + k2 + (k2 - 1) + ... + (k2 - k3 + 1)`` candidates, each against the
    current state, so the cost grows with ``k / k3 * (k1 + k2 * k3)`` times the mean text size.

    Fitted attributes: ``compression_ratios_`` (each row's own ratio), ``stored_ratios_`` (the
    stage-1 values at the end: own or last conditional ratio; float max for used rows, inf for
    selected ones), ``selection_ratio_`` (ratio of the selected text), ``ratio_trace_`` (that
    ratio after each round), ``rounds_``, ``compressions_`` (candidates compressed per phase:
    ``own``, ``stage2``, ``stage3``) and their total ``n_compressions_``, ``timings_`` (seconds
    per phase: ``texts_s``, ``own_ratios_s``, ``stage12_s``, ``stage3_s``), ``n_empty_`` (rows
    whose text is empty).
    """

    k1: int = 10_000
    k2: int = 200
    k3: int = 100
    text_column: str | None = None
    level: int = 9
    n_jobs: int = 1
    progress: bool | None = None

    def _validate(self) -> None:
        for name in ("k1", "k2", "k3", "level", "n_jobs"):
            check_int(name, getattr(self, name))
        if not self.k1 >= self.k2 >= self.k3:
            raise ValueError(
                f"ZIP needs k1 >= k2 >= k3, got k1={self.k1}, k2={self.k2}, k3={self.k3}"
            )
        if self.level > 9:
            raise ValueError(f"level must be in 1..9, got {self.level}")

    # ------------------------------------------------------------------ pricing
    def _map(self, pool: ThreadPoolExecutor | None, fn: Callable, rows: np.ndarray) -> np.ndarray:
        """``fn`` over chunks of ``rows`` (in threads when a pool is given), concatenated."""
        if pool is None or rows.size < 32:
            return fn(rows)
        chunks = np.array_split(rows, self.n_jobs)
        return np.concatenate(list(pool.map(fn, chunks)))

    def _own_ratios(self, units: _Units, pool: ThreadPoolExecutor | None, show: bool) -> np.ndarray:
        level = self.level

        def price(rows: np.ndarray) -> np.ndarray:
            out = np.empty(rows.size, dtype=np.float64)
            for j, r in enumerate(rows):
                piece = units[r]
                out[j] = len(piece) / len(zlib.compress(piece, level))
            return out

        n = len(units)
        ratios = np.empty(n, dtype=np.float64)
        step = 20_000
        with tqdm(total=n, desc="ZIP: own ratios", unit="row", disable=not show) as bar:
            for start in range(0, n, step):
                rows = np.arange(start, min(n, start + step), dtype=np.int64)
                ratios[rows] = self._map(pool, price, rows)
                bar.update(rows.size)
        return ratios

    def _ratios_with(
        self, stream: _Stream, units: _Units, rows: np.ndarray, pool: ThreadPoolExecutor | None
    ) -> np.ndarray:
        def price(chunk: np.ndarray) -> np.ndarray:
            return np.array([stream.ratio_with(units[r]) for r in chunk], dtype=np.float64)

        return self._map(pool, price, rows)

    # ------------------------------------------------------------------ work
    def select_indices(self, dataset: Dataset) -> np.ndarray:
        """Row indices of the ``k`` picks, in selection order."""
        k = self._check_k(dataset)
        self._validate()
        n = len(dataset)
        show = self.progress if self.progress is not None else (n > 200_000 or k > 2_000)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        units = _Units(conversation_texts(dataset, self.text_column))
        timings["texts_s"] = time.perf_counter() - t0
        n_empty = int((units.lengths == 1).sum())
        if n_empty:
            logger.warning(
                "ZIP: %d rows have an empty conversation text; their compression ratio is tiny, "
                "so ZIP favours them. Filter them out first if that is not wanted.",
                n_empty,
            )
        pool = ThreadPoolExecutor(self.n_jobs) if self.n_jobs > 1 else None
        try:
            t0 = time.perf_counter()
            own = self._own_ratios(units, pool, show and n > 50_000)
            timings["own_ratios_s"] = time.perf_counter() - t0
            picks, trace, counts = self._rounds(units, own, k, pool, show, timings)
        finally:
            if pool is not None:
                pool.shutdown()
        self.compression_ratios_ = own
        self.ratio_trace_ = np.asarray(trace, dtype=np.float64)
        self.selection_ratio_ = float(trace[-1])
        self.rounds_ = len(trace)
        self.compressions_ = {"own": n, **counts}
        self.n_compressions_ = n + sum(counts.values())
        self.timings_ = timings
        self.n_empty_ = n_empty
        return picks

    def _rounds(
        self,
        units: _Units,
        own: np.ndarray,
        k: int,
        pool: ThreadPoolExecutor | None,
        show: bool,
        timings: dict[str, float],
    ) -> tuple[np.ndarray, list[float], dict[str, int]]:
        n = len(units)
        stored = own.copy()
        selected = np.zeros(n, dtype=bool)
        picks: list[int] = []
        trace: list[float] = []
        chosen = _Stream(self.level)
        n_stage2 = n_stage3 = 0
        t12 = t3 = 0.0
        with tqdm(total=k, desc="ZIP", unit="pick", disable=not show) as bar:
            while len(picks) < k:
                # stage 1: the k1 rows with the lowest stored ratio (selected rows never)
                t0 = time.perf_counter()
                left = np.flatnonzero(~selected) if picks else None
                n_left = n - len(picks)
                cand = _smallest(stored, left, min(self.k1, n_left))
                # stage 2: ratio of (selection + row); keep the k2 lowest
                cond = self._ratios_with(chosen, units, cand, pool)
                n_stage2 += cand.size
                stored[cand] = cond
                order = np.lexsort((cand, cond))[: min(self.k2, cand.size)]
                short = cand[order]
                stored[short] = _USED
                t1 = time.perf_counter()
                # stage 3: greedy on the ratio of (rows taken this round + row)
                local = _Stream(self.level)
                rest = np.sort(short)
                for _ in range(min(self.k3, k - len(picks), rest.size)):
                    ratios = self._ratios_with(local, units, rest, pool)
                    n_stage3 += rest.size
                    best = int(np.argmin(ratios))  # rest is sorted: first minimum = lowest row
                    row = int(rest[best])
                    rest = np.delete(rest, best)
                    piece = units[row]
                    local.add(piece)
                    chosen.add(piece)
                    selected[row] = True
                    stored[row] = np.inf
                    picks.append(row)
                    bar.update(1)
                t12 += t1 - t0
                t3 += time.perf_counter() - t1
                trace.append(chosen.ratio())
        timings["stage12_s"] = t12
        timings["stage3_s"] = t3
        self.stored_ratios_ = stored
        counts = {"stage2": n_stage2, "stage3": n_stage3}
        return np.asarray(picks, dtype=np.int64), trace, counts
