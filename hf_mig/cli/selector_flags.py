"""Command-line flags for the selectors' options, read from their ``__init__`` signatures.

Every keyword parameter of a registered selector (:data:`hf_mig.selectors.SELECTORS`) becomes
one flag: ``--phi-a`` for ``phi_a``, ``--no-graph-cache`` for a boolean that defaults to
``True``, ``--record-gains`` for one that defaults to ``False``. The value type comes from the
annotation (``Literal[...]`` gives the choices; mixed types are read as JSON, else text), the
default from the default method's signature, else the value every method taking the option
agrees on, else ``None`` (each method keeps its own). A selector is given only the options it
takes whose value differs from the flag's default (:func:`selector_options`), so an unset flag
always leaves the method's own default.
"""

from __future__ import annotations

import argparse
import inspect
import typing
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hf_mig.cli.options import parse_value
from hf_mig.core.greedy import ENGINES, GAIN_KINDS
from hf_mig.core.objective import PHI_KINDS

#: Parameters that are never flags: ``k`` has its own (``--num``), ``progress`` is for Python.
NOT_FLAGS = ("k", "progress")
#: The method whose signature sets the flags' defaults and order.
DEFAULT_METHOD = "mig"
#: Keeps, on the parsed arguments, ``{dest: default}`` of every selector option the parser has.
DEFAULTS_DEST = "selector_defaults"

#: Choices of the options annotated as plain text (``Literal`` annotations give their own).
CHOICES = {"phi": PHI_KINDS, "gain": GAIN_KINDS, "engine": ENGINES}

_SCALARS = (bool, int, float, str)


@dataclass(frozen=True)
class SelectorFlag:
    """One selector option as a flag: ``name`` (the parameter and the dest), the ``methods``
    taking it, its ``default``, value ``kind`` (``None``: JSON, else text) and ``choices``."""

    name: str
    methods: tuple[str, ...]
    default: Any
    kind: type | None
    choices: tuple[Any, ...] | None = None

    @property
    def option(self) -> str:
        """The flag: ``--name-with-dashes``, or ``--no-...`` for a boolean defaulting to True."""
        dashed = self.name.replace("_", "-")
        return f"--no-{dashed}" if self.kind is bool and self.default is True else f"--{dashed}"


def _parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword parameters of ``cls.__init__`` that can be flags."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: p for p in params if p.kind in kinds and p.name not in NOT_FLAGS}


def _kind(hint: Any, default: Any) -> tuple[type | None, tuple[Any, ...] | None]:
    """Value type and choices of an annotation (``X | None`` counts as ``X``)."""
    if typing.get_origin(hint) is typing.Literal:
        values = typing.get_args(hint)
        return type(values[0]), values
    members = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    if len(members) == 1 and typing.get_origin(members[0]) is typing.Literal:
        return _kind(members[0], default)
    if len(members) == 1 and members[0] in _SCALARS:
        return members[0], None
    if hint is inspect.Parameter.empty and isinstance(default, _SCALARS):
        return type(default), None
    return None, None


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation that does not resolve: typed from the default instead
        return {}


def selector_flags(methods: Mapping[str, type] | None = None) -> list[SelectorFlag]:
    """The flags of every option of ``methods`` (default: the registered selectors), the
    default method's first in signature order, then the others' by method name."""
    if methods is None:
        from hf_mig.selectors import SELECTORS

        methods = SELECTORS
    order = sorted(methods, key=lambda name: (name != DEFAULT_METHOD, name))
    seen: dict[str, list[tuple[str, inspect.Parameter, Any]]] = {}
    for method in order:
        hints = _hints(methods[method])
        for name, param in _parameters(methods[method]).items():
            seen.setdefault(name, []).append((method, param, hints.get(name, param.annotation)))
    flags = []
    for name, found in seen.items():
        first_method, first, hint = found[0]
        defaults = {repr(param.default) for _, param, _ in found}
        if first_method == DEFAULT_METHOD or len(defaults) == 1:
            default = first.default
        else:
            default = None
        kind, choices = _kind(hint, first.default)
        choices = CHOICES.get(name, choices)
        flags.append(SelectorFlag(name, tuple(m for m, _, _ in found), default, kind, choices))
    return flags


def _help(flag: SelectorFlag) -> str:
    methods = ", ".join(flag.methods)
    if flag.kind is bool:
        return f"{methods}: {flag.name}={flag.default is not True}"
    shown = "the method's own" if flag.default is None else flag.default
    return f"{methods}: {flag.name} (default: {shown})"


def add_selector_arguments(
    parser: argparse.ArgumentParser | Any,
    flags: Sequence[SelectorFlag],
    *,
    only: Sequence[str] | None = None,
    skip: Collection[str] = (),
    help: Mapping[str, str] | None = None,
    choices: Mapping[str, Sequence[Any]] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """Add one argument per flag to ``parser`` (a parser or an argument group).

    ``only``: these options, in this order (default: every flag); ``skip``: options the command
    reads another way; options whose dest ``parser`` already has are skipped too. ``help``,
    ``choices`` and ``defaults`` replace the generated ones per option.
    """
    help, choices, defaults = dict(help or {}), dict(choices or {}), dict(defaults or {})
    by_name = {flag.name: flag for flag in flags}
    names = list(only) if only is not None else list(by_name)
    taken = {action.dest for action in parser._actions}
    for name in names:
        if name in skip or name in taken:
            continue
        flag = by_name[name]
        default = defaults.get(name, flag.default)
        text = help.get(name, _help(flag))
        if flag.kind is bool:
            action = "store_false" if flag.default is True else "store_true"
            parser.add_argument(flag.option, dest=name, action=action, help=text)
            continue
        parser.add_argument(
            flag.option,
            dest=name,
            type=None if flag.kind is str else flag.kind or parse_value,
            default=default,
            choices=list(choices.get(name, flag.choices or ())) or None,
            help=text,
        )


def remember_defaults(parser: argparse.ArgumentParser, flags: Sequence[SelectorFlag]) -> None:
    """Keep, on the parsed arguments, the defaults of the selector options ``parser`` has."""
    names = {flag.name for flag in flags}
    found = {a.dest: a.default for a in parser._actions if a.dest in names}
    parser.set_defaults(**{DEFAULTS_DEST: found})


def method_parameters(method: str) -> list[str]:
    """The options ``method``'s selector takes, in signature order (none for an unknown
    method)."""
    from hf_mig.selectors import SELECTORS

    cls = SELECTORS.get(method)
    return list(_parameters(cls)) if cls is not None else []


def selector_options(
    args: argparse.Namespace, method: str, given: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The options of ``method``'s selector set on the command line.

    An option goes in when ``method`` takes it and its value differs from the flag's default
    (kept by :func:`remember_defaults`); ``given`` holds options the command read another way
    (a loaded label graph, a vocabulary), which go in when ``method`` takes them and they are
    not ``None``. An unknown method gets ``{}`` (``get_selector`` names the known ones).
    """
    defaults = getattr(args, DEFAULTS_DEST, {})
    given = dict(given or {})
    options: dict[str, Any] = {}
    for name in method_parameters(method):
        if name in given:
            if given[name] is not None:
                options[name] = given[name]
        elif name in defaults and getattr(args, name) != defaults[name]:
            options[name] = getattr(args, name)
    return options


def flags_not_taken(
    args: argparse.Namespace, method: str, skip: Collection[str] = ()
) -> list[SelectorFlag]:
    """The selector flags set on the command line (value not the default) that ``method``'s
    selector does not take, in parser order; ``skip``: options the command reads itself
    whatever the method (how the pool is read)."""
    defaults = getattr(args, DEFAULTS_DEST, {})
    taken = set(method_parameters(method)) | set(skip)
    flags = {flag.name: flag for flag in selector_flags()}
    return [
        flags[name]
        for name, default in defaults.items()
        if name in flags and name not in taken and getattr(args, name, default) != default
    ]
