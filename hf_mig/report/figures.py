"""The figures of a selection report, drawn with matplotlib from :mod:`hf_mig.report.data`."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hf_mig.report.data import TOP_LABELS


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


#: ``figure(its data, the report's data, raw arrays, selection names, colours) -> [figure]``.
Drawer = Callable[[Any, dict, dict, list[str], dict[str, str]], list[dict]]


def _figure(name: str, title: str, caption: str, fig) -> dict:
    return {"file": f"{name}.png", "title": title, "caption": caption, "png": _png(fig)}


def make_figures(data: dict, raw: dict, indices: dict[str, np.ndarray]) -> list[dict]:
    """The report's figures from :func:`hf_mig.report.data.compute_report_data`'s ``data`` and
    ``raw`` arrays, for the selections named in ``indices``: one dict per figure (``file``,
    ``title``, ``caption``, ``png`` bytes), in page order; a figure whose data is absent is left
    out."""
    names = list(indices)
    color = _colors(names)
    figures = []
    for key, draw in _DRAWERS:
        part = data if key is None else data.get(key)
        if part:
            figures += draw(part, data, raw, names, color)
    return figures


def _coverage_curve(
    labels: Any, data: dict, raw: dict, names: list[str], color: dict[str, str]
) -> list[dict]:
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
    caption = "Distinct labels covered after each pick; the dashed line is the pool's total."
    return [_figure("coverage_curve", "Label coverage against k", caption, fig)]


def _top_labels(
    labels: Any, data: dict, raw: dict, names: list[str], color: dict[str, str]
) -> list[dict]:
    """The most frequent labels: share of rows carrying each, pool vs each selection."""
    ranked, pool_counts = raw["ranked"], raw["pool_counts"]
    top = ranked[:TOP_LABELS]
    if not top:
        return []
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
        f"The {len(top)} most frequent labels of the pool (of {len(ranked):,}): pool vs selections"
    )
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    caption = (
        f"The {len(top)} labels carried by most pool rows: grey bars, the share of the "
        "pool's rows carrying each; markers, the share of each selection's rows. A marker "
        "left of its bar: the selection has the label less often than the pool."
    )
    return [_figure("top_labels", "Most frequent labels", caption, fig)]


def _coverage_by_frequency(
    labels: Any, data: dict, raw: dict, names: list[str], color: dict[str, str]
) -> list[dict]:
    bands = labels["frequency_bands"]
    fig = _new_figure()
    ax = fig.add_subplot()
    width = 0.8 / max(len(names), 1)
    xb = np.arange(len(bands))
    for j, n in enumerate(names):
        vals = [(b["covered"][n] / b["pool_labels"] if b["pool_labels"] else 0.0) for b in bands]
        ax.bar(xb + (j - (len(names) - 1) / 2) * width, vals, width, label=n, color=color[n])
    ax.set_xticks(xb, [f"{b['band']} rows\n({b['pool_labels']} labels)" for b in bands])
    ax.set_xlabel("how many pool rows carry the label")
    ax.set_ylabel("share of those labels covered")
    ax.set_ylim(0, 1.05)
    ax.set_title("Coverage by label frequency")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    caption = "Share of the pool's labels covered, grouped by how common each label is."
    return [_figure("coverage_by_frequency", "Coverage by label frequency", caption, fig)]


def _label_information(
    info: Any, data: dict, raw: dict, names: list[str], color: dict[str, str]
) -> list[dict]:
    """MIG's information per label (top) and the share of it each selection keeps (bottom)."""
    info_raw = raw.get("information")
    if not (info_raw and info_raw["x_pool"].size):
        return []
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
        ax2.plot(r, np.convolve(frac, kernel, mode="same") / norm_, color=color[n], lw=1.5, label=n)
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
    caption = (
        "Top: MIG's information x = sum of u_i = w_i v_i P per label for the pool and each "
        "selection, labels ranked by the pool's x (log scale; labels a selection leaves at 0 "
        "are not drawn). Bottom: the share of the pool's information each selection keeps "
        "per label; the dashed lines are each selection's share of the rows (what an even "
        "spread would keep), the right end is the long tail. Propagation: "
        f"{info['propagation']}."
    )
    return [_figure("label_information", "MIG information per label", caption, fig)]


def _mig_trace(
    trace: Any, data: dict, raw: dict, names: list[str], color: dict[str, str]
) -> list[dict]:
    if not trace["objective"]:
        return []
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
        f"{k}={v}" for k, v in st.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    )
    if note:
        ax2.text(0.99, 0.95, note, transform=ax2.transAxes, ha="right", va="top", fontsize=8)
    caption = (
        "The objective E(S) after each pick (top) and the gain each pick was chosen with (bottom)."
    )
    return [_figure("mig_trace", "MIG greedy trace", caption, fig)]


def _histograms(
    key: str,
    title: str,
    xlabel: str,
    edges: list,
    pool_hist: Sequence[float],
    hists: dict[str, Sequence[float]],
    color: dict[str, str],
    *,
    logx: bool = False,
    whole: bool = False,
) -> dict:
    """The pool's and each selection's histogram over ``edges``, each normalised to its rows."""
    fig = _new_figure()
    ax = fig.add_subplot()
    e = np.asarray(edges)
    total = max(sum(pool_hist), 1)
    ax.stairs(np.asarray(pool_hist) / total, e, color="black", lw=2, label="pool")
    for n, hist in hists.items():
        h = np.asarray(hist)
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
    return _figure(key, title, f"{title}, each normalised to its own number of rows.", fig)


def _score_distribution(
    scores: Any, data: dict, raw: dict, names: list[str], color: dict[str, str]
) -> list[dict]:
    return [
        _histograms(
            "score_distribution",
            "Score distribution: pool vs selections",
            f"score ({scores['column']})",
            scores["bin_edges"],
            scores["pool"]["histogram"],
            {n: scores["by_selection"][n]["histogram"] for n in names},
            color,
        )
    ]


def _conversations(
    conv: Any, data: dict, raw: dict, names: list[str], color: dict[str, str]
) -> list[dict]:
    by_selection = conv["by_selection"]
    return [
        _histograms(
            "conversation_turns",
            "User turns per conversation",
            f"user turns in '{conv['column']}' (a single-turn row has 1)",
            conv["user_turn_bin_edges"],
            conv["pool"]["user_turns"]["histogram"],
            {n: by_selection[n]["user_turns"]["histogram"] for n in names},
            color,
            whole=True,
        ),
        _histograms(
            "conversation_length",
            "Conversation length",
            "characters of content (log scale)",
            conv["length_bin_edges"],
            conv["pool"]["characters"]["histogram"],
            {n: by_selection[n]["characters"]["histogram"] for n in names},
            color,
            logx=True,
        ),
    ]


def _source_mix(
    src: Any, data: dict, raw: dict, names: list[str], color: dict[str, str]
) -> list[dict]:
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
    return [_figure("source_mix", "Source mix", "Share of rows from each source.", fig)]


def _overlap(_: Any, data: dict, raw: dict, names: list[str], color: dict[str, str]) -> list[dict]:
    """Jaccard matrices of the selections' rows (and labels), with two or more selections."""
    if len(names) < 2:
        return []
    labels = data.get("labels")
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
    caption = "Jaccard similarity of rows and labels."
    return [_figure("overlap", "Overlap between selections", caption, fig)]


def _label_neighbourhoods(
    graph: Any, data: dict, raw: dict, names: list[str], color: dict[str, str]
) -> list[dict]:
    if not (graph["most_covered"] or graph["least_covered"]):
        return []
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
        f"Label-graph neighbourhoods ({focus}); node text: selected / pool rows", fontsize=11
    )
    caption = (
        f"The most and least covered labels of '{focus}' with their graph neighbours "
        "(edge width: similarity). Green nodes are covered by the selection, grey are not."
    )
    return [_figure("label_neighbourhoods", "Label-graph neighbourhoods", caption, fig)]


#: The figures in page order: ``(key, drawer)``; a drawer with a ``key`` runs when the report's
#: data has a non-empty value there, given to it.
_DRAWERS: tuple[tuple[str | None, Drawer], ...] = (
    ("labels", _coverage_curve),
    ("labels", _top_labels),
    ("labels", _coverage_by_frequency),
    ("information", _label_information),
    ("mig_trace", _mig_trace),
    ("scores", _score_distribution),
    ("conversations", _conversations),
    ("sources", _source_mix),
    (None, _overlap),
    ("label_graph", _label_neighbourhoods),
)


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
