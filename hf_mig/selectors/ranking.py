"""Top-k by a numeric column (``score``) and top IFD within ``[0, 1]`` (``ifd``).

``score`` ranks rows by any numeric column: a DEITA score, a reward, a length. ``ifd`` is the
Cherry LLM / Superfiltering baseline: rows ranked by their Instruction-Following Difficulty
``IFD = loss(response | instruction) / loss(response)``, keeping only ``IFD <= 1`` (above 1 the
instruction makes the response *harder* to predict, so the pair is treated as misaligned).

Columns may be nested: ``"ifd_score.content"`` reads field ``content`` of the struct column
``ifd_score`` (the MIG authors' pools store IFD that way).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from hf_mig.core.encoding import (
    DegeneratePoolError,
    PoolValidationError,
    arrow_columns,
    non_numeric_error,
)
from hf_mig.selectors.base import BaseSelector, check_bool, check_choice, register_selector

logger = logging.getLogger(__name__)

NanPolicy = Literal["raise", "last"]
_NAN_POLICIES = ("raise", "last")


def resolve_column_path(dataset: Dataset, column: str) -> tuple[str, list[str]]:
    """Split ``column`` into (top-level column, struct fields to walk).

    A column whose full name exists is used as is, so a flat column named ``"a.b"`` wins over
    the struct path. Raises ``ValueError`` naming the column and listing the pool's columns.
    """
    names = dataset.column_names
    if column in names:
        return column, []
    top, _, rest = column.partition(".")
    if rest and top in names:
        return top, rest.split(".")
    raise ValueError(f"column {column!r} not found; the pool has columns {names}")


def read_numeric_column(dataset: Dataset, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a numeric (possibly nested) column through Arrow.

    Returns ``(values, missing)``: ``values`` float64 of length ``len(dataset)`` with NaN where a
    row has no value, and ``missing``, a bool mask of the rows whose value is null or NaN (a
    null struct along the path counts as null). Integer and boolean columns are converted to
    float64. Raises ``ValueError`` when the column (or a field on the path) does not exist or
    does not hold numbers (naming the first row that holds something else).
    """
    top, path = resolve_column_path(dataset, column)
    arr = arrow_columns(dataset, [top]).column(top)
    arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    walked = top
    for part in path:
        if not pa.types.is_struct(arr.type):
            raise ValueError(
                f"column {column!r}: {walked!r} has type {arr.type}, not a struct with a "
                f"field {part!r}"
            )
        fields = [arr.type.field(i).name for i in range(arr.type.num_fields)]
        if part not in fields:
            raise ValueError(
                f"column {column!r}: struct {walked!r} has no field {part!r} (fields: {fields})"
            )
        arr = pc.struct_field(arr, part)  # a null struct gives a null field
        walked = f"{walked}.{part}"
    kind = arr.type
    if pa.types.is_null(kind):  # every row is null
        return np.full(len(arr), np.nan), np.ones(len(arr), dtype=bool)
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        raise PoolValidationError(non_numeric_error(arr, column, "values to rank by"))
    values = arr.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64, copy=True)
    missing = np.isnan(values)
    if arr.null_count:
        nulls = np.asarray(arr.is_null())
        values[nulls] = np.nan
        missing |= nulls
    return values, missing


def _check_bound(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number or None, got {type(value).__name__}: {value!r}")
    if np.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    return float(value)


@register_selector("score")
@dataclass(repr=False, eq=False, kw_only=True)
class ScoreSelector(BaseSelector):
    """The ``k`` rows with the highest (or lowest) value of a numeric column.

    Parameters
    ----------
    k: number of rows to select.
    column: the column to rank by; a dotted path (``"ifd_score.content"``) reads a struct
        field. Defaults to ``score_column``.
    score_column: the same setting under the name the CLI's ``--score-column`` fills; used only
        when ``column`` is not given (default ``"score"``).
    descending: rank from the highest value (default) or, when False, from the lowest.
    min_value, max_value: keep only rows with ``min_value <= value <= max_value`` (inclusive;
        ``None`` = unbounded). Rows outside the range are never selected.
    nan: rows whose value is null or NaN. ``"raise"`` (default): a ``ValueError`` naming the
        first such row. ``"last"``: they rank after every row that has a value, in row order,
        and are not subject to the range filter.

    Ties go to the lowest row index (a tie at the cut is logged as a warning). Values may be
    negative (rewards) or infinite. Raises ``ValueError`` when fewer than ``k`` rows qualify,
    saying how many do and why the others do not; ``k`` above the pool size or ``k <= 0`` also
    raise. When ``k`` is below the pool size and every qualifying row has the same value (or
    no row has a value), the ranking cannot choose and would return the first ``k`` rows in
    file order: :class:`hf_mig.core.encoding.DegeneratePoolError` (a ``ValueError``) is raised.

    Fitted attributes (after ``select_indices``): ``column_`` (the column read), ``values_``
    (float64 per row, NaN where missing), ``n_missing_``, ``n_below_``, ``n_above_`` (rows
    outside the range), ``n_qualifying_`` (rows that could be selected), ``selected_values_``
    (values of the picks, in pick order; NaN for missing ones).
    """

    column: str | None = None
    score_column: str = "score"
    descending: bool = True
    min_value: float | None = None
    max_value: float | None = None
    nan: NanPolicy = "raise"

    # ------------------------------------------------------------------ helpers
    def _resolve_column(self, dataset: Dataset) -> str:
        column = self.column if self.column is not None else self.score_column
        if not isinstance(column, str) or not column:
            raise TypeError(f"column must be a non-empty string, got {column!r}")
        return column

    def _describe(self) -> str:
        return "a value"

    def _validate(self) -> tuple[float | None, float | None]:
        check_bool("descending", self.descending)
        check_choice("nan", self.nan, _NAN_POLICIES)
        lo = _check_bound("min_value", self.min_value)
        hi = _check_bound("max_value", self.max_value)
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"min_value ({lo}) is greater than max_value ({hi})")
        return lo, hi

    def _range_text(self, lo: float | None, hi: float | None) -> str:
        if lo is not None and hi is not None:
            return f"within [{lo:g}, {hi:g}]"
        if lo is not None:
            return f">= {lo:g}"
        if hi is not None:
            return f"<= {hi:g}"
        return "with a value"

    # ------------------------------------------------------------------ work
    def select_indices(self, dataset: Dataset) -> np.ndarray:
        """Row indices of the ``k`` picks, best first."""
        k = self._check_k(dataset)
        lo, hi = self._validate()
        column = self._resolve_column(dataset)
        values, missing = read_numeric_column(dataset, column)
        n = values.size
        n_missing = int(missing.sum())
        if n_missing and self.nan == "raise":
            row = int(np.flatnonzero(missing)[0])
            raise ValueError(
                f"row {row}: column {column!r} is null or NaN ({n_missing} rows affected); "
                "expected a number. Pass nan='last' to rank such rows last."
            )
        present = ~missing
        below = present & (values < lo) if lo is not None else np.zeros(n, dtype=bool)
        above = present & (values > hi) if hi is not None else np.zeros(n, dtype=bool)
        ok = present & ~below & ~above
        rows = np.flatnonzero(ok)
        key = -values[rows] if self.descending else values[rows]
        ranked = rows[np.argsort(key, kind="stable")]
        if self.nan == "last" and n_missing:
            ranked = np.concatenate([ranked, np.flatnonzero(missing)])
        self.column_ = column
        self.values_ = values
        self.n_missing_ = n_missing
        self.n_below_ = int(below.sum())
        self.n_above_ = int(above.sum())
        self.n_qualifying_ = int(ranked.size)
        if ranked.size < k:
            reasons = []
            if self.n_below_:
                reasons.append(f"{self.n_below_} below {lo:g}")
            if self.n_above_:
                reasons.append(f"{self.n_above_} above {hi:g}{self._above_note()}")
            if n_missing and self.nan != "last":
                reasons.append(f"{n_missing} null or NaN")
            raise ValueError(
                f"only {ranked.size} of {n} rows have {self._describe()} in column {column!r} "
                f"{self._range_text(lo, hi)} ({'; '.join(reasons)}), fewer than k = {k}. "
                "Lower k or widen the range."
            )
        self._check_not_degenerate(column, values, rows, ranked, k, (lo, hi))
        picks = ranked[:k].astype(np.int64)
        self.selected_values_ = values[picks]
        return picks

    def _check_not_degenerate(
        self,
        column: str,
        values: np.ndarray,
        rows: np.ndarray,
        ranked: np.ndarray,
        k: int,
        bounds: tuple[float | None, float | None],
    ) -> None:
        """Refuse a ranking that cannot choose (every candidate value equal, or no candidate),
        which would return the first ``k`` rows in file order; warn when a tie at the cut is
        broken by row order. ``rows``: the rows with a value in range; ``ranked``: the order."""
        if k >= values.size:
            return
        if rows.size == 0:
            raise DegeneratePoolError(
                f"no row has {self._describe()} in column {column!r} "
                f"{self._range_text(*bounds)}: every pick would be a row without one, in file "
                "order. Fix the column or rank by another one."
            )
        if rows.size <= k:
            return
        candidates = values[rows]
        first = candidates[0]
        if np.all(candidates == first):
            raise DegeneratePoolError(
                f"all {rows.size:,} rows that qualify have the same value {first:g} in column "
                f"{column!r}: the ranking cannot choose among them and would return the first "
                f"{k} rows in file order. Rank by a column that varies, or use method='random' "
                "for an unbiased sample."
            )
        cut = values[ranked[k - 1]]  # rows.size > k: the first k ranked rows have values
        tied = int(np.count_nonzero(candidates == cut))
        taken = int(np.count_nonzero(values[ranked[:k]] == cut))
        if tied > taken:
            logger.warning(
                "%s: %d rows share the value %g of column %r at the cut; %d of them are taken, "
                "the lowest row indices first",
                type(self).__name__,
                tied,
                cut,
                column,
                taken,
            )

    def _above_note(self) -> str:
        return ""


IFD_COLUMNS = ("ifd", "ifd_score.content")


@register_selector("ifd")
@dataclass(repr=False, eq=False, kw_only=True)
class IFDSelector(ScoreSelector):
    """Cherry LLM / Superfiltering: the ``k`` rows with the highest IFD within ``[0, 1]``.

    IFD (Instruction-Following Difficulty) is ``loss(response | instruction) / loss(response)``.
    Rows with ``IFD > 1`` are excluded, as in Cherry LLM's selection script: there the
    instruction does not help predict the response. ``IFD = 1`` is kept; negative values (not
    a valid IFD) are excluded by the lower bound 0.

    Parameters
    ----------
    k: number of rows to select.
    column: where IFD is. ``None`` (default) uses ``"ifd"`` when the pool has that column, else
        the MIG authors' ``"ifd_score.content"`` (field ``content`` of struct ``ifd_score``).
    min_value, max_value: the accepted range (default ``[0, 1]``, inclusive).
    nan: null or NaN IFD values: ``"raise"`` (default, naming the row) or ``"last"``.

    Ties go to the lowest row index (Cherry LLM's script takes the highest index among equal
    IFDs and returns its picks in row order; here picks come best first). When fewer than ``k``
    rows have an IFD in range, ``select_indices`` raises ``ValueError`` saying how many do and
    how many were above 1; there is no silent fill.

    Fitted attributes: those of :class:`ScoreSelector` (``n_above_`` = rows with IFD > 1).
    """

    #: Not options here: IFD is ranked from the highest value, read from ``column``.
    score_column: str = field(default="score", init=False)
    descending: bool = field(default=True, init=False)
    min_value: float | None = 0.0
    max_value: float | None = 1.0

    def _resolve_column(self, dataset: Dataset) -> str:
        if self.column is not None:
            return super()._resolve_column(dataset)
        for candidate in IFD_COLUMNS:
            try:
                resolve_column_path(dataset, candidate)
            except ValueError:
                continue
            return candidate
        raise ValueError(
            f"no IFD column found: expected {IFD_COLUMNS[0]!r} or the MIG authors' "
            f"{IFD_COLUMNS[1]!r}; the pool has columns {dataset.column_names}. "
            "Pass column=NAME (CLI: --option column=NAME)."
        )

    def _describe(self) -> str:
        return "an IFD"

    def _above_note(self) -> str:
        return ": IFD > 1 means the instruction does not help"
