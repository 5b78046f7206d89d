"""The page of a selection report: one self-contained HTML file (figures embedded)."""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from typing import Any

from hf_mig.report.data import PICK_TEXT_CHARS

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


def _why_html(name: str, why: dict) -> str:
    """The "why these rows" table of one MIG selection: each pick's gain split by label."""
    picks = why.get("picks") or []
    if not picks:
        return ""
    rows = []
    for p in picks:
        labels = "; ".join(
            f"{d['label']}{'' if d['own'] else ' (neighbour)'}: {d['contribution']:.4g} "
            f"({d['share']:.0%})"
            for d in p["labels"]
        )
        rows.append([p["rank"], p["row"], p["gain"], labels or "(no label)"])
    return (
        f"<h4>{html.escape(name)}: why these rows</h4>"
        + _table(["#", "pool row", "gain", "top labels: contribution (share of the gain)"], rows)
        + f'<p class="note">Each pick\'s {html.escape(why["gain_kind"])} gain split by label, '
        "replayed in pick order: a label is the row's own, or a neighbour its information "
        "reached through the label graph.</p>"
    )


#: ``section(its data, the report's data, figures by name, selection names) -> html parts``.
Section = Callable[[Any, dict, dict[str, str], list[str]], list[str]]


def render_html(data: dict, figures: list[dict], title: str = "hf-mig selection report") -> str:
    """The report page: contents, provenance, first picks, summary tables and every figure
    (embedded as PNG data URIs), one ``<section id=...>`` per topic."""
    figs = {f["file"][:-4]: _figure_html(f) for f in figures}
    names = list(data["selections"])
    sections: list[tuple[str, str, list[str]]] = []  # (anchor, heading, html parts)
    for anchor, heading, key, build in _SECTIONS:
        part = data if key is None else data.get(key)
        if part:
            sections.append((anchor, heading, build(part, data, figs, names)))
    # any figure not placed above
    placed = "".join(x for _, _, body in sections for x in body)
    rest = [v for v in figs.values() if v not in placed]
    if rest:
        sections.append(("other", "Other figures", rest))
    return _page(title, sections)


def _page(title: str, sections: list[tuple[str, str, list[str]]]) -> str:
    """The HTML document: title, contents, the sections, the link to ``report.json``."""
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


def _pool_unlabelled(data: dict) -> int | None:
    labels = data.get("labels")
    return labels.get("pool_unlabelled_rows") if labels else None


def _summary_section(_: Any, data: dict, figs: dict[str, str], names: list[str]) -> list[str]:
    labels = data.get("labels")
    pool_unlabelled = _pool_unlabelled(data)
    return [
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
        + ".</p>",
        "<h3>Where the columns came from</h3>",
        _provenance_html(data),
    ]


def _picks_section(_: Any, data: dict, figs: dict[str, str], names: list[str]) -> list[str]:
    return [
        "<p>The first picks of each selection, in pick order: the row's first user turn "
        f"(cut to {PICK_TEXT_CHARS} characters), its labels, its score and, when known, the "
        "information gain MIG picked it with.</p>",
        *(
            _picks_html(n, data["selections"][n])
            + _why_html(n, data["selections"][n].get("why", {}))
            for n in names
        ),
    ]


def _labels_section(labels: Any, data: dict, figs: dict[str, str], names: list[str]) -> list[str]:
    by_selection = labels["by_selection"]
    rows = [
        [
            "pool",
            data["pool"]["rows"],
            labels["pool_labels"],
            labels["pool_labels"],
            "100.0%",
            next((b["pool_labels"] for b in labels["frequency_bands"] if b["band"] == "1"), ""),
            _fmt_count(_pool_unlabelled(data)),
        ]
    ]
    rows += [
        [
            n,
            data["selections"][n]["rows"],
            by_selection[n]["labels_covered"],
            labels["pool_labels"],
            f"{100 * by_selection[n]['coverage']:.1f}%",
            by_selection[n]["singleton_labels_covered"],
            _fmt_count(by_selection[n]["unlabelled_rows"]),
        ]
        for n in names
    ]
    header = [
        "selection",
        "rows",
        "distinct labels covered",
        "pool labels",
        "coverage",
        "single-row labels covered",
        "rows without a label",
    ]
    return [
        _table(header, rows),
        "<p>Rows without a label (an empty or missing label list) are kept in the pool; MIG "
        "ranks them last, since they add no information to any label.</p>",
        *(figs.get(k, "") for k in ("coverage_curve", "top_labels", "coverage_by_frequency")),
        "<details><summary>Most frequent labels: pool rows vs selected rows (table)</summary>",
        _table(
            ["label", "pool", *names],
            [[t["label"], t["pool"], *(t[n] for n in names)] for t in labels["top_labels"]],
        ),
        "</details>",
    ]


def _information_section(
    info: Any, data: dict, figs: dict[str, str], names: list[str]
) -> list[str]:
    if "skipped" in info:
        return [f"<p>Not computed: {html.escape(info['skipped'])}</p>"]
    phi = (
        f"(x + {info['phi_a']:g})^{info['phi_b']:g}"
        if info["phi"] == "pow"
        else f"1 - exp(-{info['phi_alpha']:g} x)"
    )
    parts = [
        "<p>MIG's information of a set is <code>x(S) = sum u_i</code> over its rows, "
        "<code>u_i = w_i v_i P</code> (w: the score"
        + (" divided by the row's number of labels" if info["norm"] else "")
        + f"), and <code>E(S) = sum phi(x)</code> with <code>phi(x) = {phi}</code> over "
        f"{info['num_labels']:,} labels (E of the empty set: "
        f"{info['initial_objective']:.4g}). Propagation P: "
        f"{html.escape(info['propagation'])}. Gini and share are over the "
        f"{len(info['ranked_labels']):,} labels the pool informs (x &gt; 0).</p>"
    ]
    bands = [b["band"] for b in info["bands"]]
    rows = [["pool", data["pool"]["rows"]] + _information_row(info["pool"], bands)]
    rows += [
        [n, data["selections"][n]["rows"]] + _information_row(info["by_selection"][n], bands)
        for n in names
    ]
    header = [
        "",
        "rows",
        "E(S)",
        "labels with x > 0",
        "share of pool's labels",
        "Gini of x",
        "effective labels",
        "information kept",
        *(f"kept: {b}" for b in bands),
    ]
    parts.append(_table(header, rows))
    check = info.get("mig_trace_check")
    if check:
        parts.append(
            f"<p>E of '{html.escape(check['selection'])}' = {check['objective']:.10g}; "
            f"the MIG greedy trace ends at {check['trace_final_objective']:.10g} "
            f"(relative difference {check['relative_difference']:.1e}).</p>"
        )
    parts.append(figs.get("label_information", ""))
    return parts


def _trace_section(trace: Any, data: dict, figs: dict[str, str], names: list[str]) -> list[str]:
    rows = [
        ["initial E(S)", trace["initial_objective"]],
        ["final E(S)", trace["final_objective"]],
        ["picks", trace["k"]],
        *([k, v] for k, v in trace["stats"].items()),
    ]
    return [_table(["", "value"], rows), figs.get("mig_trace", "")]


def _scores_section(sc: Any, data: dict, figs: dict[str, str], names: list[str]) -> list[str]:
    parts = []
    if sc.get("collapse"):
        parts.append(
            '<p class="warning">Score collapse in the pool\'s '
            f"'{html.escape(sc['column'])}': {html.escape(sc['collapse']['message'])}.</p>"
        )
    stats = [("pool", sc["pool"]), *((n, sc["by_selection"][n]) for n in names)]
    rows = [
        [n, s.get("mean", ""), s.get("median", ""), s.get("min", ""), s.get("max", "")]
        for n, s in stats
    ]
    parts.append(_table(["", "mean", "median", "min", "max"], rows))
    parts.append(figs.get("score_distribution", ""))
    return parts


def _conversations_section(
    cv: Any, data: dict, figs: dict[str, str], names: list[str]
) -> list[str]:
    stats = [("pool", cv["pool"]), *((n, cv["by_selection"][n]) for n in names)]
    header = ["", "mean user turns", "median user turns", "mean characters", "median characters"]
    rows = [
        [
            n,
            s["user_turns"].get("mean", ""),
            s["user_turns"].get("median", ""),
            s["characters"].get("mean", ""),
            s["characters"].get("median", ""),
        ]
        for n, s in stats
    ]
    return [
        f"<p>User turns: the messages of '{html.escape(cv['column'])}' whose role is the "
        "user's (a single-turn row has 1). Characters: all messages' content.</p>",
        _table(header, rows),
        figs.get("conversation_turns", ""),
        figs.get("conversation_length", ""),
    ]


def _sources_section(src: Any, data: dict, figs: dict[str, str], names: list[str]) -> list[str]:
    return [figs.get("source_mix", "")]


def _overlap_section(pairs: Any, data: dict, figs: dict[str, str], names: list[str]) -> list[str]:
    keys = ["shared_rows", "jaccard", "shared_labels", "label_jaccard"]
    table = _table(
        ["a", "b", "shared rows", "row Jaccard", "shared labels", "label Jaccard"],
        [[p["a"], p["b"], *(p.get(k, "") for k in keys)] for p in pairs],
        left=2,
    )
    return [table, figs.get("overlap", "")]


def _graph_section(graph: Any, data: dict, figs: dict[str, str], names: list[str]) -> list[str]:
    st = graph["stats"]
    return [
        f"<p>{st['num_labels']:,} labels, {st['num_edges']:,} edges (threshold "
        f"{html.escape(str(st.get('threshold')))}), {st['isolated_labels']:,} isolated; "
        f"{graph['pool_labels_in_graph']:,} of the pool's labels are in the graph.</p>",
        figs.get("label_neighbourhoods", ""),
    ]


def _number(value: Any) -> str:
    """A count or cost with thousands separators (``1,986``; ``1,986.5``)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.6g}"


def _bound(count: int, given: Any) -> str:
    """A quota bound as the count it is, with the share of k it came from."""
    if given is None:
        return "no bound"
    return f"{count:,} ({given:g} of k)" if isinstance(given, float) else f"{count:,}"


def _constraints_html(name: str, used: dict) -> list[str]:
    parts = [f"<h3>{html.escape(name)}</h3>"]
    budget = used.get("budget")
    if budget:
        over = "" if budget["within_budget"] else " (over the budget)"
        rows = [
            ["cost column", f"'{budget['cost_column']}'"],
            ["budget", _number(budget["budget"])],
            ["total cost of the picks", _number(budget["cost"]) + over],
            ["share of the budget used", f"{100 * budget['share_used']:.1f}%"],
        ]
        if budget.get("greedy"):
            rows.append(["greedy kept (the better by E(S))", str(budget["greedy"])])
        parts.append(_table(["budget", "value"], rows, left=1))
        parts.append(f'<p class="note">Costs read from {html.escape(budget["measured_on"])}.</p>')
    quotas = used.get("quotas")
    if quotas:
        rows = [
            [
                g["group"],
                f"{g['picks']:,}" + ("" if g["within"] else " (outside the bounds)"),
                _bound(g["min"], g["min_given"]),
                _bound(g["max"], g["max_given"]),
                f"{100 * g['share_of_selection']:.1f}%",
                f"{100 * g['share_of_pool']:.1f}% ({g['pool_rows']:,} rows)",
            ]
            for g in quotas["groups"]
        ]
        header = ["group", "picks", "min", "max", "share of the selection", "share of the pool"]
        parts.append(_table(header, rows, left=1))
        parts.append(
            f"<p class=\"note\">Groups of column '{html.escape(quotas['column'])}'; bounds as "
            f"counts of k = {quotas['k']:,} (shares of k rounded up for a minimum, down for a "
            "maximum, as the selector counts them).</p>"
        )
    return parts


def _constraints_section(
    used: Any, data: dict, figs: dict[str, str], names: list[str]
) -> list[str]:
    parts = [
        "<p>The selections made with a token budget or per-group quotas, and what their picks "
        "use of them (from the selection's dataset card, measured on the pool's rows).</p>"
    ]
    for name in names:
        if name in used:
            parts += _constraints_html(name, used[name])
    return parts


#: The page's sections in order: ``(anchor, heading, key, builder)``; a section with a ``key``
#: shows when the report's data has a non-empty value there, given to its builder.
_SECTIONS: tuple[tuple[str, str, str | None, Section], ...] = (
    ("summary", "Summary", None, _summary_section),
    ("picks", "What was picked", None, _picks_section),
    ("constraints", "Budget and quotas", "constraints", _constraints_section),
    ("labels", "Label coverage", "labels", _labels_section),
    ("information", "Information per label", "information", _information_section),
    ("trace", "MIG greedy trace", "mig_trace", _trace_section),
    ("scores", "Scores", "scores", _scores_section),
    ("conversations", "Conversations", "conversations", _conversations_section),
    ("sources", "Source mix", "sources", _sources_section),
    ("overlap", "Overlap between selections", "overlap", _overlap_section),
    ("graph", "Label graph", "label_graph", _graph_section),
)
