"""Turn an experiment's runs into the concrete steps of a :class:`~hf_mig.reproduce.plan.Plan`.

For every pool the runs need: annotate (tags, DEITA score, IFD) unless an annotated pool is given;
the vocabulary and label graph(s) MIG needs; one selection per (method, size, variant); one
training run per row; the benchmarks per trained model; then the comparison table (ours beside
the paper's published numbers) and the selection report. Steps shared by several rows (a pool's
annotation, a graph, a selection used with several base models) appear once.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hf_mig.train.tiny import TINY_MODEL_ID as TINY_MODEL

from .costs import forward_hours, generation_hours, train_hours
from .experiments import EXPERIMENTS, SCALES, PoolSpec, Run, Scale
from .paper import METHODS, RELEASED, model_by_slug
from .plan import STAGES, Plan, Step

__all__ = ["PlanOptions", "build_plan", "default_shared_dir"]

#: Judge of the paper's subjective benchmarks (SPEC section 4).
PAPER_JUDGE = "opencompass/CompassJudger-1-32B-Instruct"
JUDGE_URL_PLACEHOLDER = "<JUDGE_BASE_URL>"
#: Evaluation sizes at the paper scale: (prompts, prompt tokens, output tokens) per benchmark,
#: and the judge calls (calls, prompt tokens, output tokens). Assumed means, for estimates.
EVAL_LOAD = {
    "alpaca_eval": ((805, 150, 600), (805, 1800, 30)),
    "mt_bench": ((160, 400, 600), (160, 2000, 300)),
    "wildbench": ((1024, 1200, 800), (3072, 3500, 500)),
}
JUDGE_PARAMS, JUDGE_GPUS = 32.8e9, 2
#: lm-eval over ARC-c, BBH, GSM8K, HumanEval, MMLU, IFEval with vLLM on one GPU (assumed).
OBJECTIVE_HOURS = 1.5


def default_shared_dir() -> Path | None:
    """``$HF_MIG_SHARED``, else ``../shared`` beside the repository checkout, if it exists."""
    env = os.environ.get("HF_MIG_SHARED")
    if env:
        return Path(env).expanduser().resolve()
    guess = Path(__file__).resolve().parents[3] / "shared"
    return guess if guess.is_dir() else None


def default_recipes_dir() -> Path | None:
    """The repository's ``recipes/`` folder (an editable install), if present."""
    guess = Path(__file__).resolve().parents[2] / "recipes"
    return guess if guess.is_dir() else None


@dataclass
class PlanOptions:
    """Everything a plan depends on besides the experiment and scale.

    ``pools``: already annotated pools by pool key (skip annotation); ``released``: train on the
    authors' released subsets (Hub ids) where they exist instead of selecting;
    ``methods``: keep only these methods' rows; ``eval_limit`` / ``ifeval_limit``: prompts per
    benchmark at the tiny scale.
    """

    workdir: Path
    base: str = "llama-3.1-8b"
    methods: Sequence[str] | None = None
    pools: dict[str, str] = field(default_factory=dict)
    released: bool = False
    judge_base_url: str | None = None
    judge_model: str | None = None
    recipes_dir: Path | None = None
    shared_dir: Path | None = None
    alpaca_reference: str | None = None
    ifeval_input: str | None = None
    eval_limit: int = 8
    ifeval_limit: int = 16
    max_new_tokens: int = 48


class _Builder:
    def __init__(self, scale: Scale, opts: PlanOptions) -> None:
        self.scale = scale
        self.opts = opts
        self.steps: dict[str, Step] = {}
        self.notes: list[str] = []
        self.blockers: list[str] = []
        self.tiny = scale.name == "tiny"
        self.recipes = opts.recipes_dir or default_recipes_dir()
        self.shared = opts.shared_dir or default_shared_dir()

    def add(self, step: Step) -> Step:
        return self.steps.setdefault(step.id, step)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # ----------------------------------------------------------------- inputs

    def _shared_file(self, rel: str, what: str) -> str:
        if self.shared is None:
            raise ValueError(
                f"{what} is read from the project's shared data folder ({rel}); pass --shared DIR "
                "or set HF_MIG_SHARED"
            )
        path = self.shared / rel
        if not path.exists():
            raise ValueError(f"{what}: {path} does not exist (check --shared / HF_MIG_SHARED)")
        return str(path)

    def raw_pool(self, pool: PoolSpec) -> str:
        src = pool.source
        if src == "hf-mig:demo":
            from hf_mig.resources import demo_pool_path

            return str(demo_pool_path())
        if src and src.startswith("shared:"):
            return self._shared_file(src.split(":", 1)[1], f"pool {pool.key}")
        if src is None:
            msg = (
                f"no public source is recorded for the pool {pool.key!r} ({pool.title}); "
                f"pass an annotated copy with --pool {pool.key}=PATH"
            )
            if msg not in self.blockers:
                self.blockers.append(msg)
            return f"<{pool.key}-pool>"
        return src

    # ----------------------------------------------------------------- annotate

    def annotated(self, pool: PoolSpec, base: str) -> str:
        given = self.opts.pools.get(pool.key)
        if given:
            return given
        raw = self.raw_pool(pool)
        d = f"pools/{pool.key}"
        tagged, scored, annotated = f"{d}/tagged.jsonl", f"{d}/scored.jsonl", f"{d}/annotated.jsonl"
        if self.tiny:
            tag = ["hf-mig", "tag", raw, tagged, "--backend", "embedding"]
            deita = ifd = ["--model", TINY_MODEL, "--device", "cpu"]
            gpus, h_tag, h_deita, h_ifd = 0, 0.0, 0.0, 0.0
            note_tag = "all-MiniLM-L6-v2: nearest InsTag tags (offline stand-in for InsTagger)"
            note_score = "the tiny Llama as DEITA / IFD scorer: exercises the code path only"
        else:
            tag = ["hf-mig", "tag", raw, tagged, "--backend", "vllm"]
            tag += ["--model", "OFA-Sys/InsTagger"]
            deita, ifd = [], ["--model", model_by_slug(base).hub_id]
            n, t = pool.n_rows, pool.mean_tokens
            gpus = 1
            h_tag = generation_hours(7e9, n, 450, 120)
            h_deita = forward_hours(13e9, n * t * 1.5)
            h_ifd = forward_hours(model_by_slug(base).params, n * t * 2)
            note_tag = "InsTagger (LLaMA-2-7B) through vLLM; shard with --shard I/N across GPUs"
            note_score = "DEITA's quality and complexity scorers (LLaMA-13B), mean over turns"
        self.add(Step(f"annotate/{pool.key}/tags", "annotate", f"tag {pool.title}", tag,
                      [tagged], gpus=gpus, hours=h_tag, note=note_tag))  # fmt: skip
        self.add(Step(
            f"annotate/{pool.key}/deita", "annotate", "DEITA score (quality x complexity)",
            ["hf-mig", "score", tagged, scored, "--scorer", "deita", *deita],
            [scored], [tagged], gpus=gpus, hours=h_deita, note=note_score,
        ))  # fmt: skip
        self.add(Step(
            f"annotate/{pool.key}/ifd", "annotate", "IFD score (for the IFD baseline)",
            ["hf-mig", "score", scored, annotated, "--scorer", "ifd", *ifd],
            [annotated], [scored], gpus=gpus, hours=h_ifd,
        ))  # fmt: skip
        return annotated

    # ----------------------------------------------------------------- vocabulary, graph

    def vocabulary(self, pool: PoolSpec, annotated: str, label_count: int | None) -> str | None:
        if label_count is None:
            if self.tiny or pool.tags is None:
                return None
            if pool.key == "tulu3":
                import hf_mig

                return str(Path(hf_mig.__file__).parent / "data" / "instag_vocabulary.json")
            label_count = pool.tags
        out = f"vocab/{pool.key}-top{label_count}.json"  # the plain label list
        full = f"vocab/{pool.key}-top{label_count}.vocabulary.json"  # + counts and merges
        self.add(Step(
            f"vocab/{pool.key}/top{label_count}", "vocab",
            f"vocabulary: the {label_count:,} most frequent labels of {pool.title}",
            ["hf-mig", "vocab", annotated, "--out", full, "--labels-out", out, "--top-k",
             str(label_count)],
            [out, full], [annotated],
        ))  # fmt: skip
        return out

    def graph(self, pool: PoolSpec, annotated: str, vocab: str | None, threshold: float) -> str:
        tag = Path(vocab).stem.removeprefix(f"{pool.key}-") if vocab else "labels"
        out = f"graphs/{pool.key}-{tag}-t{threshold:g}.npz"
        cmd = ["hf-mig", "graph"]
        inputs = []
        if vocab is None:
            cmd.append(annotated)
            inputs.append(annotated)
        else:
            cmd += ["--vocabulary", vocab]
            if not Path(vocab).is_absolute():
                inputs.append(vocab)
        cmd += ["--embedder", self.scale.embedder, "--threshold", f"{threshold:g}", "--out", out]
        gpus, hours = (0, 0.0) if self.tiny else (1, forward_hours(7.1e9, 5000 * 16))
        self.add(Step(
            f"graph/{pool.key}/{tag}-t{threshold:g}", "graph",
            f"label graph of {pool.title} ({self.scale.embedder}, T = {threshold:g})",
            cmd, [out], inputs, gpus=gpus, hours=hours,
        ))  # fmt: skip
        return out

    # ----------------------------------------------------------------- select

    def selection(self, run: Run, pool: PoolSpec) -> tuple[str, list[str]]:
        """(training data, the plan's files it comes from) for ``run``."""
        released = RELEASED.get((run.pool, run.method))
        if (
            self.opts.released
            and not self.tiny
            and released
            and run.k == pool.k
            and (run.threshold, run.prop_weight, run.label_count) == (None, None, None)
        ):
            self.note(f"{run.title}: trains on the authors' released subset {released}")
            return released, []
        annotated = self.annotated(pool, run.base)
        if run.method == "full":
            return annotated, [annotated]
        vocab = self.vocabulary(pool, annotated, run.label_count)
        out = f"selections/{pool.key}/{run.selection_name}.jsonl"
        stem = out.removesuffix(".jsonl")
        cmd = ["hf-mig", "select", annotated, "--method", run.method, "--num", str(run.k)]
        cmd += ["--out", out, "--summary-json", f"{stem}.summary.json"]
        cmd += ["--indices-out", f"{stem}.indices.json"]
        inputs = [annotated]
        if vocab:
            cmd += ["--vocabulary", vocab]
            if not Path(vocab).is_absolute():
                inputs.append(vocab)
        options = dict(METHODS.get(run.method, ({}, ""))[0])
        options.pop("column", None)  # our annotation writes IFD to the default 'ifd' column
        if run.method == "mig":
            threshold = run.threshold if run.threshold is not None else self.scale.threshold
            graph = self.graph(pool, annotated, vocab, threshold)
            cmd += ["--graph", graph]
            inputs.append(graph)
            weight = options["prop_weight"] if run.prop_weight is None else run.prop_weight
            cmd += ["--phi", options["phi"], "--phi-a", f"{options['phi_a']:g}"]
            cmd += ["--phi-b", f"{options['phi_b']:g}", "--prop-weight", f"{weight:g}"]
            options = {}  # norm=False is the selector's default
        elif run.method == "random":
            cmd += ["--seed", str(options.pop("seed", 42))]
        for key, value in options.items():
            cmd += ["--option", f"{key}={value}"]
        gpus, hours = 0, 0.0
        if not self.tiny and run.method in ("deita", "car", "qdit", "kcenter"):
            gpus, hours = 1, forward_hours(22.7e6, pool.n_rows * 256)
        self.add(Step(
            f"select/{pool.key}/{run.selection_name}", "select",
            f"select {run.k:,} rows of {pool.title} with {run.method}", cmd,
            [out, f"{stem}.indices.json"], inputs, gpus=gpus, hours=hours,
            note="" if gpus == 0 else "row embeddings on one GPU, then the selection on CPU",
        ))  # fmt: skip
        return out, [out]

    # ----------------------------------------------------------------- train

    def recipe(self, run: Run, pool: PoolSpec) -> str:
        if self.recipes is None:
            raise ValueError(
                "the training recipes live in the repository's recipes/ folder; pass "
                "--recipes DIR (a clone of the hf-mig repository)"
            )
        if self.tiny:
            return str(self.recipes / "tiny_cpu.yaml")
        folder = self.recipes / run.base
        k = f"{pool.k // 1000}k"
        for method in (run.method, "mig"):
            path = folder / f"{pool.recipe_pool}-{method}-{k}.yaml"
            if path.is_file():
                return str(path)
        raise ValueError(f"no recipe for {run.base} on {pool.recipe_pool} in {folder}")

    def train(self, run: Run, pool: PoolSpec, data: str, inputs: list[str]) -> str:
        out = f"runs/{run.key}"
        recipe = self.recipe(run, pool)
        args = ["--config", recipe, "--output_dir", out, "--data.dataset", data]
        args += ["--data.pool", "null", "--data.selection", "null"]
        if data in inputs and run.pool not in self.opts.pools:
            # annotated here: `hf-mig tag` added a messages column beside the raw one(s)
            args += ["--data.shape", "messages"]
        if self.tiny:
            cmd = ["hf-mig", "train", *args]
            gpus, hours = 0, 0.0
        else:
            zero3 = str(self.recipes / "accelerate" / "zero3.yaml")
            cmd = ["accelerate", "launch", "--config_file", zero3, "-m", "hf_mig.train", *args]
            rows = pool.n_rows if run.method == "full" else (run.k or pool.k)
            gpus = 8
            hours = train_hours(model_by_slug(run.base).params, rows, pool.mean_tokens, gpus)
        self.add(Step(
            f"train/{run.key}", "train", f"train {run.base} on {run.title}", cmd,
            [f"{out}/config.json"], list(inputs), gpus=gpus, hours=hours, resume=True,
        ))  # fmt: skip
        return out

    # ----------------------------------------------------------------- evaluate

    def evaluate(self, run: Run, model_dir: str) -> list[str]:
        key = run.key
        model_input = [f"{model_dir}/config.json"]
        gen = ["--model", model_dir, "--model-name", run.key]
        results = []
        if self.tiny:
            gen += ["--backend", "transformers", "--device", "cpu"]
            gen += ["--max-new-tokens", str(self.opts.max_new_tokens)]
            reference = self.alpaca_reference()
            if reference is not None:
                out_dir = f"eval/{key}/alpaca_eval"
                cmd = ["python", "-m", "hf_mig.eval.alpaca_eval", "all", *gen, "--mode",
                       "official", "--limit", str(self.opts.eval_limit),
                       "--judge-backend", "transformers", "--judge-model", "smollm2",
                       "--judge-device", "cpu", "--out-dir", out_dir]  # fmt: skip
                if reference:
                    cmd += ["--reference", reference]
                self.add(Step(
                    f"eval/{key}/alpaca_eval", "eval",
                    f"AlpacaEval 2 on the first {self.opts.eval_limit} instructions, judged by "
                    "SmolLM2-135M-Instruct (log-probability preference)",
                    cmd, [f"{out_dir}/alpaca_eval.json"], model_input,
                ))  # fmt: skip
                results.append(f"{out_dir}/alpaca_eval.json")
            out_dir = f"eval/{key}/ifeval"
            cmd = ["python", "-m", "hf_mig.eval.objective", "ifeval", *gen,
                   "--limit", str(self.opts.ifeval_limit), "--out-dir", out_dir]  # fmt: skip
            ifeval = self.ifeval_input()
            if ifeval:
                cmd += ["--input", ifeval]
            self.add(Step(
                f"eval/{key}/ifeval", "eval",
                f"IFEval (offline checkers) on the first {self.opts.ifeval_limit} prompts",
                cmd, [f"{out_dir}/objective.json"], model_input,
            ))  # fmt: skip
            results.append(f"{out_dir}/objective.json")
            return results
        params = model_by_slug(run.base).params
        judge = ["--judge-base-url", self.opts.judge_base_url or JUDGE_URL_PLACEHOLDER,
                 "--judge-model", self.opts.judge_model or PAPER_JUDGE]  # fmt: skip
        for bench, result in (("alpaca_eval", "alpaca_eval.json"), ("mt_bench", "mt_bench.json"),
                              ("wildbench", "wildbench.json")):  # fmt: skip
            (n, p_tok, o_tok), (jn, jp, jo) = EVAL_LOAD[bench]
            hours = generation_hours(params, n, p_tok, o_tok)
            judge_gpu_h = JUDGE_GPUS * generation_hours(JUDGE_PARAMS, jn, jp, jo, gpus=JUDGE_GPUS)
            out_dir = f"eval/{key}/{bench}"
            self.add(Step(
                f"eval/{key}/{bench}", "eval", f"{bench}: generate, judge, score (paper mode)",
                ["python", "-m", f"hf_mig.eval.{bench}", "all", *gen, "--mode", "paper", *judge,
                 "--out-dir", out_dir],
                [f"{out_dir}/{result}"], model_input, gpus=1, hours=hours + judge_gpu_h,
                note=f"the judge ({JUDGE_GPUS} GPUs, served separately) adds about "
                f"{judge_gpu_h:.1f} GPU-h, counted here",
            ))  # fmt: skip
            results.append(f"{out_dir}/{result}")
        out_dir = f"eval/{key}/objective"
        self.add(Step(
            f"eval/{key}/objective", "eval", "ARC-c, BBH, GSM8K, HumanEval, MMLU, IFEval (lm-eval)",
            ["python", "-m", "hf_mig.eval.objective", "all", "--model", model_dir, "--backend",
             "vllm", "--model-name", run.key, "--out-dir", out_dir],
            [f"{out_dir}/objective.json"], model_input, gpus=1, hours=OBJECTIVE_HOURS,
            note="needs pip install 'lm-eval[ifeval]' (optional extra)",
        ))  # fmt: skip
        results.append(f"{out_dir}/objective.json")
        return results

    def alpaca_reference(self) -> str | None:
        """A local reference file, "" for the Hub's copy, None when unavailable (offline)."""
        if self.opts.alpaca_reference:
            return self.opts.alpaca_reference
        rel = "data/alpaca_eval/results/gpt4_1106_preview/model_outputs.json"
        if self.shared is not None and (self.shared / rel).is_file():
            return str(self.shared / rel)
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            self.note(
                "AlpacaEval skipped: no reference outputs offline (pass --alpaca-reference, "
                "--shared, or go online for the Hub's copy)"
            )
            return None
        return ""

    def ifeval_input(self) -> str | None:
        if self.opts.ifeval_input:
            return self.opts.ifeval_input
        rel = "data/ifeval/input_data.jsonl"
        if self.shared is not None and (self.shared / rel).is_file():
            return str(self.shared / rel)
        return None


def build_plan(experiment: str, scale: str = "paper", options: PlanOptions | None = None) -> Plan:
    """The plan of ``experiment`` at ``scale`` (``paper`` or ``tiny``).

    Raises ``ValueError`` for an unknown experiment, scale, base model or method, and when an
    input cannot be found (a pool without a public source, the recipes folder, shared data at
    the tiny scale).
    """
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; known: {', '.join(EXPERIMENTS)}")
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    opts = options or PlanOptions(workdir=Path("reproduce"))
    opts = dataclasses.replace(opts, workdir=Path(opts.workdir).expanduser().resolve())
    exp, sc = EXPERIMENTS[experiment], SCALES[scale]
    b = _Builder(sc, opts)
    if sc.name == "tiny":
        bases = list(sc.bases)
        if opts.base not in (*sc.bases, "llama-3.1-8b"):
            b.note(f"--base {opts.base} ignored at the tiny scale: the base is {TINY_MODEL}")
    elif opts.base == "all":
        if not exp.multi_base:
            raise ValueError(f"--base all applies to table1, not {experiment}")
        bases = list(sc.bases)
    else:
        bases = [model_by_slug(opts.base).slug]
    runs = exp.rows(sc, bases)
    if opts.methods:
        known = {r.method for r in runs}
        unknown = sorted(set(opts.methods) - known)
        if unknown:
            raise ValueError(
                f"--methods {unknown} not in {experiment}; its methods: {sorted(known)}"
            )
        runs = [r for r in runs if r.method in opts.methods]
    results: list[str] = []
    selections: dict[str, dict[str, str]] = {}
    for run in runs:
        pool = sc.pools[run.pool]
        data, inputs = b.selection(run, pool)
        if run.method != "full" and inputs:
            name = run.title.split(" [")[0].split(" / ")[0]
            selections.setdefault(pool.key, {}).setdefault(name, data)
        model_dir = b.train(run, pool, data, inputs)
        results += b.evaluate(run, model_dir)
    paper_table = exp.paper_table.format(base=bases[0] if sc.name == "paper" else "llama-3.1-8b")
    if sc.name == "tiny":
        b.note(
            "the tiny scale shows the paper's published rows beside its own only to show the "
            "table's shape: a 0.2M-parameter model trained on 64 rows is not comparable"
        )
    name = experiment
    if sc.name == "paper" and exp.multi_base:
        name += f"-{opts.base}"
    table = f"tables/{name}"
    if results:
        cmd = ["python", "-m", "hf_mig.eval.compare", *results, "--md", f"{table}.md", "--csv",
               f"{table}.csv", "--png", f"{table}.png"]  # fmt: skip
        if paper_table:
            cmd += ["--paper-table", paper_table]
        cmd += ["--rename", *(f"{run.key}={run.title}" for run in runs)]
        b.add(Step(f"compare/{name}", "compare", "the comparison table, ours beside the paper's",
                   cmd, [f"{table}.md", f"{table}.csv"], results))  # fmt: skip
    for pool_key, chosen in selections.items():
        pool = sc.pools[pool_key]
        annotated = b.annotated(pool, bases[0])
        # information is measured on the pool's default graph, whatever variant a row used
        graph = b.graph(pool, annotated, b.vocabulary(pool, annotated, None), sc.threshold)
        out = f"reports/{name}" + ("" if len(selections) == 1 else f"/{pool_key}")
        cmd = ["hf-mig", "report", annotated, "--out", out, "--graph", graph]
        inputs = [annotated, graph]
        for title, path in chosen.items():
            label = title.replace(" = ", " ").replace("=", "-")  # NAME=FILE splits at the first =
            positions = path.removesuffix(".jsonl") + ".indices.json"  # pools without ids too
            cmd += ["--selection", f"{label}={positions}"]
            inputs.append(positions)
        step_id = out.replace("reports/", "report/", 1)
        b.add(Step(step_id, "report", f"selection report on {pool.title}", cmd,
                   [f"{out}/report.html"], inputs))  # fmt: skip
    title = exp.title
    if sc.name == "tiny":
        used = dict.fromkeys(sc.pools[r.pool] for r in runs)
        pools = ", ".join(f"{p.title} ({p.n_rows} rows)" for p in used)
        title += f"; tiny CPU scale: {TINY_MODEL} on {pools}"
    if sc.name == "paper" and len(bases) == 1 and exp.multi_base:
        title += f", base {bases[0]}"
    return Plan(
        experiment=experiment,
        scale=scale,
        title=title,
        workdir=opts.workdir,
        steps=sorted(b.steps.values(), key=lambda s: STAGES.index(s.stage)),
        notes=b.notes,
        blockers=b.blockers,
        table=f"{table}.md",
        report=f"reports/{name}",
        paper_table=paper_table,
    )
