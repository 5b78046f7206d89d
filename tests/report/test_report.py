"""``hf_mig.report`` / ``hf-mig report`` on the annotated demo pool shipped with hf-mig (427
Self-Instruct rows, ``hf-mig:demo-annotated``, with its MiniLM graph ``hf-mig:demo-graph``) and on
LIMA (1,029 rows from shared/data) tagged with the MiniLM EmbeddingTagger and length-scored
(the session's ``tagged_lima``)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hf_mig import LabelGraph, MIGSelector, RandomSelector, load_pool, save_dataset
from hf_mig.core.objective import Objective
from hf_mig.core.summary import selection_summary
from hf_mig.report import (
    build_report,
    compute_report_data,
    coverage_curve,
    read_selection_file,
    resolve_selection,
)

K = 200
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM = "/usr/bin/chromium"
EXPECTED_FIGURES = {
    "coverage_curve.png",
    "top_labels.png",  # the 30 most frequent labels, pool vs selections
    "coverage_by_frequency.png",
    "label_information.png",
    "mig_trace.png",
    "score_distribution.png",
    "conversation_turns.png",
    "conversation_length.png",
    "overlap.png",
    "label_neighbourhoods.png",
    "source_mix.png",  # the demo pool's `source` column
}


@pytest.fixture(scope="module")
def parity(demo_annotated, demo_graph):
    pool = load_pool(demo_annotated)
    graph_path = demo_graph
    graph = LabelGraph.load(graph_path)
    selector = MIGSelector(K, label_graph=graph)
    mig = selector.select_indices(pool)
    rnd = RandomSelector(K, seed=42).select_indices(pool)
    return {
        "pool": pool,
        "pool_path": demo_annotated,
        "graph": graph,
        "graph_path": graph_path,
        "mig": np.asarray(mig),
        "random": np.asarray(rnd),
        "result": selector.result_,
    }


@pytest.fixture(scope="module")
def report(parity, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    page = build_report(
        parity["pool"],
        {"mig": parity["mig"], "random": parity["random"]},
        out,
        label_graph=parity["graph"],
        mig_result=parity["result"],
    )
    return page, json.loads((out / "report.json").read_text())


def _labels_of(pool, idx) -> set[str]:
    labels = pool["labels"]
    return {x for i in idx for x in labels[int(i)]}


def _check_png(path: Path) -> None:
    raw = path.read_bytes()
    assert raw[:8] == PNG_SIGNATURE, path
    assert raw[12:16] == b"IHDR" and raw[-8:-4] == b"IEND", path
    width, height = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    assert width >= 300 and height >= 200, (path, width, height)
    from matplotlib.image import imread

    pixels = imread(path)
    assert pixels.shape[:2] == (height, width)
    assert float(pixels[..., :3].std()) > 0.01, f"{path} is blank"


def test_label_coverage_matches_direct_computation(parity, report):
    _, data = report
    pool = parity["pool"]
    pool_labels = _labels_of(pool, range(len(pool)))
    assert data["labels"]["pool_labels"] == len(pool_labels)
    for name in ("mig", "random"):
        idx = parity[name]
        covered = _labels_of(pool, idx) & pool_labels
        got = data["labels"]["by_selection"][name]
        assert got["labels_covered"] == len(covered)
        assert got["coverage"] == pytest.approx(len(covered) / len(pool_labels))
        summary = selection_summary(pool, pool.select(idx))
        assert got["coverage"] == pytest.approx(summary["label_coverage"])
        curve = got["coverage_curve"]
        assert len(curve) == K and curve[-1] == len(covered)
        assert all(b >= a for a, b in zip(curve, curve[1:]))
        assert curve[9] == len(_labels_of(pool, idx[:10]))
        assert data["scores"]["by_selection"][name]["mean"] == pytest.approx(
            float(np.mean(np.asarray(pool["score"])[idx]))
        )
    # MIG's point: it covers more labels than random at the same k
    by = data["labels"]["by_selection"]
    assert by["mig"]["labels_covered"] > by["random"]["labels_covered"]
    # the long tail: band sizes add up to the pool's labels, and covered counts are right
    bands = data["labels"]["frequency_bands"]
    assert sum(b["pool_labels"] for b in bands) == len(pool_labels)
    assert sum(b["covered"]["mig"] for b in bands) == by["mig"]["labels_covered"]
    top = data["labels"]["top_labels"]
    assert [t["pool"] for t in top] == sorted((t["pool"] for t in top), reverse=True)
    first = top[0]
    assert first["pool"] == sum(first["label"] in row for row in pool["labels"])
    assert first["mig"] == sum(first["label"] in pool["labels"][int(i)] for i in parity["mig"])


def test_overlap_matches_set_computation(parity, report):
    _, data = report
    (pair,) = data["overlap"]
    a, b = set(parity["mig"].tolist()), set(parity["random"].tolist())
    assert (pair["a"], pair["b"]) == ("mig", "random")
    assert pair["shared_rows"] == len(a & b)
    assert pair["jaccard"] == pytest.approx(len(a & b) / len(a | b))
    la, lb = _labels_of(parity["pool"], a), _labels_of(parity["pool"], b)
    assert pair["shared_labels"] == len(la & lb)
    assert pair["label_jaccard"] == pytest.approx(len(la & lb) / len(la | lb))


def test_mig_trace_and_graph(parity, report):
    _, data = report
    trace = data["mig_trace"]
    result = parity["result"]
    assert trace["k"] == K
    assert len(trace["objective"]) == K and len(trace["gains"]) == K
    np.testing.assert_allclose(trace["objective"], result.objective_trace)
    assert trace["initial_objective"] == pytest.approx(result.initial_objective)
    assert trace["stats"]["evaluations"] == result.stats["evaluations"]
    assert "refreshes" in trace["stats"]
    graph = data["label_graph"]
    assert graph["focus_selection"] == "mig"
    assert graph["stats"]["num_edges"] == parity["graph"].stats()["num_edges"]
    mig_labels = _labels_of(parity["pool"], parity["mig"])
    assert graph["most_covered"] and graph["least_covered"]
    for item in graph["most_covered"]:
        assert item["selected"]["mig"] >= 1 and item["label"] in mig_labels
        assert {n["label"] for n in item["neighbors"]} == {
            x for x, _ in parity["graph"].neighbors(item["label"])
        }
    most = min(x["selected"]["mig"] for x in graph["most_covered"])
    assert all(x["selected"]["mig"] <= most for x in graph["least_covered"])


def _direct_information(pool, rows, graph=None, prop_weight=1.0, norm=False):
    """x(S) = sum_{i in S} w_i v_i @ P by plain loops over a dense P (no hf_mig encoding)."""
    if graph is None:
        vocab = sorted({x for row in pool["labels"] for x in row})
        p = np.eye(len(vocab))
    else:
        vocab = graph.labels
        p = graph.propagation_matrix(prop_weight).toarray()
    index = {label: j for j, label in enumerate(vocab)}
    labels, scores = pool["labels"], pool["score"]
    x = np.zeros(len(vocab))
    for i in rows:
        own = {label for label in labels[int(i)] if label in index}
        if own:
            w = scores[int(i)] / len(own) if norm else scores[int(i)]
            for label in own:
                x += w * p[index[label]]
    return dict(zip(vocab, x))


def _gini_pairs(values) -> float:
    """Gini by its definition: mean absolute difference over all pairs / (2 * mean)."""
    a = np.asarray(values, dtype=float)
    return float(np.abs(a[:, None] - a[None, :]).mean() / (2 * a.mean()))


def _check_information(info, pool, indices, graph=None, prop_weight=1.0, norm=False, phi=None):
    """Every number of report.json's ``information`` against a direct computation."""
    phi = phi or Objective()
    x_pool = _direct_information(pool, range(len(pool)), graph, prop_weight, norm)
    ranked = info["ranked_labels"]
    informed = [label for label, v in x_pool.items() if v > 0]
    assert sorted(ranked) == sorted(informed)
    pool_x = np.asarray(info["x"]["pool"])
    assert (np.diff(pool_x) <= 0).all()  # ranked by the pool's x, descending
    np.testing.assert_allclose(pool_x, [x_pool[label] for label in ranked], rtol=1e-9)
    assert info["num_labels"] == len(x_pool)
    assert info["initial_objective"] == pytest.approx(len(x_pool) * float(phi.value(0.0)))
    assert info["pool"]["objective"] == pytest.approx(
        float(np.sum(phi.value(np.asarray(list(x_pool.values()))))), rel=1e-9
    )
    for name, idx in indices.items():
        x = _direct_information(pool, idx, graph, prop_weight, norm)
        got = info["by_selection"][name]
        np.testing.assert_allclose(
            info["x"][name], [x[label] for label in ranked], rtol=1e-9, atol=1e-9
        )
        values = np.asarray(list(x.values()))
        assert got["objective"] == pytest.approx(float(np.sum(phi.value(values))), rel=1e-9)
        positive = sum(1 for v in values if v > 0)
        assert got["labels_with_information"] == positive
        assert got["share_of_labels"] == pytest.approx(positive / len(values))
        assert got["share_of_pool_labels"] == pytest.approx(positive / len(informed))
        assert got["gini"] == pytest.approx(_gini_pairs([x[label] for label in informed]))
        assert got["information_kept"] == pytest.approx(values.sum() / sum(x_pool.values()))
        start = 0
        for band in info["bands"]:
            cut = ranked[start : start + band["labels"]]
            start += band["labels"]
            kept = sum(x[label] for label in cut) / sum(x_pool[label] for label in cut)
            assert got["kept_by_band"][band["band"]] == pytest.approx(kept)
            assert got["labels_by_band"][band["band"]] == sum(1 for label in cut if x[label] > 0)
        assert start == len(ranked)


def test_information_per_label_matches_direct_computation_and_trace(parity, report):
    page, data = report
    info = data["information"]
    pool, result = parity["pool"], parity["result"]
    assert info["label_graph"] is True and "label graph" in info["propagation"]
    assert (info["phi"], info["phi_b"], info["prop_weight"], info["norm"]) == (
        "pow",
        0.8,
        1.0,
        False,
    )
    _check_information(
        info, pool, {"mig": parity["mig"], "random": parity["random"]}, parity["graph"]
    )
    mig, rnd = info["by_selection"]["mig"], info["by_selection"]["random"]
    # E(S) of the MIG selection is where its greedy trace ends
    assert mig["objective"] == pytest.approx(float(result.objective_trace[-1]), rel=1e-6)
    check = info["mig_trace_check"]
    assert check["selection"] == "mig" and check["relative_difference"] < 1e-6
    # MIG maximises E: more information, on more labels, spread more evenly than random
    assert mig["objective"] > rnd["objective"]
    assert mig["share_of_pool_labels"] > rnd["share_of_pool_labels"]
    assert mig["gini"] < rnd["gini"]
    assert info["pool"]["objective"] > mig["objective"]
    assert info["pool"]["share_of_pool_labels"] == 1.0
    # the numbers are on the page
    text = page.read_text(encoding="utf-8")
    start = text.index("<h2>Information per label</h2>")
    section = text[start : text.index("<h2>MIG greedy trace</h2>")]
    for value in (mig["objective"], rnd["objective"], info["pool"]["objective"], mig["gini"]):
        assert f"<td>{value:.4g}</td>" in section
    assert f"{100 * mig['share_of_pool_labels']:.1f}%" in section
    assert 'data-file="label_information.png"' in section
    caption = next(f for f in data["figures"] if f["file"] == "label_information.png")["caption"]
    assert "label graph" in caption


def test_information_follows_prop_weight_norm_and_phi(parity):
    pool, graph = parity["pool"], parity["graph"]
    options = dict(prop_weight=0.4, norm=True, phi_b=0.6)
    selector = MIGSelector(120, label_graph=graph, **options)
    picks = selector.select_indices(pool)
    objective = Objective("pow", 1e-6, 0.6)
    data, _, _ = compute_report_data(
        pool,
        {"mig": picks},
        label_graph=graph,
        mig_result=selector.result_,
        prop_weight=0.4,
        norm=True,
        objective=objective,
    )
    info = data["information"]
    assert (info["prop_weight"], info["norm"], info["phi_b"]) == (0.4, True, 0.6)
    _check_information(info, pool, {"mig": picks}, graph, 0.4, True, objective)
    trace_end = float(selector.result_.objective_trace[-1])
    assert info["by_selection"]["mig"]["objective"] == pytest.approx(trace_end, rel=1e-6)
    assert info["mig_trace_check"]["relative_difference"] < 1e-6
    # the report's defaults are not this selector's options: the check says so
    data, _, _ = compute_report_data(
        pool, {"mig": picks}, label_graph=graph, mig_result=selector.result_
    )
    assert data["information"]["mig_trace_check"]["relative_difference"] > 1e-3


def test_information_without_graph_is_identity(parity, tmp_path):
    pool = parity["pool"]
    labels = sorted({x for row in pool["labels"] for x in row})
    no_edges = LabelGraph.from_edges(labels, [], [], [])
    selector = MIGSelector(80, label_graph=no_edges)
    picks = selector.select_indices(pool)
    build_report(pool, {"mig": picks, "random": parity["random"][:80]}, tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    info = data["information"]
    assert info["label_graph"] is False and info["prop_weight"] == 0.0
    assert info["propagation"].startswith("identity")
    _check_information(info, pool, {"mig": picks, "random": parity["random"][:80]})
    # without propagation a label's x is the summed score of the rows carrying it
    scores = pool["score"]
    first = info["ranked_labels"][0]
    assert info["x"]["pool"][0] == pytest.approx(
        sum(s for s, row in zip(scores, pool["labels"]) if first in row)
    )
    assert info["by_selection"]["mig"]["objective"] == pytest.approx(
        float(selector.result_.objective_trace[-1]), rel=1e-6
    )
    caption = next(f for f in data["figures"] if f["file"] == "label_information.png")["caption"]
    assert "identity" in caption
    assert "identity: no label graph was given" in (tmp_path / "report.html").read_text()


def test_html_references_every_figure_and_pngs_are_valid(report):
    page, data = report
    text = page.read_text(encoding="utf-8")
    files = {f["file"] for f in data["figures"]}
    assert files == EXPECTED_FIGURES
    assert set(re.findall(r'data-file="([^"]+)"', text)) == files
    assert len(re.findall(r"<img ", text)) == len(files)
    for name in files:
        png = page.parent / name
        _check_png(png)
        embedded = re.search(
            rf'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"[^>]*data-file="{name}"', text
        )
        assert embedded, name
        assert base64.b64decode(embedded.group(1)) == png.read_bytes()
        assert f'href="{name}"' in text


def test_selection_given_as_ids_or_subset(parity, tmp_path):
    pool, idx = parity["pool"], parity["mig"]
    ids = [pool["id"][int(i)] for i in idx]
    np.testing.assert_array_equal(resolve_selection(pool, ids), idx)
    np.testing.assert_array_equal(resolve_selection(pool, pool.select(idx)), idx)
    with pytest.raises(ValueError, match="not in the pool"):
        resolve_selection(pool, [*ids[:3], "no-such-id"], name="bad")
    with pytest.raises(ValueError, match="repeats rows"):
        resolve_selection(pool, [1, 2, 1])
    with pytest.raises(ValueError, match="out of range"):
        resolve_selection(pool, [len(pool)])
    # the positions file of `hf-mig select --indices-out` (pools without ids) vs a list of ids
    positions = tmp_path / "mig.indices.json"
    positions.write_text(json.dumps({"positions": [int(i) for i in idx], "pool_rows": len(pool)}))
    np.testing.assert_array_equal(resolve_selection(pool, read_selection_file(positions)), idx)
    listed = tmp_path / "mig_ids.json"
    listed.write_text(json.dumps(ids))
    assert read_selection_file(listed) == ids
    positions.write_text(json.dumps({"positions": ["3", 4]}))
    with pytest.raises(ValueError, match="list of integers"):
        read_selection_file(positions)
    assert coverage_curve([["a", "b"], ["b"], ["c"]], [1, 0, 2]) == [1, 2, 3]


def test_source_mix_and_no_optional_columns(tmp_path):
    from datasets import Dataset

    pool = Dataset.from_dict(
        {
            "id": [f"r{i}" for i in range(12)],
            "labels": [[f"l{i % 4}", f"m{i % 3}"] for i in range(12)],
            "score": [float(i) for i in range(12)],
            "source": ["alpaca"] * 6 + ["sharegpt"] * 4 + ["flan"] * 2,
        }
    )
    build_report(pool, {"a": [0, 1, 2, 3], "b": ["r6", "r7", "r8"]}, tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["sources"]["pool"] == {"alpaca": 6, "sharegpt": 4, "flan": 2}
    assert data["sources"]["by_selection"]["b"] == {"alpaca": 0, "sharegpt": 3, "flan": 0}
    files = {f["file"] for f in data["figures"]}
    assert "source_mix.png" in files
    assert not files & {"mig_trace.png", "label_neighbourhoods.png", "conversation_turns.png"}
    assert "mig_trace" not in data and "conversations" not in data
    for name in files:
        _check_png(tmp_path / name)


def test_cli_end_to_end(parity, tmp_path):
    pool = parity["pool"]
    subset = tmp_path / "picked.jsonl"
    save_dataset(pool.select(parity["random"][:50]), subset)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(pool["id"][int(i)] for i in parity["mig"][:30]) + "\n")
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable, "-m", "hf_mig", "-q", "report",
        str(parity["pool_path"]),
        "--selection", f"picked={subset}",
        "--selection", f"ids={ids}",
        "--method", f"mig:{K}",
        "--method", f"random:{K}",
        "--graph", str(parity["graph_path"]),
        "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "report.json").read_text())
    assert {n: s["rows"] for n, s in data["selections"].items()} == {
        "picked": 50,
        "ids": 30,
        "mig": K,
        "random": K,
    }
    # on-the-fly MIG is the same selection as the library's, with its trace
    assert data["selections"]["mig"]["first_ids"] == [
        pool["id"][int(i)] for i in parity["mig"][:10]
    ]
    assert len(data["mig_trace"]["objective"]) == K
    assert len(data["overlap"]) == 6
    pair = next(p for p in data["overlap"] if (p["a"], p["b"]) == ("picked", "random"))
    assert pair["shared_rows"] == 50  # the first 50 random picks
    assert (out / "report.html").is_file() and (out / "mig_trace.png").is_file()

    bad = subprocess.run(
        [*cmd[:6], "--method", "mig", "--out", str(tmp_path / "bad")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2 and "NAME:K" in bad.stderr


LIMA_K = 100


@pytest.fixture(scope="module")
def lima(tagged_lima, tmp_path_factory):
    """LIMA (1,029 alpaca-style rows) tagged offline with MiniLM over the InsTag vocabulary and
    length-scored (the session's ``tagged_lima``, tests/conftest.py); saved as jsonl with its
    label graph."""
    pool = tagged_lima.select_columns(["messages", "labels", "score"])
    graph = LabelGraph.from_labels(sorted({x for row in pool["labels"] for x in row}))
    folder = tmp_path_factory.mktemp("lima")
    save_dataset(pool, folder / "pool.jsonl")
    graph.save(folder / "graph.npz")
    return {"pool": pool, "graph": graph, "folder": folder}


def _run_report(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "hf_mig", "-q", "report", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def lima_report(lima) -> Path:
    """``hf-mig report`` on tagged LIMA with MIG and random at k=100: the output folder."""
    folder = lima["folder"]
    out = folder / "report"
    proc = _run_report(
        [
            str(folder / "pool.jsonl"),
            "--method", f"mig:{LIMA_K}",
            "--method", f"random:{LIMA_K}",
            "--graph", str(folder / "graph.npz"),
            "--out", str(out),
        ]
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_cli_on_tagged_lima_mig_vs_random(lima, lima_report):
    pool, graph = lima["pool"], lima["graph"]
    assert len(pool) == 1029
    out = lima_report
    data = json.loads((out / "report.json").read_text())
    assert {f["file"] for f in data["figures"]} >= {"label_information.png", "coverage_curve.png"}
    for name in ("label_information.png", "top_labels.png"):
        _check_png(out / name)

    # the CLI's picks are the library's: MIG on the same graph, random with seed 42
    selector = MIGSelector(LIMA_K, label_graph=graph)
    picks = {
        "mig": selector.select_indices(pool),
        "random": RandomSelector(LIMA_K, seed=42).select_indices(pool),
    }
    row_labels = pool["labels"]
    pool_labels = _labels_of(pool, range(len(pool)))
    labels = data["labels"]
    assert labels["pool_labels"] == len(pool_labels)
    for name, idx in picks.items():
        got = labels["by_selection"][name]
        assert got["coverage_curve"] == coverage_curve(row_labels, idx)
        covered = _labels_of(pool, idx)
        assert got["labels_covered"] == len(covered)
        assert got["coverage"] == pytest.approx(len(covered) / len(pool_labels))
    by = labels["by_selection"]
    assert by["mig"]["labels_covered"] > by["random"]["labels_covered"]

    info = data["information"]
    assert info["encoding"]["rows_without_labels"] == sum(1 for row in row_labels if not row)
    _check_information(info, pool, picks, graph)
    trace_end = float(selector.result_.objective_trace[-1])
    assert data["mig_trace"]["final_objective"] == pytest.approx(trace_end)
    assert info["by_selection"]["mig"]["objective"] == pytest.approx(trace_end, rel=1e-6)
    assert info["mig_trace_check"]["relative_difference"] < 1e-6
    mig, rnd = info["by_selection"]["mig"], info["by_selection"]["random"]
    assert mig["objective"] > rnd["objective"]
    assert mig["share_of_pool_labels"] > rnd["share_of_pool_labels"]
    # beyond the head MIG keeps a far larger share of the pool's information than random (the
    # bottom quartile, labels carried by few short low-score rows, it mostly leaves at k=100)
    for band in ("25-50%", "50-75%"):
        assert mig["kept_by_band"][band] > 2 * rnd["kept_by_band"][band]
        assert mig["labels_by_band"][band] > 2 * rnd["labels_by_band"][band]


def test_cli_options_reach_mig_and_the_information(lima):
    """No --graph: the report uses the graph MIG built, with the same prop_weight/norm/phi."""
    pool, graph, folder = lima["pool"], lima["graph"], lima["folder"]
    out = folder / "report-options"
    proc = _run_report(
        [
            str(folder / "pool.jsonl"),
            "--method", "mig:60",
            "--prop-weight", "0.5",
            "--norm",
            "--phi-b", "0.7",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "report.json").read_text())
    info = data["information"]
    assert info["label_graph"] is True
    assert (info["prop_weight"], info["norm"], info["phi_b"]) == (0.5, True, 0.7)
    selector = MIGSelector(60, label_graph=graph, prop_weight=0.5, norm=True, phi_b=0.7)
    picks = selector.select_indices(pool)
    assert data["labels"]["by_selection"]["mig"]["coverage_curve"] == coverage_curve(
        pool["labels"], picks
    )
    trace_end = float(selector.result_.objective_trace[-1])
    assert info["by_selection"]["mig"]["objective"] == pytest.approx(trace_end, rel=1e-6)
    _check_information(info, pool, {"mig": picks}, graph, 0.5, True, Objective("pow", 1e-6, 0.7))
    assert "label_neighbourhoods.png" in {f["file"] for f in data["figures"]}


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    base = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (Debian chromium)"
)
def test_report_opens_in_headless_chromium(report, tmp_path):
    page, data = report
    _check_opens_in_chromium(page, len(data["figures"]), EXPECTED_FIGURES, tmp_path)


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (Debian chromium)"
)
def test_lima_report_opens_in_headless_chromium(lima_report, tmp_path):
    data = json.loads((lima_report / "report.json").read_text())
    files = {f["file"] for f in data["figures"]}
    assert "label_information.png" in files and len(files) >= 9
    _check_opens_in_chromium(lima_report / "report.html", len(files), files, tmp_path)


def _check_opens_in_chromium(page: Path, n: int, figures: set[str], tmp_path: Path) -> None:
    url = page.resolve().as_uri()
    dom = _chromium(
        ["--virtual-time-budget=5000", "--enable-logging=stderr", "--dump-dom", url], tmp_path
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    errors = [line for line in dom.stderr.splitlines() if "Uncaught" in line or "CONSOLE" in line]
    assert not errors, errors
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stdout[:500]
    assert f'data-images-loaded="{n}"' in body.group(1), body.group(0)
    assert 'data-images-broken="0"' in body.group(1)
    shown = set(re.findall(r'<img [^>]*data-file="([^"]+)"', dom.stdout))
    assert shown == figures

    shot = tmp_path / "shot.png"
    res = _chromium(["--screenshot=" + str(shot), "--window-size=1200,3000", url], tmp_path)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    _check_png(shot)
