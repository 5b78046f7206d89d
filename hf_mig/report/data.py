"""The numbers of a selection report (``report.json``): what each subset covers of its pool.

Labels, scores, conversations, sources and overlaps per selection; MIG's own information per
label comes from :mod:`hf_mig.report.information`.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from datasets import Dataset

from hf_mig.core.objective import Objective
from hf_mig.core.summary import selection_summary
from hf_mig.report.constraints import constraint_use
from hf_mig.report.information import information_section, why_section
from hf_mig.report.selections import detect_id_column, resolve_selection

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
#: the files every report writes (besides its figures); the page is written last
REPORT_FILES = ("report.json", "report.html")


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


def _first_present(pool: Dataset, columns: Sequence[str]) -> str | None:
    """The first of ``columns`` the pool has, or ``None``."""
    return next((c for c in columns if c in pool.column_names), None)


def _histogram(values: Sequence[float], edges: np.ndarray) -> list[int]:
    return np.histogram(np.asarray(values, dtype=float), bins=edges)[0].astype(int).tolist()


def _distribution(values: Sequence[float], edges: np.ndarray) -> dict:
    """:func:`_describe` of ``values`` with their ``histogram`` over ``edges``."""
    return {**_describe(values), "histogram": _histogram(values, edges)}


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
    conv_col = _first_present(pool, CONVERSATION_COLUMNS)
    text_col = _first_present(pool, TEXT_COLUMNS)
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
    constraints: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[dict, dict[str, np.ndarray], dict]:
    """The numbers of the report; returns ``(data, indices by selection, raw arrays for plots)``.

    ``first_picks`` (>= 0), ``gains``, ``provenance`` and ``constraints`` are as for
    :func:`build_report`.
    """
    _check_request(selections, first_picks)
    indices = _resolve_selections(pool, selections, id_column)
    data: dict[str, Any] = {
        "pool": {"rows": len(pool), "columns": list(pool.column_names)},
        "selections": {name: {"rows": int(len(idx))} for name, idx in indices.items()},
    }
    raw: dict[str, Any] = {}
    ids_col = _add_first_ids(data, pool, indices, id_column)
    used = _constraints_section(pool, indices, constraints)
    if used:
        data["constraints"] = used
    data["provenance"] = _provenance_section(
        pool, indices, labels_column, score_column, label_graph, provenance
    )
    known = _known_gains(selections, indices, mig_result, gains)
    columns = {"labels_column": labels_column, "score_column": score_column}
    _add_first_picks(data, pool, indices, known, first_picks, id_column=ids_col, **columns)
    summaries = {name: selection_summary(pool, idx, **columns) for name, idx in indices.items()}
    encoding = {"label_graph": label_graph, "prop_weight": prop_weight, "norm": norm, **columns}
    label_sets = _add_label_sections(
        data,
        raw,
        pool,
        indices,
        summaries,
        known,
        objective=objective or Objective(),
        mig_result=mig_result,
        first_picks=first_picks,
        encoding=encoding,
    )
    if mig_result is not None:
        data["mig_trace"] = _trace_section(mig_result)
    data.update(_column_sections(pool, indices, summaries, score_column, raw))
    data["overlap"] = _overlap_section(indices, label_sets or {})
    if label_graph is not None and label_sets is not None:
        data["label_graph"] = _neighbourhoods(
            label_graph, raw, list(indices), mig_result is not None
        )
    return data, indices, raw


def _check_request(selections: Mapping[str, Any], first_picks: Any) -> None:
    """``ValueError`` unless there is a selection and ``first_picks`` is an integer >= 0."""
    if not selections:
        raise ValueError("no selections to report on")
    if not isinstance(first_picks, int) or isinstance(first_picks, bool) or first_picks < 0:
        raise ValueError(f"first_picks must be an integer >= 0, got {first_picks!r}")


def _resolve_selections(
    pool: Dataset, selections: Mapping[str, Any], id_column: str | None
) -> dict[str, np.ndarray]:
    """Each selection as its rows of ``pool`` in pick order (:func:`resolve_selection`), by
    name (as a string)."""
    return {
        str(name): resolve_selection(pool, sel, id_column=id_column, name=str(name))
        for name, sel in selections.items()
    }


def _add_first_ids(
    data: dict, pool: Dataset, indices: dict[str, np.ndarray], id_column: str | None
) -> str | None:
    """Adds each selection's first 10 ids (``selections.<name>.first_ids``) when the pool has
    ``id_column`` (else the column :func:`detect_id_column` finds); returns that column, or
    ``None`` when the pool has no id column."""
    ids_col = id_column or detect_id_column(pool)
    if not ids_col or ids_col not in pool.column_names:
        return None
    pool_ids = pool[ids_col]
    for name, idx in indices.items():
        data["selections"][name]["first_ids"] = [str(pool_ids[i]) for i in idx[:10]]
    return ids_col


def _add_first_picks(
    data: dict,
    pool: Dataset,
    indices: dict[str, np.ndarray],
    known: dict[str, tuple[np.ndarray, str]],
    n: int,
    *,
    labels_column: str,
    score_column: str,
    id_column: str | None,
) -> None:
    """Adds, per selection, where its gains come from (``gains_from``, ``None`` when unknown)
    and its first ``n`` picks (``first_picks``, see :func:`_first_picks`)."""
    for name, idx in indices.items():
        values, source = known.get(name, (None, None))
        data["selections"][name]["gains_from"] = source
        data["selections"][name]["first_picks"] = _first_picks(
            pool,
            idx,
            n,
            labels_column=labels_column,
            score_column=score_column,
            id_column=id_column,
            gains=values,
        )


def _add_label_sections(
    data: dict,
    raw: dict,
    pool: Dataset,
    indices: dict[str, np.ndarray],
    summaries: dict[str, dict],
    known: dict[str, tuple[np.ndarray, str]],
    *,
    objective: Objective,
    mig_result: Any,
    first_picks: int,
    encoding: dict[str, Any],
) -> dict[str, set[str]] | None:
    """Adds the ``labels`` and ``information`` sections and, with a label graph, why the first
    ``first_picks`` picks of the selections with ``known`` gains were picked
    (``selections.<name>.why``). ``encoding`` holds the keyword arguments of
    :func:`hf_mig.report.information.information_vectors`. Returns the labels each selection
    covers, or ``None`` (and adds nothing) when the pool has no labels column."""
    row_labels = _row_labels(pool, encoding["labels_column"])
    if row_labels is None:
        return None
    data["labels"] = _labels_section(row_labels, indices, summaries, raw)
    data["information"], raw["information"] = information_section(
        pool, indices, objective=objective, mig_result=mig_result, **encoding
    )
    if encoding["label_graph"] is not None and known:
        why = why_section(
            pool,
            {name: indices[name] for name in known},
            objective=objective,
            gain=_gain_kind(mig_result),
            first=first_picks,
            **encoding,
        )
        for name, section in why.items():
            data["selections"][name]["why"] = section
    return {name: set(c) for name, c in raw["sel_counts"].items()}


def _column_sections(
    pool: Dataset,
    indices: dict[str, np.ndarray],
    summaries: dict[str, dict],
    score_column: str,
    raw: dict,
) -> dict[str, dict]:
    """The ``scores``, ``conversations`` and ``sources`` sections, in that order, each when the
    pool has its column (the first of :data:`CONVERSATION_COLUMNS` / :data:`SOURCE_COLUMNS`
    present); their per-row values go to ``raw``."""
    sections = {}
    if score_column in pool.column_names:
        sections["scores"] = _scores_section(pool, score_column, indices, summaries, raw)
    conv_col = _first_present(pool, CONVERSATION_COLUMNS)
    if conv_col is not None:
        sections["conversations"] = _conversations_section(pool, conv_col, indices, raw)
    src_col = _first_present(pool, SOURCE_COLUMNS)
    if src_col is not None:
        sections["sources"] = _sources_section(pool, src_col, indices)
    return sections


def _constraints_section(
    pool: Dataset,
    indices: dict[str, np.ndarray],
    constraints: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, dict]:
    """``{selection: its budget and quota use}`` (:func:`constraint_use`) for the selections
    whose facts record a budget or quotas."""
    out = {}
    for name, facts in (constraints or {}).items():
        if str(name) not in indices:
            raise ValueError(
                f"constraints given for {name!r}, which is not a selection ({list(indices)})"
            )
        if facts:
            section = constraint_use(pool, indices[str(name)], facts, name=str(name))
            if section:
                out[str(name)] = section
    return out


def _gain_kind(mig_result: Any) -> str:
    """The gain kind the MIG run recorded (``GreedyResult.stats["gain"]``), else MIG's default
    ``"gradient"``."""
    stats = getattr(mig_result, "stats", None) or {}
    return str(stats.get("gain", "gradient"))


def _provenance_section(
    pool: Dataset,
    indices: dict[str, np.ndarray],
    labels_column: str,
    score_column: str,
    label_graph: Any,
    provenance: Mapping[str, Any] | None,
) -> dict:
    """What made the labels, the scores, the graph and each selection: as given, else inferred
    from the pool (:func:`infer_provenance`)."""
    given = dict(provenance or {})
    inferred = infer_provenance(pool, labels_column, score_column)
    described = dict(given.get("selections") or {})
    return {
        "labels": {
            "column": labels_column,
            "produced_by": given.get("tagger") or inferred["tagger"],
        },
        "score": {"column": score_column, "produced_by": given.get("scorer") or inferred["scorer"]},
        "label_graph": _graph_provenance(label_graph, given.get("graph")),
        "selections": {name: str(described.get(name) or "unknown") for name in indices},
    }


def _known_gains(
    selections: Mapping[str, Any],
    indices: dict[str, np.ndarray],
    mig_result: Any,
    gains: Mapping[str, Sequence[float]] | None,
) -> dict[str, tuple[np.ndarray, str]]:
    """``{selection: (one gain per pick, where they come from)}`` for the selections whose
    gains are known: a subset's gain column, then the MIG run's, then ``gains`` (later ones
    win). ``ValueError`` for gains of an unknown selection or of another length."""
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
    return known


def _labels_section(
    row_labels: list[list[str]],
    indices: dict[str, np.ndarray],
    summaries: dict[str, dict],
    raw: dict,
) -> dict:
    """Label coverage per selection, by pool frequency band, and of the most frequent labels;
    the label counts go to ``raw`` (``pool_counts``, ``ranked``, ``sel_counts``)."""
    pool_counts = Counter(label for labels in row_labels for label in labels)
    ranked = sorted(pool_counts, key=lambda x: (-pool_counts[x], x))
    sel_counts = {
        name: Counter(label for i in idx for label in row_labels[i])
        for name, idx in indices.items()
    }
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
        band = [x for x in ranked if pool_counts[x] >= lo and (hi is None or pool_counts[x] <= hi)]
        labels["frequency_bands"].append(
            {
                "band": _band_name(lo, hi),
                "pool_labels": len(band),
                "covered": {
                    name: sum(1 for x in band if x in sel_counts[name]) for name in indices
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
    raw["pool_counts"], raw["ranked"], raw["sel_counts"] = pool_counts, ranked, sel_counts
    return labels


def _trace_section(mig_result: Any) -> dict:
    """The MIG run's greedy trace: E(S) and the gain after each pick, and its stats."""
    trace = np.asarray(mig_result.objective_trace, dtype=float)
    gains = np.asarray(mig_result.gains, dtype=float)
    stats = {
        k: (v.item() if isinstance(v, np.generic) else v)
        for k, v in dict(getattr(mig_result, "stats", {}) or {}).items()
    }
    return {
        "k": int(len(mig_result.indices)),
        "initial_objective": float(mig_result.initial_objective),
        "final_objective": float(trace[-1]) if trace.size else float(mig_result.initial_objective),
        "objective": trace.tolist(),
        "gains": gains.tolist(),
        "stats": json.loads(json.dumps(stats, default=str)),
    }


def _scores_section(
    pool: Dataset,
    score_column: str,
    indices: dict[str, np.ndarray],
    summaries: dict[str, dict],
    raw: dict,
) -> dict:
    """Score statistics and histograms (30 bins over the pool's finite range), pool and
    selections; the scores go to ``raw["scores"]``."""
    scores = np.asarray(pool[score_column], dtype=float)
    finite = scores[np.isfinite(scores)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, 31)
    raw["scores"] = scores
    return {
        "column": score_column,
        "collapse": next(iter(summaries.values())).get("score_collapse"),
        "bin_edges": edges.tolist(),
        "pool": _distribution(finite, edges),
        "by_selection": {name: _distribution(scores[idx], edges) for name, idx in indices.items()},
    }


def _conversations_section(
    pool: Dataset, column: str, indices: dict[str, np.ndarray], raw: dict
) -> dict:
    """User turns and characters per conversation (statistics and histograms), pool and
    selections; the per-row values go to ``raw`` (``turns``, ``chars``)."""
    turns, chars = _conversation_stats(pool, column)
    lowest = min(int(turns.min()) if turns.size else 1, 1)
    t_edges = np.arange(lowest - 0.5, max(int(turns.max()) if turns.size else 1, 1) + 1.5)
    c_max = max(float(chars.max()) if chars.size else 1.0, 1.0)
    c_edges = np.logspace(0, math.log10(c_max) + 0.01, 31)

    def described(t: np.ndarray, c: np.ndarray) -> dict:
        return {
            "user_turns": _distribution(t, t_edges),
            "characters": _distribution(c, c_edges),
        }

    raw["turns"], raw["chars"] = turns, chars
    return {
        "column": column,
        "user_turn_bin_edges": t_edges.tolist(),
        "length_bin_edges": c_edges.tolist(),
        "pool": described(turns, chars),
        "by_selection": {name: described(turns[idx], chars[idx]) for name, idx in indices.items()},
    }


def _sources_section(pool: Dataset, column: str, indices: dict[str, np.ndarray]) -> dict:
    """Rows per source (most common first), pool and selections."""
    src = [str(s) for s in pool[column]]
    pool_src = Counter(src)
    order = sorted(pool_src, key=lambda s: (-pool_src[s], s))
    return {
        "column": column,
        "order": order,
        "pool": {s: pool_src[s] for s in order},
        "by_selection": {
            name: {s: c for s, c in ((s, Counter(src[i] for i in idx)[s]) for s in order)}
            for name, idx in indices.items()
        },
    }


def _overlap_section(indices: dict[str, np.ndarray], label_sets: dict[str, set[str]]) -> list[dict]:
    """Shared rows (and labels) of each pair of selections, with their Jaccard similarity."""
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
    return pairs


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
