"""Trainer callbacks that carry the data selection into training.

Each callback is a plain :class:`transformers.TrainerCallback`: add it to any ``Trainer`` (or TRL
trainer) with ``callbacks=[...]`` or ``trainer.add_callback``. In multi-process runs files are
written and tables printed by the process that saves checkpoints (``args.should_save``, the
global main process by default) only. Work that needs the model (a forward pass, ``generate``)
runs on the main process only, except when the weights are sharded (DeepSpeed ZeRO-3, FSDP):
then every rank runs it so that the parameter all-gathers match, and only the main process
writes the results.

* :class:`SelectionManifestCallback` writes ``selection_manifest.json`` (pool fingerprint and
  size, method and options, k, label-graph stats, label coverage of the subset, hf-mig version)
  into the output folder and every checkpoint, and adds the same facts to the model card
  (``README.md``) between ``<!-- hf-mig:selection-manifest -->`` markers.
* :class:`LabelLossCallback` measures the loss per group of rows (the most frequent labels of the
  training rows, clusters of the label graph, or the values of any column, such as the rows'
  ``source``) on a fixed probe sample of training (and
  evaluation) rows, and adds it to the Trainer's logs (``label_loss/<group>`` and
  ``eval_label_loss/<group>``), so it lands in ``trainer.state.log_history`` and in the reporters.
* :class:`GenerationPreviewCallback` answers a fixed set of prompts at save (and/or evaluation)
  time, logs them as a table and writes ``generations.jsonl`` into the checkpoint; an optional
  judge scores each answer.

Reporters (TensorBoard, W&B, ...) receive the ``logs`` dict *after* callbacks placed before them;
``Trainer`` adds user callbacks after its reporters, so use :func:`install_callbacks` to put these
callbacks first when the reporters must see the per-group losses (``state.log_history`` gets them
either way). :func:`hf_mig.train.train` does this.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback

from hf_mig import __version__
from hf_mig.data.io import write_text_atomic

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PREVIEW_PROMPTS",
    "MANIFEST_NAME",
    "GenerationPreviewCallback",
    "LabelLossCallback",
    "SelectionManifestCallback",
    "build_selection_manifest",
    "format_preview_table",
    "install_callbacks",
    "judge_answers",
    "manifest_markdown",
    "update_model_card",
]

MANIFEST_NAME = "selection_manifest.json"
_CARD_START = "<!-- hf-mig:selection-manifest:start -->"
_CARD_END = "<!-- hf-mig:selection-manifest:end -->"

#: Prompts answered by :class:`GenerationPreviewCallback` when none are given.
DEFAULT_PREVIEW_PROMPTS: tuple[str, ...] = (
    "Give three tips for staying focused while studying.",
    "Write a Python function that returns the n-th Fibonacci number.",
    "A train leaves at 3:15 pm and arrives at 5:40 pm. How long is the trip?",
    "Explain the difference between weather and climate in two sentences.",
)


# --------------------------------------------------------------------------------------------
# shared helpers


def _weights_sharded(args: Any) -> bool:
    """True when parameters are sharded across ranks (ZeRO-3 or FSDP): collectives needed."""
    if getattr(args, "fsdp", None) or os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return True
    try:
        from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

        return bool(is_deepspeed_zero3_enabled())
    except ImportError:  # pragma: no cover - very old transformers
        return False


def _runs_model(args: Any, state: Any) -> bool:
    """Whether this process must run the model for a callback's measurement."""
    return state.is_world_process_zero or _weights_sharded(args)


def _append_lines(path: Path, lines: str) -> None:
    """Add ``lines`` to the end of the run's own log file ``path``, written whole through a
    temporary sibling and renamed (a reader never sees half a record)."""
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    write_text_atomic(path, old + lines, overwrite=True)


def install_callbacks(trainer: Any, *callbacks: TrainerCallback) -> None:
    """Add ``callbacks`` to ``trainer`` right after its flow callback, before the reporters.

    Logs that a callback adds in ``on_log`` reach only the callbacks that run after it; putting
    these first lets TensorBoard / W&B / the progress printer see the per-group losses.
    """
    handler = trainer.callback_handler
    position = 1 if handler.callbacks else 0
    for callback in callbacks:
        handler.callbacks.insert(position, callback)
        position += 1


def _label_lists(rows: Any, labels_column: str) -> list[list[str]]:
    values = rows[labels_column]
    out = []
    for i, labels in enumerate(values):
        if labels is None:
            out.append([])
        elif isinstance(labels, str) or not isinstance(labels, Iterable):
            raise ValueError(f"row {i}, field {labels_column!r}: expected a list of labels")
        else:
            out.append(list(dict.fromkeys(str(label) for label in labels)))
    return out


def _column_values(rows: Any, column: str) -> list[list[str]]:
    """Each row's group keys from ``column``: ``[str(value)]`` for a scalar, the distinct
    elements of a list, ``[]`` for ``None``."""
    out = []
    for value in rows[column]:
        if value is None:
            out.append([])
        elif isinstance(value, (list, tuple)):
            out.append(list(dict.fromkeys(str(v) for v in value if v is not None)))
        else:
            out.append([str(value)])
    return out


# --------------------------------------------------------------------------------------------
# manifest


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)


def build_selection_manifest(
    pool: Any,
    subset: Any,
    *,
    method: str,
    k: int | None,
    options: Mapping[str, Any] | None = None,
    selector: Any = None,
    pool_source: str | None = None,
    pool_fingerprint: str | None = None,
    labels_column: str = "labels",
    score_column: str = "score",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The facts about a selection that every checkpoint should carry (JSON-ready).

    ``pool`` / ``subset`` are ``datasets.Dataset`` objects (the subset as selected from the
    pool). ``selector`` (fitted) adds its parameters (``get_params()``), the label-graph
    statistics (``label_graph_``), the encoding report and the final objective value when it
    has them. ``pool_fingerprint`` defaults to the dataset's own fingerprint. Keys:
    ``hf_mig_version``, ``created``, ``pool`` (source, fingerprint, rows), ``selection``
    (method, k, options, params), ``label_graph`` (nodes, edges, isolated labels, degrees,
    threshold) or ``None``, ``coverage`` (:func:`hf_mig.core.summary.selection_summary`), plus
    ``extra``.
    """
    from hf_mig.core.summary import selection_summary
    from hf_mig.data.hub import selector_options

    params = None if selector is None else selector_options(selector)
    graph_stats = None
    graph = getattr(selector, "label_graph_", None)
    if graph is not None:
        graph_stats = {k: v for k, v in graph.stats().items() if k != "degree_histogram"}
    coverage = selection_summary(
        pool, subset, labels_column=labels_column, score_column=score_column
    )
    result = getattr(selector, "result_", None)
    trace = getattr(result, "objective_trace", None)
    manifest: dict[str, Any] = {
        "hf_mig_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pool": {
            "source": pool_source,
            "fingerprint": pool_fingerprint or getattr(pool, "_fingerprint", None),
            "rows": len(pool),
        },
        "selection": {
            "method": method,
            "k": None if k is None else int(k),
            "options": dict(options or {}),
            "params": params,
        },
        "label_graph": graph_stats,
        "coverage": coverage,
    }
    encoding = getattr(selector, "encoding_report_", None)
    if encoding is not None:
        manifest["encoding"] = encoding
    if trace is not None and len(trace):
        manifest["objective"] = float(trace[-1])
    if extra:
        manifest.update(extra)
    return _json_safe(manifest)


def manifest_markdown(manifest: Mapping[str, Any]) -> str:
    """The model-card section for a manifest (Markdown, between hf-mig markers)."""
    pool = manifest.get("pool") or {}
    sel = manifest.get("selection") or {}
    cov = manifest.get("coverage") or {}
    graph = manifest.get("label_graph")
    lines = [
        _CARD_START,
        "## Training data selection (hf-mig)",
        "",
        "| | |",
        "|---|---|",
        f"| pool | `{pool.get('source')}` ({pool.get('rows', '?'):,} rows) |"
        if isinstance(pool.get("rows"), int)
        else f"| pool | `{pool.get('source')}` |",
        f"| pool fingerprint | `{pool.get('fingerprint')}` |",
    ]
    if sel:
        lines.append(f"| method | `{sel.get('method')}` |")
        k = sel.get("k")
        shown = f"{k:,}" if isinstance(k, int) else "?"
        lines.append(f"| k | {'none (the budget binds)' if k is None else shown} |")
        options = json.dumps(sel.get("options") or {}, sort_keys=True)
        lines.append(f"| options | `{options}` |")
    if graph:
        threshold = graph.get("threshold")
        lines.append(
            f"| label graph | {graph.get('num_labels')} labels, {graph.get('num_edges')} edges, "
            f"{graph.get('isolated_labels')} isolated"
            + (f", threshold {threshold}" if threshold is not None else "")
            + " |"
        )
    if "label_coverage" in cov:
        lines.append(
            f"| label coverage | {cov.get('selected_labels')} of {cov.get('pool_labels')} labels "
            f"({100 * float(cov['label_coverage']):.1f}%) |"
        )
    if "selected_mean_score" in cov:
        lines.append(
            f"| mean score | {cov['selected_mean_score']:.3f} selected vs "
            f"{cov['pool_mean_score']:.3f} pool |"
        )
    if "training_rows" in manifest:
        lines.append(f"| training rows | {manifest['training_rows']} |")
    lines.append(f"| hf-mig | {manifest.get('hf_mig_version')} |")
    lines += ["", f"Full manifest: `{MANIFEST_NAME}`.", _CARD_END]
    return "\n".join(lines) + "\n"


def update_model_card(readme: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
    """Insert (or replace) the manifest section in the model card ``readme``.

    A missing card is created with a minimal header. Idempotent: running it twice leaves one
    section; the rest of the card is kept as it is.
    """
    path = Path(readme)
    section = manifest_markdown(manifest)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if _CARD_START in text and _CARD_END in text:
        head, _, rest = text.partition(_CARD_START)
        _, _, tail = rest.partition(_CARD_END)
        text = head + section.rstrip("\n") + tail
    else:
        if not text:
            text = "---\nlibrary_name: transformers\ntags:\n- hf-mig\n---\n\n# Model card\n"
        text = text.rstrip("\n") + "\n\n" + section
    write_text_atomic(path, text, overwrite=True)


class SelectionManifestCallback(TrainerCallback):
    """Write the selection manifest into the output folder, every checkpoint and the model card.

    ``manifest``: a dict from :func:`build_selection_manifest` (or any JSON-ready dict), or a
    path to a ``selection_manifest.json``. Writes ``<output_dir>/selection_manifest.json`` and
    the model-card section at train begin and end, and both into ``checkpoint-N`` at each save
    (TRL rewrites ``<output_dir>/README.md`` when it saves a checkpoint; the section is added back
    right after). Only the process with ``args.should_save`` writes. :meth:`write` can be
    called at any time (e.g. after ``trainer.create_model_card()``).
    """

    def __init__(self, manifest: Mapping[str, Any] | str | os.PathLike, *, model_card: bool = True):
        if isinstance(manifest, (str, os.PathLike)):
            manifest = json.loads(Path(manifest).read_text(encoding="utf-8"))
        if not isinstance(manifest, Mapping):
            raise TypeError(f"manifest must be a mapping or a path, got {type(manifest).__name__}")
        self.manifest = _json_safe(dict(manifest))
        self.model_card = model_card
        self.written: list[str] = []

    @classmethod
    def from_selection(cls, pool: Any, subset: Any, selector: Any, **kwargs: Any):
        """Build the manifest from a fitted selector (``method`` / ``k`` read from it)."""
        from hf_mig.data.hub import selector_options

        params = selector_options(selector)
        method = (
            kwargs.pop("method", None)
            or params.get("method")
            or getattr(selector, "method_name", type(selector).__name__)
        )
        manifest = build_selection_manifest(
            pool, subset, method=method, k=kwargs.pop("k", selector.k), selector=selector, **kwargs
        )
        return cls(manifest)

    def write(self, directory: str | os.PathLike) -> Path:
        """Write ``selection_manifest.json`` (and the model-card section) into ``directory``."""
        folder = Path(directory)
        target = folder / MANIFEST_NAME
        text = json.dumps(self.manifest, indent=2, sort_keys=True) + "\n"
        write_text_atomic(target, text, overwrite=True)
        if self.model_card:
            update_model_card(folder / "README.md", self.manifest)
        self.written.append(str(target))
        logger.info("wrote %s (and the model card section)", target)
        return target

    def on_train_begin(self, args, state, control, **kwargs):
        if args.should_save:
            self.write(args.output_dir)

    def on_save(self, args, state, control, **kwargs):
        if not args.should_save:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if checkpoint.is_dir():
            self.write(checkpoint)
        self.write(args.output_dir)

    def on_train_end(self, args, state, control, **kwargs):
        if args.should_save:
            self.write(args.output_dir)


# --------------------------------------------------------------------------------------------
# per-label-group loss


def _sanitize(name: str) -> str:
    return name.replace("/", "|").strip() or "_"


class LabelLossCallback(TrainerCallback):
    """Loss per label group of the training rows, added to the Trainer's logs.

    ``train_rows`` (and optional ``eval_rows``) are datasets with a ``messages`` column and the
    column the groups come from. Groups (``group_by``):

    * ``"top_labels"`` (default): the ``num_groups`` most frequent labels of ``train_rows``'
      ``labels_column`` (lists of strings); a row belongs to every group whose label it carries.
    * ``"clusters"``: connected components of ``label_graph`` (a :class:`hf_mig.LabelGraph` or a
      path), the ``num_groups`` components covering the most training rows; a group is named after
      its most frequent label (``"python programming +3"`` = 3 more labels).
    * any other string names a column (e.g. ``"source"``): one group per value, the
      ``num_groups`` values held by the most rows, named ``"<column>=<value>"``. A row with a
      scalar value belongs to one group; a row holding a list belongs to a group per element; a
      missing (``None``) value belongs to none. ``labels_column`` is not needed then.

    For each group a fixed probe of up to ``rows_per_group`` rows (seeded) is drawn once. At every
    training log (or every ``every_n_steps`` steps) the callback runs the current model on the
    probe rows and adds ``label_loss/<group>`` (mean token loss over the assistant tokens, or all
    tokens when the tokenizer's chat template has no ``{% generation %}`` block) to the logs; at
    every evaluation it adds ``eval_label_loss/<group>`` from ``eval_rows`` (groups with no
    evaluation row are left out). These are
    measurements of the current weights on fixed rows, not running averages of minibatch losses,
    so groups are comparable from step to step. The values go into the ``logs`` dict (seen by
    callbacks after this one, see :func:`install_callbacks`) and into
    ``state.log_history[-1]``; the main process also writes ``label_groups.json`` (groups, sizes)
    and appends ``label_losses.jsonl`` in ``args.output_dir``.

    Cost: one forward pass per distinct probe row (at most ``num_groups x rows_per_group``),
    sequences cut to ``max_length`` tokens, one row per forward.
    """

    def __init__(
        self,
        train_rows: Any,
        eval_rows: Any = None,
        *,
        labels_column: str = "labels",
        messages_column: str = "messages",
        group_by: str = "top_labels",
        num_groups: int = 8,
        rows_per_group: int = 8,
        label_graph: Any = None,
        every_n_steps: int | None = None,
        max_length: int = 1024,
        seed: int = 0,
        prefix: str = "label_loss",
    ):
        if not isinstance(group_by, str) or not group_by:
            raise ValueError(
                f"group_by: 'top_labels', 'clusters' or a column name, got {group_by!r}"
            )
        if num_groups < 1 or rows_per_group < 1:
            raise ValueError("num_groups and rows_per_group must be >= 1")
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1 or None, got {every_n_steps}")
        by_labels = group_by in ("top_labels", "clusters")
        key_column = labels_column if by_labels else group_by
        for name, rows in (("train_rows", train_rows), ("eval_rows", eval_rows)):
            if rows is None:
                continue
            missing = [c for c in (key_column, messages_column) if c not in rows.column_names]
            if missing:
                raise ValueError(f"{name}: missing column(s) {missing}; has {rows.column_names}")
        self.labels_column = labels_column
        self.key_column = key_column
        self.messages_column = messages_column
        self.group_by = group_by
        self.num_groups = num_groups
        self.rows_per_group = rows_per_group
        self.every_n_steps = every_n_steps
        self.max_length = max_length
        self.seed = seed
        self.prefix = prefix
        keys = _label_lists if by_labels else _column_values
        train_keys = keys(train_rows, key_column)
        self.groups = self._make_groups(train_keys, label_graph)
        self._train = self._probe(train_rows, train_keys)
        self._eval = None
        if eval_rows is not None:
            self._eval = self._probe(eval_rows, keys(eval_rows, key_column))
        self._tokenized: dict[int, dict[int, tuple[list[int], list[int]]]] = {}
        self.history: list[dict[str, Any]] = []
        self._warned_no_mask = False

    # groups -----------------------------------------------------------------------------
    def _make_groups(self, rows: list[list[str]], label_graph: Any) -> list[dict[str, Any]]:
        counts = Counter(label for labels in rows for label in labels)
        if not counts:
            what = "labels" if self.key_column == self.labels_column else "values"
            raise ValueError(
                f"LabelLossCallback: the training rows carry no {what} in {self.key_column!r}"
            )
        if self.group_by not in ("top_labels", "clusters"):
            top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: self.num_groups]
            return [
                {"name": f"{self.key_column}={value}", "labels": [value], "rows": n}
                for value, n in top
            ]
        if self.group_by == "top_labels":
            top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: self.num_groups]
            return [{"name": label, "labels": [label], "rows": n} for label, n in top]
        if label_graph is None:
            raise ValueError("group_by='clusters' needs a label_graph")
        from scipy.sparse.csgraph import connected_components

        from hf_mig.annotate.graph import LabelGraph

        graph = label_graph
        if not isinstance(graph, LabelGraph):
            graph = LabelGraph.load(graph)
        _, component = connected_components(graph.weights, directed=False)
        members: dict[int, list[str]] = {}
        for label in counts:
            node = graph.index.get(label)
            if node is not None:
                members.setdefault(int(component[node]), []).append(label)
        sized = []
        for labels in members.values():
            in_group = set(labels)
            n_rows = sum(1 for row in rows if in_group.intersection(row))
            labels.sort(key=lambda lab: (-counts[lab], lab))
            sized.append((n_rows, labels))
        sized.sort(key=lambda item: (-item[0], item[1][0]))
        groups = []
        for n_rows, labels in sized[: self.num_groups]:
            name = labels[0] if len(labels) == 1 else f"{labels[0]} +{len(labels) - 1}"
            groups.append({"name": name, "labels": labels, "rows": n_rows})
        return groups

    def _probe(self, rows: Any, labels: list[list[str]]) -> dict[str, Any]:
        rng = np.random.default_rng(self.seed)
        members = []
        for group in self.groups:
            wanted = set(group["labels"])
            idx = [i for i, row in enumerate(labels) if wanted.intersection(row)]
            if len(idx) > self.rows_per_group:
                idx = sorted(rng.choice(idx, size=self.rows_per_group, replace=False).tolist())
            members.append(idx)
        needed = sorted({i for idx in members for i in idx})
        messages = {i: rows[i][self.messages_column] for i in needed}
        return {"members": members, "messages": messages}

    # measurement -------------------------------------------------------------------------
    def _tokenize(self, tokenizer: Any, probe: dict[str, Any]) -> dict[int, tuple[list, list]]:
        key = id(probe)
        if key in self._tokenized:
            return self._tokenized[key]
        template = getattr(tokenizer, "chat_template", None) or ""
        has_mask = "generation" in template
        if not has_mask and not self._warned_no_mask:
            logger.warning(
                "LabelLossCallback: the chat template has no {%% generation %%} block; "
                "measuring the loss over all tokens"
            )
            self._warned_no_mask = True
        out = {}
        for i, messages in probe["messages"].items():
            enc = tokenizer.apply_chat_template(
                list(messages),
                tokenize=True,
                return_dict=True,
                return_assistant_tokens_mask=has_mask,
            )
            ids = list(enc["input_ids"])[: self.max_length]
            mask = list(enc["assistant_masks"])[: self.max_length] if has_mask else [1] * len(ids)
            out[i] = (ids, mask)
        self._tokenized[key] = out
        return out

    def _measure(self, model: Any, tokenizer: Any, probe: dict[str, Any]) -> dict[str, float]:
        import torch

        rows = self._tokenize(tokenizer, probe)
        device = next(model.parameters()).device
        totals: dict[int, tuple[float, int]] = {}
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for i, (ids, mask) in rows.items():
                    labels = [t if m else -100 for t, m in zip(ids, mask)]
                    n_tokens = sum(1 for t in labels[1:] if t != -100)
                    if n_tokens == 0:
                        totals[i] = (0.0, 0)
                        continue
                    input_ids = torch.tensor([ids], device=device)
                    out = model(
                        input_ids=input_ids,
                        labels=torch.tensor([labels], device=device),
                        use_cache=False,
                    )
                    totals[i] = (float(out.loss) * n_tokens, n_tokens)
        finally:
            if was_training:
                model.train()
        losses = {}
        for group, idx in zip(self.groups, probe["members"]):
            n = sum(totals[i][1] for i in idx)
            if n:  # a group without probe rows (e.g. in a small eval split) is not logged
                losses[_sanitize(group["name"])] = sum(totals[i][0] for i in idx) / n
        return losses

    def _due(self, state: Any) -> bool:
        if self.every_n_steps is None:
            return True
        return state.global_step % self.every_n_steps == 0 or state.global_step >= state.max_steps

    def _record(self, args, state, logs: dict, split: str, losses: Mapping[str, float]) -> None:
        key = self.prefix if split == "train" else f"eval_{self.prefix}"
        values = {f"{key}/{name}": float(v) for name, v in losses.items()}
        logs.update(values)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(values)
        entry = {"step": state.global_step, "split": split, "losses": dict(losses)}
        self.history.append(entry)
        if args.should_save:
            _append_lines(Path(args.output_dir) / "label_losses.jsonl", json.dumps(entry) + "\n")

    # events ------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        if args.should_save:
            groups = [
                {**g, "probe_rows": len(idx)} for g, idx in zip(self.groups, self._train["members"])
            ]
            write_text_atomic(
                Path(args.output_dir) / "label_groups.json",
                json.dumps({"group_by": self.group_by, "groups": groups}, indent=2) + "\n",
                overwrite=True,
            )

    def on_log(self, args, state, control, logs=None, model=None, processing_class=None, **kwargs):
        if logs is None or model is None or processing_class is None:
            return
        if not _runs_model(args, state):
            return
        if "loss" in logs and self._due(state):
            losses = self._measure(model, processing_class, self._train)
            self._record(args, state, logs, "train", losses)
        if "eval_loss" in logs and self._eval is not None:
            losses = self._measure(model, processing_class, self._eval)
            self._record(args, state, logs, "eval", losses)


# --------------------------------------------------------------------------------------------
# generation preview

Judge = Callable[[str, str], Any]


def judge_answers(judge: Any, records: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Score ``records`` (``prompt`` / ``completion``) with ``judge``; one value per record.

    ``judge`` is an object with ``grade(pairs)`` grading ``(prompt, answer)`` pairs in one call
    (e.g. :class:`hf_mig.eval.judge.JudgeClient`: 1-10 with MT-Bench's single-answer prompt,
    ``None`` when the reply has no rating), an object with ``score(prompt, answer)``, or a
    callable ``judge(prompt, answer)``.
    """
    if callable(getattr(judge, "grade", None)):
        return list(judge.grade([(r["prompt"], r["completion"]) for r in records]))
    if callable(getattr(judge, "score", None)):
        return [judge.score(r["prompt"], r["completion"]) for r in records]
    return [judge(r["prompt"], r["completion"]) for r in records]


class GenerationPreviewCallback(TrainerCallback):
    """Answer a fixed prompt set during training and keep the answers with the checkpoints.

    ``prompts``: user messages (strings) or full ``messages`` lists; default
    :data:`DEFAULT_PREVIEW_PROMPTS`. ``at``: ``"save"`` (default), ``"evaluate"`` or ``"both"``.
    Decoding is greedy (``max_new_tokens``), with the tokenizer's chat template and
    ``add_generation_prompt=True``. At a save the answers go to
    ``checkpoint-N/generations.jsonl``; every preview is also appended to
    ``<output_dir>/generations.jsonl`` and logged as a table (``logging`` at INFO). Each JSONL
    record: ``step``, ``event``, ``prompt``, ``completion``, ``new_tokens`` and, with a
    ``judge`` (see :func:`judge_answers`: an :class:`hf_mig.eval.judge.JudgeClient`, which grades
    each answer 1-10 with MT-Bench's single-answer prompt, an object with
    ``.score(prompt, answer)``, or a callable ``judge(prompt, answer)``), ``judge`` (the value);
    numeric judge scores are also logged as ``preview/judge_mean`` in ``state.log_history``.
    """

    def __init__(
        self,
        prompts: Sequence[str | Sequence[Mapping[str, str]]] | None = None,
        *,
        max_new_tokens: int = 128,
        at: str = "save",
        judge: Judge | Any | None = None,
        filename: str = "generations.jsonl",
    ):
        if at not in ("save", "evaluate", "both"):
            raise ValueError(f"at: 'save', 'evaluate' or 'both', got {at!r}")
        items = list(prompts) if prompts is not None else list(DEFAULT_PREVIEW_PROMPTS)
        if not items:
            raise ValueError("GenerationPreviewCallback needs at least one prompt")
        self.conversations = [
            [{"role": "user", "content": p}] if isinstance(p, str) else [dict(m) for m in p]
            for p in items
        ]
        self.max_new_tokens = max_new_tokens
        self.at = at
        self.judge = judge
        self.filename = filename
        self.records: list[dict[str, Any]] = []

    def generate(self, model: Any, tokenizer: Any, *, synced: bool = False) -> list[dict[str, Any]]:
        """Greedy answers of ``model`` to the prompts: ``[{prompt, completion, new_tokens}]``."""
        import torch

        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        out = []
        try:
            with torch.no_grad():
                for conversation in self.conversations:
                    enc = tokenizer.apply_chat_template(
                        conversation,
                        add_generation_prompt=True,
                        return_dict=True,
                        return_tensors="pt",
                    )
                    enc = {
                        k: v.to(device)
                        for k, v in enc.items()
                        if k in ("input_ids", "attention_mask")
                    }
                    pad = tokenizer.pad_token_id
                    generated = model.generate(
                        **enc,
                        max_new_tokens=self.max_new_tokens,
                        do_sample=False,
                        pad_token_id=pad if pad is not None else tokenizer.eos_token_id,
                        use_cache=True,
                        synced_gpus=synced,
                    )
                    new = generated[0, enc["input_ids"].shape[1] :].tolist()
                    out.append(
                        {
                            "prompt": conversation[-1]["content"],
                            "completion": tokenizer.decode(new, skip_special_tokens=True),
                            "new_tokens": len(new),
                        }
                    )
        finally:
            if was_training:
                model.train()
        return out

    def _preview(self, args, state, event: str, model: Any, tokenizer: Any) -> None:
        if model is None or tokenizer is None or not _runs_model(args, state):
            return
        answers = self.generate(model, tokenizer, synced=_weights_sharded(args))
        if not args.should_save:
            return
        scores = []
        for record in answers:
            record.update(step=state.global_step, event=event)
        if self.judge is not None:
            for record, value in zip(answers, judge_answers(self.judge, answers)):
                record["judge"] = value
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    scores.append(float(value))
        self.records.extend(answers)
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in answers)
        output = Path(args.output_dir)
        checkpoint = output / f"checkpoint-{state.global_step}"
        if event == "save" and checkpoint.is_dir():
            write_text_atomic(checkpoint / self.filename, lines, overwrite=True)
        _append_lines(output / self.filename, lines)
        if scores and state.log_history is not None:
            state.log_history.append(
                {"preview/judge_mean": sum(scores) / len(scores), "step": state.global_step}
            )
        logger.info(
            "generation preview at step %d (%s):\n%s",
            state.global_step,
            event,
            format_preview_table(answers),
        )

    def on_save(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.at in ("save", "both"):
            self._preview(args, state, "save", model, processing_class)

    def on_evaluate(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.at in ("evaluate", "both"):
            self._preview(args, state, "evaluate", model, processing_class)


def format_preview_table(records: Sequence[Mapping[str, Any]], width: int = 60) -> str:
    """A plain-text table of preview answers (one row per prompt, cells cut to ``width``)."""

    def cell(text: Any) -> str:
        flat = " ".join(str(text).split())
        return flat if len(flat) <= width else flat[: width - 3] + "..."

    has_judge = any("judge" in r for r in records)
    header = ["prompt", "completion"] + (["judge"] if has_judge else [])
    rows = [
        [cell(r["prompt"]), cell(r["completion"])] + ([cell(r.get("judge"))] if has_judge else [])
        for r in records
    ]
    widths = [max(len(h), *(len(row[j]) for row in rows)) for j, h in enumerate(header)]
    fmt = " | ".join(f"{{:<{w}}}" for w in widths)
    sep = "-+-".join("-" * w for w in widths)
    return "\n".join([fmt.format(*header), sep, *(fmt.format(*row) for row in rows)])
