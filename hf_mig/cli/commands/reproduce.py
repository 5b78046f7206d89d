"""``hf-mig reproduce EXPERIMENT``: the MIG paper's experiments as a plan of steps, and running it.

::

    hf-mig reproduce table1 --base llama-3.1-8b --dry-run     # the plan, with GPU-hours per step
    hf-mig reproduce table1 --scale tiny                      # the whole chain on CPU, minutes

Each experiment expands into steps: annotate the pool (tags, DEITA score, IFD; or give an
annotated pool with --pool KEY=PATH), build the vocabulary and label graph, select with each
method, train each row with the matching recipe (recipes/), evaluate (AlpacaEval 2, MT-Bench,
WildBench, objective benchmarks), then write the comparison table beside the paper's published
numbers (tables/<experiment>.md/.csv/.png) and the selection report
(reports/<experiment>/report.html). Steps this plan finished are skipped, so an interrupted run
continues where it stopped; a step whose command or inputs (by content) changed, or that stopped
half way, runs again and replaces its own outputs. An output the plan did not make is kept when
it passes a check (non-empty, well-formed) and is never replaced: a step that would replace it
is reported as a conflict.

Before the first step runs, what the steps to run read from outside the work folder (data
files, Python packages, Hub models and datasets) is checked: anything missing is reported, one
line each with the way round, and nothing runs.

Scales: ``paper`` (the paper's pools, 8-GPU training, a served judge: --judge-base-url) and
``tiny`` (CPU, offline from a clone of the repository: the bundled 427-row self-instruct pool;
for ``pools`` its bundled annotated copy, plus LIMA and the Alpaca-GPT-4 demo pool when the
shared data folder has them; a 0.2M-parameter Llama; k = 64; a few benchmark prompts judged by
SmolLM2-135M-Instruct: IFEval, and AlpacaEval from the shared folder or, without it, AlpacaEval's
protocol on MT-Bench questions against GPT-4's reference answers, shown as AE*): the same chain
and the same kind of table and report, in minutes, to check a setup before spending GPU time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hf_mig.cli.options import doc_description

NAME = "reproduce"
HELP = "the paper's experiments as a resumable plan (--dry-run: steps and GPU-hours)"
FORMATTER_CLASS = argparse.RawDescriptionHelpFormatter
EPILOG = """experiments:
  table1       MIG vs Random, IFD, #InsTag, DEITA, CaR, QDIT, ZIP and the full pool on Tulu 3
               (50K of 939K); --base llama-3.1-8b | qwen2.5-7b | mistral-7b-v0.3 | all
  pools        MIG and Random on OpenHermes 2.5 (1M -> 50K) and the DEITA pool (306K -> 6K)
  labels       ablation: number of labels (vocabulary cut to the N most frequent)
  threshold    ablation: label-graph threshold T
  prop-weight  ablation: propagation weight (0 = no propagation)
  scaling      MIG and Random at several subset sizes

stages (in order): annotate, vocab, graph, select, train, eval, compare, report

Steps run one after another; --jobs N runs independent steps at once on this machine, and
--executor ray runs each step as a Ray task on a cluster (its GPUs asked of Ray); --export slurm
DIR writes the plan as sbatch jobs instead.

Re-running the same command resumes: finished steps are skipped (markers in
<workdir>/.reproduce/), an interrupted training continues from its last checkpoint, and a
step whose command or input files' content changed runs again (hf-mig commands get
--overwrite to replace what the plan wrote). Outputs the plan did not make are checked and
kept ('exists'), or reported as a 'conflict', never replaced. Logs: <workdir>/logs/<step>.log.
"""


def _examples() -> str:
    lines = (__doc__ or "").split("::")[1].strip("\n").splitlines()
    return "\n".join(line.strip() for line in lines)


DESCRIPTION = f"{doc_description(__doc__)}\n\n{_examples()}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The experiment, its scale and options, and how much of the plan to run."""
    from hf_mig.reproduce import EXPERIMENTS, STAGES

    parser.add_argument("experiment", choices=list(EXPERIMENTS), help="which table to reproduce")
    parser.add_argument("--scale", choices=["paper", "tiny"], default="paper")
    parser.add_argument(
        "--base", default="llama-3.1-8b", help="base model slug, or 'all' (table1); paper scale"
    )
    parser.add_argument(
        "--workdir",
        help="work folder (default reproduce/<scale>; experiments sharing it reuse each "
        "other's annotations, selections, models and results)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan; run nothing")
    parser.add_argument(
        "--format", choices=["text", "json"], default="text", help="--dry-run output"
    )
    parser.add_argument("--methods", help="comma-separated methods to keep (e.g. mig,random,full)")
    parser.add_argument(
        "--stage",
        action="append",
        choices=list(STAGES),
        help="run only this stage (repeatable); earlier stages must have run",
    )
    parser.add_argument("--until", choices=list(STAGES), help="run the stages up to this one")
    parser.add_argument(
        "--pool",
        action="append",
        default=[],
        metavar="KEY=PATH",
        help="an already annotated pool (labels + score [+ ifd] columns, or the MIG authors' "
        "format) for pool KEY (tulu3, openhermes, deita; tiny: self-instruct, lima, "
        "alpaca-gpt4, self-instruct-annotated): its annotation steps are skipped",
    )
    parser.add_argument(
        "--released",
        action="store_true",
        help="train on the authors' released subsets (Hub ids) where they exist",
    )
    parser.add_argument(
        "--judge-base-url", help="paper scale: OpenAI-compatible judge server (…/v1)"
    )
    parser.add_argument(
        "--judge-model",
        help="judge's served name (default opencompass/CompassJudger-1-32B-Instruct)",
    )
    parser.add_argument("--recipes", help="recipes folder (default: the repository's recipes/)")
    parser.add_argument(
        "--shared",
        help="the project's shared data folder (default $HF_MIG_SHARED or ../shared): data that "
        "is not in the repository (AlpacaEval, LIMA, Alpaca-GPT-4)",
    )
    parser.add_argument(
        "--alpaca-reference",
        help="tiny scale: AlpacaEval reference outputs JSON, or 'hub' for the Hub's copy "
        "(default: the shared folder's, else MT-Bench with GPT-4 answers, shown as AE*)",
    )
    parser.add_argument("--ifeval-input", help="IFEval input_data.jsonl (tiny scale)")
    parser.add_argument("--eval-limit", type=int, default=8, help="tiny: AlpacaEval instructions")
    parser.add_argument("--ifeval-limit", type=int, default=16, help="tiny: IFEval prompts")
    parser.add_argument(
        "--force",
        action="store_true",
        help="run finished steps again (never over outputs the plan did not make)",
    )
    parser.add_argument("--keep-going", action="store_true", help="continue past a failed step")
    parser.add_argument(
        "--export",
        nargs=2,
        metavar=("FORMAT", "DIR"),
        help="write the plan as batch jobs instead of running it: 'slurm DIR' writes one sbatch "
        "script per step and DIR/submit.sh, which submits them with afterok dependencies",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="--export: replace an earlier export in DIR"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="steps run at once (default: 1, one after another; with --executor ray, as many "
        "as the cluster has resources for); a step starts once the steps producing its inputs "
        "have finished",
    )
    parser.add_argument(
        "--gpus",
        type=int,
        help="GPUs the steps that use GPUs share (default: the visible CUDA devices, or the Ray "
        "cluster's; 0: GPU steps run one at a time)",
    )
    parser.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="where steps run: 'local' subprocesses, or 'ray': each step a Ray task asking for "
        "its GPUs, on the cluster named by RAY_ADDRESS (else a local one); the work folder must "
        'be on a file system every node sees. Needs pip install "hf-mig[ray]"',
    )


def _options(args: argparse.Namespace) -> Any:
    from hf_mig.reproduce import PlanOptions

    pools = {}
    for item in args.pool:
        key, sep, path = item.partition("=")
        if not sep or not key or not path:
            raise ValueError(f"--pool expects KEY=PATH, got {item!r}")
        pools[key] = str(Path(path).expanduser().resolve()) if Path(path).exists() else path
    workdir = Path(args.workdir or f"reproduce/{args.scale}")
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    for name in ("eval_limit", "ifeval_limit"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1")

    def _path(value: str | None) -> Path | None:
        return Path(value).expanduser().resolve() if value else None

    return PlanOptions(
        workdir=workdir,
        base=args.base,
        methods=methods,
        pools=pools,
        released=args.released,
        judge_base_url=args.judge_base_url,
        judge_model=args.judge_model,
        recipes_dir=_path(args.recipes),
        shared_dir=_path(args.shared),
        alpaca_reference=(
            args.alpaca_reference
            if args.alpaca_reference in (None, "hub")
            else str(_path(args.alpaca_reference))
        ),
        ifeval_input=str(_path(args.ifeval_input)) if args.ifeval_input else None,
        eval_limit=args.eval_limit,
        ifeval_limit=args.ifeval_limit,
    )


def _export(plan: Any, args: argparse.Namespace, stages: list[str]) -> int:
    """``--export FORMAT DIR``: write the plan's steps as batch jobs."""
    from hf_mig.reproduce.slurm import SKIPPED_TAG, export_slurm

    kind, folder = args.export
    if kind != "slurm":
        raise ValueError(f"--export supports 'slurm', got {kind!r}")
    for blocker in plan.blockers:
        print(f"hf-mig reproduce: warning: {blocker}", file=sys.stderr)
    written = export_slurm(plan, folder, stages=stages or None, overwrite=args.overwrite)
    submit = Path(written[-1]).read_text(encoding="utf-8").splitlines()
    finished = [line[len(SKIPPED_TAG) :] for line in submit if line.startswith(SKIPPED_TAG)]
    if finished:
        print(f"finished, no job: {', '.join(finished)}")
    print(
        f"{len(written) - 1} sbatch script(s) and {written[-1]} written; submit with: "
        f"bash {written[-1]}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    """Build the plan; print it (``--dry-run``) or run it."""
    from hf_mig.reproduce import STAGES, build_plan, run_plan

    plan = build_plan(args.experiment, args.scale, _options(args))  # ValueError: exit 2
    stages = list(args.stage or [])
    if args.until:
        stages = list(STAGES[: STAGES.index(args.until) + 1])
    if plan.scale == "paper" and not args.dry_run and not args.judge_base_url:
        if any(s.stage == "eval" for s in plan.steps) and (not stages or "eval" in stages):
            print(
                "hf-mig reproduce: error: the paper-scale evaluation needs a judge: pass "
                "--judge-base-url (an OpenAI-compatible server, e.g. vLLM serving "
                "opencompass/CompassJudger-1-32B-Instruct), or stop earlier with --until train",
                file=sys.stderr,
            )
            return 2
    if (args.jobs is not None and args.jobs < 1) or (args.gpus is not None and args.gpus < 0):
        raise ValueError("--jobs must be >= 1 and --gpus >= 0")
    if args.export:
        return _export(plan, args, stages)
    if plan.blockers and not args.dry_run:
        for blocker in plan.blockers:
            print(f"hf-mig reproduce: error: {blocker}", file=sys.stderr)
        return 2
    if args.dry_run:
        if args.format == "json":
            print(json.dumps(plan.to_dict(), indent=1))
        else:
            print(plan.render(stages or None), end="")
        return 0
    missing = plan.preflight(stages or None, args.force)
    if missing:
        for problem in missing:
            print(f"hf-mig reproduce: error: {problem}", file=sys.stderr)
        print("nothing was run", file=sys.stderr)
        return 2
    if args.executor == "ray":
        from hf_mig.runtime.ray_data import import_ray

        try:
            import_ray()
        except ImportError as err:
            print(f"hf-mig reproduce: error: {err}", file=sys.stderr)
            return 2
    print(plan.render(stages or None), end="")
    print()
    summary = run_plan(
        plan,
        stages=stages or None,
        force=args.force,
        keep_going=args.keep_going,
        preflight=False,
        jobs=args.jobs,
        gpus=args.gpus,
        executor=args.executor,
    )
    print(
        f"\n{len(summary.ran)} step(s) run, {len(summary.skipped)} skipped (finished earlier), "
        f"{len(summary.failed)} failed, {len(summary.blocked)} blocked"
    )
    if summary.conflicts:
        print(
            f"{len(summary.conflicts)} conflict(s): outputs this plan did not make are in the way "
            f"of {', '.join(summary.conflicts)}; they are never replaced: move them away",
            file=sys.stderr,
        )
    table = plan.workdir / plan.table
    if table.is_file():
        print(f"\n{table}:\n{table.read_text()}")
    for report in sorted((plan.workdir / plan.report).rglob("report.html")):
        print(f"selection report: {report}")
    if not summary.ok:
        print("re-run the same command to retry; finished steps are skipped", file=sys.stderr)
        return 1
    return 0
