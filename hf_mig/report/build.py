"""A selection report: what a subset covers of its pool, as an HTML page, PNGs and JSON.

::

    from hf_mig.report.build import build_report

    selector = MIGSelector(200, label_graph=graph)
    mig = selector.select_indices(pool)
    build_report(
        pool,
        {"mig": mig, "random": RandomSelector(200).select_indices(pool)},
        "report/",
        label_graph=graph,
        mig_result=selector.result_,
    )

``report/`` then holds ``report.html`` (figures embedded, so the page stands alone), the same
figures as PNG files beside it, and ``report.json`` with every number behind the figures.

The page opens with a table of contents, where the label and score columns and the label graph
came from (what the caller states, what the pool's own columns show, else "unknown"), the rows
without a label in the pool and in each selection, and each selection's first picks: the first
user turn, labels, score and, when known, the MIG gain of each.

Beside the label counts, the report measures MIG's own information per label: the vector
``x(S) = sum_{i in S} u_i`` with ``u_i = w_i * v_i @ P`` (``w_i`` the score, or score / #labels
with ``norm``; ``P`` the label graph's propagation matrix, or the identity when no graph is
given), for the pool and for each selection, and ``E(S) = sum_k phi(x_k)``. With the options the
selector ran with (``prop_weight``, ``norm``, ``objective``), ``E`` of the MIG selection is the
last value of its greedy trace.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from datasets import Dataset

from hf_mig.core.encoding import PoolValidationError, encode_pool, unique_labels
from hf_mig.core.objective import Objective
from hf_mig.core.summary import selection_summary
from hf_mig.data.io import atomic_output, check_output, write_text_atomic

logger = logging.getLogger(__name__)

CONVERSATION_COLUMNS = ("messages", "dialogs", "conversations", "conversation")
#: columns holding a row's request when it has no conversation column (first one present)
TEXT_COLUMNS = ("instruction", "prompt", "question", "query", "input", "text")
#: roles (``role`` or ShareGPT ``from``, lower-cased) that mark a user turn
USER_ROLES = ("user", "human")
#: picks shown per selection, and the characters of each pick's request shown
FIRST_PICKS = 10
PICK_TEXT_CHARS = 160
#: the column ``MIGSelector(record_gains=True)`` / ``hf-mig select --record-gains`` writes
GAIN_COLUMN = "mig_gain"
SOURCE_COLUMNS = ("source", "dataset", "origin")
FREQUENCY_BANDS = ((1, 1), (2, 5), (6, 20), (21, None))
NEIGHBOURHOOD_LABELS = 3
TOP_LABELS = 30
#: labels ranked by the pool's information, cut into these shares (head first, tail last)
INFORMATION_BANDS = ("top 25%", "25-50%", "50-75%", "bottom 25% (tail)")
#: the files every report writes (besides its figures); the page is written last
REPORT_FILES = ("report.json", "report.html")


# ---------------------------------------------------------------------------- selections
def detect_id_column(dataset: Dataset) -> str | None:
    """``"id"`` (or the first ``*_id``/``idx`` column) when the dataset has one, else ``None``."""
    for name in ("id", "idx", "uid", "sample_id", "example_id"):
        if name in dataset.column_names:
            return name
    return None


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
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"selection {p}: invalid JSON ({err.msg} at line {err.lineno}, column "
                    f"{err.colno})"
                ) from err
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


# ---------------------------------------------------------------------------- numbers
def _row_labels(pool: Dataset, labels_column: str) -> list[list[str]] | None:
    if labels_column not in pool.column_names:
        return None
    return [list(dict.fromkeys(x or [])) for x in pool[labels_column]]


def coverage_curve(row_labels: Sequence[Sequence[str]], indices: Sequence[int]) -> list[int]:
    """Distinct labels covered after each pick, in pick order."""
    seen: set[str] = set()
    out = []
    for i in indices:
        seen.update(row_labels[i])
        out.append(len(seen))
    return out


def _histogram(values: Sequence[float], edges: np.ndarray) -> list[int]:
    return np.histogram(np.asarray(values, dtype=float), bins=edges)[0].astype(int).tolist()


def _describe(values: Sequence[float]) -> dict:
    a = np.asarray(values, dtype=float)
    if not a.size:
        return {"count": 0}
    return {
        "count": int(a.size),
        "mean": float(a.mean()),
        "median": float(np.median(a)),
        "min": float(a.min()),
        "max": float(a.max()),
        "std": float(a.std()),
    }


def _message_role(message: Any) -> str | None:
    if not isinstance(message, dict):
        return None
    role = message.get("role", message.get("from"))
    return str(role).lower() if role is not None else None


def _message_text(message: Any) -> str:
    if isinstance(message, dict):
        return str(message.get("content") or message.get("value") or "")
    return "" if message is None else str(message)


def user_turns(conversation: Sequence[Any] | None) -> int:
    """User turns of one conversation: messages whose ``role`` (or ShareGPT ``from``) is
    ``user``/``human``. A conversation of plain strings alternates user and assistant, starting
    with the user, so it has ``ceil(len / 2)`` user turns. A single-turn row has 1."""
    conversation = conversation or []
    if any(isinstance(m, dict) for m in conversation):
        return sum(1 for m in conversation if _message_role(m) in USER_ROLES)
    return (len(conversation) + 1) // 2


def first_user_text(conversation: Sequence[Any] | None) -> str:
    """The content of the first user turn of a conversation (as :func:`user_turns` finds user
    turns), or ``""`` when it has none."""
    conversation = conversation or []
    if any(isinstance(m, dict) for m in conversation):
        return next((_message_text(m) for m in conversation if _message_role(m) in USER_ROLES), "")
    return _message_text(conversation[0]) if conversation else ""


def _conversation_stats(pool: Dataset, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Per row: number of user turns and total characters of content."""
    turns, chars = [], []
    for conv in pool[column]:
        conv = conv or []
        turns.append(user_turns(conv))
        chars.append(sum(len(_message_text(m)) for m in conv))
    return np.asarray(turns, dtype=np.int64), np.asarray(chars, dtype=np.int64)


def _shorten(text: str, limit: int) -> str:
    """``text`` with runs of whitespace made one space, cut to ``limit`` characters (``…``)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def selection_gains(selection: Any) -> np.ndarray | None:
    """The MIG gain of each pick, in pick order, of a selection given as a subset with a
    ``mig_gain`` column (as ``hf-mig select --record-gains`` writes it); ``None`` otherwise or
    when a value is missing."""
    if not isinstance(selection, Dataset) or GAIN_COLUMN not in selection.column_names:
        return None
    values = selection[GAIN_COLUMN]
    if any(v is None for v in values):
        return None
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def infer_provenance(pool: Dataset, labels_column: str, score_column: str) -> dict[str, str]:
    """What the pool's own columns show about how its label and score columns were made:
    ``{"tagger": ..., "scorer": ...}``, each ``"unknown"`` when nothing shows it.

    Only the companion columns hf-mig's own tools write are read (``instag_raw``/``instag_error``
    of the InsTag tagger, ``deita_*``/``ifd_*``/``reward_*`` of the scorers, the MIG authors'
    ``annotation`` struct); models are never named, since the pool does not record them.
    """
    cols = set(pool.column_names)
    tagger = scorer = "unknown"
    if labels_column == "labels" and cols & {"instag_raw", "instag_error"}:
        tagger = (
            "a generative InsTag tagger (hf-mig tag with a transformers/vllm/openai backend: the "
            "pool has its instag_raw/instag_error columns); model unknown"
        )
    elif labels_column == "labels" and {"annotation", "labels_dropped"} <= cols:
        tagger = "the InsTag tags of the pool's MIG-authors 'annotation' struct"
    if score_column == "score" and cols & {"deita_error", "deita_complexity", "deita_quality"}:
        scorer = (
            "DEITA complexity x quality (hf-mig score --scorer deita: the pool has its deita_* "
            "columns); models unknown"
        )
    elif score_column in ("score", "reward") and "reward_error" in cols:
        scorer = (
            "a reward model (hf-mig score --scorer reward: the pool has its reward_* columns"
            + ("; score = sigmoid(reward)" if score_column == "score" else "")
            + "); model unknown"
        )
    elif score_column == "ifd" and "ifd_error" in cols:
        scorer = "IFD (hf-mig score --scorer ifd: the pool has its ifd_* columns); model unknown"
    elif score_column == "score" and {"annotation", "labels_dropped"} <= cols:
        scorer = "quality x complexity from the pool's MIG-authors 'annotation' struct (DEITA)"
    return {"tagger": tagger, "scorer": scorer}


def _graph_provenance(label_graph: Any, source: str | None) -> dict[str, Any]:
    if label_graph is None:
        return {"source": source or "none: no label graph, so no propagation"}
    metadata = dict(getattr(label_graph, "metadata", {}) or {})
    stats = label_graph.stats()
    return {
        "source": source or "unknown",
        "embedder": str(metadata["embedder"]) if metadata.get("embedder") else "unknown",
        "threshold": label_graph.threshold,
        "labels": int(stats["num_labels"]),
        "edges": int(stats["num_edges"]),
    }


def _first_picks(
    pool: Dataset,
    idx: np.ndarray,
    n: int,
    *,
    labels_column: str,
    score_column: str,
    id_column: str | None,
    gains: np.ndarray | None,
) -> list[dict]:
    """The first ``n`` picks of one selection: position, id, request, labels, score, gain."""
    rows = pool.select(idx[:n].tolist()) if n > 0 and len(idx) else pool.select([])
    conv_col = next((c for c in CONVERSATION_COLUMNS if c in pool.column_names), None)
    text_col = next((c for c in TEXT_COLUMNS if c in pool.column_names), None)
    out = []
    for rank in range(len(rows)):
        row = rows[rank]
        if conv_col is not None:
            text = first_user_text(row[conv_col])
        elif text_col is not None:
            text = _message_text(row[text_col])
        else:
            text = ""
        score = row.get(score_column)
        labels = row.get(labels_column, ())
        gain = None if gains is None else float(gains[rank])
        out.append(
            {
                "rank": rank + 1,
                "row": int(idx[rank]),
                "id": str(row[id_column]) if id_column and id_column in row else None,
                "text": _shorten(text, PICK_TEXT_CHARS),
                "labels": list(dict.fromkeys(labels or [])) if isinstance(labels, list) else None,
                "score": float(score)
                if isinstance(score, (int, float)) and not isinstance(score, bool)
                else None,
                "gain": gain,
            }
        )
    return out


def _band_name(lo: int, hi: int | None) -> str:
    if hi is None:
        return f">={lo}"
    return str(lo) if lo == hi else f"{lo}-{hi}"


def gini(values: Sequence[float]) -> float | None:
    """Gini coefficient of non-negative values: 0 = all equal, near 1 = all in one place.

    ``None`` when there are no values or they sum to zero.
    """
    a = np.sort(np.asarray(values, dtype=np.float64))
    total = float(a.sum())
    if not a.size or total <= 0:
        return None
    n = a.size
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float(2.0 * (ranks * a).sum() / (n * total) - (n + 1) / n)


def effective_labels(values: Sequence[float]) -> float:
    """``exp`` of the Shannon entropy of ``values / sum(values)``: how many labels the
    information is effectively spread over (0 when there is none)."""
    a = np.asarray(values, dtype=np.float64)
    total = float(a.sum())
    if total <= 0:
        return 0.0
    p = a[a > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def information_vectors(
    pool: Dataset,
    indices: Mapping[str, Sequence[int]],
    *,
    label_graph: Any = None,
    labels_column: str = "labels",
    score_column: str = "score",
    prop_weight: float = 1.0,
    norm: bool = False,
) -> tuple[list[str], np.ndarray, dict[str, np.ndarray], dict]:
    """MIG's information per label of the pool and of each selection.

    Encodes the pool as :class:`hf_mig.MIGSelector` does (:func:`hf_mig.core.encoding.encode_pool`
    against the graph's labels, weights ``PoolEncoding.weights(norm)``) and returns
    ``(labels, x_pool, {name: x_S}, encoding report)`` with ``x(S) = sum_{i in S} w_i v_i @ P``
    and ``P = label_graph.propagation_matrix(prop_weight)``. Without a graph ``P`` is the
    identity over the pool's distinct labels (sorted), i.e. no propagation.
    """
    from hf_mig.selectors.mig import arrow_columns

    table = arrow_columns(pool, [labels_column, score_column])
    if label_graph is None:
        vocabulary = unique_labels(table, labels_column)
        propagation = sp.identity(len(vocabulary), dtype=np.float64, format="csr")
    else:
        vocabulary = list(label_graph.labels)
        propagation = label_graph.propagation_matrix(prop_weight)
    encoding = encode_pool(
        table, vocabulary, labels_column=labels_column, score_column=score_column
    )
    weights = encoding.weights(norm)
    # row i of wv is w_i * v_i (labels once per row), so x(S) = (sum_{i in S} wv_i) @ P
    wv = sp.csr_matrix(
        (np.repeat(weights, encoding.label_counts()), encoding.label_ids, encoding.indptr),
        shape=(encoding.num_rows, len(vocabulary)),
    )
    prop_t = propagation.T.tocsr()

    def x_of(rows: np.ndarray | None) -> np.ndarray:
        mass = np.asarray((wv if rows is None else wv[rows]).sum(axis=0)).ravel()
        return np.asarray(prop_t @ mass, dtype=np.float64).ravel()

    x_pool = x_of(None)
    by_selection = {name: x_of(np.asarray(idx, dtype=np.int64)) for name, idx in indices.items()}
    return vocabulary, x_pool, by_selection, encoding.report


def _information_stats(x: np.ndarray, informed: np.ndarray, objective: Objective) -> dict:
    """E, labels with x > 0 and evenness of one information vector."""
    positive = int((x > 0).sum())
    return {
        "objective": float(objective.value(x).sum()),
        "total_information": float(x.sum()),
        "labels_with_information": positive,
        "share_of_labels": positive / x.size if x.size else 0.0,
        "share_of_pool_labels": int((x[informed] > 0).sum()) / int(informed.sum())
        if informed.any()
        else 0.0,
        "gini": gini(x[informed]),
        "effective_labels": effective_labels(x),
    }


def _information_section(
    pool: Dataset,
    indices: dict[str, np.ndarray],
    *,
    label_graph: Any,
    labels_column: str,
    score_column: str,
    prop_weight: float,
    norm: bool,
    objective: Objective,
    mig_result: Any,
) -> tuple[dict, dict]:
    """``report.json``'s ``information`` section and the arrays behind its figure."""
    if label_graph is None:
        propagation = (
            "identity: no label graph was given, so there is no propagation "
            "(each row's weight goes to its own labels only)"
        )
    else:
        threshold = label_graph.threshold
        propagation = (
            f"label graph ({label_graph.num_labels:,} labels"
            + ("" if threshold is None else f", threshold {threshold:g}")
            + f"), prop_weight {prop_weight:g}"
        )
    section: dict[str, Any] = {
        "propagation": propagation,
        "label_graph": label_graph is not None,
        "prop_weight": float(prop_weight) if label_graph is not None else 0.0,
        "norm": bool(norm),
        **objective.to_dict(),
    }
    try:
        vocabulary, x_pool, x_sel, report = information_vectors(
            pool,
            indices,
            label_graph=label_graph,
            labels_column=labels_column,
            score_column=score_column,
            prop_weight=prop_weight,
            norm=norm,
        )
    except (PoolValidationError, ValueError) as err:
        logger.warning("information per label left out of the report: %s", err)
        section["skipped"] = str(err)
        return section, {}
    informed = x_pool > 0
    order = np.argsort(-x_pool, kind="stable")
    order = order[informed[order]]
    bands = np.array_split(order, len(INFORMATION_BANDS))
    section.update(
        {
            "num_labels": len(vocabulary),
            "initial_objective": float(objective.value(np.zeros(len(vocabulary))).sum()),
            "encoding": json.loads(json.dumps(report, default=str)),
            "bands": [
                {"band": name, "labels": int(b.size)} for name, b in zip(INFORMATION_BANDS, bands)
            ],
            "pool": _information_stats(x_pool, informed, objective),
            "by_selection": {},
        }
    )
    pool_total = float(x_pool.sum())
    for name, x in x_sel.items():
        stats = _information_stats(x, informed, objective)
        stats["information_kept"] = float(x.sum()) / pool_total if pool_total > 0 else 0.0
        stats["kept_by_band"] = {
            band: (float(x[b].sum() / x_pool[b].sum()) if b.size else 0.0)
            for band, b in zip(INFORMATION_BANDS, bands)
        }
        stats["labels_by_band"] = {
            band: int((x[b] > 0).sum()) for band, b in zip(INFORMATION_BANDS, bands)
        }
        section["by_selection"][name] = stats
    if mig_result is not None:
        picks = np.asarray(mig_result.indices)
        trace = np.asarray(mig_result.objective_trace, dtype=np.float64)
        match = next(
            (n for n, idx in indices.items() if np.array_equal(np.asarray(idx), picks)), None
        )
        if match is not None and trace.size:
            got = section["by_selection"][match]["objective"]
            section["mig_trace_check"] = {
                "selection": match,
                "trace_final_objective": float(trace[-1]),
                "objective": got,
                "relative_difference": abs(got - float(trace[-1])) / max(abs(trace[-1]), 1e-300),
            }
            if section["mig_trace_check"]["relative_difference"] > 1e-6:
                logger.warning(
                    "E(S) of %r (%.6g) differs from the end of the MIG trace (%.6g): the report's "
                    "label graph, prop_weight, norm or phi differ from the selector's",
                    match,
                    got,
                    trace[-1],
                )
    # the figure's numbers: labels the pool informs, ranked by the pool's information
    section["ranked_labels"] = [vocabulary[j] for j in order]
    section["x"] = {
        "pool": x_pool[order].tolist(),
        **{name: x[order].tolist() for name, x in x_sel.items()},
    }
    raw = {"x_pool": x_pool[order], "x_sel": {name: x[order] for name, x in x_sel.items()}}
    return section, raw


def compute_report_data(
    pool: Dataset,
    selections: Mapping[str, Any],
    *,
    labels_column: str = "labels",
    score_column: str = "score",
    id_column: str | None = None,
    label_graph: Any = None,
    mig_result: Any = None,
    prop_weight: float = 1.0,
    norm: bool = False,
    objective: Objective | None = None,
    first_picks: int = FIRST_PICKS,
    gains: Mapping[str, Sequence[float]] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> tuple[dict, dict[str, np.ndarray], dict]:
    """The numbers of the report; returns ``(data, indices by selection, raw arrays for plots)``.

    ``first_picks`` (>= 0), ``gains`` and ``provenance`` are as for :func:`build_report`.
    """
    if not selections:
        raise ValueError("no selections to report on")
    if not isinstance(first_picks, int) or isinstance(first_picks, bool) or first_picks < 0:
        raise ValueError(f"first_picks must be an integer >= 0, got {first_picks!r}")
    indices = {
        str(name): resolve_selection(pool, sel, id_column=id_column, name=str(name))
        for name, sel in selections.items()
    }
    data: dict[str, Any] = {
        "pool": {"rows": len(pool), "columns": list(pool.column_names)},
        "selections": {name: {"rows": int(len(idx))} for name, idx in indices.items()},
    }
    raw: dict[str, Any] = {}
    ids_col = id_column or detect_id_column(pool)
    if ids_col and ids_col in pool.column_names:
        pool_ids = pool[ids_col]
        for name, idx in indices.items():
            data["selections"][name]["first_ids"] = [str(pool_ids[i]) for i in idx[:10]]
    else:
        ids_col = None

    # ---- where the columns came from, and the gain of each pick when it is known
    given = dict(provenance or {})
    inferred = infer_provenance(pool, labels_column, score_column)
    described = dict(given.get("selections") or {})
    data["provenance"] = {
        "labels": {
            "column": labels_column,
            "produced_by": given.get("tagger") or inferred["tagger"],
        },
        "score": {"column": score_column, "produced_by": given.get("scorer") or inferred["scorer"]},
        "label_graph": _graph_provenance(label_graph, given.get("graph")),
        "selections": {name: str(described.get(name) or "unknown") for name in indices},
    }
    known: dict[str, tuple[np.ndarray, str]] = {}
    for name, sel in selections.items():
        from_column = selection_gains(sel)
        if from_column is not None:
            known[str(name)] = (from_column, f"the selection's {GAIN_COLUMN} column")
    if mig_result is not None:
        picks = np.asarray(mig_result.indices)
        for name, idx in indices.items():
            if np.array_equal(np.asarray(idx), picks):
                known[name] = (np.asarray(mig_result.gains, dtype=np.float64), "the MIG run")
    for name, values in (gains or {}).items():
        known[str(name)] = (np.asarray(values, dtype=np.float64), "given with the selection")
    for name, (values, _) in known.items():
        if name not in indices:
            raise ValueError(f"gains given for {name!r}, which is not a selection")
        if values.shape != (len(indices[name]),):
            raise ValueError(
                f"selection {name!r}: {values.size} gains for {len(indices[name])} picks; "
                "give one gain per pick, in pick order"
            )
    for name, idx in indices.items():
        values, source = known.get(name, (None, None))
        data["selections"][name]["gains_from"] = source
        data["selections"][name]["first_picks"] = _first_picks(
            pool,
            idx,
            first_picks,
            labels_column=labels_column,
            score_column=score_column,
            id_column=ids_col,
            gains=values,
        )

    # ---- labels
    summaries = {
        name: selection_summary(pool, idx, labels_column=labels_column, score_column=score_column)
        for name, idx in indices.items()
    }
    row_labels = _row_labels(pool, labels_column)
    label_sets: dict[str, set[str]] = {}
    if row_labels is not None:
        pool_counts = Counter(label for labels in row_labels for label in labels)
        ranked = sorted(pool_counts, key=lambda x: (-pool_counts[x], x))
        sel_counts = {
            name: Counter(label for i in idx for label in row_labels[i])
            for name, idx in indices.items()
        }
        label_sets = {name: set(c) for name, c in sel_counts.items()}
        labels: dict[str, Any] = {
            "pool_labels": len(pool_counts),
            "pool_label_occurrences": int(sum(pool_counts.values())),
            "by_selection": {},
            "frequency_bands": [],
            "top_labels": [],
        }
        for name, counts in sel_counts.items():
            covered = set(counts) & set(pool_counts)
            summary = summaries[name]
            if "pool_unlabelled_rows" in summary:
                labels["pool_unlabelled_rows"] = summary["pool_unlabelled_rows"]
            labels["by_selection"][name] = {
                "labels_covered": len(covered),
                "coverage": len(covered) / len(pool_counts) if pool_counts else 0.0,
                "label_occurrences": int(sum(counts.values())),
                "unlabelled_rows": summary.get("selected_unlabelled_rows"),
                "coverage_curve": coverage_curve(row_labels, indices[name]),
                "singleton_labels_covered": sum(1 for x in covered if pool_counts[x] == 1),
            }
        for lo, hi in FREQUENCY_BANDS:
            band = [
                x for x in ranked if pool_counts[x] >= lo and (hi is None or pool_counts[x] <= hi)
            ]
            labels["frequency_bands"].append(
                {
                    "band": _band_name(lo, hi),
                    "pool_labels": len(band),
                    "covered": {
                        name: sum(1 for x in band if x in label_sets[name]) for name in indices
                    },
                }
            )
        for label in ranked[:TOP_LABELS]:
            labels["top_labels"].append(
                {
                    "label": label,
                    "pool": pool_counts[label],
                    **{name: sel_counts[name][label] for name in indices},
                }
            )
        data["labels"] = labels
        raw["pool_counts"] = pool_counts
        raw["ranked"] = ranked
        raw["sel_counts"] = sel_counts

        # ---- MIG's information per label
        data["information"], raw["information"] = _information_section(
            pool,
            indices,
            label_graph=label_graph,
            labels_column=labels_column,
            score_column=score_column,
            prop_weight=prop_weight,
            norm=norm,
            objective=objective or Objective(),
            mig_result=mig_result,
        )

    # ---- MIG trace
    if mig_result is not None:
        trace = np.asarray(mig_result.objective_trace, dtype=float)
        gains = np.asarray(mig_result.gains, dtype=float)
        stats = {
            k: (v.item() if isinstance(v, np.generic) else v)
            for k, v in dict(getattr(mig_result, "stats", {}) or {}).items()
        }
        data["mig_trace"] = {
            "k": int(len(mig_result.indices)),
            "initial_objective": float(mig_result.initial_objective),
            "final_objective": float(trace[-1])
            if trace.size
            else float(mig_result.initial_objective),
            "objective": trace.tolist(),
            "gains": gains.tolist(),
            "stats": json.loads(json.dumps(stats, default=str)),
        }

    # ---- scores
    if score_column in pool.column_names:
        scores = np.asarray(pool[score_column], dtype=float)
        finite = scores[np.isfinite(scores)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1.0
        edges = np.linspace(lo, hi, 31)
        data["scores"] = {
            "column": score_column,
            "collapse": next(iter(summaries.values())).get("score_collapse"),
            "bin_edges": edges.tolist(),
            "pool": {**_describe(finite), "histogram": _histogram(finite, edges)},
            "by_selection": {
                name: {**_describe(scores[idx]), "histogram": _histogram(scores[idx], edges)}
                for name, idx in indices.items()
            },
        }
        raw["scores"] = scores

    # ---- conversations
    conv_col = next((c for c in CONVERSATION_COLUMNS if c in pool.column_names), None)
    if conv_col is not None:
        turns, chars = _conversation_stats(pool, conv_col)
        lowest = min(int(turns.min()) if turns.size else 1, 1)
        t_edges = np.arange(lowest - 0.5, max(int(turns.max()) if turns.size else 1, 1) + 1.5)
        c_max = max(float(chars.max()) if chars.size else 1.0, 1.0)
        c_edges = np.logspace(0, math.log10(c_max) + 0.01, 31)
        data["conversations"] = {
            "column": conv_col,
            "user_turn_bin_edges": t_edges.tolist(),
            "length_bin_edges": c_edges.tolist(),
            "pool": {
                "user_turns": {**_describe(turns), "histogram": _histogram(turns, t_edges)},
                "characters": {**_describe(chars), "histogram": _histogram(chars, c_edges)},
            },
            "by_selection": {
                name: {
                    "user_turns": {
                        **_describe(turns[idx]),
                        "histogram": _histogram(turns[idx], t_edges),
                    },
                    "characters": {
                        **_describe(chars[idx]),
                        "histogram": _histogram(chars[idx], c_edges),
                    },
                }
                for name, idx in indices.items()
            },
        }
        raw["turns"], raw["chars"] = turns, chars

    # ---- sources
    src_col = next((c for c in SOURCE_COLUMNS if c in pool.column_names), None)
    if src_col is not None:
        src = [str(s) for s in pool[src_col]]
        pool_src = Counter(src)
        order = sorted(pool_src, key=lambda s: (-pool_src[s], s))
        data["sources"] = {
            "column": src_col,
            "order": order,
            "pool": {s: pool_src[s] for s in order},
            "by_selection": {
                name: {s: c for s, c in ((s, Counter(src[i] for i in idx)[s]) for s in order)}
                for name, idx in indices.items()
            },
        }

    # ---- overlap
    names = list(indices)
    pairs = []
    for a_pos, a in enumerate(names):
        for b in names[a_pos + 1 :]:
            sa, sb = set(indices[a].tolist()), set(indices[b].tolist())
            union = sa | sb
            entry = {
                "a": a,
                "b": b,
                "shared_rows": len(sa & sb),
                "jaccard": len(sa & sb) / len(union) if union else 0.0,
            }
            if label_sets:
                la, lb = label_sets[a], label_sets[b]
                entry["shared_labels"] = len(la & lb)
                entry["label_jaccard"] = len(la & lb) / len(la | lb) if la | lb else 0.0
                entry["labels_only_in_a"] = len(la - lb)
                entry["labels_only_in_b"] = len(lb - la)
            pairs.append(entry)
    data["overlap"] = pairs

    # ---- graph neighbourhoods
    if label_graph is not None and row_labels is not None:
        data["label_graph"] = _neighbourhoods(label_graph, raw, names, mig_result is not None)
    return data, indices, raw


def _neighbourhoods(graph: Any, raw: dict, names: list[str], has_mig: bool) -> dict:
    """Neighbours of the most and least covered labels of the focus selection."""
    pool_counts, sel_counts = raw["pool_counts"], raw["sel_counts"]
    focus = "mig" if has_mig and "mig" in names else names[0]
    counts = sel_counts[focus]
    index = graph.index
    in_graph = [x for x in raw["ranked"] if x in index]
    # prefer labels that have neighbours, so the neighbourhood has something to show
    with_nb = [x for x in in_graph if graph.neighbors(x)] or in_graph
    most = sorted(with_nb, key=lambda x: (-counts[x], -pool_counts[x], x))[:NEIGHBOURHOOD_LABELS]
    least = [
        x for x in sorted(with_nb, key=lambda x: (counts[x], -pool_counts[x], x)) if x not in most
    ][:NEIGHBOURHOOD_LABELS]

    def describe(label: str) -> dict:
        return {
            "label": label,
            "pool": pool_counts[label],
            "selected": {n: sel_counts[n][label] for n in names},
            "neighbors": [
                {
                    "label": nb,
                    "weight": w,
                    "pool": pool_counts.get(nb, 0),
                    "selected": {n: sel_counts[n][nb] for n in names},
                }
                for nb, w in graph.neighbors(label)[:12]
            ],
        }

    stats = graph.stats()
    stats.pop("degree_histogram", None)
    return {
        "focus_selection": focus,
        "stats": stats,
        "pool_labels_in_graph": len(in_graph),
        "most_covered": [describe(x) for x in most],
        "least_covered": [describe(x) for x in least],
    }


# ---------------------------------------------------------------------------- figures
def _new_figure(width: float = 9.0, height: float = 4.8):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _colors(names: Sequence[str]) -> dict[str, str]:
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"]
    return {n: palette[i % len(palette)] for i, n in enumerate(names)}


def _make_figures(data: dict, raw: dict, indices: dict[str, np.ndarray]) -> list[dict]:
    names = list(indices)
    color = _colors(names)
    figures: list[dict] = []

    def add(name: str, title: str, caption: str, fig) -> None:
        figures.append(
            {"file": f"{name}.png", "title": title, "caption": caption, "png": _png(fig)}
        )

    labels = data.get("labels")
    if labels:
        # coverage against k
        fig = _new_figure()
        ax = fig.add_subplot()
        for n in names:
            curve = labels["by_selection"][n]["coverage_curve"]
            ax.plot(np.arange(1, len(curve) + 1), curve, label=n, color=color[n], lw=2)
        ax.axhline(labels["pool_labels"], color="grey", ls="--", lw=1, label="labels in the pool")
        ax.set_xlabel("rows selected (k, in pick order)")
        ax.set_ylabel("distinct labels covered")
        ax.set_title("Label coverage against k")
        ax.grid(alpha=0.3)
        ax.legend()
        add(
            "coverage_curve",
            "Label coverage against k",
            "Distinct labels covered after each pick; the dashed line is the pool's total.",
            fig,
        )

        # the most frequent labels: share of rows carrying each, pool vs each selection
        ranked, pool_counts = raw["ranked"], raw["pool_counts"]
        top = ranked[:TOP_LABELS]
        if top:
            fig = _new_figure(9.0, 1.7 + 0.27 * len(top))
            ax = fig.add_subplot()
            y = np.arange(len(top))
            pool_rows = max(data["pool"]["rows"], 1)
            ax.barh(
                y,
                [pool_counts[x] / pool_rows for x in top],
                0.7,
                color="#d9d9d9",
                edgecolor="#999999",
                label="pool",
            )
            markers = "oDs^vP*X"
            widest = max(pool_counts[x] / pool_rows for x in top)
            step = 0.5 / max(len(names), 1)  # markers of a label side by side within its bar
            for j, n in enumerate(names):
                rows_n = max(data["selections"][n]["rows"], 1)
                shares = [raw["sel_counts"][n][x] / rows_n for x in top]
                widest = max(widest, *shares)
                ax.plot(
                    shares,
                    y + (j - (len(names) - 1) / 2) * step,
                    markers[j % len(markers)],
                    ms=6,
                    color=color[n],
                    markeredgecolor="black",
                    markeredgewidth=0.5,
                    label=n,
                )
            ax.set_xlim(-0.02 * widest, 1.05 * widest)
            ax.set_yticks(y, [_short(x, 40) for x in top], fontsize=9)
            ax.invert_yaxis()
            ax.set_ylim(len(top) - 0.5, -0.5)
            from matplotlib.ticker import PercentFormatter

            ax.xaxis.set_major_formatter(PercentFormatter(1.0))
            ax.set_xlabel("share of rows carrying the label")
            ax.set_title(
                f"The {len(top)} most frequent labels of the pool "
                f"(of {len(ranked):,}): pool vs selections"
            )
            ax.grid(axis="x", alpha=0.3)
            ax.legend(loc="lower right", fontsize=9)
            add(
                "top_labels",
                "Most frequent labels",
                f"The {len(top)} labels carried by most pool rows: grey bars, the share of the "
                "pool's rows carrying each; markers, the share of each selection's rows. A marker "
                "left of its bar: the selection has the label less often than the pool.",
                fig,
            )

        # frequency bands
        bands = labels["frequency_bands"]
        fig = _new_figure()
        ax = fig.add_subplot()
        width = 0.8 / max(len(names), 1)
        xb = np.arange(len(bands))
        for j, n in enumerate(names):
            vals = [
                (b["covered"][n] / b["pool_labels"] if b["pool_labels"] else 0.0) for b in bands
            ]
            ax.bar(xb + (j - (len(names) - 1) / 2) * width, vals, width, label=n, color=color[n])
        ax.set_xticks(xb, [f"{b['band']} rows\n({b['pool_labels']} labels)" for b in bands])
        ax.set_xlabel("how many pool rows carry the label")
        ax.set_ylabel("share of those labels covered")
        ax.set_ylim(0, 1.05)
        ax.set_title("Coverage by label frequency")
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
        add(
            "coverage_by_frequency",
            "Coverage by label frequency",
            "Share of the pool's labels covered, grouped by how common each label is.",
            fig,
        )

    info = data.get("information")
    info_raw = raw.get("information")
    if info and info_raw and info_raw["x_pool"].size:
        x_pool = info_raw["x_pool"]
        fig = _new_figure(9.0, 6.8)
        ax1, ax2 = fig.subplots(2, 1, sharex=True)
        r = np.arange(1, x_pool.size + 1)
        ax1.plot(r, x_pool, color="black", lw=1.8, label="pool")
        for n in names:
            xs = info_raw["x_sel"][n]
            share = info["by_selection"][n]["share_of_pool_labels"]
            ax1.plot(
                r,
                np.where(xs > 0, xs, np.nan),
                ".",
                ms=2.5,
                alpha=0.7,
                color=color[n],
                label=f"{n} (x > 0 on {100 * share:.0f}% of the pool's labels)",
            )
        ax1.set_yscale("log")
        ax1.set_ylabel("information x per label")
        ax1.set_title("Information per label: pool vs selections (labels ranked by the pool's x)")
        ax1.legend(fontsize=8, markerscale=3)
        ax1.grid(alpha=0.3)
        window = max(1, x_pool.size // 50)
        kernel = np.ones(window)
        norm_ = np.convolve(np.ones(x_pool.size), kernel, mode="same")
        for n in names:
            frac = info_raw["x_sel"][n] / x_pool
            ax2.plot(
                r, np.convolve(frac, kernel, mode="same") / norm_, color=color[n], lw=1.5, label=n
            )
            rows_share = data["selections"][n]["rows"] / max(data["pool"]["rows"], 1)
            ax2.axhline(rows_share, color=color[n], ls="--", lw=0.8)
        cut = 0
        for band in info["bands"][:-1]:
            cut += band["labels"]
            ax2.axvline(cut + 0.5, color="grey", ls=":", lw=0.8)
        ax2.set_ylim(-0.02, 1.02)
        ax2.set_xlabel("label rank by the pool's information (1 = most; dotted: quartiles)")
        ax2.set_ylabel(f"x(S) / x(pool)\n(rolling mean, window {window})")
        ax2.legend(fontsize=8)
        ax2.grid(alpha=0.3)
        add(
            "label_information",
            "MIG information per label",
            "Top: MIG's information x = sum of u_i = w_i v_i P per label for the pool and each "
            "selection, labels ranked by the pool's x (log scale; labels a selection leaves at 0 "
            "are not drawn). Bottom: the share of the pool's information each selection keeps "
            "per label; the dashed lines are each selection's share of the rows (what an even "
            "spread would keep), the right end is the long tail. Propagation: "
            f"{info['propagation']}.",
            fig,
        )

    trace = data.get("mig_trace")
    if trace and trace["objective"]:
        fig = _new_figure(9.0, 6.4)
        ax1, ax2 = fig.subplots(2, 1, sharex=True)
        steps = np.arange(1, len(trace["objective"]) + 1)
        ax1.plot(steps, trace["objective"], color="#1f77b4", lw=2)
        ax1.set_ylabel("objective E(S)")
        ax1.set_title("MIG greedy trace")
        ax1.grid(alpha=0.3)
        ax2.plot(steps, trace["gains"], color="#d62728", lw=1)
        ax2.set_xlabel("pick")
        ax2.set_ylabel(f"gain of the pick ({trace['stats'].get('gain', 'gain')})")
        ax2.grid(alpha=0.3)
        st = trace["stats"]
        note = ", ".join(
            f"{k}={v}"
            for k, v in st.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        )
        if note:
            ax2.text(0.99, 0.95, note, transform=ax2.transAxes, ha="right", va="top", fontsize=8)
        add(
            "mig_trace",
            "MIG greedy trace",
            "The objective E(S) after each pick (top) and the gain each pick was chosen with "
            "(bottom).",
            fig,
        )

    def side_by_side(
        key: str, title: str, xlabel: str, edges: list, pool_hist, hists, logx=False, whole=False
    ):
        fig = _new_figure()
        ax = fig.add_subplot()
        e = np.asarray(edges)
        total = max(sum(pool_hist), 1)
        ax.stairs(np.asarray(pool_hist) / total, e, color="black", lw=2, label="pool")
        for n in names:
            h = np.asarray(hists[n])
            ax.stairs(h / max(h.sum(), 1), e, color=color[n], lw=1.5, label=n)
        if logx:
            ax.set_xscale("log")
        if whole:
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("share of rows")
        ax.set_title(title)
        ax.legend()
        ax.grid(alpha=0.3)
        add(key, title, f"{title}, each normalised to its own number of rows.", fig)

    scores = data.get("scores")
    if scores:
        side_by_side(
            "score_distribution",
            "Score distribution: pool vs selections",
            f"score ({scores['column']})",
            scores["bin_edges"],
            scores["pool"]["histogram"],
            {n: scores["by_selection"][n]["histogram"] for n in names},
        )
    conv = data.get("conversations")
    if conv:
        side_by_side(
            "conversation_turns",
            "User turns per conversation",
            f"user turns in '{conv['column']}' (a single-turn row has 1)",
            conv["user_turn_bin_edges"],
            conv["pool"]["user_turns"]["histogram"],
            {n: conv["by_selection"][n]["user_turns"]["histogram"] for n in names},
            whole=True,
        )
        side_by_side(
            "conversation_length",
            "Conversation length",
            "characters of content (log scale)",
            conv["length_bin_edges"],
            conv["pool"]["characters"]["histogram"],
            {n: conv["by_selection"][n]["characters"]["histogram"] for n in names},
            logx=True,
        )

    src = data.get("sources")
    if src:
        order = src["order"][:15]
        fig = _new_figure(9.0, max(3.0, 0.35 * len(order) + 1.5))
        ax = fig.add_subplot()
        groups = ["pool", *names]
        height = 0.8 / len(groups)
        y = np.arange(len(order))
        for j, g in enumerate(groups):
            counts = src["pool"] if g == "pool" else src["by_selection"][g]
            total = max(sum(counts.values()), 1)
            ax.barh(
                y + (j - (len(groups) - 1) / 2) * height,
                [counts.get(s, 0) / total for s in order],
                height,
                label=g,
                color="black" if g == "pool" else color[g],
            )
        ax.set_yticks(y, order)
        ax.invert_yaxis()
        ax.set_xlabel("share of rows")
        ax.set_title(f"Source mix ('{src['column']}')")
        ax.legend()
        add("source_mix", "Source mix", "Share of rows from each source.", fig)

    if len(names) > 1:
        fig = _new_figure(4.0 + 0.9 * len(names) * (2 if labels else 1), 3.5 + 0.5 * len(names))
        matrices = [("rows (Jaccard)", "jaccard")]
        if labels:
            matrices.append(("labels (Jaccard)", "label_jaccard"))
        axes = fig.subplots(1, len(matrices), squeeze=False)[0]
        lookup = {(p["a"], p["b"]): p for p in data["overlap"]}
        for ax, (what, key) in zip(axes, matrices):
            m = np.eye(len(names))
            for i, a in enumerate(names):
                for j, b in enumerate(names):
                    p = lookup.get((a, b)) or lookup.get((b, a))
                    if p is not None:
                        m[i, j] = p[key]
            im = ax.imshow(m, vmin=0, vmax=1, cmap="Blues")
            for i in range(len(names)):
                for j in range(len(names)):
                    ax.text(
                        j,
                        i,
                        f"{m[i, j]:.2f}",
                        ha="center",
                        va="center",
                        color="white" if m[i, j] > 0.6 else "black",
                    )
            ax.set_xticks(range(len(names)), names, rotation=30)
            ax.set_yticks(range(len(names)), names)
            ax.set_title(f"Overlap of {what}")
            fig.colorbar(im, ax=ax, shrink=0.8)
        add("overlap", "Overlap between selections", "Jaccard similarity of rows and labels.", fig)

    graph = data.get("label_graph")
    if graph and (graph["most_covered"] or graph["least_covered"]):
        groups = [("most covered", x) for x in graph["most_covered"]] + [
            ("least covered", x) for x in graph["least_covered"]
        ]
        cols = min(3, len(groups))
        rows = math.ceil(len(groups) / cols)
        fig = _new_figure(4.0 * cols, 3.8 * rows)
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        focus = graph["focus_selection"]
        for ax, (kind, item) in zip(axes, groups):
            _draw_neighbourhood(ax, item, focus, kind)
        for ax in axes[len(groups) :]:
            ax.set_axis_off()
        fig.suptitle(
            f"Label-graph neighbourhoods ({focus}); node text: selected / pool rows",
            fontsize=11,
        )
        add(
            "label_neighbourhoods",
            "Label-graph neighbourhoods",
            f"The most and least covered labels of '{focus}' with their graph neighbours "
            "(edge width: similarity). Green nodes are covered by the selection, grey are not.",
            fig,
        )
    return figures


def _draw_neighbourhood(ax, item: dict, focus: str, kind: str) -> None:
    nbs = item["neighbors"]
    ax.set_xlim(-1.6, 1.6)
    ax.set_ylim(-1.5, 1.5)
    ax.set_axis_off()
    ax.set_title(f"{kind}: {_short(item['label'], 28)}", fontsize=9)

    def node(x, y, label, sel, pool, big=False):
        ax.scatter(
            [x],
            [y],
            s=500 if big else 220,
            zorder=3,
            color="#2ca02c" if sel else "#bbbbbb",
            edgecolors="black",
        )
        ax.text(
            x,
            y - (0.22 if big else 0.17),
            f"{_short(label, 18)}\n{sel} / {pool}",
            ha="center",
            va="top",
            fontsize=7,
            zorder=4,
        )

    n = len(nbs)
    for k, nb in enumerate(nbs):
        angle = 2 * math.pi * k / max(n, 1) + math.pi / 2
        x, y = math.cos(angle), math.sin(angle)
        ax.plot([0, x], [0, y], color="#555555", lw=0.5 + 3 * max(nb["weight"] - 0.5, 0), zorder=1)
        node(x, y, nb["label"], nb["selected"][focus], nb["pool"])
    node(0, 0, item["label"], item["selected"][focus], item["pool"], big=True)
    if not n:
        ax.text(0, 0.6, "(no neighbours in the graph)", ha="center", fontsize=8)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# ---------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th{background:#f4f4f4}td.l,th.l{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}code{background:#f4f4f4;padding:0 .2em}
nav#contents{background:#f8f8f8;border:1px solid #ddd;padding:.3em 1em;display:inline-block}
nav#contents ol{margin:.3em 0;padding-left:1.4em}p.note{color:#555;font-size:.9em;margin-top:0}
td.l{max-width:40em;overflow-wrap:anywhere}p.warning{color:#a00;font-weight:bold}
"""


# marks the page with how many figures decoded (``data-images-loaded``/``data-images-broken`` on
# <body>), so a headless browser's DOM dump tells whether every figure shows
_IMAGE_CHECK = (
    "window.addEventListener('load',function(){var ok=0,bad=0;"
    "document.querySelectorAll('img').forEach(function(i){var good=false;"
    "if(i.complete&&i.naturalWidth>0){try{var c=document.createElement('canvas');"
    "c.width=c.height=64;var g=c.getContext('2d');g.drawImage(i,0,0,64,64);"
    "var d=g.getImageData(0,0,64,64).data;"
    "for(var p=3;p<d.length;p+=4){if(d[p]>0){good=true;break}}}catch(e){}}"
    "if(good){ok++}else{bad++}});"
    "document.body.setAttribute('data-images-loaded',ok);"
    "document.body.setAttribute('data-images-broken',bad);});"
)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    def cell(tag: str, i: int, v: Any) -> str:
        cls = ' class="l"' if i < left else ""
        if isinstance(v, float):
            v = f"{v:.4g}"
        return f"<{tag}{cls}>{html.escape(str(v))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _information_row(stats: dict, bands: Sequence[str]) -> list:
    kept = stats.get("kept_by_band")
    return [
        stats["objective"],
        stats["labels_with_information"],
        f"{100 * stats['share_of_pool_labels']:.1f}%",
        "" if stats["gini"] is None else stats["gini"],
        stats["effective_labels"],
        f"{100 * stats['information_kept']:.1f}%" if "information_kept" in stats else "100%",
        *((f"{100 * kept[b]:.1f}%" if kept else "100%") for b in bands),
    ]


def _figure_html(fig: dict) -> str:
    b64 = base64.b64encode(fig["png"]).decode("ascii")
    name = html.escape(fig["file"])
    return (
        f'<figure id="{name[:-4]}"><img src="data:image/png;base64,{b64}" '
        f'alt="{html.escape(fig["title"])}" data-file="{name}">'
        f'<figcaption>{html.escape(fig["caption"])} (<a href="{name}">{name}</a>)</figcaption>'
        "</figure>"
    )


def _fmt_count(value: Any) -> str:
    return "unknown" if value is None else f"{value:,}"


def _provenance_html(data: dict) -> str:
    prov = data.get("provenance")
    if not prov:
        return ""
    graph = prov["label_graph"]
    if "labels" in graph:
        threshold = graph["threshold"]
        graph_text = (
            f"{graph['source']}; {graph['labels']:,} labels, {graph['edges']:,} edges, threshold "
            f"{'unknown' if threshold is None else f'{threshold:g}'}, embedder {graph['embedder']}"
        )
    else:
        graph_text = graph["source"]
    rows = [
        ["labels", f"column '{prov['labels']['column']}'", prov["labels"]["produced_by"]],
        ["score", f"column '{prov['score']['column']}'", prov["score"]["produced_by"]],
        ["label graph", "", graph_text],
        *(["selection", f"'{name}'", where] for name, where in prov["selections"].items()),
    ]
    return _table(["", "name", "made by"], rows, left=3)


def _picks_html(name: str, sel: dict) -> str:
    picks = sel.get("first_picks") or []
    head = (
        f"<h3>{html.escape(name)}: the first {len(picks):,} of {sel['rows']:,} picks</h3>"
        if picks
        else f"<h3>{html.escape(name)}: {sel['rows']:,} picks (none shown)</h3>"
    )
    if not picks:
        return head
    with_gain = sel.get("gains_from") is not None
    with_id = any(p["id"] is not None for p in picks)
    header = ["#", *(["id"] if with_id else []), "request (first user turn)", "labels", "score"]
    if with_gain:
        header.append("MIG gain")
    rows = []
    for p in picks:
        if p["labels"] is None:
            labels = "unknown"
        else:
            labels = ", ".join(p["labels"]) if p["labels"] else "(no label)"
        row = [p["rank"], *([p["id"] or ""] if with_id else []), p["text"] or "(no text)", labels]
        row.append("unknown" if p["score"] is None else p["score"])
        if with_gain:
            row.append("" if p["gain"] is None else p["gain"])
        rows.append(row)
    note = (
        f'<p class="note">MIG gains from {html.escape(sel["gains_from"])}.</p>'
        if with_gain
        else '<p class="note">MIG gains: unknown for this selection.</p>'
    )
    return head + _table(header, rows, left=len(header) - (2 if with_gain else 1)) + note


def render_html(data: dict, figures: list[dict], title: str = "hf-mig selection report") -> str:
    """The report page: contents, provenance, first picks, summary tables and every figure
    (embedded as PNG data URIs), one ``<section id=...>`` per topic."""
    figs = {f["file"][:-4]: _figure_html(f) for f in figures}
    names = list(data["selections"])
    sections: list[tuple[str, str, list[str]]] = []  # (anchor, heading, html parts)

    def section(anchor: str, heading: str) -> list[str]:
        parts: list[str] = []
        sections.append((anchor, heading, parts))
        return parts

    labels = data.get("labels")
    pool_unlabelled = labels.get("pool_unlabelled_rows") if labels else None
    parts = section("summary", "Summary")
    parts.append(
        f"<p>Pool: {data['pool']['rows']:,} rows"
        + (f", {pool_unlabelled:,} of them without a label" if pool_unlabelled is not None else "")
        + ". Selections: "
        + ", ".join(
            f"<b>{html.escape(n)}</b> ({data['selections'][n]['rows']:,} rows"
            + (
                f", {_fmt_count(labels['by_selection'][n]['unlabelled_rows'])} without a label"
                if labels
                else ""
            )
            + ")"
            for n in names
        )
        + ".</p>"
    )
    parts.append("<h3>Where the columns came from</h3>")
    parts.append(_provenance_html(data))

    parts = section("picks", "What was picked")
    parts.append(
        "<p>The first picks of each selection, in pick order: the row's first user turn "
        f"(cut to {PICK_TEXT_CHARS} characters), its labels, its score and, when known, the "
        "information gain MIG picked it with.</p>"
    )
    parts += [_picks_html(n, data["selections"][n]) for n in names]

    if labels:
        parts = section("labels", "Label coverage")
        rows = [
            [
                "pool",
                data["pool"]["rows"],
                labels["pool_labels"],
                labels["pool_labels"],
                "100.0%",
                next((b["pool_labels"] for b in labels["frequency_bands"] if b["band"] == "1"), ""),
                _fmt_count(pool_unlabelled),
            ]
        ]
        rows += [
            [
                n,
                data["selections"][n]["rows"],
                labels["by_selection"][n]["labels_covered"],
                labels["pool_labels"],
                f"{100 * labels['by_selection'][n]['coverage']:.1f}%",
                labels["by_selection"][n]["singleton_labels_covered"],
                _fmt_count(labels["by_selection"][n]["unlabelled_rows"]),
            ]
            for n in names
        ]
        parts.append(
            _table(
                [
                    "selection",
                    "rows",
                    "distinct labels covered",
                    "pool labels",
                    "coverage",
                    "single-row labels covered",
                    "rows without a label",
                ],
                rows,
            )
        )
        parts.append(
            "<p>Rows without a label (an empty or missing label list) are kept in the pool; MIG "
            "ranks them last, since they add no information to any label.</p>"
        )
        parts += [
            figs.get(k, "") for k in ("coverage_curve", "top_labels", "coverage_by_frequency")
        ]
        parts.append(
            "<details><summary>Most frequent labels: pool rows vs selected rows (table)</summary>"
        )
        parts.append(
            _table(
                ["label", "pool", *names],
                [[t["label"], t["pool"], *(t[n] for n in names)] for t in labels["top_labels"]],
            )
        )
        parts.append("</details>")
    info = data.get("information")
    if info:
        parts = section("information", "Information per label")
        if "skipped" in info:
            parts.append(f"<p>Not computed: {html.escape(info['skipped'])}</p>")
        else:
            phi = (
                f"(x + {info['phi_a']:g})^{info['phi_b']:g}"
                if info["phi"] == "pow"
                else f"1 - exp(-{info['phi_alpha']:g} x)"
            )
            parts.append(
                "<p>MIG's information of a set is <code>x(S) = sum u_i</code> over its rows, "
                "<code>u_i = w_i v_i P</code> (w: the score"
                + (" divided by the row's number of labels" if info["norm"] else "")
                + f"), and <code>E(S) = sum phi(x)</code> with <code>phi(x) = {phi}</code> over "
                f"{info['num_labels']:,} labels (E of the empty set: "
                f"{info['initial_objective']:.4g}). Propagation P: "
                f"{html.escape(info['propagation'])}. Gini and share are over the "
                f"{len(info['ranked_labels']):,} labels the pool informs (x &gt; 0).</p>"
            )
            bands = [b["band"] for b in info["bands"]]
            rows = [["pool", data["pool"]["rows"]] + _information_row(info["pool"], bands)]
            rows += [
                [n, data["selections"][n]["rows"]]
                + _information_row(info["by_selection"][n], bands)
                for n in names
            ]
            parts.append(
                _table(
                    [
                        "",
                        "rows",
                        "E(S)",
                        "labels with x > 0",
                        "share of pool's labels",
                        "Gini of x",
                        "effective labels",
                        "information kept",
                        *(f"kept: {b}" for b in bands),
                    ],
                    rows,
                )
            )
            check = info.get("mig_trace_check")
            if check:
                parts.append(
                    f"<p>E of '{html.escape(check['selection'])}' = {check['objective']:.10g}; "
                    f"the MIG greedy trace ends at {check['trace_final_objective']:.10g} "
                    f"(relative difference {check['relative_difference']:.1e}).</p>"
                )
            parts.append(figs.get("label_information", ""))
    trace = data.get("mig_trace")
    if trace:
        parts = section("trace", "MIG greedy trace")
        rows = [
            ["initial E(S)", trace["initial_objective"]],
            ["final E(S)", trace["final_objective"]],
            ["picks", trace["k"]],
            *([k, v] for k, v in trace["stats"].items()),
        ]
        parts.append(_table(["", "value"], rows))
        parts.append(figs.get("mig_trace", ""))
    if data.get("scores"):
        sc = data["scores"]
        parts = section("scores", "Scores")
        if sc.get("collapse"):
            parts.append(
                '<p class="warning">Score collapse in the pool\'s '
                f"'{html.escape(sc['column'])}': {html.escape(sc['collapse']['message'])}.</p>"
            )
        stats = [("pool", sc["pool"]), *((n, sc["by_selection"][n]) for n in names)]
        parts.append(
            _table(
                ["", "mean", "median", "min", "max"],
                [
                    [n, s.get("mean", ""), s.get("median", ""), s.get("min", ""), s.get("max", "")]
                    for n, s in stats
                ],
            )
        )
        parts.append(figs.get("score_distribution", ""))
    if data.get("conversations"):
        cv = data["conversations"]
        parts = section("conversations", "Conversations")
        stats = [("pool", cv["pool"]), *((n, cv["by_selection"][n]) for n in names)]
        parts.append(
            f"<p>User turns: the messages of '{html.escape(cv['column'])}' whose role is the "
            "user's (a single-turn row has 1). Characters: all messages' content.</p>"
        )
        parts.append(
            _table(
                [
                    "",
                    "mean user turns",
                    "median user turns",
                    "mean characters",
                    "median characters",
                ],
                [
                    [
                        n,
                        s["user_turns"].get("mean", ""),
                        s["user_turns"].get("median", ""),
                        s["characters"].get("mean", ""),
                        s["characters"].get("median", ""),
                    ]
                    for n, s in stats
                ],
            )
        )
        parts += [figs.get("conversation_turns", ""), figs.get("conversation_length", "")]
    if data.get("sources"):
        parts = section("sources", "Source mix")
        parts.append(figs.get("source_mix", ""))
    if data["overlap"]:
        parts = section("overlap", "Overlap between selections")
        keys = ["shared_rows", "jaccard", "shared_labels", "label_jaccard"]
        parts.append(
            _table(
                ["a", "b", "shared rows", "row Jaccard", "shared labels", "label Jaccard"],
                [[p["a"], p["b"], *(p.get(k, "") for k in keys)] for p in data["overlap"]],
                left=2,
            )
        )
        parts.append(figs.get("overlap", ""))
    graph = data.get("label_graph")
    if graph:
        parts = section("graph", "Label graph")
        st = graph["stats"]
        parts.append(
            f"<p>{st['num_labels']:,} labels, {st['num_edges']:,} edges (threshold "
            f"{html.escape(str(st.get('threshold')))}), {st['isolated_labels']:,} isolated; "
            f"{graph['pool_labels_in_graph']:,} of the pool's labels are in the graph.</p>"
        )
        parts.append(figs.get("label_neighbourhoods", ""))
    # any figure not placed above
    placed = "".join(x for _, _, body in sections for x in body)
    rest = [v for v in figs.values() if v not in placed]
    if rest:
        section("other", "Other figures").extend(rest)

    toc = "".join(
        f'<li><a href="#{anchor}">{html.escape(heading)}</a></li>'
        for anchor, heading, _ in sections
    )
    body = [f"<h1>{html.escape(title)}</h1>", f'<nav id="contents"><ol>{toc}</ol></nav>']
    for anchor, heading, content in sections:
        body.append(
            f'<section id="{anchor}">\n<h2>{html.escape(heading)}</h2>\n'
            + "\n".join(x for x in content if x)
            + "\n</section>"
        )
    body.append('<p><small>Numbers: <a href="report.json">report.json</a>.</small></p>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + f"\n<script>{_IMAGE_CHECK}</script>\n</body></html>\n"
    )


# ---------------------------------------------------------------------------- entry point
def build_report(
    pool: Dataset,
    selections: Mapping[str, Any],
    out_dir: str | Path,
    *,
    labels_column: str = "labels",
    score_column: str = "score",
    id_column: str | None = None,
    label_graph: Any = None,
    mig_result: Any = None,
    prop_weight: float = 1.0,
    norm: bool = False,
    objective: Objective | None = None,
    title: str = "hf-mig selection report",
    overwrite: bool = False,
    first_picks: int = FIRST_PICKS,
    gains: Mapping[str, Sequence[float]] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``report.html``, its PNG figures and ``report.json`` to ``out_dir``.

    ``selections`` maps a name to row indices into ``pool`` (pick order), to ids of the pool's
    ``id_column``, or to a selected subset (a ``Dataset`` with that id column). ``label_graph``
    adds the neighbourhoods of the most and least covered labels and is the propagation of the
    information per label (``x(S) = sum_{i in S} u_i`` and ``E(S)``; without a graph: the identity,
    no propagation); ``prop_weight``, ``norm`` and ``objective`` (default ``Objective()``,
    ``phi(x) = (x + 1e-6)^0.8``) are MIG's options of the same names. ``mig_result`` (a
    :class:`hf_mig.GreedyResult`, e.g. ``MIGSelector.result_``) adds the greedy trace; with the
    selector's graph and options, ``E`` of its selection equals the trace's last value (checked
    in ``information.mig_trace_check``). Returns the path of ``report.html``.

    Each selection's first ``first_picks`` rows (default 10; 0 shows none) are listed with their
    first user turn (cut to ``PICK_TEXT_CHARS``, HTML-escaped on the page), labels, score and
    MIG gain. A gain is shown only when known: ``mig_result``'s gains for the selection whose
    picks are ``mig_result.indices``, a subset's ``mig_gain`` column, or ``gains`` (``{name:
    one gain per pick, in pick order}``; another length raises ``ValueError``); otherwise the
    page says it is unknown. ``provenance`` states how the columns and selections were made:
    ``tagger``, ``scorer``, ``graph`` (e.g. the graph file) and ``selections`` (``{name:
    description}``); a tagger or scorer not given is what the pool's own companion columns show
    (:func:`infer_provenance`), the graph's embedder and threshold are read from the graph, and
    anything not known is reported as ``"unknown"``. ``report.json`` holds all of it
    (``provenance``, ``selections.<name>.first_picks`` / ``gains_from``, and the rows without a
    label: ``labels.pool_unlabelled_rows``, ``labels.by_selection.<name>.unlabelled_rows``).

    Every file is rendered first, then each is written beside its target and renamed
    (:func:`hf_mig.data.io.atomic_output`), the page last. An existing ``report.json`` or
    ``report.html`` (checked before any number is computed) or figure (checked before any file
    is written) raises :class:`hf_mig.data.io.OutputExistsError` unless ``overwrite=True``.
    """
    out = Path(out_dir)
    for name in REPORT_FILES:
        check_output(out / name, overwrite=overwrite)
    data, indices, raw = compute_report_data(
        pool,
        selections,
        labels_column=labels_column,
        score_column=score_column,
        id_column=id_column,
        label_graph=label_graph,
        mig_result=mig_result,
        prop_weight=prop_weight,
        norm=norm,
        objective=objective,
        first_picks=first_picks,
        gains=gains,
        provenance=provenance,
    )
    figures = _make_figures(data, raw, indices)
    for fig in figures:
        check_output(out / fig["file"], overwrite=overwrite)
    data["figures"] = [{k: f[k] for k in ("file", "title", "caption")} for f in figures]
    # everything is rendered before the first file is written
    report_json = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    report_html = render_html(data, figures, title)
    for fig in figures:
        with atomic_output(out / fig["file"], overwrite=overwrite) as tmp:
            tmp.write_bytes(fig["png"])
    write_text_atomic(out / "report.json", report_json, overwrite=overwrite)
    page = out / "report.html"
    write_text_atomic(page, report_html, overwrite=overwrite)
    return page
