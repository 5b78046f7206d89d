"""What ``hf-mig report`` shows beyond the numbers: the first picks of each selection (request,
labels, score, MIG gain), where the columns came from, rows without a label, user turns, the
contents and the top-labels figure. On the annotated demo pool shipped with hf-mig (427
Self-Instruct rows, 42 of them without a label) and, where named, on LIMA and ShareGPT rows."""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from datasets import Dataset

from hf_mig import LabelGraph, MIGSelector, RandomSelector, load_pool, save_dataset
from hf_mig.core.summary import selection_summary
from hf_mig.report import (
    PICK_TEXT_CHARS,
    build_report,
    compute_report_data,
    first_user_text,
    user_turns,
)

K = 60
HOSTILE = '<script>alert("x")</script> Tom & Jerry: compare <b>cats</b> & mice'


@pytest.fixture(scope="module")
def demo(demo_annotated, demo_graph):
    """The demo pool with one row's request made hostile HTML, its MIG picks and a random
    selection."""
    graph = LabelGraph.load(demo_graph)
    selector = MIGSelector(K, label_graph=graph)
    rows = load_pool(demo_annotated).to_list()
    mig = np.asarray(selector.select_indices(Dataset.from_list(rows)))
    hostile = int(mig[0])  # MIG reads labels and scores only: the text does not move the pick
    first = rows[hostile]["messages"][0]
    assert first["role"] == "user"
    first["content"] = HOSTILE + " " + first["content"]
    pool = Dataset.from_list(rows)
    return {
        "pool": pool,
        "graph": graph,
        "graph_path": demo_graph,
        "mig": mig,
        "random": np.asarray(RandomSelector(K, seed=7).select_indices(pool)),
        "result": selector.result_,
        "hostile": hostile,
    }


@pytest.fixture(scope="module")
def page(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    html_path = build_report(
        demo["pool"],
        {"mig": demo["mig"], "random": demo["random"]},
        out,
        label_graph=demo["graph"],
        mig_result=demo["result"],
    )
    return html_path.read_text(encoding="utf-8"), json.loads((out / "report.json").read_text())


def _section(text: str, anchor: str) -> str:
    start = text.index(f'<section id="{anchor}">')
    return text[start : text.index("</section>", start)]


def _expected_text(messages: list[dict]) -> str:
    text = " ".join(next(m["content"] for m in messages if m["role"] == "user").split())
    return text if len(text) <= PICK_TEXT_CHARS else text[: PICK_TEXT_CHARS - 1].rstrip() + "…"


def test_first_picks_show_request_labels_score_and_gain(demo, page):
    text, data = page
    pool, result = demo["pool"], demo["result"]
    for name in ("mig", "random"):
        picks = data["selections"][name]["first_picks"]
        assert [p["row"] for p in picks] == demo[name][:10].tolist()
        for p in picks:
            row = pool[p["row"]]
            assert p["id"] == row["id"]
            assert p["text"] == _expected_text(row["messages"])
            assert len(p["text"]) <= PICK_TEXT_CHARS
            assert p["labels"] == row["labels"]
            assert p["score"] == pytest.approx(row["score"])
    # MIG's gains are known for its own picks only
    mig_picks = data["selections"]["mig"]["first_picks"]
    np.testing.assert_allclose([p["gain"] for p in mig_picks], result.gains[:10])
    assert data["selections"]["mig"]["gains_from"] == "the MIG run"
    assert data["selections"]["random"]["gains_from"] is None
    assert all(p["gain"] is None for p in data["selections"]["random"]["first_picks"])

    picked = _section(text, "picks")
    assert "<h3>mig: the first 10 of 60 picks</h3>" in picked
    mig_table = picked[picked.index("<h3>mig") : picked.index("<h3>random")]
    assert "<th>MIG gain</th>" in mig_table
    assert f"<td>{result.gains[1]:.4g}</td>" in mig_table
    random_table = picked[picked.index("<h3>random") :]
    assert "MIG gain</th>" not in random_table and "MIG gains: unknown" in random_table
    # the second pick's request, labels and score are in its row of the table
    second = pool[int(demo["mig"][1])]
    row_html = re.search(r'<tr><td class="l">2</td>.*?</tr>', mig_table).group(0)
    assert html.escape(", ".join(second["labels"])) in row_html
    assert f"<td>{second['score']:.4g}</td>" in row_html


def test_pick_text_is_escaped(demo, page):
    text, data = page
    first = data["selections"]["mig"]["first_picks"][0]
    assert first["row"] == demo["hostile"] and first["text"].startswith(HOSTILE)
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; Tom &amp; Jerry" in text
    assert "compare &lt;b&gt;cats&lt;/b&gt; &amp; mice" in text
    assert "<script>alert" not in text and "<b>cats" not in text
    # the only script on the page is the report's own image check
    assert text.count("<script>") == 1


def test_first_picks_option(demo, tmp_path):
    pool = demo["pool"]
    data, _, _ = compute_report_data(pool, {"random": demo["random"]}, first_picks=3)
    assert [p["rank"] for p in data["selections"]["random"]["first_picks"]] == [1, 2, 3]
    data, _, _ = compute_report_data(pool, {"random": demo["random"]}, first_picks=0)
    assert data["selections"]["random"]["first_picks"] == []
    with pytest.raises(ValueError, match="first_picks must be an integer >= 0"):
        compute_report_data(pool, {"random": demo["random"]}, first_picks=-1)
    with pytest.raises(ValueError, match="2 gains for 60 picks"):
        compute_report_data(pool, {"random": demo["random"]}, gains={"random": [1.0, 2.0]})
    with pytest.raises(ValueError, match="not a selection"):
        compute_report_data(pool, {"random": demo["random"]}, gains={"other": [1.0]})


def test_rows_without_a_label_are_counted(demo, page):
    text, data = page
    pool = demo["pool"]
    unlabelled = {i for i, labels in enumerate(pool["labels"]) if not labels}
    assert len(unlabelled) == 42  # the demo pool's rows the offline tagger left without a label
    labels = data["labels"]
    assert labels["pool_unlabelled_rows"] == len(unlabelled)
    for name in ("mig", "random"):
        expected = len(unlabelled & set(demo[name].tolist()))
        assert labels["by_selection"][name]["unlabelled_rows"] == expected
        summary = selection_summary(pool, demo[name])
        assert summary["selected_unlabelled_rows"] == expected
    assert labels["by_selection"]["mig"]["unlabelled_rows"] == 0  # MIG ranks them last
    assert labels["by_selection"]["random"]["unlabelled_rows"] > 0
    rnd = labels["by_selection"]["random"]["unlabelled_rows"]
    summary = _section(text, "summary")
    assert "Pool: 427 rows, 42 of them without a label." in summary
    assert f"<b>random</b> ({K} rows, {rnd} without a label)" in summary
    coverage = _section(text, "labels")
    assert "<th>rows without a label</th>" in coverage
    assert re.search(r'<td class="l">pool</td><td>427</td>(<td>[^<]*</td>){4}<td>42</td>', coverage)


def test_contents_link_every_section(page):
    text, _ = page
    nav = re.search(r'<nav id="contents"><ol>(.*?)</ol></nav>', text).group(1)
    links = re.findall(r'<a href="#([a-z]+)">', nav)
    sections = re.findall(r'<section id="([a-z]+)">', text)
    assert links == sections
    assert links[:3] == ["summary", "picks", "labels"]
    assert {"information", "trace", "scores", "conversations", "graph"} <= set(links)
    assert text.index('<nav id="contents">') < text.index("<section ")
    for anchor in sections:  # each section has its heading
        assert re.search(rf'<section id="{anchor}">\n<h2>[^<]+</h2>', text)


def test_provenance_known_and_unknown(demo, page, tmp_path):
    _, data = page
    prov = data["provenance"]
    # nothing states how the demo pool was tagged or scored: unknown, not guessed
    assert prov["labels"] == {"column": "labels", "produced_by": "unknown"}
    assert prov["score"] == {"column": "score", "produced_by": "unknown"}
    graph = prov["label_graph"]
    assert graph["source"] == "unknown"  # a graph object, not a file the caller named
    assert graph["embedder"] == demo["graph"].metadata["embedder"]
    assert graph["threshold"] == demo["graph"].threshold
    assert (graph["labels"], graph["edges"]) == (967, demo["graph"].stats()["num_edges"])
    assert prov["selections"] == {"mig": "unknown", "random": "unknown"}

    # the columns hf-mig's own InsTag tagger and DEITA scorer write show what made the pool
    pool = demo["pool"]
    n = len(pool)
    marked = (
        pool.add_column("instag_raw", ["[]"] * n)
        .add_column("instag_error", [None] * n)
        .add_column("deita_error", [None] * n)
    )
    data, _, _ = compute_report_data(
        marked,
        {"random": demo["random"]},
        provenance={"graph": "file g.npz", "selections": {"random": "ids.txt"}},
    )
    prov = data["provenance"]
    assert "generative InsTag tagger" in prov["labels"]["produced_by"]
    assert "model unknown" in prov["labels"]["produced_by"]
    assert prov["score"]["produced_by"].startswith("DEITA")
    assert prov["label_graph"] == {"source": "file g.npz"}  # no graph object: nothing more known
    assert prov["selections"] == {"random": "ids.txt"}
    # what the caller states wins over what the columns show
    data, _, _ = compute_report_data(
        marked, {"random": demo["random"]}, provenance={"tagger": "my tagger", "scorer": "me"}
    )
    assert data["provenance"]["labels"]["produced_by"] == "my tagger"
    assert data["provenance"]["score"]["produced_by"] == "me"
    data, _, _ = compute_report_data(pool, {"random": demo["random"]})
    assert data["provenance"]["label_graph"]["source"].startswith("none")


def test_user_turns_count_user_messages(data_dir, tmp_path):
    """LIMA (single-turn rows and multi-turn ``history`` rows) and ShareGPT ``from`` turns."""
    from hf_mig.data.formats import to_messages

    lima = load_pool(data_dir / "lima" / "lima.json")
    lima = lima.select([*range(20), *range(1000, 1029)])
    lima = lima.map(to_messages, batched=True, with_indices=True)
    expected = [sum(1 for m in conv if m["role"] == "user") for conv in lima["messages"]]
    assert expected[:20] == [1] * 20 and max(expected) >= 2
    assert [user_turns(conv) for conv in lima["messages"]] == expected
    build_report(lima, {"first": list(range(20)), "multi": list(range(20, 49))}, tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    conv = data["conversations"]
    assert conv["pool"]["user_turns"]["mean"] == pytest.approx(np.mean(expected))
    assert conv["by_selection"]["first"]["user_turns"]["median"] == 1.0  # not 2 messages
    edges = np.asarray(conv["user_turn_bin_edges"])
    one = int(np.flatnonzero((edges[:-1] < 1) & (edges[1:] > 1))[0])
    assert conv["by_selection"]["first"]["user_turns"]["histogram"][one] == 20
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<th>mean user turns</th>" in text and "mean turns" not in text
    caption = next(f for f in data["figures"] if f["file"] == "conversation_turns.png")
    assert caption["title"] == "User turns per conversation"

    sharegpt = json.loads(
        (data_dir / "sharegpt" / "sharegpt_v3_slice_a_0-1999.json").read_text(encoding="utf-8")
    )[:40]
    convs = [row["conversations"] for row in sharegpt]
    for conv in convs:
        humans = sum(1 for m in conv if m["from"].lower() in ("human", "user"))
        assert user_turns(conv) == humans
        first = next((m["value"] for m in conv if m["from"].lower() in ("human", "user")), "")
        assert first_user_text(conv) == first
    assert any(user_turns(conv) != len(conv) for conv in convs)


def test_top_labels_figure_replaces_the_long_tail_plot(page):
    from matplotlib.image import imread

    text, data = page
    files = {f["file"] for f in data["figures"]}
    assert "top_labels.png" in files and "label_long_tail.png" not in files
    top = data["labels"]["top_labels"]
    assert len(top) == 30
    # a readable figure: at least 25 px of height per label
    img = re.search(
        r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"[^>]*data-file="top_labels.png"', text
    )
    pixels = imread(io.BytesIO(base64.b64decode(img.group(1))), format="png")
    assert pixels.shape[0] >= 25 * len(top) and pixels.shape[1] >= 800
    assert float(pixels[..., :3].std()) > 0.05


def test_cli_report_gains_from_a_subset_file_and_provenance(demo, tmp_path):
    """``hf-mig select --record-gains`` writes mig_gain; the report shows those gains, the graph
    file, how each selection was made and the tagger/scorer the user states."""
    pool_path = tmp_path / "pool.jsonl"
    save_dataset(demo["pool"], pool_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = [sys.executable, "-m", "hf_mig", "-q"]
    subset = tmp_path / "mig.jsonl"
    graph = str(demo["graph_path"])
    proc = subprocess.run(
        [*run, "select", str(pool_path), "-k", "25", "--graph", graph, "--record-gains",
         "-o", str(subset)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    picked = load_pool(subset)
    out = tmp_path / "report"
    proc = subprocess.run(
        [*run, "report", str(pool_path), "--selection", f"picked={subset}",
         "--method", "random:25", "--graph", graph, "--first-picks", "4",
         "--tagger", "EmbeddingTagger <MiniLM> & InsTag vocabulary", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((out / "report.json").read_text())
    picks = data["selections"]["picked"]["first_picks"]
    assert [p["id"] for p in picks] == picked["id"][:4]
    np.testing.assert_allclose([p["gain"] for p in picks], picked["mig_gain"][:4])
    assert data["selections"]["picked"]["gains_from"] == "given with the selection"
    assert data["selections"]["random"]["gains_from"] is None
    prov = data["provenance"]
    assert prov["labels"]["produced_by"] == "EmbeddingTagger <MiniLM> & InsTag vocabulary"
    assert prov["score"]["produced_by"] == "unknown"
    assert prov["label_graph"]["source"] == f"file {graph}"
    assert prov["label_graph"]["embedder"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert prov["selections"]["picked"] == f"file {subset}"
    assert prov["selections"]["random"].startswith("--method random:25, selected now (seed=42")
    text = (out / "report.html").read_text(encoding="utf-8")
    assert "EmbeddingTagger &lt;MiniLM&gt; &amp; InsTag vocabulary" in text
    assert "<h3>picked: the first 4 of 25 picks</h3>" in text

    # no --graph: the graph the on-the-fly mig built from the pool's labels, said so
    out = tmp_path / "report-built"
    proc = subprocess.run(
        [*run, "report", str(pool_path), "--method", "mig:15", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((out / "report.json").read_text())
    assert data["provenance"]["label_graph"]["source"] == (
        "built by --method mig:15 from the pool's labels"
    )
    assert data["selections"]["mig"]["gains_from"] == "the MIG run"
    bad = subprocess.run(
        [*run, "report", str(pool_path), "--method", "mig:5", "--first-picks", "-1",
         "--out", str(tmp_path / "bad")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "--first-picks must be >= 0" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_score_collapse_is_on_the_page(demo, tmp_path):
    pool = demo["pool"]
    flat = pool.remove_columns("score").add_column("score", [1.0] * len(pool))
    build_report(flat, {"random": demo["random"]}, tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["scores"]["collapse"]["reason"] == "single_value"
    scores = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert '<p class="warning">Score collapse' in _section(scores, "scores")
    out = tmp_path / "fine"
    build_report(pool, {"random": demo["random"]}, out)
    assert json.loads((out / "report.json").read_text())["scores"]["collapse"] is None


def test_why_these_rows_lists_the_first_mig_picks_with_their_top_label(demo, page):
    """A MIG selection's first picks, each gain split by label: the gains are the run's, the
    top label of each pick is one the pool row has or a neighbour in the graph."""
    text, data = page
    why = data["selections"]["mig"]["why"]
    assert "why" not in data["selections"]["random"]
    assert why["gain_kind"] == "gradient"
    picks = why["picks"]
    assert [p["row"] for p in picks] == demo["mig"][:10].tolist()
    np.testing.assert_allclose([p["gain"] for p in picks], demo["result"].gains[:10], rtol=1e-9)
    pool_labels = demo["pool"]["labels"]
    for p in picks:
        assert 1 <= len(p["labels"]) <= 3
        shares = [d["share"] for d in p["labels"]]
        assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9
        for d in p["labels"]:
            assert d["own"] == (d["label"] in pool_labels[p["row"]])
    section = _section(text, "picks")
    assert "mig: why these rows" in section and "random: why these rows" not in section
    first = picks[0]["labels"][0]
    cell = html.escape(first["label"]) + ("" if first["own"] else " (neighbour)")
    assert cell in section[section.index("mig: why these rows") :]
