"""InsTag tagging and DEITA scoring with vLLM through ``ray.data.llm`` (GPU only).

The prompts and the parsing are the steps' own:
:class:`~hf_mig.annotate.taggers.instag.InsTagTagger` and
:class:`~hf_mig.annotate.scorers.deita.DeitaScorer` are run twice over the pool's rows, once
with a recording stand-in for their model (which yields the exact requests they would send:
:func:`instag_requests`, :func:`deita_requests`) and once with the processor's answers played
back (:func:`instag_columns`, :func:`deita_columns`), so every row gets the columns, errors and
counts the local engine gives. Between the two, :func:`run_vllm_processor` sends the requests
through ``ray.data.llm.build_processor(vLLMEngineProcessorConfig(...))``:

* InsTag: one request per distinct user turn, ``messages`` plus ``sampling_params``; Ray's chat
  template stage renders them (with :data:`~hf_mig.annotate.taggers.instag.INSTAGGER_CHAT_TEMPLATE`
  for the ``instagger`` prompt);
* DEITA: one request per (turn, complexity or quality) with the ``tokenized_prompt`` that
  :func:`~hf_mig.annotate.scorers.deita.fit_template` builds (DEITA's raw template, cut to the
  window as the local scorer cuts it), ``max_tokens=1`` with ``allowed_token_ids`` = the six
  digit tokens and their ``logprobs``; :func:`deita_expectation` turns those into DEITA's
  expectation (a softmax over the six digits' log-probabilities, which equals the local scorer's
  softmax over their logits).

:func:`annotate_with_vllm` chains the three. The request building and parsing run (and are
tested) on CPU; the processor itself needs vLLM and a GPU and is not exercised by the tests.
Served OpenAI-compatible endpoints need none of this: run the tagger with ``backend="openai"``
through :func:`hf_mig.runtime.ray_data.map_on_ray`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import datasets
import pyarrow as pa

from hf_mig.annotate.scorers.deita import DeitaScorer, digit_token_ids
from hf_mig.annotate.taggers.instag import INSTAGGER_CHAT_TEMPLATE, InsTagTagger
from hf_mig.models.generation.base import BaseBackend, GenerationCall
from hf_mig.models.generation.results import GenerationResult

__all__ = [
    "REQUEST_KEY",
    "annotate_with_vllm",
    "deita_columns",
    "deita_expectation",
    "deita_requests",
    "instag_columns",
    "instag_requests",
    "run_vllm_processor",
]

#: Column naming each request, carried through the processor to match answers to requests.
REQUEST_KEY = "hf_mig_request"
#: Log-probabilities asked per DEITA request (the six digits must be among them).
DEITA_LOGPROBS = 20


def _key(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, ensure_ascii=False)


# --------------------------------------------------------------------------------------
# InsTag


class _PlayedBackend(BaseBackend):
    """A generation backend that records the conversations it is asked for and answers from
    ``answers`` (conversation key -> :class:`GenerationResult`; missing: a failure)."""

    name = "ray.data.llm"

    def __init__(self, answers: Mapping[str, GenerationResult] | None = None) -> None:
        super().__init__("recorded", progress=False)
        self.answers = answers
        self.asked: list[list[dict[str, Any]]] = []

    def _generate(self, call: GenerationCall) -> list[GenerationResult]:
        self.asked.extend(call.conversations)
        if self.answers is None:
            return [GenerationResult.failure("recording") for _ in call.conversations]
        missing = GenerationResult.failure("the processor returned no answer")
        return [self.answers.get(_key(c), missing) for c in call.conversations]


@contextmanager
def _quiet(recording: bool) -> Iterator[None]:
    """Silence the warnings of a recording pass (its answers are placeholders)."""
    names = ("hf_mig.annotate.taggers.instag", "hf_mig.models.generation.base")
    loggers = [logging.getLogger(name) for name in names]
    levels = [lg.level for lg in loggers]
    if recording:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _run_instag(tagger: InsTagTagger, batch: Mapping[str, list], backend: _PlayedBackend) -> Any:
    """``tagger``'s call on ``batch`` (rows numbered from 0) with ``backend`` as its model."""
    n = len(next(iter(batch.values()))) if batch else 0
    copy = InsTagTagger(**{k: v for k, v in tagger.config.items() if k != "cache"})
    copy._backend = backend  # the tagger asks this backend; nothing else changes
    with _quiet(backend.answers is None):
        return copy(dict(batch), list(range(n)))


def instag_requests(tagger: InsTagTagger, batch: Mapping[str, list]) -> list[dict[str, Any]]:
    """The processor rows for ``batch`` (columns of lists): one per distinct conversation the
    tagger asks for, with :data:`REQUEST_KEY`, ``messages`` and ``sampling_params``."""
    recorder = _PlayedBackend()
    _run_instag(tagger, batch, recorder)
    config = tagger.config
    params = {"max_tokens": config["max_new_tokens"], "temperature": config["temperature"]}
    return [
        {REQUEST_KEY: _key(c), "messages": c, "sampling_params": dict(params)}
        for c in recorder.asked
    ]


def instag_columns(
    tagger: InsTagTagger, batch: Mapping[str, list], outputs: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The tagger's output columns for ``batch`` from the processor ``outputs`` (rows with
    :data:`REQUEST_KEY`, ``generated_text`` and, for failed requests, a non-empty
    ``__inference_error__``)."""
    answers = {}
    for row in outputs:
        error = row.get("__inference_error__")
        answers[row[REQUEST_KEY]] = (
            GenerationResult.failure(f"vLLM: {error}")
            if error
            else GenerationResult(text=row.get("generated_text") or "", finish_reason="stop")
        )
    return _run_instag(tagger, batch, _PlayedBackend(answers))


# --------------------------------------------------------------------------------------
# DEITA


def deita_expectation(logprobs: Any, digit_ids: Sequence[int]) -> float | Exception:
    """DEITA's expected score from the first generated token's log-probabilities.

    ``logprobs``: the processor's ``logprobs`` column (one ``{token_id: {"logprob": x}}`` per
    generated token; ids as ints or strings). Returns ``sum_d d * p_d`` with ``p`` the softmax
    over the six digits' log-probabilities, or a ``ValueError`` when a digit is missing.
    """
    first = (logprobs or [None])[0]
    if not isinstance(first, Mapping):
        return ValueError("no log-probabilities in the processor output")
    found = {int(k): v for k, v in first.items() if v is not None}
    values = []
    for token in digit_ids:
        entry = found.get(int(token))
        value = entry.get("logprob") if isinstance(entry, Mapping) else entry
        if value is None or not math.isfinite(float(value)):
            return ValueError(f"score digit token {token} is not among the returned logprobs")
        values.append(float(value))
    top = max(values)
    weights = [math.exp(v - top) for v in values]
    return math.fsum((d + 1) * w for d, w in enumerate(weights)) / math.fsum(weights)


class _DeitaPlayback:
    """Stands in for :meth:`DeitaScorer.expectations`: records prompts, or answers them."""

    def __init__(self, answers: Mapping[str, float | Exception] | None) -> None:
        self.answers = answers
        self.asked: list[tuple[str, list[int]]] = []

    def __call__(self, role: str, prompts: Sequence[list[int]], rank: Any = None) -> list[Any]:
        self.asked.extend((role, list(p)) for p in prompts)
        if self.answers is None:
            return [1.0] * len(prompts)
        missing = ValueError("the processor returned no answer")
        return [self.answers.get(_key(role, list(p)), missing) for p in prompts]


def _run_deita(
    scorer: DeitaScorer, batch: Mapping[str, list], tokenizers: Mapping[str, Any], play: Any
) -> Any:
    """``scorer``'s call on ``batch`` (rows numbered from 0) with ``tokenizers`` (role ->
    ``(tokenizer, window)``) and ``play`` standing in for its models' forward passes."""
    copy = DeitaScorer(**{**scorer.config, "device": "cpu"})
    for role, (tokenizer, window) in tokenizers.items():
        stub = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=window))
        copy._loaded[role] = (stub, tokenizer)  # no weights: only the window and the tokenizer
    copy.expectations = play
    n = len(next(iter(batch.values()))) if batch else 0
    return copy(dict(batch), list(range(n)))


def deita_requests(
    scorer: DeitaScorer, batch: Mapping[str, list], tokenizers: Mapping[str, tuple[Any, int]]
) -> dict[str, list[dict[str, Any]]]:
    """Processor rows for ``batch``, by role (``complexity_model``, ``quality_model``): one per
    distinct prompt, with :data:`REQUEST_KEY`, ``tokenized_prompt`` and ``sampling_params``.

    ``tokenizers``: role -> ``(tokenizer, window)`` of that role's model (the window from its
    config, :func:`hf_mig.annotate.scorers._lm.model_window`; the scorer's ``max_length`` and
    the tokenizer's limit apply on top, as in the local scorer)."""
    recorder = _DeitaPlayback(None)
    _run_deita(scorer, batch, tokenizers, recorder)
    out: dict[str, list[dict[str, Any]]] = {}
    seen: set[str] = set()
    for role, ids in recorder.asked:
        key = _key(role, ids)
        if key in seen:
            continue
        seen.add(key)
        digits = digit_token_ids(tokenizers[role][0])
        params = {"max_tokens": 1, "temperature": 0.0, "logprobs": DEITA_LOGPROBS,
                  "allowed_token_ids": digits}  # fmt: skip
        out.setdefault(role, []).append(
            {REQUEST_KEY: key, "tokenized_prompt": ids, "sampling_params": params}
        )
    return out


def deita_columns(
    scorer: DeitaScorer,
    batch: Mapping[str, list],
    tokenizers: Mapping[str, tuple[Any, int]],
    outputs: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The scorer's output columns for ``batch`` from the processor ``outputs`` (rows with
    :data:`REQUEST_KEY`, ``logprobs`` and, for failed requests, ``__inference_error__``)."""
    answers: dict[str, float | Exception] = {}
    for row in outputs:
        role = json.loads(row[REQUEST_KEY])[0]
        error = row.get("__inference_error__")
        digits = digit_token_ids(tokenizers[role][0])
        answers[row[REQUEST_KEY]] = (
            RuntimeError(f"vLLM: {error}")
            if error
            else deita_expectation(row.get("logprobs"), digits)
        )
    return _run_deita(scorer, batch, tokenizers, _DeitaPlayback(answers))


# --------------------------------------------------------------------------------------
# the processor (GPU only)


def run_vllm_processor(
    requests: list[dict[str, Any]],
    model: str,
    *,
    concurrency: int = 1,
    batch_size: int = 64,
    engine_kwargs: Mapping[str, Any] | None = None,
    chat_template: str | None = None,
) -> list[dict[str, Any]]:
    """Send ``requests`` through ``ray.data.llm``'s vLLM processor for ``model``; returns one
    row per request with :data:`REQUEST_KEY`, ``generated_text``, ``logprobs`` and
    ``__inference_error__``. Rows with ``messages`` go through Ray's chat-template and
    tokenizer stages (``chat_template`` overrides the model's); rows with
    ``tokenized_prompt`` skip them. Needs a connected Ray, vLLM and a GPU (untested here)."""
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from hf_mig.runtime.ray_data import import_ray

    ray = import_ray()
    chat = bool(requests) and "messages" in requests[0]
    config = vLLMEngineProcessorConfig(
        model_source=model,
        engine_kwargs={"logprobs_mode": "processed_logprobs", **dict(engine_kwargs or {})},
        concurrency=concurrency,
        batch_size=batch_size,
        should_continue_on_error=True,
        chat_template_stage={"enabled": chat, "chat_template": chat_template},
        tokenize_stage=chat,
        detokenize_stage=chat,
    )
    keep = (REQUEST_KEY, "generated_text", "logprobs", "__inference_error__")
    processor = build_processor(
        config, postprocess=lambda row: {k: row.get(k) for k in keep if k in row}
    )
    return processor(ray.data.from_items(requests)).take_all()


def annotate_with_vllm(
    step: InsTagTagger | DeitaScorer,
    ds: datasets.Dataset,
    *,
    concurrency: int = 1,
    batch_size: int = 64,
    engine_kwargs: Mapping[str, Any] | None = None,
) -> datasets.Dataset:
    """``ds`` (with ``messages``) annotated by an InsTag tagger or a DEITA scorer whose models
    run in ``ray.data.llm``'s vLLM processor: the same columns as ``ds.map(step, ...)``. The
    tagger's ``model`` (or the scorer's two models) are the processor's model sources. Needs a
    connected Ray, vLLM and a GPU; untested here (see the module docstring)."""
    from transformers import AutoConfig, AutoTokenizer

    from hf_mig.annotate.scorers._lm import model_window
    from hf_mig.runtime.ray_data import _with_outputs

    batch = ds.to_dict()
    options = {"concurrency": concurrency, "batch_size": batch_size}
    if isinstance(step, InsTagTagger):
        template = INSTAGGER_CHAT_TEMPLATE if step.prompt == "instagger" else None
        outputs = run_vllm_processor(
            instag_requests(step, batch), step.config["model"], chat_template=template,
            engine_kwargs=engine_kwargs, **options,
        )  # fmt: skip
        columns = instag_columns(step, batch, outputs)
    elif isinstance(step, DeitaScorer):
        tokenizers = {}
        for role in ("complexity_model", "quality_model"):
            source = step.config[role]
            tokenizer = AutoTokenizer.from_pretrained(step.config["tokenizer"] or source)
            config = SimpleNamespace(config=AutoConfig.from_pretrained(source))
            tokenizers[role] = (tokenizer, model_window(config))
        outputs = []
        for role, requests in deita_requests(step, batch, tokenizers).items():
            source = step.config[role]
            outputs += run_vllm_processor(requests, source, engine_kwargs=engine_kwargs, **options)
        columns = deita_columns(step, batch, tokenizers, outputs)
    else:
        raise TypeError(f"vLLM through ray.data.llm runs InsTag and DEITA, not {step!r}")
    types = step.output_types()
    table = pa.table({name: pa.array(list(v), type=types[name]) for name, v in columns.items()})
    return _with_outputs(ds, table)
