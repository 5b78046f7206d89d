"""The label-, score- and text-based baselines: ``score``, ``ifd``, ``instag`` and ``zip``.

Small cases have their expected picks worked out by hand in comments; real pools are the parity
pool (tests/fixtures), the annotated demo pool (hf_mig/data/bundled) and, from the shared data
folder, the MIG authors' example pool, LIMA and the Alpaca-GPT4 demo. ``instag`` and ``zip`` are
also checked against plain-Python re-statements of their algorithms (sets; recompressing every
concatenation from scratch with ``zlib.compress``).
"""

from __future__ import annotations

import json
import random
import shutil
import string
import subprocess
import sys
import zlib

import numpy as np
import pytest
from datasets import Dataset, concatenate_datasets

import hf_mig
from hf_mig.selectors import (
    SELECTORS,
    IFDSelector,
    InsTagSelector,
    Selector,
    ZIPSelector,
    get_selector,
)

# --------------------------------------------------------------------------------------------
# helpers


def hf_mig_cli(*args):
    exe = shutil.which("hf-mig")
    cmd = [exe] if exe else [sys.executable, "-m", "hf_mig"]
    out = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True)
    if out.returncode != 0:
        raise AssertionError(f"hf-mig {args} failed ({out.returncode}):\n{out.stderr}")
    return out


def read_jsonl(path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def units_of(dataset: Dataset) -> list[bytes]:
    """Each row's conversation as ZIP compresses it, built here in plain Python."""
    conv = dataset.map(
        hf_mig.to_messages, batched=True, with_indices=True, remove_columns=dataset.column_names
    )
    return [
        ("\n".join(f"{m['role']}: {m['content']}" for m in msgs) + "\n").encode("utf-8")
        for msgs in conv["messages"]
    ]


def ratio(parts: list[bytes]) -> float:
    data = b"".join(parts)
    return len(data) / len(zlib.compress(data, 9))


@pytest.fixture(scope="module")
def parity_pool(parity_dir) -> Dataset:
    return hf_mig.load_pool(parity_dir / "pool.jsonl")


@pytest.fixture(scope="module")
def authors_pool(data_dir) -> Dataset:
    path = data_dir / "mig_authors" / "data" / "example.jsonl"
    with pytest.warns(UserWarning, match="line"):
        return hf_mig.load_pool(path, skip_bad_lines=True)


@pytest.fixture(scope="module")
def lima(data_dir) -> Dataset:
    return hf_mig.load_pool(data_dir / "lima" / "lima.json")


@pytest.fixture(scope="module")
def lima_alpaca(lima, data_dir) -> Dataset:
    """LIMA + the Alpaca-GPT4 demo as one ``messages`` pool (2,028 rows)."""
    alpaca = hf_mig.load_pool(data_dir / "llama_factory_demo" / "alpaca_en_demo.json")
    parts = [
        ds.map(hf_mig.to_messages, batched=True, with_indices=True, remove_columns=ds.column_names)
        for ds in (lima, alpaca)
    ]
    return concatenate_datasets(parts)


def test_registered_and_follow_the_protocol():
    for name, cls in [
        ("score", hf_mig.selectors.ScoreSelector),
        ("ifd", IFDSelector),
        ("instag", InsTagSelector),
        ("zip", ZIPSelector),
    ]:
        assert SELECTORS[name] is cls
        assert isinstance(get_selector(name, 3), Selector)


# --------------------------------------------------------------------------------------------
# score


def test_score_top_k_ties_to_lowest_index():
    ds = Dataset.from_dict({"score": [3.0, 7.0, 7.0, 1.0, 9.0, 7.0]})
    # highest first: 9 (row 4), then the three 7s by row: 1, 2 (5 is cut)
    sel = get_selector("score", 3)
    assert sel.select_indices(ds).tolist() == [4, 1, 2]
    assert sel.selected_values_.tolist() == [9.0, 7.0, 7.0]
    # lowest first: 1 (row 3), 3 (row 0)
    assert get_selector("score", 2, descending=False).select_indices(ds).tolist() == [3, 0]
    # select returns the rows themselves, in pick order
    assert hf_mig.select(ds, 2, method="score")["score"] == [9.0, 7.0]


def test_score_any_column_negative_values_and_integers():
    ds = Dataset.from_dict({"reward": [-1, -3, 0, 5], "score": [1.0, 2.0, 3.0, 4.0]})
    # rewards -1, -3, 0, 5 -> 5 (row 3), 0 (row 2), -1 (row 0)
    assert get_selector("score", 3, column="reward").select_indices(ds).tolist() == [3, 2, 0]
    # the CLI's --score-column fills score_column; column wins when both are given
    assert get_selector("score", 1, score_column="reward").select_indices(ds).tolist() == [3]
    sel = get_selector("score", 1, column="score", score_column="reward")
    assert sel.select_indices(ds).tolist() == [3] and sel.column_ == "score"


def test_score_range_filter():
    ds = Dataset.from_dict({"score": [3.0, 7.0, 7.0, 1.0, 9.0, 7.0]})
    # within [2, 7]: rows 0 (3), 1, 2, 5 (7s); row 3 (1) is below, row 4 (9) above
    sel = get_selector("score", 3, min_value=2, max_value=7)
    assert sel.select_indices(ds).tolist() == [1, 2, 5]
    assert (sel.n_qualifying_, sel.n_below_, sel.n_above_) == (4, 1, 1)
    # bounds are inclusive: [7, 7] keeps exactly the three 7s
    assert get_selector("score", 3, min_value=7, max_value=7).select_indices(ds).tolist() == [
        1,
        2,
        5,
    ]
    with pytest.raises(ValueError, match=r"only 4 of 6 rows .*1 below 2.*1 above 7.*k = 5"):
        get_selector("score", 5, min_value=2, max_value=7).select_indices(ds)
    with pytest.raises(ValueError, match="min_value .* greater than max_value"):
        get_selector("score", 1, min_value=3, max_value=2).select_indices(ds)


def test_score_nan_and_null():
    ds = Dataset.from_dict({"score": [1.0, float("nan"), None, 4.0]})
    with pytest.raises(ValueError, match=r"row 1: column 'score' is null or NaN \(2 rows"):
        get_selector("score", 2).select_indices(ds)
    # nan='last': 4 (row 3), 1 (row 0), then the rows without a value in row order: 1, 2
    sel = get_selector("score", 4, nan="last")
    assert sel.select_indices(ds).tolist() == [3, 0, 1, 2]
    assert sel.n_missing_ == 2
    with pytest.raises(ValueError, match="nan must be one of"):
        get_selector("score", 1, nan="drop").select_indices(ds)


def test_score_errors_name_the_column():
    ds = Dataset.from_dict({"score": [1.0, 2.0], "labels": [["a"], ["b"]]})
    with pytest.raises(ValueError, match=r"column 'reward' not found.*\['score', 'labels'\]"):
        get_selector("score", 1, column="reward").select_indices(ds)
    with pytest.raises(ValueError, match="column 'labels' must hold numbers"):
        get_selector("score", 1, column="labels").select_indices(ds)
    with pytest.raises(ValueError, match="k = 3 exceeds the pool size"):
        get_selector("score", 3).select_indices(ds)
    with pytest.raises(ValueError, match="k must be >= 1"):
        get_selector("score", 0).select_indices(ds)


def test_score_struct_path():
    ds = Dataset.from_dict({"meta": [{"q": 0.2}, {"q": 0.9}, None, {"q": 0.5}]})
    # meta.q = 0.2, 0.9, (null struct), 0.5 -> 0.9 (row 1), 0.5 (row 3)
    sel = get_selector("score", 2, column="meta.q", nan="last")
    assert sel.select_indices(ds).tolist() == [1, 3]
    with pytest.raises(ValueError, match=r"row 2: column 'meta.q' is null"):
        get_selector("score", 2, column="meta.q").select_indices(ds)
    with pytest.raises(ValueError, match=r"struct 'meta' has no field 'x' \(fields: \['q'\]\)"):
        get_selector("score", 2, column="meta.x").select_indices(ds)


def test_score_on_parity_pool(parity_pool):
    sel = get_selector("score", 100)
    picks = sel.select_indices(parity_pool)
    scores = np.asarray(parity_pool["score"])
    expected = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:100]
    assert picks.tolist() == expected


# --------------------------------------------------------------------------------------------
# ifd


def test_ifd_keeps_zero_to_one():
    ds = Dataset.from_dict({"ifd": [0.5, 1.2, 0.9, 1.0, -0.1, 0.9]})
    # in [0, 1]: rows 0 (0.5), 2 (0.9), 3 (1.0, kept), 5 (0.9); row 1 (> 1) and 4 (< 0) out.
    # highest first: 3 (1.0), then the 0.9s by row: 2, 5
    sel = get_selector("ifd", 3)
    assert sel.select_indices(ds).tolist() == [3, 2, 5]
    assert (sel.column_, sel.n_above_, sel.n_below_, sel.n_qualifying_) == ("ifd", 1, 1, 4)
    with pytest.raises(
        ValueError,
        match=r"only 4 of 6 rows have an IFD .* within \[0, 1\] .*1 above 1: IFD > 1 means "
        r"the instruction does not help",
    ):
        get_selector("ifd", 5).select_indices(ds)


def test_ifd_errors():
    with pytest.raises(ValueError, match=r"no IFD column found: expected 'ifd' or .*ifd_score"):
        get_selector("ifd", 1).select_indices(Dataset.from_dict({"score": [1.0]}))
    ds = Dataset.from_dict({"ifd": [0.3, None]})
    with pytest.raises(ValueError, match="row 1: column 'ifd' is null or NaN"):
        get_selector("ifd", 1).select_indices(ds)


def test_ifd_on_authors_pool(authors_pool, data_dir):
    # the authors' records carry {"ifd_score": {"version": .., "content": IFD}}; line 3 of the
    # file is malformed, so the pool holds lines 1, 2, 4, ..., 10
    values = []
    for line in (data_dir / "mig_authors" / "data" / "example.jsonl").read_text().splitlines():
        try:
            values.append(json.loads(line)["ifd_score"]["content"])
        except json.JSONDecodeError:
            continue
    assert len(values) == len(authors_pool) == 9
    ranked = sorted((i for i, v in enumerate(values) if 0 <= v <= 1), key=lambda i: -values[i])
    sel = get_selector("ifd", 4)
    assert sel.select_indices(authors_pool).tolist() == ranked[:4]
    assert sel.column_ == "ifd_score.content"
    assert sel.selected_values_.tolist() == [values[i] for i in ranked[:4]]


# --------------------------------------------------------------------------------------------
# instag


TAGS = {"labels": [["a", "b", "c"], ["a", "b"], ["a"], ["d"], ["c"]]}


def test_instag_passes_by_hand():
    ds = Dataset.from_dict(TAGS)
    # sorted by #tags, ties by row: 0 (3 tags), 1 (2), 2, 3, 4 (1 each)
    # pass 1 (empty set): 0 adds {a,b,c}; 1 {a,b} and 2 {a} add nothing; 3 adds d; 4 {c} no
    # pass 2 (empty set again) over 1, 2, 4: 1 adds {a,b}; 2 {a} no; 4 adds c
    sel = InsTagSelector(k=4)
    assert sel.select_indices(ds).tolist() == [0, 3, 1, 4]
    assert sel.pass_of_pick_.tolist() == [1, 1, 2, 2]
    assert sel.passes_ == 2 and sel.n_filled_ == 0
    assert sel.covered_labels_ == ["a", "b", "c", "d"]
    assert sel.tag_counts_.tolist() == [3, 2, 1, 1, 1]
    # k = 5: pass 3 takes the last row, 2
    assert InsTagSelector(k=5).select_indices(ds).tolist() == [0, 3, 1, 4, 2]


def test_instag_single_pass_then_fill_by_hand():
    ds = Dataset.from_dict(TAGS)
    # one pass takes 0 and 3 (as above); the skipped rows 1, 2, 4 fill in sorted order
    sel = InsTagSelector(k=4, strategy="fill")
    assert sel.select_indices(ds).tolist() == [0, 3, 1, 2]
    assert sel.pass_of_pick_.tolist() == [1, 1, 0, 0]
    assert sel.n_filled_ == 2 and sel.passes_ == 1
    with pytest.raises(ValueError, match="strategy must be one of"):
        InsTagSelector(k=1, strategy="greedy").select_indices(ds)


def test_instag_score_breaks_ties():
    ds = Dataset.from_dict({**TAGS, "score": [0.0, 1.0, 5.0, 2.0, 9.0]})
    # 1-tag rows by score: 4 (9), 2 (5), 3 (2). Sorted: 0, 1, 4, 2, 3
    # pass 1: 0 {a,b,c}; 1 no; 4 {c} no; 2 {a} no; 3 adds d -> [0, 3]
    # pass 2 over 1, 4, 2: 1 {a,b}; 4 adds c; 2 {a} no -> [0, 3, 1, 4]; pass 3: 2
    sel = InsTagSelector(k=5)
    assert sel.select_indices(ds).tolist() == [0, 3, 1, 4, 2]
    assert sel.score_column_ == "score"
    # without the tie-break the row order decides (as in test_instag_passes_by_hand)
    assert InsTagSelector(k=5, score_column=None).select_indices(ds).tolist() == [0, 3, 1, 4, 2]
    # all rows share one tag: every pass takes one row, the best by score
    same = Dataset.from_dict({"labels": [["x"]] * 4, "score": [1.0, 3.0, 2.0, 3.0]})
    assert InsTagSelector(k=3).select_indices(same).tolist() == [1, 3, 2]


def test_instag_rows_without_tags_come_last_and_vocabulary():
    ds = Dataset.from_dict({"labels": [[], ["a", "a"], ["b", "zz"], ["a"]]})
    # row 1's repeated tag counts once; rows 1, 2 have 1 and 2 tags: sorted 2, 1, 3, 0
    # pass 1: 2 {b, zz}, 1 {a}; pass 2 over 3, 0: 3 {a}; then only row 0 (no tags) is left
    sel = InsTagSelector(k=4)
    assert sel.select_indices(ds).tolist() == [2, 1, 3, 0]
    assert sel.pass_of_pick_.tolist() == [1, 1, 2, 0]
    assert sel.tag_counts_.tolist() == [0, 1, 2, 1]
    # with a vocabulary without "zz", rows 1, 2, 3 all have one tag: sorted 1, 2, 3, 0
    sel = InsTagSelector(k=3, vocabulary=["a", "b"])
    assert sel.select_indices(ds).tolist() == [1, 2, 3]
    assert sel.encoding_report_["labels_outside_vocabulary"] == 1


def test_instag_errors():
    with pytest.raises(ValueError, match="column 'tags' not found"):
        InsTagSelector(k=1, labels_column="tags").select_indices(Dataset.from_dict(TAGS))
    bad = Dataset.from_dict({**TAGS, "score": [1.0, None, 1.0, 1.0, 1.0]})
    with pytest.raises(ValueError, match=r"row 1: column 'score' \(the tie-break score\)"):
        InsTagSelector(k=1).select_indices(bad)
    with pytest.raises(ValueError, match="exceeds the pool size"):
        InsTagSelector(k=6).select_indices(Dataset.from_dict(TAGS))


def instag_reference(labels: list[list[str]], scores: list[float], k: int) -> list[int]:
    """Algorithm 1 of the InsTag paper, with Python sets."""
    order = sorted(range(len(labels)), key=lambda i: (-len(set(labels[i])), -scores[i], i))
    picked: list[int] = []
    while len(picked) < k:
        tags: set[str] = set()
        before = len(picked)
        for i in list(order):
            if not set(labels[i]) <= tags:
                tags |= set(labels[i])
                picked.append(i)
                order.remove(i)
                if len(picked) == k:
                    return picked
        if len(picked) == before:
            break
    return picked + order[: k - len(picked)]


@pytest.mark.parametrize("k", [50, 700, 2000])
def test_instag_matches_plain_algorithm_on_parity_pool(parity_pool, k):
    expected = instag_reference(parity_pool["labels"], parity_pool["score"], k)
    assert InsTagSelector(k=k).select_indices(parity_pool).tolist() == expected


def test_instag_covers_more_labels_than_top_score(parity_pool):
    def n_labels(indices):
        return len({t for i in indices for t in parity_pool[int(i)]["labels"]})

    for k in (50, 200, 500):
        instag = InsTagSelector(k=k)
        picks = instag.select_indices(parity_pool)
        assert len(set(picks.tolist())) == k
        assert n_labels(picks) == len(instag.covered_labels_)
        top = get_selector("score", k).select_indices(parity_pool)
        rnd = get_selector("random", k, seed=42).select_indices(parity_pool)
        assert n_labels(picks) >= n_labels(top)
        assert n_labels(picks) >= n_labels(rnd)
    assert np.array_equal(picks, InsTagSelector(k=500).select_indices(parity_pool))


# --------------------------------------------------------------------------------------------
# zip


def test_zip_hand_case_prefers_new_text():
    rng = random.Random(0)
    s1 = "".join(rng.choice(string.ascii_lowercase) for _ in range(120))
    t = "".join(rng.choice(string.ascii_lowercase) for _ in range(60))
    ds = Dataset.from_dict({"text": [s1, s1, t + t]})
    # own ratios: rows 0 and 1 hold the same random text; row 2 repeats a block, so it
    # compresses better (a higher ratio). Step 1 takes the lowest ratio: row 0 (tie with row 1
    # -> lowest index). Step 2: adding row 1 again adds only a back-reference (the set becomes
    # very compressible), adding row 2 adds new letters -> row 2.
    u0, u1, u2 = (x.encode() + b"\n" for x in ds["text"])
    assert ratio([u0]) == ratio([u1]) < ratio([u2])
    assert ratio([u0, u2]) < ratio([u0, u1])
    sel = ZIPSelector(k=2, k1=3, k2=3, k3=3, text_column="text")
    assert sel.select_indices(ds).tolist() == [0, 2]
    assert sel.compression_ratios_.tolist() == [ratio([u0]), ratio([u1]), ratio([u2])]
    assert sel.selection_ratio_ == pytest.approx(ratio([u0, u2]), abs=0)
    # row 1 was a stage-2 candidate that stage 3 did not take: marked used
    assert sel.stored_ratios_[1] == np.finfo(np.float64).max
    assert sel.rounds_ == 1


def zip_reference(units: list[bytes], k: int, k1: int, k2: int, k3: int) -> list[int]:
    """The three ZIP stages, recompressing every concatenation from scratch."""
    used = float(np.finfo(np.float64).max)
    stored = [ratio([u]) for u in units]
    selected: list[int] = []
    while len(selected) < k:
        left = [r for r in range(len(units)) if r not in selected]
        cand = sorted(left, key=lambda r: (stored[r], r))[:k1]
        prefix = [units[s] for s in selected]
        for r in cand:
            stored[r] = ratio(prefix + [units[r]])
        short = sorted(cand, key=lambda r: (stored[r], r))[:k2]
        for r in short:
            stored[r] = used
        local: list[bytes] = []
        rest = sorted(short)
        for _ in range(min(k3, k - len(selected), len(rest))):
            best = min(rest, key=lambda r: (ratio(local + [units[r]]), r))
            rest.remove(best)
            local.append(units[best])
            selected.append(best)
    return selected


def test_zip_matches_recompressing_reference(lima):
    pool = lima.select(range(50))
    units = units_of(pool)
    # 5 rounds of 4 picks; each round uses 10 rows, so the last rounds draw on used rows
    expected = zip_reference(units, k=20, k1=30, k2=10, k3=4)
    sel = ZIPSelector(k=20, k1=30, k2=10, k3=4)
    picks = sel.select_indices(pool)  # Alpaca shape, through to_messages
    assert picks.tolist() == expected
    assert sel.rounds_ == 5
    assert sel.selection_ratio_ == ratio([units[i] for i in expected])
    assert sel.ratio_trace_[-1] == sel.selection_ratio_
    two = ZIPSelector(k=20, k1=30, k2=10, k3=4, n_jobs=2).select_indices(pool)
    assert np.array_equal(two, picks)


def test_zip_single_candidate_rounds_rank_by_own_ratio(lima_alpaca):
    # k1 = k2 = k3 = 1: each round takes the row with the lowest stored (= own) ratio
    sel = ZIPSelector(k=15, k1=1, k2=1, k3=1)
    picks = sel.select_indices(lima_alpaca)
    own = sel.compression_ratios_
    assert picks.tolist() == np.lexsort((np.arange(own.size), own))[:15].tolist()


def test_zip_on_lima_and_alpaca(lima_alpaca):
    units = units_of(lima_alpaca)
    sel = ZIPSelector(k=60, k1=400, k2=30, k3=15)
    picks = sel.select_indices(lima_alpaca)
    assert picks.size == 60 and len(set(picks.tolist())) == 60
    assert sel.rounds_ == 4 and sel.ratio_trace_.size == 4
    assert sel.selection_ratio_ == ratio([units[i] for i in picks])
    # ZIP's subset is less redundant than a random one and than the pool as a whole
    rnd = get_selector("random", 60, seed=42).select_indices(lima_alpaca)
    assert sel.selection_ratio_ < ratio([units[i] for i in rnd])
    assert sel.selection_ratio_ < ratio(units)
    assert sel.compression_ratios_[picks].mean() < sel.compression_ratios_.mean()
    assert set(sel.timings_) == {"texts_s", "own_ratios_s", "stage12_s", "stage3_s"}
    again = hf_mig.select(lima_alpaca, 60, method="zip", k1=400, k2=30, k3=15)
    assert again["messages"] == lima_alpaca.select(picks)["messages"]


def test_zip_errors():
    ds = Dataset.from_dict({"text": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="k1 >= k2 >= k3"):
        ZIPSelector(k=1, k1=2, k2=3, k3=1, text_column="text").select_indices(ds)
    with pytest.raises(ValueError, match="k3 must be an integer >= 1"):
        ZIPSelector(k=1, k3=0, text_column="text").select_indices(ds)
    with pytest.raises(ValueError, match="column 'body' not found"):
        ZIPSelector(k=1, text_column="body").select_indices(ds)
    with pytest.raises(ValueError, match="ZIP needs conversation text: cannot detect"):
        ZIPSelector(k=1).select_indices(ds)
    turns = Dataset.from_dict(
        {"messages": [[{"role": "user", "content": "hi"}], [{"role": "user", "content": None}]]}
    )
    with pytest.raises(ValueError, match=r"row 1, field 'messages'\[0\]\['content'\]"):
        ZIPSelector(k=1).select_indices(turns)
    with pytest.raises(ValueError, match=r"row 1, field 'text': expected a string"):
        ZIPSelector(k=1, text_column="text").select_indices(
            Dataset.from_dict({"text": ["a", None]})
        )


# --------------------------------------------------------------------------------------------
# command line


def test_cli_score_and_instag(parity_pool, parity_dir, tmp_path):
    for method, options in [("score", []), ("instag", ["--option", "strategy=fill"])]:
        out = tmp_path / f"{method}.jsonl"
        res = hf_mig_cli(
            "select",
            parity_dir / "pool.jsonl",
            "--method",
            method,
            "--num",
            40,
            "--out",
            out,
            *options,
        )
        assert "selected 40 of 2,000 rows" in res.stdout
        params = {"strategy": "fill"} if method == "instag" else {}
        expected = get_selector(method, 40, **params).select(parity_pool)["id"]
        assert [row["id"] for row in read_jsonl(out)] == expected


def test_cli_ifd_on_authors_pool(authors_pool, data_dir, tmp_path):
    out = tmp_path / "ifd.jsonl"
    pool = data_dir / "mig_authors" / "data" / "example.jsonl"
    hf_mig_cli("select", pool, "--method", "ifd", "--num", 3, "--out", out, "--skip-bad-lines")
    expected = IFDSelector(k=3).select(authors_pool)["_id"]
    assert [row["_id"] for row in read_jsonl(out)] == expected


def test_cli_zip(demo_annotated, tmp_path):
    out = tmp_path / "zip.jsonl"
    options = ["--option", "k1=300", "--option", "k2=20", "--option", "k3=10"]
    hf_mig_cli("select", demo_annotated, "--method", "zip", "--num", 20, "--out", out, *options)
    pool = hf_mig.load_pool(demo_annotated)
    expected = ZIPSelector(k=20, k1=300, k2=20, k3=10).select(pool)["id"]
    assert [row["id"] for row in read_jsonl(out)] == expected
