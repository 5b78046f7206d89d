"""The MIG authors' annotation struct as the ``labels`` / ``score`` columns MIG selects on.

:class:`MIGAnnotations` reads the InsTag tags and the DEITA per-turn quality/complexity scores of
the authors' annotated pools. Every malformed value raises :class:`ValueError` naming the row and
the field; rows are never removed, and labels removed by a vocabulary filter are counted in a
``labels_dropped`` column.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal

from hf_mig.data.columns import (
    LABELS_ARROW_TYPE,
    batch_rows,
    is_sequence,
    short_repr,
    string_list_column,
    type_name,
)

__all__ = ["LABELS_ARROW_TYPE", "MIGAnnotations"]


def _resolve_field(batch: Mapping[str, Sequence[Any]], field: str) -> tuple[str, list[str]]:
    """Split a dotted field into (column in the batch, keys to walk inside each value).

    A column whose name is the whole dotted path (as produced by ``Dataset.flatten()``) wins
    over walking nested structs.
    """
    if field in batch:
        return field, []
    parts = field.split(".")
    for k in range(len(parts) - 1, 0, -1):
        column = ".".join(parts[:k])
        if column in batch:
            return column, parts[k:]
    raise ValueError(
        f"field {field!r}: missing; no column {parts[0]!r} (or {field!r}) among the batch "
        f"columns {list(batch.keys())}"
    )


def _get(
    batch: Mapping[str, Sequence[Any]], located: tuple[str, list[str]], i: int, row: int, field: str
) -> Any:
    column, keys = located
    value = batch[column][i]
    walked = column
    for key in keys:
        if not isinstance(value, Mapping):
            raise ValueError(
                f"row {row}, field {field!r}: missing; {walked!r} is {type_name(value)}, "
                f"not a struct with key {key!r}"
            )
        if key not in value:
            raise ValueError(f"row {row}, field {field!r}: missing; no key {key!r} in {walked!r}")
        value = value[key]
        walked = f"{walked}.{key}"
    if value is None:
        raise ValueError(f"row {row}, field {field!r}: missing (null)")
    return value


def _scores(value: Any, row: int, field: str) -> list[float]:
    if not is_sequence(value):
        raise ValueError(
            f"row {row}, field {field!r}: expected a list of per-turn scores, "
            f"got {type_name(value)}"
        )
    if len(value) == 0:
        raise ValueError(
            f"row {row}, field {field!r}: expected at least one per-turn score, got an empty list"
        )
    out: list[float] = []
    for j, x in enumerate(value):
        if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(float(x)):
            raise ValueError(
                f"row {row}, field {field!r}[{j}]: expected a finite number, got {short_repr(x)}"
            )
        out.append(float(x))
    return out


class MIGAnnotations:
    """Batched map function: the authors' annotation struct -> ``labels`` / ``score``.

    Use as ``ds.map(MIGAnnotations(vocab), batched=True, with_indices=True)``. Each call
    returns three columns, one value per input row:

    * ``labels`` (``list[str]``): the tags at ``labels_field`` in their order, repeats kept,
      filtered to ``vocabulary`` when one is given: the authors' ``labels`` of a record. A
      repeated tag counts once in MIG's information but every occurrence counts in the
      ``norm=True`` divisor, as in the reference sampler. An empty tag list gives ``[]``.
    * ``labels_dropped`` (``int``): how many tags (occurrences) the vocabulary filter removed
      from that row (0 without a vocabulary), so that filtering never loses labels silently:
      ``len(labels) + labels_dropped`` is the length of the row's tag list.
    * ``score`` (``float``): ``mean`` (default, as in the released MIG code) or ``sum`` (as in
      the original DEITA) over turns ``j`` of ``quality[j] * complexity[j]``.

    ``labels`` is returned as a ``list`` subclass typed :data:`LABELS_ARROW_TYPE` for Arrow, so
    a first batch whose labels are all filtered out does not fix the column to ``list<null>``.

    Fields are dotted paths into nested structs (``"annotation.deita.quality_scores"``); a
    column literally named by the whole path (as ``Dataset.flatten()`` makes) also works.

    Raises :class:`ValueError` naming the row and the field for: a missing or null field, a
    tag that is not a string, a score list that is empty, not a list, holds a non-number or a
    NaN/infinity, or whose length differs between quality and complexity.

    Instances pickle (and so hash with ``datasets.fingerprint.Hasher``) by their configuration
    and :attr:`output_version` only; the vocabulary is kept as a sorted tuple, so two instances
    with the same configuration get the same fingerprint and ``Dataset.map`` caching works.
    """

    def __init__(
        self,
        vocabulary: Collection[str] | None = None,
        reduce: Literal["mean", "sum"] = "mean",
        labels_field: str = "annotation.instag.content",
        quality_field: str = "annotation.deita.quality_scores",
        complexity_field: str = "annotation.deita.complexity_scores",
    ) -> None:
        if reduce not in ("mean", "sum"):
            raise ValueError(f"reduce: expected 'mean' or 'sum', got {reduce!r}")
        for name, value in (
            ("labels_field", labels_field),
            ("quality_field", quality_field),
            ("complexity_field", complexity_field),
        ):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name}: expected a non-empty string, got {value!r}")
        vocab: tuple[str, ...] | None = None
        if vocabulary is not None:
            if isinstance(vocabulary, (str, bytes)):
                raise TypeError("vocabulary: expected a collection of labels, got a single string")
            items = list(vocabulary)
            for pos, label in enumerate(items):
                if not isinstance(label, str):
                    raise TypeError(
                        f"vocabulary[{pos}]: expected a string, got {type_name(label)}"
                    )
            if not items:
                raise ValueError("vocabulary is empty; pass vocabulary=None to keep every label")
            vocab = tuple(sorted(set(items)))
        self.vocabulary = vocab
        self.reduce = reduce
        self.labels_field = labels_field
        self.quality_field = quality_field
        self.complexity_field = complexity_field
        self._lookup = frozenset(vocab) if vocab is not None else None

    #: Changes whenever the columns computed from the same configuration change, so that
    #: ``Dataset.map`` caches written by an earlier version are not reused.
    output_version = 2

    # pickling / fingerprinting: configuration (and output version) only, deterministic order
    def __getstate__(self) -> dict[str, Any]:
        return {
            "output_version": self.output_version,
            "vocabulary": self.vocabulary,
            "reduce": self.reduce,
            "labels_field": self.labels_field,
            "quality_field": self.quality_field,
            "complexity_field": self.complexity_field,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state.pop("output_version", None)
        self.__dict__.update(state)
        vocab = state["vocabulary"]
        self._lookup = frozenset(vocab) if vocab is not None else None

    def __repr__(self) -> str:
        vocab = "None" if self.vocabulary is None else f"<{len(self.vocabulary)} labels>"
        return (
            f"{type(self).__name__}(vocabulary={vocab}, reduce={self.reduce!r}, "
            f"labels_field={self.labels_field!r}, quality_field={self.quality_field!r}, "
            f"complexity_field={self.complexity_field!r})"
        )

    def _labels(self, value: Any, row: int) -> tuple[list[str], int]:
        field = self.labels_field
        if not is_sequence(value):
            raise ValueError(
                f"row {row}, field {field!r}: expected a list of labels, got {type_name(value)}"
            )
        tags: list[str] = []
        for j, label in enumerate(value):
            if not isinstance(label, str):
                raise ValueError(
                    f"row {row}, field {field!r}[{j}]: expected a string, got {short_repr(label)}"
                )
            tags.append(label)
        if self._lookup is None:
            return tags, 0
        kept = [label for label in tags if label in self._lookup]
        return kept, len(tags) - len(kept)

    def __call__(self, batch: dict[str, list], indices: list[int] | None = None) -> dict[str, list]:
        """Compute ``labels``, ``labels_dropped`` and ``score`` for one batch (see the class)."""
        rows = batch_rows(batch, indices)
        if not rows:
            return {"labels": string_list_column([]), "labels_dropped": [], "score": []}
        at_labels = _resolve_field(batch, self.labels_field)
        at_quality = _resolve_field(batch, self.quality_field)
        at_complexity = _resolve_field(batch, self.complexity_field)
        labels: list[list[str]] = []
        dropped: list[int] = []
        scores: list[float] = []
        for i, row in enumerate(rows):
            kept, n_dropped = self._labels(_get(batch, at_labels, i, row, self.labels_field), row)
            quality = _scores(
                _get(batch, at_quality, i, row, self.quality_field), row, self.quality_field
            )
            complexity = _scores(
                _get(batch, at_complexity, i, row, self.complexity_field),
                row,
                self.complexity_field,
            )
            if len(quality) != len(complexity):
                raise ValueError(
                    f"row {row}, fields {self.quality_field!r} and {self.complexity_field!r}: "
                    f"expected per-turn lists of the same length, got {len(quality)} and "
                    f"{len(complexity)}"
                )
            total = math.fsum(q * c for q, c in zip(quality, complexity, strict=True))
            labels.append(kept)
            dropped.append(n_dropped)
            scores.append(total / len(quality) if self.reduce == "mean" else total)
        return {"labels": string_list_column(labels), "labels_dropped": dropped, "score": scores}
