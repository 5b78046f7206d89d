"""InsTag tagging with a generative model: ``labels`` are the user's intentions, as InsTag tags.

:class:`InsTagTagger` is a batched ``datasets.Dataset.map`` callable::

    tagger = InsTagTagger("transformers", "OFA-Sys/InsTagger")            # the paper's tagger
    tagger = InsTagTagger("openai", "my-model",
                          backend_options={"base_url": "http://127.0.0.1:8000/v1"})
    ds = ds.map(tagger, batched=True, with_indices=True)   # adds labels, instag_raw, instag_error

For every row it asks the model for the intentions of the first user turn (``turns="first"``) or
of every user turn (``turns="all"``, labels are the union in order of appearance), parses the
answer with the tolerant :func:`hf_mig.annotate.taggers.json_tags.parse_tags`, and writes three
columns:

* ``labels`` (``list[str]``): the tags, stripped, whitespace-collapsed, lower-cased, de-duplicated;
* ``instag_raw`` (``list[str | None]``): the raw model output of each tagged turn (``None`` where
  generation failed), so every label can be traced back to the text it came from;
* ``instag_error`` (``str | None``): ``None``, or what went wrong in this row (generation failed
  after the backend's retries, or an output from which no tag could be recovered). Such rows keep
  the labels of their other turns (possibly ``[]``); they are never given a default value
  silently: they are counted in :attr:`InsTagTagger.stats` and logged (WARNING) with their rows.

With a response cache, only outputs that parse are stored (and only those are served from it):
a re-run asks the model again for exactly the turns whose generation failed or whose output did
not parse.

Prompts (``prompt=``) are the two published by InsTag (Lu et al., 2023, arXiv 2308.07074):

* ``"instagger"``: the template the released ``OFA-Sys/InsTagger`` (LLaMA-2-7B, trained with
  FastChat) was fine-tuned on — the instruction as the system text, then ``Query: <query>
  Assistant:``. With the transformers and vLLM backends the matching chat template
  (:data:`INSTAGGER_CHAT_TEMPLATE`) is applied unless ``backend_options`` gives another one; an
  HTTP server applies its own (serve InsTagger with that template).
* ``"instag"``: the prompt InsTag sent to ChatGPT to build its tag set, as one user message; the
  right choice for any general chat model.
* ``"auto"`` (default): ``"instagger"`` when the model name contains ``instagger``, else
  ``"instag"``. Any other string is a custom user-message template containing ``{query}``.

The backend is created on the first call, once per process (``num_proc`` workers each build
their own; with ``with_rank=True`` worker ``r`` uses ``cuda:r`` when GPUs exist). Pickling and
``datasets`` fingerprinting see only the configuration, ``hf_mig.__version__`` and, for the
transformers and vLLM backends, the content identity of the model files
(:meth:`InsTagTagger.content_identity`; a local model's files are hashed once per process), so
weights replaced in place change the fingerprint and the response-cache keys.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from hf_mig.annotate.base import Option, Tagger, map_arguments, register_tagger, row_label
from hf_mig.annotate.taggers.json_tags import ParsedTags, parse_tags
from hf_mig.data.columns import LABELS_ARROW_TYPE
from hf_mig.data.conversations import ConversationError, user_turns

logger = logging.getLogger(__name__)

__all__ = [
    "INSTAGGER_CHAT_TEMPLATE",
    "INSTAGGER_SYSTEM_PROMPT",
    "INSTAG_PROMPT",
    "InsTagStats",
    "InsTagTagger",
    "build_instag_messages",
]

#: The instruction InsTagger was fine-tuned with (InsTag paper, local tagger section; model card).
INSTAGGER_SYSTEM_PROMPT = (
    "You are a helpful assistant. Please identify tags of user intentions in the following user "
    "query and provide an explanation for each tag. Please respond in the JSON format "
    '{"tag": str, "explanation": str}.'
)

#: FastChat-style template of the InsTagger training data: ``<system> Query: <q> Assistant:``.
INSTAGGER_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}"
    "{% elif message['role'] == 'user' %}{{ ' Query: ' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ ' Assistant: ' + message['content'] + eos_token }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ ' Assistant:' }}{% endif %}"
)

#: The prompt InsTag sent to ChatGPT to tag queries (``{query}`` is replaced by the user turn).
INSTAG_PROMPT = (
    "You are a tagging system that provides useful tags for instruction intentions to "
    "distinguish instructions for a helpful AI assistant. Below is an instruction:\n"
    "[begin]\n{query}\n[end]\n"
    'Please provide coarse-grained tags, such as "Spelling and Grammar Check" and "Cosplay", to '
    "identify main intentions of above instruction. Your answer should be a list including "
    "titles of tags and a brief explanation of each tag. Your response have to strictly follow "
    'this JSON format: [{"tag": str, "explanation": str}]. Please response in English.'
)

_TURNS = ("first", "all")
_BACKEND_NAMES = ("transformers", "vllm", "openai")
_TEMPLATE_BACKENDS = ("transformers", "vllm")

# Per-process backends, by configuration (JSON) and rank.
_BACKENDS: dict[str, Any] = {}


def resolve_prompt(prompt: str, model: str) -> str:
    """``"auto"`` -> ``"instagger"`` or ``"instag"`` by model name; other values unchanged."""
    if prompt == "auto":
        return "instagger" if "instagger" in model.lower() else "instag"
    return prompt


def build_instag_messages(query: str, prompt: str = "instag") -> list[dict[str, str]]:
    """The chat messages that ask for the intentions of ``query``.

    ``prompt``: ``"instagger"`` (system instruction + the query as the user turn), ``"instag"``
    (one user message from :data:`INSTAG_PROMPT`) or a custom template containing ``{query}``
    (one user message; only ``{query}`` is substituted, other braces are kept). Raises
    ``ValueError`` for a custom template without ``{query}``.
    """
    if prompt == "instagger":
        return [
            {"role": "system", "content": INSTAGGER_SYSTEM_PROMPT},
            {"role": "user", "content": query},
        ]
    template = INSTAG_PROMPT if prompt == "instag" else prompt
    if "{query}" not in template:
        raise ValueError(
            "prompt must be 'auto', 'instagger', 'instag' or a template containing {query}, "
            f"got {prompt[:80]!r}"
        )
    return [{"role": "user", "content": template.replace("{query}", query)}]


@dataclass
class InsTagStats:
    """Counts over the rows tagged by one tagger object in this process.

    Row counts: ``rows`` = ``tagged`` + ``empty`` + ``errors`` + ``no_user_text``, where
    ``tagged`` rows got at least one label without error, ``empty`` rows were parsed without
    error but hold no tag (the model answered ``[]``), ``errors`` rows have ``instag_error``.
    Turn counts: ``prompts`` sent to the backend (after de-duplication within a batch),
    ``cache_hits`` among them, ``generation_failed`` and ``unparsable`` outputs, ``repaired``
    outputs that needed a repair (fences, truncation, quotes...), ``truncated_queries``
    (``max_query_chars``).
    """

    rows: int = 0
    tagged: int = 0
    empty: int = 0
    errors: int = 0
    no_user_text: int = 0
    labels: int = 0
    prompts: int = 0
    cache_hits: int = 0
    generation_failed: int = 0
    unparsable: int = 0
    repaired: int = 0
    truncated_queries: int = 0


@register_tagger("instag")
class InsTagTagger(Tagger):
    """Batched ``Dataset.map`` callable writing InsTag labels generated by a chat model.

    Args:
        backend: ``"transformers"``, ``"vllm"`` or ``"openai"`` (see
            :mod:`hf_mig.models.generation`).
        model: model id, path or served model name (default ``OFA-Sys/InsTagger``).
        backend_options: keyword arguments of the backend (e.g. ``{"base_url": ...,
            "concurrency": 16}``, ``{"batch_size": 16, "device": "cuda:0"}``). JSON-like values.
        prompt: ``"auto"``, ``"instagger"``, ``"instag"`` or a template with ``{query}``.
        turns: ``"first"`` user turn or ``"all"`` user turns.
        max_new_tokens: tokens generated per turn (long enough for ~10 tags with explanations).
        temperature: 0 = greedy (default, deterministic).
        max_query_chars: cut longer user turns to this many characters (counted and logged);
            ``None`` keeps them whole (a prompt longer than the context window is then an error
            of that row).
        cache: response cache (path or :class:`~hf_mig.models.generation.cache.ResponseCache`), so a
            re-run or a resumed run does not generate again.
        messages_column: input column of OpenAI-style messages.
        output_column, raw_column, error_column: output column names.

    Calling ``tagger(batch)``, ``tagger(batch, indices)``, ``tagger(batch, rank)`` or
    ``tagger(batch, indices, rank)`` returns the three columns for the batch, one value per row
    in order. Malformed rows (messages that are not a list of role/content dicts) raise
    ``ValueError`` naming the row (the dataset index with ``with_indices=True``) and the field.
    """

    Stats = InsTagStats
    uses_rank = True
    backends = _BACKEND_NAMES
    options = (
        Option("model", "model id/path or served model name (default OFA-Sys/InsTagger)"),
        Option("turns", "user turns to tag (default first)", choices=_TURNS),
        Option("prompt", "'auto', 'instagger', 'instag' or a template containing {query}"),
        Option("max_new_tokens", "tokens generated per user turn (default 256)", type=int),
        Option("temperature", "0 = greedy (default)", type=float),
        Option("max_query_chars", "cut longer user turns", type=int),
    )

    def __init__(
        self,
        backend: str = "transformers",
        model: str = "OFA-Sys/InsTagger",
        *,
        backend_options: Mapping[str, Any] | None = None,
        prompt: str = "auto",
        turns: str = "first",
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        max_query_chars: int | None = None,
        cache: Any = None,
        messages_column: str = "messages",
        output_column: str = "labels",
        raw_column: str = "instag_raw",
        error_column: str = "instag_error",
    ) -> None:
        if backend not in _BACKEND_NAMES:
            raise ValueError(f"backend must be one of {_BACKEND_NAMES}, got {backend!r}")
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty string, got {model!r}")
        if turns not in _TURNS:
            raise ValueError(f"turns must be one of {_TURNS}, got {turns!r}")
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
        resolved = resolve_prompt(prompt, model)
        build_instag_messages("x", resolved)  # validates a custom template
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
        if temperature < 0:
            raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
        if max_query_chars is not None and (
            isinstance(max_query_chars, bool)
            or not isinstance(max_query_chars, int)
            or max_query_chars < 1
        ):
            raise ValueError(f"max_query_chars must be a positive integer, got {max_query_chars!r}")
        names = (messages_column, output_column, raw_column, error_column)
        for value in names:
            if not isinstance(value, str) or not value:
                raise ValueError(f"column names must be non-empty strings, got {value!r}")
        if len(set(names[1:])) != 3:
            raise ValueError("output_column, raw_column and error_column must differ")
        options = dict(backend_options or {})
        for key in ("model", "cache", "rank"):
            if key in options:
                raise ValueError(f"backend_options may not set {key!r}; use the tagger argument")
        try:
            json.dumps(options, sort_keys=True)
        except TypeError as err:
            raise ValueError(f"backend_options must be JSON-like values: {err}") from err
        if cache is not None:
            from hf_mig.models.generation.cache import open_cache

            opened = open_cache(cache)
            cache = None if opened is None else str(opened.path)
        self._setup(
            {
                "backend": backend,
                "model": model,
                "backend_options": options,
                "prompt": prompt,
                "turns": turns,
                "max_new_tokens": int(max_new_tokens),
                "temperature": float(temperature),
                "max_query_chars": max_query_chars,
                "cache": cache,
                "messages_column": messages_column,
                "output_column": output_column,
                "raw_column": raw_column,
                "error_column": error_column,
            }
        )

    # ------------------------------------------------------------------ configuration / pickling

    def _setup(self, config: dict[str, Any]) -> None:
        super()._setup(config)
        self._prompt = resolve_prompt(config["prompt"], config["model"])
        self._backend: Any = None

    @property
    def config(self) -> dict[str, Any]:
        """The configuration (a deep copy)."""
        return json.loads(json.dumps(self._config))

    def output_types(self) -> dict[str, pa.DataType]:
        c = self._config
        return {
            c["output_column"]: LABELS_ARROW_TYPE,
            c["raw_column"]: LABELS_ARROW_TYPE,
            c["error_column"]: pa.string(),
        }

    def content_identity(self) -> dict[str, str]:
        """Content identities of the model (and tokenizer) files of the transformers and vLLM
        backends (``{}`` for a served model), as in the backend's
        :meth:`~hf_mig.models.generation.base.BaseBackend.describe`: of the files as they are
        now, or of what this tagger's backend loaded. Part of the pickled configuration, so the
        ``datasets`` fingerprint changes when the weights do."""
        if self._config["backend"] not in _TEMPLATE_BACKENDS:
            return {}
        backend = self._backend if self._backend is not None else self._new_backend(None, None)
        content = backend.describe()
        return {k: v for k, v in content.items() if k.endswith("_content")}

    @property
    def prompt(self) -> str:
        """The resolved prompt: ``"instagger"``, ``"instag"`` or the custom template."""
        return self._prompt

    def __repr__(self) -> str:
        c = self._config
        return (
            f"InsTagTagger(backend={c['backend']!r}, model={c['model']!r}, "
            f"prompt={self._prompt if len(self._prompt) < 20 else 'custom'!r}, "
            f"turns={c['turns']!r}, max_new_tokens={c['max_new_tokens']})"
        )

    # ------------------------------------------------------------------ backend

    def backend(self, rank: int | None = None) -> Any:
        """The generation backend of this process (created on first use, shared by taggers with
        the same configuration, model content and rank)."""
        if self._backend is not None and rank is None:
            return self._backend
        c = self._config
        options = self._backend_options(rank)
        identity = {}
        if c["backend"] in _TEMPLATE_BACKENDS:
            identity = self._new_backend(rank, None).describe()
        key = json.dumps(
            {"b": c["backend"], "m": c["model"], "o": options, "c": c["cache"], "i": identity},
            sort_keys=True,
        )
        backend = _BACKENDS.get(key)
        if backend is None:
            backend = _BACKENDS[key] = self._new_backend(rank, c["cache"])
        self._backend = backend
        return backend

    def _backend_options(self, rank: int | None) -> dict[str, Any]:
        c = self._config
        options = dict(c["backend_options"])
        if (
            c["backend"] in _TEMPLATE_BACKENDS
            and self._prompt == "instagger"
            and "chat_template" not in options
        ):
            options["chat_template"] = INSTAGGER_CHAT_TEMPLATE
        if c["backend"] == "transformers" and rank is not None:
            options["rank"] = rank
        return options

    def _new_backend(self, rank: int | None, cache: Any) -> Any:
        """A new backend object (nothing is loaded until it generates)."""
        from hf_mig.models.generation import load_backend

        c = self._config
        return load_backend(c["backend"], c["model"], cache=cache, **self._backend_options(rank))

    # ------------------------------------------------------------------ tagging

    def __call__(self, batch: Mapping[str, list], *args: Any) -> dict[str, list]:
        """Tag one batch; see the class docstring for the contract."""
        indices, rank = map_arguments(args, "InsTagTagger")
        c = self._config
        conversations = self._messages(batch, indices)
        per_row = [
            self._user_turns(messages, pos, indices) for pos, messages in enumerate(conversations)
        ]

        unique: dict[str, int] = {}
        for turns in per_row:
            for query in turns:
                unique.setdefault(query, len(unique))
        outputs: list[Any] = []
        if unique:
            backend = self.backend(rank)
            hits_before = backend.stats.cache_hits
            outputs = backend.generate(
                [build_instag_messages(q, self._prompt) for q in unique],
                max_new_tokens=c["max_new_tokens"],
                temperature=c["temperature"],
                accept=_parses,
            )
            self.stats.prompts += len(unique)
            self.stats.cache_hits += backend.stats.cache_hits - hits_before
        parsed: list[ParsedTags | None] = []
        for result in outputs:
            if result.error is not None:
                self.stats.generation_failed += 1
                parsed.append(None)
                continue
            tags = parse_tags(result.text)
            if tags.error is not None:
                self.stats.unparsable += 1
            elif tags.repairs:
                self.stats.repaired += 1
            parsed.append(tags)

        labels_out: list[list[str]] = []
        raw_out: list[list[str | None]] = []
        errors_out: list[str | None] = []
        error_rows: list[int] = []
        for pos, turns in enumerate(per_row):
            labels: list[str] = []
            raws: list[str | None] = []
            problems: list[str] = []
            for k, query in enumerate(turns):
                j = unique[query]
                result, tags = outputs[j], parsed[j]
                raws.append(result.text)
                where = f"user turn {k + 1}: " if c["turns"] == "all" else ""
                if tags is None:
                    problems.append(f"{where}generation failed: {result.error}")
                elif tags.error is not None:
                    problems.append(f"{where}unparsable output: {tags.error}")
                else:
                    labels.extend(t for t in tags.tags if t not in labels)
            labels_out.append(labels)
            raw_out.append(raws)
            errors_out.append("; ".join(problems) if problems else None)
            if problems:
                error_rows.append(pos)
            self._count_row(turns, labels, bool(problems))
        self._log(len(per_row), error_rows, errors_out, indices)
        out = {c["output_column"]: labels_out, c["raw_column"]: raw_out}
        return self._typed({**out, c["error_column"]: errors_out})

    def _count_row(self, turns: list[str], labels: list[str], failed: bool) -> None:
        stats = self.stats
        stats.rows += 1
        stats.labels += len(labels)
        if not turns:
            stats.no_user_text += 1
        elif failed:
            stats.errors += 1
        elif labels:
            stats.tagged += 1
        else:
            stats.empty += 1

    def _log(
        self,
        n_rows: int,
        error_rows: list[int],
        errors: list[str | None],
        indices: Sequence[int] | None,
    ) -> None:
        if not error_rows:
            return
        shown = [str(indices[p] if indices is not None else p) for p in error_rows[:10]]
        logger.warning(
            "InsTagTagger: %d of %d rows have %s set (%s %s%s); first: %s",
            len(error_rows),
            n_rows,
            self._config["error_column"],
            "rows" if indices is not None else "batch positions",
            ", ".join(shown),
            ", ..." if len(error_rows) > 10 else "",
            errors[error_rows[0]],
        )

    def _user_turns(self, messages: Any, pos: int, indices: Sequence[int] | None) -> list[str]:
        """The user texts of one row (first or all, non-empty, cut to ``max_query_chars``);
        raise ValueError naming the row and the field on a malformed row."""
        column = self._config["messages_column"]
        try:
            texts = user_turns(
                messages, column, first=self._config["turns"] == "first", parts="lenient"
            )
        except ConversationError as err:
            raise ValueError(f"InsTagTagger: {row_label(pos, indices)}: {err}") from None
        limit = self._config["max_query_chars"]
        if limit is None:
            return texts
        for k, text in enumerate(texts):
            if len(text) > limit:
                texts[k] = text[:limit]
                self.stats.truncated_queries += 1
                logger.info("InsTagTagger: %s cut to %d characters", row_label(pos, indices), limit)
        return texts


def _parses(text: str) -> bool:
    """Whether tags can be recovered from ``text`` (outputs that cannot are not cached)."""
    return parse_tags(text).error is None
