"""One base for the annotation steps (taggers, scorers, sample embedders) and their registries.

A step is a batched ``Dataset.map`` callable configured once. :class:`MapStep` gives every step:

* **Pickling by configuration.** ``datasets`` fingerprints a map function by hashing its pickle,
  and ``num_proc`` workers receive it pickled. A step pickles to its configuration plus
  ``hf_mig.__version__`` only: never a loaded model, cached matrices or counters. Two steps with
  the same configuration therefore hash alike (the ``datasets`` cache hits on re-runs), loading
  the model does not change the hash, and a new ``hf_mig`` version misses the cache. A step that
  names model files by path or Hub id adds the models' content identity
  (:mod:`hf_mig.models.identity`) to what it pickles by overriding :meth:`MapStep._state_config`
  (and drops it again in :meth:`MapStep._restore_state`), so weights replaced in place change
  the hash.
* **The map call.** ``step(batch)``, ``step(batch, indices)``, ``step(batch, rank)`` or
  ``step(batch, indices, rank)``, as ``Dataset.map(..., batched=True)`` passes them with
  ``with_indices`` / ``with_rank`` (:func:`map_arguments` tells them apart).
* **Typed output columns.** :meth:`MapStep.output_types` names the Arrow type of every column
  the step writes; the values come back as :class:`~hf_mig.data.columns.TypedColumn`, so a first
  batch of ``None`` or empty lists does not fix a column's type.
* **Counted stats.** :attr:`MapStep.stats` (a dataclass of counters, :attr:`MapStep.Stats`) over
  the rows this object processed in this process; :meth:`MapStep.stats_summary` as a dict.
* **Command-line options.** :attr:`MapStep.options` lists the ``__init__`` parameters that
  ``hf-mig tag`` / ``hf-mig score`` expose (:class:`Option`).

Steps register by name (:func:`register_tagger`, :func:`register_scorer`); :data:`TAGGERS` and
:data:`SCORERS` map names to classes and the CLI reads them.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import pyarrow as pa

from hf_mig.core.registry import Registry
from hf_mig.data.columns import TypedColumn, row_numbers

logger = logging.getLogger(__name__)

__all__ = [
    "SCORERS",
    "TAGGERS",
    "ConfigValue",
    "MapStep",
    "Option",
    "Scorer",
    "StepStats",
    "Tagger",
    "get_scorer",
    "get_tagger",
    "map_arguments",
    "register_scorer",
    "register_tagger",
    "row_label",
    "step_arguments",
]


@dataclass
class StepStats:
    """Counts over the rows one step object processed in this process."""

    rows: int = 0


@dataclass(frozen=True)
class Option:
    """A command-line option setting the ``__init__`` parameter ``param`` of a step.

    ``flag`` defaults to ``--param-name``. ``default=None`` leaves the step's own default;
    ``type``, ``choices``, ``action`` and ``help`` are ``argparse``'s. Steps that share a flag
    share one option (the first one added defines it).
    """

    param: str
    help: str = ""
    flag: str | None = None
    type: Callable[[str], Any] | None = None
    choices: tuple[Any, ...] | None = None
    action: str | None = None
    default: Any = None

    @property
    def option_flag(self) -> str:
        """The ``--flag``."""
        return self.flag or "--" + self.param.replace("_", "-")

    @property
    def dest(self) -> str:
        """The ``argparse`` destination of the flag."""
        return self.option_flag.lstrip("-").replace("-", "_")

    def add_to(self, parser: argparse.ArgumentParser, used_by: Sequence[str] = ()) -> None:
        """Add the flag to ``parser``; ``used_by`` names the steps it applies to (in the help)."""
        kwargs: dict[str, Any] = {"default": self.default}
        if self.action is not None:
            kwargs["action"] = self.action
        if self.type is not None:
            kwargs["type"] = self.type
        if self.choices is not None:
            kwargs["choices"] = list(self.choices)
        text = self.help + (f" ({', '.join(used_by)})" if used_by else "")
        parser.add_argument(self.option_flag, help=text or None, **kwargs)


class ConfigValue:
    """A read-only attribute of a step: the configuration value of the same name."""

    def __init__(self, doc: str = "") -> None:
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else obj._config[self.key]


def map_arguments(args: tuple[Any, ...], step: str = "") -> tuple[Sequence[int] | None, int | None]:
    """``(indices, rank)`` from the extra positional arguments ``Dataset.map`` passes a batched
    callable (``with_indices`` gives a list of row indices, ``with_rank`` an int or ``None``)."""
    if len(args) > 2:
        who = f"{step} takes" if step else "expected"
        raise TypeError(f"{who} (batch[, indices][, rank]), got {len(args) + 1} arguments")
    if len(args) == 2:
        return args[0], args[1]
    if len(args) == 1:
        value = args[0]
        if value is None or isinstance(value, int):
            return None, value
        return value, None
    return None, None


def row_label(pos: int, indices: Sequence[int] | None) -> str:
    """``row <dataset index>`` with indices, else the position and how to get dataset rows."""
    if indices is not None:
        return f"row {indices[pos]}"
    return f"row {pos} of the batch (map with with_indices=True for dataset row numbers)"


class MapStep:
    """Base of the annotation steps; see the module docstring.

    Subclasses keep their configuration in ``self._config`` and rebuild everything else from it
    in :meth:`_setup` (which also resets :attr:`stats`), and implement ``__call__``.
    """

    #: Registry name (set by :func:`register_tagger` / :func:`register_scorer`).
    name: ClassVar[str] = ""
    #: Counters of one object (a dataclass with defaults).
    Stats: ClassVar[type] = StepStats
    #: The step places its model by the worker rank of ``Dataset.map(with_rank=True)``.
    uses_rank: ClassVar[bool] = False
    #: ``__init__`` parameters the command line exposes.
    options: ClassVar[tuple[Option, ...]] = ()

    _config: dict[str, Any]
    stats: Any

    def _setup(self, config: dict[str, Any]) -> None:
        self._config = config
        self.stats = self.Stats()

    @property
    def config(self) -> dict[str, Any]:
        """The configuration (a copy)."""
        return dict(self._config)

    def _arguments(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The ``__init__`` arguments of this class in signature order, read from ``values``
        (the ``locals()`` of ``__init__``): the configuration is read from the signature, never
        written out by hand."""
        params = list(inspect.signature(type(self).__init__).parameters)[1:]
        return {name: values[name] for name in params if name in values}

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self._config.items())
        return f"{type(self).__name__}({items})"

    # ------------------------------------------------------------------ outputs and stats

    def output_types(self) -> dict[str, pa.DataType]:
        """Column name -> Arrow type of every column a call returns."""
        raise NotImplementedError

    def _typed(self, columns: Mapping[str, Sequence[Any]]) -> dict[str, TypedColumn]:
        """``columns`` as :class:`TypedColumn` of the types :meth:`output_types` names."""
        types = self.output_types()
        return {name: TypedColumn(values, types[name]) for name, values in columns.items()}

    def stats_summary(self) -> dict[str, int]:
        """:attr:`stats` as a plain dict."""
        return asdict(self.stats)

    def _messages(self, batch: Mapping[str, Sequence[Any]], indices: Sequence[int] | None) -> Any:
        """The batch's ``messages_column``; ``KeyError`` when it has none, ``ValueError`` when
        ``indices`` has another length."""
        column = self._config["messages_column"]
        if column not in batch:
            raise KeyError(
                f"{type(self).__name__}: the batch has no {column!r} column (columns: "
                f"{', '.join(map(repr, batch))}); convert with hf_mig.to_messages or set "
                "messages_column=..."
            )
        conversations = batch[column]
        row_numbers(len(conversations), indices)
        return conversations

    # ------------------------------------------------------------------ pickling / fingerprint

    def content_identity(self) -> dict[str, str]:
        """Content identities of the model files this step reads by name or path (``{}``: none).

        Pickled with the configuration as ``model_content``, so the ``datasets`` fingerprint
        changes when the weights do."""
        return {}

    def _state_config(self) -> dict[str, Any]:
        """The configuration as it is pickled (a copy), with ``model_content`` when
        :meth:`content_identity` names any."""
        config = dict(self._config)
        identity = self.content_identity()
        if identity:
            config["model_content"] = identity
        return config

    def __getstate__(self) -> dict[str, Any]:
        import hf_mig

        return {"config": self._state_config(), "hf_mig_version": hf_mig.__version__}

    def _restore_state(self, state: dict[str, Any]) -> None:
        config = dict(state["config"])
        config.pop("model_content", None)  # identified again where the model is loaded
        self._setup(config)

    def __setstate__(self, state: dict[str, Any]) -> None:
        import hf_mig

        if state.get("hf_mig_version") != hf_mig.__version__:
            logger.warning(
                "%s pickled by hf_mig %s is restored by hf_mig %s",
                type(self).__name__,
                state.get("hf_mig_version"),
                hf_mig.__version__,
            )
        self._restore_state(state)

    def __reduce__(self) -> tuple[Any, ...]:
        # Both pickling (num_proc workers) and datasets' fingerprint Hasher go through here.
        return (_restore, (type(self), self.__getstate__()))

    @property
    def fingerprint(self) -> str:
        """``datasets.fingerprint.Hasher.hash(self)``: the hash ``Dataset.map`` uses for this
        callable; it depends on the configuration and ``hf_mig.__version__`` only."""
        from datasets.fingerprint import Hasher

        return Hasher.hash(self)


class Tagger(MapStep):
    """Base of the taggers: they write labels (``list[str]``) per row."""

    #: The ``hf-mig tag --backend`` values that run this tagger (empty: its name); a tagger
    #: whose ``__init__`` takes ``backend`` gets the value given.
    backends: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def backend_names(cls) -> tuple[str, ...]:
        """The ``--backend`` values of this tagger."""
        return cls.backends or (cls.name,)


class Scorer(MapStep):
    """Base of the scorers: what ``hf-mig score``'s summary says of their columns."""

    #: Score columns the scorer writes; the first is the one summaries describe.
    score_columns: ClassVar[tuple[str, ...]] = ("score",)
    #: Prefix of the ``<prefix>_error`` / ``<prefix>_truncated`` columns (``None``: none).
    prefix: ClassVar[str | None] = None
    #: What the lowest score means (a score, never a failure) ...
    low_score_meaning: ClassVar[str | None] = None
    #: ... said of this score only (``None``: of whatever the lowest score is).
    low_score: ClassVar[float | None] = None


def _restore(cls: type, state: dict[str, Any]) -> Any:
    """Unpickle an instance of ``cls`` from its ``__getstate__`` output."""
    obj = cls.__new__(cls)
    obj.__setstate__(state)
    return obj


# --------------------------------------------------------------------------------------
# registries

#: Tagger name -> class (:func:`register_tagger`); :meth:`~Registry.load` imports the built-in ones.
TAGGERS = Registry("tagger", loader=lambda: importlib.import_module("hf_mig.annotate.taggers"))
#: Scorer name -> class (:func:`register_scorer`); :meth:`~Registry.load` imports the built-in ones.
SCORERS = Registry("scorer", loader=lambda: importlib.import_module("hf_mig.annotate.scorers"))


def register_tagger(name: str) -> Callable[[type], type]:
    """Class decorator adding a tagger to :data:`TAGGERS` under ``name``."""
    return TAGGERS.register(name)


def register_scorer(name: str) -> Callable[[type], type]:
    """Class decorator adding a scorer to :data:`SCORERS` under ``name``."""
    return SCORERS.register(name)


def get_tagger(name: str, **options: Any) -> MapStep:
    """Instantiate the tagger registered as ``name`` with its ``__init__`` options; an unknown
    name is a ``ValueError`` listing the registered ones."""
    return TAGGERS.lookup(name)(**options)


def get_scorer(name: str, **options: Any) -> MapStep:
    """Instantiate the scorer registered as ``name`` with its ``__init__`` options; an unknown
    name is a ``ValueError`` listing the registered ones."""
    return SCORERS.lookup(name)(**options)


def step_arguments(
    cls: type[MapStep],
    args: argparse.Namespace,
    given: Mapping[str, Callable[[], Any]],
    what: str = "",
) -> dict[str, Any]:
    """The ``__init__`` keyword arguments of ``cls`` from parsed command-line ``args``.

    ``given`` maps parameter names to functions computing their value (what the command
    derives itself), used for the parameters ``cls.__init__`` has; then each of
    :attr:`MapStep.options` whose flag was given (its value is not ``None``) sets its
    parameter. Raises ``ValueError`` (``"<what> needs --flag"``, ``what`` defaulting to the
    step's name) when a parameter without a default gets no value.
    """
    params = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = {}
    for param, value in given.items():
        if param in params:
            kwargs[param] = value()
    flags: dict[str, str] = {}
    for option in cls.options:
        flags[option.param] = option.option_flag
        value = getattr(args, option.dest, None)
        if value is not None and option.param not in kwargs:
            kwargs[option.param] = value
    for param in list(params.values())[1:]:
        required = param.default is inspect.Parameter.empty and param.kind not in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        )
        if required and param.name not in kwargs:
            flag = flags.get(param.name, "--" + param.name.replace("_", "-"))
            raise ValueError(f"{what or cls.name} needs {flag}")
    return kwargs


def add_step_options(parser: argparse.ArgumentParser, steps: Sequence[type[MapStep]]) -> None:
    """Add the :attr:`MapStep.options` of ``steps`` to ``parser``, each flag once (typed as its
    first step declares it); flags the parser already has are left as they are. A flag's help
    names the steps it applies to when it does not apply to all of them, and what it means to
    each when they word it differently."""
    users: dict[str, list[tuple[str, Option]]] = {}
    for cls in steps:
        for option in cls.options:
            users.setdefault(option.option_flag, []).append((cls.name, option))
    taken = set(parser._option_string_actions)
    for flag, used in users.items():
        if flag in taken:
            continue
        first = used[0][1]
        helps = {option.help for _, option in used}
        if len(helps) > 1:
            text = "; ".join(f"{name}: {option.help}" for name, option in used)
            Option(first.param, text, flag, first.type, first.choices, first.action).add_to(parser)
        else:
            names = [name for name, _ in used] if len(used) < len(steps) else []
            first.add_to(parser, names)
