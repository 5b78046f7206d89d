"""AlpacaEval 2: win rate and LC win rate against the published leaderboard, judging, generation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from judge_server import JudgeServer, alpaca_p_first

from hf_mig.eval import alpaca_eval as ae
from hf_mig.eval.judge import JudgeClient

WEIGHTS = (
    "metrics/weights/weighted_alpaca_eval_gpt4_turbo/length_controlled_v1/"
    "baseline_gpt4_1106_preview.csv"
)
BOARD = "leaderboards/data_AlpacaEval_2/weighted_alpaca_eval_gpt4_turbo_leaderboard.csv"
ANNOTATED = [
    "OpenHermes-2.5-Mistral-7B",
    "alpaca-7b",
    "gpt4_1106_preview",
    "text_davinci_003",
    "vicuna-7b-v1.5",
]


@pytest.fixture(scope="module")
def ae_dir(data_dir: Path) -> Path:
    d = data_dir / "alpaca_eval"
    if not d.is_dir():
        pytest.skip("alpaca_eval data not available")
    return d


@pytest.fixture(scope="module")
def board(ae_dir: Path) -> dict:
    return ae.load_leaderboard(ae_dir / BOARD)


@pytest.fixture(scope="module")
def weights(ae_dir: Path) -> dict:
    return ae.load_glm_weights(ae_dir / WEIGHTS)


def _annotations(ae_dir: Path, model: str) -> list[dict]:
    return ae.load_annotations(
        ae_dir / "results" / model / "weighted_alpaca_eval_gpt4_turbo" / "annotations.json"
    )


# ------------------------------------------------------------------------------ golden values


def test_win_rate_golden_by_hand():
    # valid preferences 1, 2, 1.5, 0 (= draw), 1.25 -> p - 1 = 0, 1, .5, .5, .25; None and 3 invalid
    wr = ae.win_rate([1, 2, 1.5, 0, 1.25, None, 3])
    assert wr.n_total == 5 and wr.n_invalid == 2
    assert wr.win_rate == pytest.approx(45.0)  # mean .45
    # deviations -.45 .55 .05 .05 -.2 -> SS .55 -> var .1375 -> sd .3708099 -> / sqrt 5
    assert wr.standard_error == pytest.approx(100 * math.sqrt(0.1375) / math.sqrt(5))
    assert (wr.n_wins, wr.n_wins_base, wr.n_draws) == (1, 2, 2)
    assert wr.discrete_win_rate == pytest.approx(40.0)  # 0, 1, .5, .5, 0


def test_lc_from_weights_golden_by_hand():
    # p_i = logistic(-1 + 2 d_i) for d = 0, 0.5 -> logistic(-1) = .268941, logistic(0) = .5
    w = ae.GLMWeights(length=-3.0, difficulty=2.0, not_gamed=-1.0)
    lc, _ = ae.lc_from_weights(w, np.array([0.0, 0.5]))
    assert lc == pytest.approx(100 * (1 / (1 + math.e) + 0.5) / 2)  # 38.4470...
    # against a baseline with its own weights: only the difference matters
    lc2, _ = ae.lc_from_weights(w, np.array([0.0, 0.5]), ae.GLMWeights(0.0, 1.0, 1.0))
    assert lc2 == pytest.approx(100 * (1 / (1 + math.exp(2)) + 1 / (1 + math.exp(1.5))) / 2)


def test_lc_glm_weights_path_with_difficulty_file(tmp_path, weights):
    # the exact leaderboard path, given a difficulty file: mean logistic(a + b d_i)
    diff = tmp_path / "instruction_difficulty.csv"
    diff.write_text(",instruction_difficulty\n0,-1.0\n1,0.0\n2,2.0\n")
    d = ae.load_instruction_difficulty(diff)
    recs = [
        {
            "preference": 1.0,
            "generator_1": "gpt4_1106_preview",
            "generator_2": "alpaca-7b",
            "output_1": "aa",
            "output_2": "a",
        }
    ] * 3
    res = ae.score_annotations(recs, glm_weights=weights, instruction_difficulty=d)
    w = weights["alpaca-7b"]
    expected = np.mean([1 / (1 + math.exp(-(w.not_gamed + w.difficulty * x))) for x in d]) * 100
    assert res.lc.lc_method == "glm-weights"
    assert res.lc.length_controlled_winrate == pytest.approx(expected)


def test_glm_refit_recovers_a_known_glm():
    # annotations whose soft preferences follow a known GLM exactly; the refit (L1, CV) must
    # recover its LC win rate, and the difficulty-free fit must be labelled reduced
    rng = np.random.default_rng(0)
    n = 805
    out1 = ["x" * int(k) for k in rng.integers(200, 3000, n)]
    out2 = ["y" * int(k) for k in rng.integers(200, 3000, n)]
    diff = rng.normal(0, 1, n)
    delta = np.array([len(a) - len(b) for a, b in zip(out1, out2)], float)
    t = np.tanh(delta / delta.std(ddof=1))
    true = (-1.5, 0.8, -0.7)  # length, difficulty, not_gamed
    p = 1 / (1 + np.exp(-(true[0] * t + true[1] * diff + true[2])))
    recs = [
        {"preference": 1 + float(pi), "output_1": a, "output_2": b}
        for pi, a, b in zip(p, out1, out2)
    ]
    res = ae.fit_length_controlled(recs, instruction_difficulty=diff)
    lc_true = 100 * np.mean(1 / (1 + np.exp(-(true[1] * diff + true[2]))))
    assert res.lc_method == "glm-refit-no-gamed"
    assert res.length_controlled_winrate == pytest.approx(lc_true, abs=0.3)
    assert res.weights["tanh_std_delta_len"] == pytest.approx(true[0], abs=0.1)
    reduced = ae.fit_length_controlled(recs)
    assert reduced.lc_method == "reduced-glm" and "REDUCED" in reduced.note


def test_glm_refit_with_gamed_baselines(tmp_path):
    # the official protocol: the model's rows plus gamed-baseline rows (not_gamed = 0, weight
    # 0.1) read from a df_gamed.csv; all rows follow one known GLM
    rng = np.random.default_rng(1)
    n = 805
    diff = rng.normal(0, 1, n)
    out1 = ["x" * int(k) for k in rng.integers(200, 3000, n)]
    out2 = ["y" * int(k) for k in rng.integers(200, 3000, n)]
    delta = np.array([len(a) - len(b) for a, b in zip(out1, out2)], float)
    std = delta / delta.std(ddof=1)
    w_len, w_diff, w_ng = -1.2, 0.6, -0.9
    p = 1 / (1 + np.exp(-(w_len * np.tanh(std) + w_diff * diff + w_ng)))
    recs = [{"preference": 1 + float(q), "output_1": a, "output_2": b}
            for q, a, b in zip(p, out1, out2)]  # fmt: skip
    g_std = rng.normal(0, 1.5, 2 * n)
    g_diff = np.concatenate([diff, diff])
    g_p = 1 / (1 + np.exp(-(w_len * np.tanh(g_std) + w_diff * g_diff)))
    lines = ["model,index,preference,std_delta_len,instruction_difficulty,not_gamed_baseline"]
    for i, (q, s, d) in enumerate(zip(g_p, g_std, g_diff)):
        lines.append(
            f"gpt4_1106_preview_{'verbose' if i < n else 'concise'},{i % n},{1 + q},{s},{d},False"
        )
    (tmp_path / "df_gamed.csv").write_text("\n".join(lines) + "\n")
    gamed = ae.load_gamed(tmp_path / "df_gamed.csv")
    assert len(gamed) == 2 * n and gamed[0]["preference"] == pytest.approx(g_p[0])
    res = ae.fit_length_controlled(recs, instruction_difficulty=diff, gamed=gamed)
    assert res.lc_method == "glm-refit"
    lc_true = 100 * np.mean(1 / (1 + np.exp(-(w_diff * diff + w_ng))))
    assert res.length_controlled_winrate == pytest.approx(lc_true, abs=0.3)
    assert res.weights["tanh_std_delta_len"] == pytest.approx(w_len, abs=0.05)


# ------------------------------------------------------------------------------ real leaderboard


@pytest.mark.parametrize("model", ANNOTATED)
def test_win_rate_reproduces_the_leaderboard(ae_dir, board, model):
    res = ae.score_annotations(_annotations(ae_dir, model), lc=False)
    wr = res.win_rate
    assert wr.n_total == 805 and wr.n_invalid == 0
    if model not in board:
        # text_davinci_003 has annotations but no AlpacaEval 2 leaderboard row
        assert model == "text_davinci_003"
        assert round(wr.win_rate, 2) == 1.96
        return
    pub = board[model]
    assert round(wr.win_rate, 2) == round(pub["win_rate"], 2)
    assert wr.win_rate == pytest.approx(pub["win_rate"], abs=1e-9)
    assert wr.standard_error == pytest.approx(pub["standard_error"], abs=1e-9)
    assert (wr.n_wins, wr.n_wins_base, wr.n_draws) == (
        pub["n_wins"],
        pub["n_wins_base"],
        pub["n_draws"],
    )
    assert wr.discrete_win_rate == pytest.approx(pub["discrete_win_rate"], abs=1e-9)
    assert int(res.avg_length) == pub["avg_length"]


@pytest.mark.parametrize("model", ["OpenHermes-2.5-Mistral-7B", "alpaca-7b", "vicuna-7b-v1.5"])
def test_lc_win_rate_from_shipped_weights(ae_dir, board, weights, model):
    # the published GLM coefficients with the difficulty distribution estimated from the OTHER
    # models' published LC (the official per-instruction file is not shipped): within half a
    # unit of the second decimal of the leaderboard
    res = ae.score_annotations(_annotations(ae_dir, model), glm_weights=weights, leaderboard=board)
    assert res.lc.lc_method == "glm-weights+estimated-difficulty"
    assert res.primary_metric == "length_controlled_winrate"
    assert abs(res.lc.length_controlled_winrate - board[model]["length_controlled_winrate"]) < 5e-3


def test_lc_of_the_baseline_and_the_cli(ae_dir, capsys, tmp_path):
    out = tmp_path / "res.json"
    code = ae.main(
        [
            "score",
            "--annotations",
            str(
                ae_dir
                / "results/gpt4_1106_preview/weighted_alpaca_eval_gpt4_turbo/annotations.json"
            ),
            str(ae_dir / "results/alpaca-7b/weighted_alpaca_eval_gpt4_turbo/annotations.json"),
            "--glm-weights",
            str(ae_dir / WEIGHTS),
            "--leaderboard",
            str(ae_dir / BOARD),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "win rate              2.59 +/- 0.49" in text
    assert "LC win rate           5.88" in text
    res = json.loads(out.read_text())
    assert res[0]["length_controlled_winrate"] == 50.0 and res[0]["lc_method"] == "baseline"
    assert res[1]["lc_method"] == "glm-weights+estimated-difficulty"


def test_reduced_variant_is_labelled_on_the_command_line(ae_dir, capsys):
    ae.main(
        [
            "score",
            "--annotations",
            str(ae_dir / "results/vicuna-7b-v1.5/weighted_alpaca_eval_gpt4_turbo/annotations.json"),
        ]
    )
    text = capsys.readouterr().out
    assert "reduced-glm" in text and "REDUCED" in text


def test_paper_mode_reports_the_plain_win_rate(ae_dir):
    res = ae.score_annotations(_annotations(ae_dir, "alpaca-7b"), mode="paper", lc=False)
    assert res.primary_metric == "win_rate" and res.primary == pytest.approx(2.591450540223603)


def test_logprob_parser_reproduces_real_weighted_preferences(ae_dir):
    # every real annotation's preference equals the m/M probability of its first-token top-5
    # log-probabilities, for one of the two output orders
    n = 0
    for model in ("alpaca-7b", "OpenHermes-2.5-Mistral-7B"):
        for rec in _annotations(ae_dir, model):
            raw = rec.get("raw_completion")
            if not raw:
                continue
            top = raw["logprobs"]["content"][0]["top_logprobs"]
            p = ae.preference_from_logprobs({t["token"]: t["logprob"] for t in top})
            pref = rec["preference"]
            assert min(abs(pref - (2 - p)), abs(pref - (1 + p))) < 1e-6
            n += 1
    assert n >= 1600


# ------------------------------------------------------------------------------ judging


def _pairs(ae_dir: Path, k: int = 6) -> tuple[list[dict], list[dict]]:
    ref = ae.load_reference(ae_dir / "results/gpt4_1106_preview/model_outputs.json")
    model = ae.load_annotations(ae_dir / "results/alpaca-7b/model_outputs.json")
    return model[:k], ref


def _expected_preference(instruction: str, model_out: str, ref_out: str) -> float:
    swapped = ae.is_swapped(instruction)
    first, second = (model_out, ref_out) if swapped else (ref_out, model_out)
    p = alpaca_p_first(first, second)
    return 1 + p if swapped else 2 - p


def test_judge_official_logprob_weighted_then_cached(ae_dir, tmp_path):
    model, ref = _pairs(ae_dir)
    ref_by = {r["instruction"]: r for r in ref}
    with JudgeServer() as server:
        client = JudgeClient("judge", base_url=server.base_url, cache=tmp_path / "c.sqlite")
        recs = ae.judge_outputs(client, model, ref)
        assert server.requests == len(model)
        for m, r in zip(model, recs):
            expected = _expected_preference(
                m["instruction"], m["output"], ref_by[m["instruction"]]["output"]
            )
            assert r["preference"] == pytest.approx(expected)
            assert r["judging"] == "logprob-weighted"
        # both orders occur among the six
        assert {r["swapped"] for r in recs} == {True, False}
        # a re-run (new client, same cache) sends nothing
        client2 = JudgeClient("judge", base_url=server.base_url, cache=tmp_path / "c.sqlite")
        again = ae.judge_outputs(client2, model, ref)
        assert server.requests == len(model)
        assert client2.stats.cache_hits == len(model)
        assert [r["preference"] for r in again] == [r["preference"] for r in recs]
    res = ae.score_annotations(recs, lc=False)
    assert res.judging == "logprob-weighted"


def test_judge_without_server_logprobs_falls_back_to_discrete(ae_dir, tmp_path):
    model, ref = _pairs(ae_dir)
    ref_by = {r["instruction"]: r for r in ref}
    with JudgeServer(logprobs=False) as server:
        client = JudgeClient("judge", base_url=server.base_url, cache=None)
        recs = ae.judge_outputs(client, model, ref)
    for m, r in zip(model, recs):
        expected = _expected_preference(
            m["instruction"], m["output"], ref_by[m["instruction"]]["output"]
        )
        assert r["judging"] == "discrete"
        assert r["preference"] == (2.0 if expected > 1.5 else 1.0)
    assert client.stats.discrete == len(model) and client.stats.logprob_weighted == 0


def test_paper_mode_judging_is_discrete_and_malformed_is_counted(ae_dir, tmp_path):
    model, ref = _pairs(ae_dir)
    model = [dict(m) for m in model]
    model[0]["output"] = model[0]["output"] + " <<MALFORMED>>"
    with JudgeServer() as server:
        client = JudgeClient("judge", base_url=server.base_url)
        recs = ae.judge_outputs(client, model, ref, mode="paper")
    assert recs[0]["preference"] is None and recs[0]["judging"] == "malformed"
    assert all(r["judging"] == "discrete" for r in recs[1:])
    assert client.stats.malformed == 1
    wr = ae.win_rate([r["preference"] for r in recs])
    assert wr.n_invalid == 1 and wr.n_total == len(model) - 1


# ------------------------------------------------------------------------------ generation


@pytest.fixture(scope="module")
def tiny_llama(tiny_llama_path) -> Path:
    # the session-wide tiny model of tests/conftest.py (hf_mig.testing.build_tiny_llama)
    return tiny_llama_path


def test_generate_with_a_tiny_model_resumes(tmp_path, ae_dir, tiny_llama, capsys):
    from hf_mig.eval.generate import read_progress

    ref = ae_dir / "results/gpt4_1106_preview/model_outputs.json"
    out = tmp_path / "model_outputs.json"
    argv = [
        "generate",
        "--model",
        str(tiny_llama),
        "--backend",
        "transformers",
        "--device",
        "cpu",
        "--reference",
        str(ref),
        "--limit",
        "3",
        "--max-new-tokens",
        "8",
        "--out",
        str(out),
        "--chunk-size",
        "1",
    ]
    assert ae.main(argv) == 0
    assert "3 items: 0 already done, 3 generated, 0 failed" in capsys.readouterr().out
    progress = Path(str(out) + ".progress.jsonl")
    lines = progress.read_text().splitlines()
    assert len(lines) == 3
    first = json.loads(out.read_text())
    # simulate a run killed while writing its second line
    out.unlink()
    progress.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])
    assert ae.main(argv) == 0
    text = capsys.readouterr().out
    assert "3 items: 1 already done, 2 generated, 0 failed, 1 unreadable" in text
    done, bad = read_progress(progress)
    assert len(done) == 3 and bad == 0
    second = json.loads(out.read_text())
    assert second == first  # greedy: the resumed run gives the same outputs
    assert [r["instruction"] for r in second] == [
        r["instruction"] for r in json.loads(ref.read_text())[:3]
    ]
    assert second[0]["generator"] == Path(tiny_llama).name  # default: the folder name
    # a third run has nothing left to do
    assert ae.main(argv) == 0
    assert "3 items: 3 already done, 0 generated" in capsys.readouterr().out


def test_all_three_steps_in_one_command(tmp_path, ae_dir, tiny_llama, capsys):
    ref = ae_dir / "results/gpt4_1106_preview/model_outputs.json"
    with JudgeServer() as server:
        argv = [
            "all", "--model", str(tiny_llama), "--backend", "transformers", "--device", "cpu",
            "--reference", str(ref), "--limit", "4", "--max-new-tokens", "8",
            "--judge-base-url", server.base_url, "--judge-model", "judge",
            "--out-dir", str(tmp_path / "run"), "--mode", "paper",
        ]  # fmt: skip
        assert ae.main(argv) == 0
        assert server.requests == 4
    outputs = json.loads((tmp_path / "run/model_outputs.json").read_text())
    refs = {r["instruction"]: r["output"] for r in json.loads(ref.read_text())}
    prefs = []
    for o in outputs:
        p = _expected_preference(o["instruction"], o["output"], refs[o["instruction"]])
        prefs.append(2.0 if p > 1.5 else 1.0)  # paper mode: the discrete m/M reply
    res = json.loads((tmp_path / "run/alpaca_eval.json").read_text())
    assert res["mode"] == "paper" and res["judging"] == "discrete"
    assert res["win_rate"] == pytest.approx(100 * (sum(prefs) / 4 - 1))
    assert res["primary_metric"] == "win_rate"
