"""A selection report: what a subset covers of its pool, as an HTML page, PNGs and JSON.

::

    from hf_mig.report import build_report

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

The numbers come from :mod:`hf_mig.report.data`, the figures from :mod:`hf_mig.report.figures`
and the page from :mod:`hf_mig.report.html`; selections are read by
:mod:`hf_mig.report.selections`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset

from hf_mig.core.objective import Objective
from hf_mig.data.io import atomic_output, check_output, write_text_atomic
from hf_mig.report.constraints import constraint_use
from hf_mig.report.data import (
    FIRST_PICKS,
    GAIN_COLUMN,
    PICK_TEXT_CHARS,
    REPORT_FILES,
    compute_report_data,
    coverage_curve,
    first_user_text,
    infer_provenance,
    selection_gains,
    user_turns,
)
from hf_mig.report.figures import make_figures
from hf_mig.report.html import render_html
from hf_mig.report.information import (
    INFORMATION_BANDS,
    effective_labels,
    gini,
    information_vectors,
)
from hf_mig.report.selections import (
    detect_id_column,
    read_selection_facts,
    read_selection_file,
    resolve_selection,
)

__all__ = [
    "FIRST_PICKS",
    "GAIN_COLUMN",
    "INFORMATION_BANDS",
    "PICK_TEXT_CHARS",
    "REPORT_FILES",
    "build_report",
    "compute_report_data",
    "constraint_use",
    "coverage_curve",
    "detect_id_column",
    "effective_labels",
    "first_user_text",
    "gini",
    "infer_provenance",
    "information_vectors",
    "make_figures",
    "read_selection_facts",
    "read_selection_file",
    "render_html",
    "resolve_selection",
    "selection_gains",
    "user_turns",
]


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
    constraints: Mapping[str, Mapping[str, Any]] | None = None,
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

    ``constraints`` (``{name: the selection's facts}``: what :func:`read_selection_facts` reads
    from the card ``hf-mig select`` writes, or a training run's selection manifest) adds, for
    each selection made with a token budget or quotas, the "Budget and quotas" section: the
    budget, its cost column, the picks' total cost and the share of the budget used; per group
    of the quota column, the picks, the bounds as counts, the group's share of the selection and
    of the pool (``report.json``: ``constraints.<name>``, see
    :func:`hf_mig.report.constraints.constraint_use`). Selections without either get none.

    Every file is rendered first, then each is written beside its target and renamed
    (:func:`hf_mig.data.io.atomic_output`), the page last. An existing ``report.json`` or
    ``report.html`` (checked before any number is computed) or figure (checked before any file
    is written) raises :class:`hf_mig.data.io.OutputExistsError` unless ``overwrite=True``.
    """
    out = Path(out_dir)
    _check_outputs(out, REPORT_FILES, overwrite)
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
        constraints=constraints,
    )
    figures = make_figures(data, raw, indices)
    _check_outputs(out, [fig["file"] for fig in figures], overwrite)
    data["figures"] = [{k: f[k] for k in ("file", "title", "caption")} for f in figures]
    return _write_report(out, data, figures, title, overwrite)


def _check_outputs(out: Path, names: Sequence[str], overwrite: bool) -> None:
    """:func:`hf_mig.data.io.check_output` of each of ``names`` in ``out``: raises
    :class:`hf_mig.data.io.OutputExistsError` for one that exists unless ``overwrite``."""
    for name in names:
        check_output(out / name, overwrite=overwrite)


def _write_report(out: Path, data: dict, figures: list[dict], title: str, overwrite: bool) -> Path:
    """Renders ``report.json`` and ``report.html`` from ``data`` and ``figures``, then writes
    each figure's PNG, the JSON and, last, the page, each atomically; returns the page's path."""
    report_json = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    report_html = render_html(data, figures, title)
    for fig in figures:
        with atomic_output(out / fig["file"], overwrite=overwrite) as tmp:
            tmp.write_bytes(fig["png"])
    write_text_atomic(out / "report.json", report_json, overwrite=overwrite)
    page = out / "report.html"
    write_text_atomic(page, report_html, overwrite=overwrite)
    return page
