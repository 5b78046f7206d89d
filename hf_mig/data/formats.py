"""Adapters from common instruction-tuning record shapes to what MIG consumes.

Two families of functions live here, both written for ``Dataset.map(..., batched=True,
with_indices=True)`` so that every error can name the dataset row it comes from:

* :func:`to_messages` turns OpenAI ``messages``, ShareGPT ``conversations``, Alpaca
  ``instruction``/``input``/``output`` and the MIG authors' ``dialogs`` into one column
  ``messages``: a list of ``{"role": "system" | "user" | "assistant", "content": str}``.
* :class:`MIGAnnotations` turns the authors' annotation struct (InsTag tags, DEITA per-turn
  quality/complexity scores) into the ``labels`` / ``score`` columns MIG selects on.

:func:`load_vocabulary` reads a label vocabulary (a JSON list or one label per line).

Every malformed value raises :class:`ValueError` with a message of the form
``row 17, field 'conversations'[3]['from']: expected ..., got ...``. Nothing is dropped or
repaired silently: rows are never removed, and labels removed by a vocabulary filter are
counted in a ``labels_dropped`` column.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

__all__ = [
    "LABELS_ARROW_TYPE",
    "MESSAGES_ARROW_TYPE",
    "ROLES",
    "SHAPES",
    "SHAREGPT_ROLES",
    "MIGAnnotations",
    "detect_shape",
    "load_vocabulary",
    "to_messages",
    "with_messages",
]

#: Roles allowed in the output (and in ``messages`` / ``dialogs`` input).
ROLES: tuple[str, ...] = ("system", "user", "assistant")

#: Record shapes understood by :func:`to_messages`, with the columns that identify each one.
SHAPES: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "conversations": ("conversations",),
    "alpaca": ("instruction", "output"),
    "dialogs": ("dialogs",),
}

#: ShareGPT ``from`` values (compared lower-cased) and the role each one maps to.
SHAREGPT_ROLES: dict[str, str] = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "system": "system",
}

Shape = Literal["auto", "messages", "conversations", "alpaca", "dialogs"]

#: Arrow type of the ``messages`` column made by :func:`to_messages`.
MESSAGES_ARROW_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
#: Arrow type of the ``labels`` column made by :class:`MIGAnnotations`.
LABELS_ARROW_TYPE = pa.list_(pa.string())


class _TypedColumn(list):
    """A plain ``list`` that converts to Arrow with a fixed type.

    ``Dataset.map`` fixes a column's type from the first batch it writes; a batch whose rows
    are all empty lists would otherwise be typed ``list<null>`` and make later batches fail.
    """

    arrow_type: pa.DataType = pa.null()

    def __arrow_array__(self, type: pa.DataType | None = None) -> pa.Array:
        return pa.array(list(self), type=type or self.arrow_type)


class _MessagesColumn(_TypedColumn):
    arrow_type = MESSAGES_ARROW_TYPE


class _LabelsColumn(_TypedColumn):
    arrow_type = LABELS_ARROW_TYPE


# --------------------------------------------------------------------------------------
# helpers


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` of a value, cut to ``limit`` characters for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _row_ids(batch: Mapping[str, Sequence[Any]], indices: Sequence[int] | None) -> list[int]:
    """Row numbers for the rows of a batch: ``indices`` if given, else positions 0..n-1."""
    n = len(next(iter(batch.values()))) if batch else 0
    if indices is None:
        return list(range(n))
    ids = list(indices)
    if len(ids) != n:
        raise ValueError(f"got {len(ids)} indices for a batch of {n} rows")
    return ids


def _is_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


# --------------------------------------------------------------------------------------
# conversation shapes


def detect_shape(column_names: Iterable[str]) -> str:
    """Name the conversation shape of a dataset from its column names.

    Returns one of ``"messages"``, ``"conversations"``, ``"alpaca"`` (needs both
    ``instruction`` and ``output``) or ``"dialogs"``. Raises :class:`ValueError` listing the
    columns seen and the supported shapes when no shape matches, or when more than one does
    (e.g. a dataset with both ``conversations`` and ``messages``): pass ``shape=`` explicitly
    to :func:`to_messages` in that case.
    """
    columns = list(column_names)
    present = set(columns)
    found = [name for name, needed in SHAPES.items() if all(c in present for c in needed)]
    supported = "; ".join(f"{name!r} (columns {list(needed)})" for name, needed in SHAPES.items())
    if not found:
        raise ValueError(
            f"cannot detect the conversation shape from columns {columns}: "
            f"supported shapes are {supported}"
        )
    if len(found) > 1:
        raise ValueError(
            f"columns {columns} match several conversation shapes {found}: pass shape= "
            f"explicitly (supported shapes are {supported})"
        )
    return found[0]


def _role_content_turns(
    turns: Any, row: int, column: str, role_key: str, content_key: str, role_map: Mapping[str, str]
) -> list[dict[str, str]]:
    """Validate one row of a list-of-turns column and convert it to OpenAI messages."""
    if not _is_sequence(turns):
        raise ValueError(
            f"row {row}, field {column!r}: expected a list of turns, got {_type_name(turns)}"
        )
    out: list[dict[str, str]] = []
    allowed = sorted(role_map)
    for j, turn in enumerate(turns):
        where = f"row {row}, field {column!r}[{j}]"
        if not isinstance(turn, Mapping):
            raise ValueError(f"{where}: expected a dict, got {_type_name(turn)}")
        if role_key not in turn or turn[role_key] is None:
            raise ValueError(f"{where}[{role_key!r}]: missing; expected one of {allowed}")
        raw_role = turn[role_key]
        role = role_map.get(raw_role.lower()) if isinstance(raw_role, str) else None
        if role is None:
            raise ValueError(
                f"{where}[{role_key!r}]: expected one of {allowed}, got {_short(raw_role)}"
            )
        content = turn.get(content_key)
        if not isinstance(content, str):
            raise ValueError(
                f"{where}[{content_key!r}]: expected a string, got {_type_name(content)}"
            )
        out.append({"role": role, "content": content})
    return out


_OPENAI_ROLE_MAP = {r: r for r in ROLES}


def _alpaca_row(batch: Mapping[str, Sequence[Any]], i: int, row: int) -> list[dict[str, str]]:
    """Messages for row ``i`` of an Alpaca-shaped batch (``row`` is its dataset index)."""

    def text(column: str, required: bool) -> str:
        if column not in batch:
            return ""
        value = batch[column][i]
        if value is None and not required:
            return ""
        if not isinstance(value, str):
            raise ValueError(
                f"row {row}, field {column!r}: expected a string, got {_type_name(value)}"
            )
        return value

    out: list[dict[str, str]] = []
    system = text("system", required=False)
    if system:
        out.append({"role": "system", "content": system})
    history = batch["history"][i] if "history" in batch else None
    if history is not None:
        if not _is_sequence(history):
            raise ValueError(
                f"row {row}, field 'history': expected a list of [user, assistant] pairs, "
                f"got {_type_name(history)}"
            )
        for j, pair in enumerate(history):
            is_pair = _is_sequence(pair) and len(pair) == 2
            if not (is_pair and all(isinstance(p, str) for p in pair)):
                raise ValueError(
                    f"row {row}, field 'history'[{j}]: expected a [user, assistant] pair of "
                    f"strings, got {_short(pair)}"
                )
            out.append({"role": "user", "content": pair[0]})
            out.append({"role": "assistant", "content": pair[1]})
    instruction = text("instruction", required=True)
    extra = text("input", required=False)
    out.append({"role": "user", "content": f"{instruction}\n{extra}" if extra else instruction})
    out.append({"role": "assistant", "content": text("output", required=True)})
    return out


def to_messages(
    batch: dict[str, list],
    indices: list[int] | None = None,
    shape: Shape = "auto",
) -> dict[str, list]:
    """Convert a batch of conversations to OpenAI-style ``messages``.

    Use as ``ds.map(to_messages, batched=True, with_indices=True)`` (add
    ``fn_kwargs={"shape": ...}`` to force a shape). Pure: the input batch is not modified and
    only the ``messages`` column is returned (the original columns stay unless the caller
    passes ``remove_columns``).

    Shapes (``shape="auto"`` picks one with :func:`detect_shape`):

    * ``"messages"``: ``[{"role", "content"}]`` with roles system/user/assistant (compared
      lower-cased); validated and passed through (only ``role`` and ``content`` are kept).
    * ``"conversations"`` (ShareGPT): ``[{"from", "value"}]``; ``from`` is compared lower-cased
      and mapped with :data:`SHAREGPT_ROLES` (human/user -> user;
      gpt/chatgpt/bing/bard/assistant/model -> assistant; system -> system).
    * ``"alpaca"``: ``instruction`` + optional ``input`` (joined by a newline when ``input`` is
      not empty) is the last user turn, ``output`` the last assistant turn; an optional
      ``history`` list of ``[user, assistant]`` pairs comes before them and an optional
      non-empty ``system`` string comes first.
    * ``"dialogs"`` (the MIG authors' pools): like ``messages``.

    The returned column is a ``list`` (a subclass that also tells Arrow its type,
    :data:`MESSAGES_ARROW_TYPE`, so a first batch made only of empty conversations does not
    fix the column type to ``list<null>``).

    Contracts: one output row per input row, in order. An empty conversation gives an empty
    list (the row is kept, never dropped; filter it yourself if needed). Empty strings as
    content are allowed. Turn order and role alternation are not checked. Any malformed value
    raises :class:`ValueError` naming the row (``indices[i]`` when given, else the position in
    the batch), the field and what was expected.
    """
    if shape == "auto":
        shape = detect_shape(batch.keys())  # type: ignore[assignment]
    elif shape not in SHAPES:
        raise ValueError(f"shape: expected 'auto' or one of {list(SHAPES)}, got {shape!r}")
    missing = [c for c in SHAPES[shape] if c not in batch]
    if missing:
        raise ValueError(
            f"shape {shape!r} needs columns {list(SHAPES[shape])}, "
            f"but the batch has {list(batch.keys())}"
        )
    rows = _row_ids(batch, indices)
    messages: list[list[dict[str, str]]] = []
    if shape == "alpaca":
        for i, row in enumerate(rows):
            messages.append(_alpaca_row(batch, i, row))
    else:
        if shape == "conversations":
            role_key, content_key, role_map = "from", "value", SHAREGPT_ROLES
        else:
            role_key, content_key, role_map = "role", "content", _OPENAI_ROLE_MAP
        column = batch[shape]
        for i, row in enumerate(rows):
            messages.append(
                _role_content_turns(column[i], row, shape, role_key, content_key, role_map)
            )
    return {"messages": _MessagesColumn(messages)}


# --------------------------------------------------------------------------------------
# MIG annotations


def with_messages(dataset: Any, messages_column: str = "messages") -> Any:
    """``dataset`` with an OpenAI-shaped ``messages`` column.

    ``messages_column`` (when it is not ``"messages"``) is renamed to ``messages``, replacing any
    existing one; a pool without ``messages`` is normalised with :func:`to_messages`.
    """
    ds = dataset
    if messages_column != "messages" and messages_column in ds.column_names:
        if "messages" in ds.column_names:
            ds = ds.remove_columns("messages")
        ds = ds.rename_column(messages_column, "messages")
    if "messages" not in ds.column_names:
        ds = ds.map(to_messages, batched=True, with_indices=True, desc="to messages")
    return ds


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
                f"row {row}, field {field!r}: missing; {walked!r} is {_type_name(value)}, "
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
    if not _is_sequence(value):
        raise ValueError(
            f"row {row}, field {field!r}: expected a list of per-turn scores, "
            f"got {_type_name(value)}"
        )
    if len(value) == 0:
        raise ValueError(
            f"row {row}, field {field!r}: expected at least one per-turn score, got an empty list"
        )
    out: list[float] = []
    for j, x in enumerate(value):
        if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(float(x)):
            raise ValueError(
                f"row {row}, field {field!r}[{j}]: expected a finite number, got {_short(x)}"
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
                        f"vocabulary[{pos}]: expected a string, got {_type_name(label)}"
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
        if not _is_sequence(value):
            raise ValueError(
                f"row {row}, field {field!r}: expected a list of labels, got {_type_name(value)}"
            )
        tags: list[str] = []
        for j, label in enumerate(value):
            if not isinstance(label, str):
                raise ValueError(
                    f"row {row}, field {field!r}[{j}]: expected a string, got {_short(label)}"
                )
            tags.append(label)
        if self._lookup is None:
            return tags, 0
        kept = [label for label in tags if label in self._lookup]
        return kept, len(tags) - len(kept)

    def __call__(self, batch: dict[str, list], indices: list[int] | None = None) -> dict[str, list]:
        """Compute ``labels``, ``labels_dropped`` and ``score`` for one batch (see the class)."""
        rows = _row_ids(batch, indices)
        if not rows:
            return {"labels": _LabelsColumn(), "labels_dropped": [], "score": []}
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
        return {"labels": _LabelsColumn(labels), "labels_dropped": dropped, "score": scores}


# --------------------------------------------------------------------------------------
# vocabulary files


def load_vocabulary(path: str | os.PathLike) -> list[str]:
    """Read a label vocabulary and return its labels in file order.

    A ``.json`` file must hold a JSON list of strings (like the authors'
    ``valid_tag_path.json``); any other file is read as UTF-8 text with one label per line.
    Each label is stripped of surrounding whitespace. Raises :class:`ValueError` naming the
    position (0-based, JSON) or line (1-based, text) of an empty or duplicate label, of a
    non-string JSON item, and when the file holds no labels at all.
    """
    p = Path(path)
    text = p.read_text(encoding="utf-8-sig")
    entries: list[tuple[str, str]] = []  # (where, label)
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{p}: not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
            ) from err
        if not isinstance(data, list):
            raise ValueError(f"{p}: expected a JSON list of labels, got {_type_name(data)}")
        for pos, item in enumerate(data):
            if not isinstance(item, str):
                raise ValueError(
                    f"{p}: position {pos}: expected a string label, got {_short(item)}"
                )
            entries.append((f"position {pos}", item))
    else:
        for lineno, line in enumerate(text.splitlines(), start=1):
            entries.append((f"line {lineno}", line))
    labels: list[str] = []
    first_seen: dict[str, str] = {}
    for where, raw in entries:
        label = raw.strip()
        if not label:
            raise ValueError(f"{p}: {where}: empty label")
        if label in first_seen:
            raise ValueError(
                f"{p}: {where}: duplicate label {label!r} (first at {first_seen[label]})"
            )
        first_seen[label] = where
        labels.append(label)
    if not labels:
        raise ValueError(f"{p}: no labels in file")
    return labels
