"""A selection as a Hugging Face Hub dataset: its dataset card, and the upload.

The card (``README.md`` with YAML metadata the Hub reads, built with ``huggingface_hub``'s
:class:`~huggingface_hub.DatasetCard`) states where the selection came from and how to make it
again: the pool (source, rows, ``datasets`` fingerprint, SHA-256 of the pool file when it was
read from one), the method and its options, label coverage, unlabelled rows and scores
(:func:`hf_mig.core.summary.selection_summary`), budget and quotas, the hf-mig version, and the
``hf-mig select`` command line and/or Python call that reproduce it.

:func:`push_selection` uploads the subset with ``Dataset.push_to_hub`` (Parquet shards, the
``train`` split) and then replaces the repository's card with the selection card, keeping the
metadata ``datasets`` wrote (``configs``, ``dataset_info``). Tokens come only from the
environment or ``huggingface_hub``'s own login (``HF_TOKEN``, ``hf auth login``); they are never
printed, logged or written to a card. Every failure raises :class:`HubPushError` with one line
naming the repository and the cause.
"""

from __future__ import annotations

import ast
import inspect
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from hf_mig import __version__
from hf_mig.data.io import file_fingerprint

logger = logging.getLogger(__name__)

__all__ = [
    "CARD_SUFFIX",
    "HubPushError",
    "card_path",
    "check_repo_id",
    "hub_token",
    "init_arguments",
    "pool_identity",
    "push_selection",
    "push_selector_selection",
    "python_call",
    "selection_card",
    "selection_facts",
    "selector_options",
]

#: A selection written to ``OUT`` gets its card at ``OUT`` + this suffix (``subset.jsonl`` ->
#: ``subset.jsonl.README.md``; a dataset folder ``subset`` -> ``subset.README.md``): a sibling,
#: never a file inside a folder output, and distinct for every output name.
CARD_SUFFIX = ".README.md"
CARD_TAGS = ("hf-mig", "data-selection")
_SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
)
_LONG_VALUE = 200
_OBJECT_NOTE = (
    "Values written as `<...>` stand for objects or long values that are not spelled out: "
    "pass the same ones."
)


class HubPushError(RuntimeError):
    """Uploading a selection to the Hub failed.

    The message is one line naming the repository and the cause. ``subset`` holds the selected
    rows (a ``Dataset``) when the selection itself succeeded, so that nothing is lost.
    """

    def __init__(
        self,
        message: str,
        *,
        subset: Dataset | None = None,
        cause: BaseException | None = None,
    ):
        super().__init__(message)
        self.subset = subset
        #: the exception the upload raised (not chained: its text may hold what the server
        #: echoed, a token included)
        self.cause = cause


#: The heading of the JSON block of facts in a selection's dataset card.
FACTS_HEADING = "## Selection facts (JSON)"


# --------------------------------------------------------------------------------------
# checks that run before the work


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a valid Hub repository id (``name`` or ``namespace/name``), else a
    ``ValueError`` saying what is expected."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(repo_id, str) or not repo_id:
        raise ValueError(
            f"push_to_hub: expected a Hub dataset id such as 'user/name', got {repo_id!r}"
        )
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ValueError(
            f"push_to_hub: {repo_id!r} is not a Hub dataset id: expected 'name' or 'user/name' "
            "of letters, digits, '-', '_' and '.' (at most 96, no '--' or '..', not ending in "
            "'.git')"
        ) from None
    return repo_id


def hub_token(env_name: str | None) -> str | None:
    """The token in the environment variable ``env_name``; ``None`` when no name is given (then
    ``huggingface_hub`` finds the token itself: ``HF_TOKEN`` or ``hf auth login``).

    Raises ``ValueError`` (naming the variable, never its value) when the variable is not set or
    is empty.
    """
    if env_name is None:
        return None
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env_name or ""):
        raise ValueError(
            f"--token-env: expected the name of an environment variable, got {env_name!r}"
        )
    value = os.environ.get(env_name, "").strip()
    if not value:
        raise ValueError(
            f"--token-env {env_name}: that environment variable is not set or is empty; set it "
            "to a Hugging Face token with write access, or leave --token-env out to use HF_TOKEN "
            "or the login of 'hf auth login'"
        )
    return value


def card_path(out: str | os.PathLike) -> Path:
    """Where the card of a selection saved at ``out`` goes: ``out`` + :data:`CARD_SUFFIX`."""
    target = Path(out).expanduser()
    return target.with_name(target.name + CARD_SUFFIX)


# --------------------------------------------------------------------------------------
# what the card states


def pool_identity(pool: Dataset, source: str | os.PathLike | None = None) -> dict[str, Any]:
    """``source``, ``kind`` (``"file"``, ``"folder"``, ``"hub"`` or ``None``), ``rows``,
    ``fingerprint`` (``datasets``' ``_fingerprint``) and, for a local file, ``sha256`` of its
    bytes."""
    info: dict[str, Any] = {
        "source": None if source is None else os.fspath(source),
        "kind": None,
        "rows": len(pool),
        "fingerprint": getattr(pool, "_fingerprint", None),
    }
    if source is not None:
        path = Path(source).expanduser()
        if path.is_file():
            info["kind"] = "file"
            info["sha256"] = file_fingerprint(path, "sha256").partition(":")[2]
        elif path.is_dir():
            info["kind"] = "folder"
        else:
            try:
                info["kind"] = "hub" if check_repo_id(os.fspath(source)) else None
            except ValueError:
                pass
    return info


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [_json_safe(v) for v in items]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)


def _short(value: Any) -> Any:
    """A JSON-safe value, with a long collection replaced by ``"<list of N items>"``."""
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)) and len(value) > 20:
        return f"<{type(value).__name__} of {len(value)} items>"
    return _json_safe(value)


def init_arguments(selector: Any) -> dict[str, Any]:
    """The selector's ``__init__`` arguments (other than ``k``) that differ from their defaults,
    read with ``get_params()``: what re-creates it."""
    defaults = {
        name: param.default
        for name, param in inspect.signature(type(selector).__init__).parameters.items()
    }
    out: dict[str, Any] = {}
    for name, value in selector.get_params().items():
        if name == "k":
            continue
        default = defaults.get(name, inspect.Parameter.empty)
        try:
            same = default is not inspect.Parameter.empty and bool(value == default)
        except Exception:  # arrays and other values without a plain truth value
            same = False
        if not same:
            out[name] = value
    return out


def _k(selector: Any) -> int | None:
    """The selector's ``k`` as an ``int``, or ``None`` when it has none (a budget alone)."""
    k = getattr(selector, "k", None)
    return None if k is None else int(k)


def selector_options(selector: Any) -> dict[str, Any]:
    """Every option of ``selector`` (``get_params()``), JSON-ready, long collections summarised,
    with ``method`` and ``k``."""
    params = {"method": getattr(type(selector), "method_name", type(selector).__name__)}
    params.update((name, _short(value)) for name, value in selector.get_params().items())
    params.setdefault("k", _k(selector))
    return _json_safe(params)


def _literal(value: Any) -> str:
    """``repr(value)`` when it is a short Python literal, else ``<...>``."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, (set, frozenset)):
        value = sorted(value)
    text = repr(value)
    try:
        ok = ast.literal_eval(text) == value
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        ok = False
    if ok and len(text) <= _LONG_VALUE:
        return text
    if isinstance(value, (list, tuple)):
        return f"<{type(value).__name__} of {len(value)} items>"
    first = text.splitlines()[0] if text else type(value).__name__
    if len(first) > 80:
        first = first[:77] + "..."
    return f"<{first}>" if not first.startswith("<") else first


def python_call(selector: Any, *, pool_name: str = "pool") -> str:
    """The Python call that makes the same selection from ``pool_name``:
    ``hf_mig.select(pool, K, method=..., option=value, ...)`` for a registered method (options
    left at their defaults are omitted), else ``Class(K, ...).select(pool)``."""
    args = [f"{name}={_literal(value)}" for name, value in init_arguments(selector).items()]
    method = getattr(type(selector), "method_name", None)
    k = [] if _k(selector) is None else [str(_k(selector))]
    if method is None:
        inner = ", ".join([*k, *args])
        return f"{type(selector).__name__}({inner}).select({pool_name})"
    head = [pool_name, *k] + ([] if method == "mig" else [f"method={method!r}"])
    return f"hf_mig.select({', '.join(head + args)})"


def constraint_facts(
    selector: Any, pool: Dataset, indices: Sequence[int] | np.ndarray
) -> dict[str, Any] | None:
    """The token budget and quotas ``selector`` ran under and what the picks used of them, or
    ``None`` when it had neither (every row counted one towards ``k``)."""
    budget = getattr(selector, "budget", None)
    quotas = getattr(selector, "quotas", None)
    if budget is None and not quotas:
        return None
    from hf_mig.core.budget import total_cost
    from hf_mig.core.encoding import arrow_columns

    stats = dict(getattr(getattr(selector, "result_", None), "stats", None) or {})
    columns = [selector.cost_column] if budget is not None else []
    columns += [selector.quota_column] if quotas else []
    table = arrow_columns(pool, columns).take(np.asarray(indices, dtype=np.int64))
    out: dict[str, Any] = {}
    if budget is not None:
        costs = table.column(selector.cost_column).to_numpy()
        out.update(
            budget=budget,
            cost_column=selector.cost_column,
            cost_used=total_cost(costs),
            greedy=stats.get("strategy"),
        )
    if quotas:
        counts = table.column(selector.quota_column).value_counts().to_pylist()
        out.update(
            quota_column=selector.quota_column,
            quotas={str(name): list(bounds) for name, bounds in quotas.items()},
            picks_per_group={str(c["values"]): int(c["counts"]) for c in counts},
        )
    return out


def selection_facts(
    pool: Dataset,
    indices: Sequence[int] | np.ndarray,
    selector: Any,
    *,
    pool_info: Mapping[str, Any] | None = None,
    command: str | None = None,
    python: str | None = None,
    summary: Mapping[str, Any] | None = None,
    budget: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the card states, JSON-ready.

    ``pool``: the pool the selector ran on; ``indices``: the picks (positions in ``pool``);
    ``pool_info``: :func:`pool_identity` (default: of ``pool``, without a source);
    ``command``: the ``hf-mig select`` command line; ``python``: the Python call (default:
    :func:`python_call`); ``summary``: :func:`hf_mig.core.summary.selection_summary` (computed when
    omitted); ``budget``: the selection's budget and quotas (``None``: every row counts one
    towards ``k``, no quotas).

    Keys: ``hf_mig_version``, ``pool``, ``selection`` (``method``, ``k``, ``rows``,
    ``options``), ``summary``, ``label_graph`` (statistics, or ``None``), ``budget``,
    ``reproduce`` (``command``, ``python``).
    """
    from hf_mig.core.summary import selection_summary

    options = selector_options(selector)
    if summary is None:
        summary = selection_summary(
            pool,
            np.asarray(indices, dtype=np.int64),
            labels_column=getattr(selector, "labels_column", "labels"),
            score_column=getattr(selector, "score_column", "score"),
        )
    graph = getattr(selector, "label_graph_", None)
    graph_stats = None
    if graph is not None:
        graph_stats = {k: v for k, v in graph.stats().items() if k != "degree_histogram"}
    return _json_safe(
        {
            "hf_mig_version": __version__,
            "pool": dict(pool_info) if pool_info is not None else pool_identity(pool),
            "selection": {
                "method": options.get("method"),
                "k": _k(selector),
                "rows": len(indices),
                "options": options,
            },
            "summary": dict(summary),
            "label_graph": graph_stats,
            "budget": (
                constraint_facts(selector, pool, indices) if budget is None else dict(budget)
            ),
            "reproduce": {
                "command": command,
                "python": python if python is not None else python_call(selector),
            },
        }
    )


def _size_category(rows: int) -> str:
    for bound, name in _SIZE_CATEGORIES:
        if rows < bound:
            return name
    return "n>1B"


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def _value_rows(values: Mapping[str, Any]) -> list[str]:
    """One Markdown table row ``| name | `value` |`` per item of ``values``."""
    return [f"| {name} | {_cell(value)} |" for name, value in values.items()]


def _intro_lines(facts: Mapping[str, Any], title: str) -> list[str]:
    """The card's heading and the sentence saying what was selected from what."""
    pool, sel = facts["pool"], facts["selection"]
    source = pool.get("source")
    return [
        f"# {title}",
        "",
        f"{sel['rows']:,} rows selected from "
        + (f"`{source}`" if source else "a `datasets.Dataset`")
        + f" ({pool['rows']:,} rows) with the `{sel['method']}` method of "
        f"[hf-mig](https://pypi.org/project/hf-mig/) {facts['hf_mig_version']}.",
    ]


def _pool_lines(pool: Mapping[str, Any]) -> list[str]:
    """The ``## Pool`` section: source, rows, fingerprint and, for a file, its SHA-256."""
    source = pool.get("source")
    lines = [
        "",
        "## Pool",
        "",
        "| | |",
        "|---|---|",
        f"| source | {_cell(source) if source else 'a `datasets.Dataset` given in Python'} |",
        f"| rows | {pool['rows']:,} |",
        f"| `datasets` fingerprint | {_cell(pool.get('fingerprint'))} |",
    ]
    if pool.get("sha256"):
        lines.append(f"| SHA-256 of the pool file | {_cell(pool['sha256'])} |")
    return lines


def _options_lines(sel: Mapping[str, Any]) -> list[str]:
    """The ``## Method and options`` section: one table row per selector option."""
    header = ["", "## Method and options", "", "| option | value |", "|---|---|"]
    return [*header, *_value_rows(sel["options"])]


def _selection_table(
    sel: Mapping[str, Any], pool: Mapping[str, Any], summary: Mapping[str, Any]
) -> list[str]:
    """The ``## Selection`` heading and its table, selected beside pool: rows, and the labels
    and mean score where ``summary`` has them."""
    lines = ["", "## Selection", "", "| | selected | pool |", "|---|---|---|"]
    lines.append(f"| rows | {summary.get('selected_rows', sel['rows']):,} | {pool['rows']:,} |")
    if "pool_labels" in summary:
        lines.append(
            f"| distinct labels | {summary['selected_labels']:,} "
            f"({100 * summary['label_coverage']:.1f}% coverage) | {summary['pool_labels']:,} |"
        )
        lines.append(
            f"| rows without a label | {summary['selected_unlabelled_rows']:,} | "
            f"{summary['pool_unlabelled_rows']:,} |"
        )
    if "pool_mean_score" in summary:
        lines.append(
            f"| mean score | {summary['selected_mean_score']:.4g} | "
            f"{summary['pool_mean_score']:.4g} |"
        )
    return lines


def _selection_notes(summary: Mapping[str, Any], graph: Mapping[str, Any] | None) -> list[str]:
    """The paragraphs under the selection table: a score-collapse warning, the columns not
    summarised and why, the label graph's size."""
    lines: list[str] = []
    collapse = summary.get("score_collapse")
    if collapse:
        lines += [
            "",
            f"**Warning: the pool's scores have collapsed** ({collapse['reason']}): "
            f"{collapse['message']}.",
        ]
    for column, why in (summary.get("not_summarised") or {}).items():
        lines += ["", f"Column `{column}` not summarised: {why}."]
    if graph:
        lines += [
            "",
            f"Label graph: {graph.get('num_labels', '?')} labels, {graph.get('num_edges', '?')} "
            f"edges, {graph.get('isolated_labels', '?')} isolated"
            + (f", threshold {graph['threshold']}" if graph.get("threshold") is not None else "")
            + ".",
        ]
    return lines


def _budget_lines(budget: Mapping[str, Any] | None, k: int) -> list[str]:
    """The ``## Budget and quotas`` section: a table of ``budget``, or the sentence saying every
    row counted one towards ``k``."""
    lines = ["", "## Budget and quotas", ""]
    if budget:
        return [*lines, "| | |", "|---|---|", *_value_rows(budget)]
    return [*lines, f"None: every row counts one towards k = {k:,}; no per-label quotas."]


def _reproduce_lines(reproduce: Mapping[str, Any], source: str | None) -> list[str]:
    """The ``## Reproduce`` section's code blocks: the command line and the Python call (loading
    ``source`` first when the pool came from one), each when given."""
    lines = ["", "## Reproduce", ""]
    if reproduce.get("command"):
        lines += ["Command line:", "", "```bash", reproduce["command"], "```", ""]
    if reproduce.get("python"):
        call = reproduce["python"]
        lines += ["Python:", "", "```python", "import hf_mig", ""]
        if source:
            lines.append(f"pool = hf_mig.load_pool({source!r})  # prepared as the command does")
        lines += [f"subset = {call}", "```", ""]
        if "<" in call:
            lines += [_OBJECT_NOTE, ""]
    return lines


def _facts_lines(facts: Mapping[str, Any]) -> list[str]:
    """The closing determinism sentence and ``facts`` as a JSON block under
    :data:`FACTS_HEADING`."""
    return [
        "The same pool (same content: the SHA-256 above for a file) and the same options give "
        "the same rows in the same order.",
        "",
        FACTS_HEADING,
        "",
        "```json",
        json.dumps(facts, indent=2, sort_keys=True),
        "```",
        "",
    ]


def _card_body(facts: Mapping[str, Any], title: str) -> str:
    """The Markdown of a selection card under its YAML header: heading, pool, options,
    selection, budget, how to reproduce it, and ``facts`` as JSON."""
    pool, sel = facts["pool"], facts["selection"]
    summary = facts.get("summary") or {}
    lines = [
        *_intro_lines(facts, title),
        *_pool_lines(pool),
        *_options_lines(sel),
        *_selection_table(sel, pool, summary),
        *_selection_notes(summary, facts.get("label_graph")),
        *_budget_lines(facts.get("budget"), sel["k"]),
        *_reproduce_lines(facts.get("reproduce") or {}, pool.get("source")),
        *_facts_lines(facts),
    ]
    return "\n".join(lines)


def selection_card(facts: Mapping[str, Any], *, title: str | None = None, token: str | None = None):
    """The dataset card (a ``huggingface_hub.DatasetCard``) stating ``facts``
    (:func:`selection_facts`); its YAML metadata holds ``pretty_name``, ``size_categories``,
    ``tags`` and, for a pool from the Hub, ``source_datasets``.

    Hub tokens never reach the card: ``token`` and the token ``huggingface_hub`` would use
    (``HF_TOKEN``, the stored login) are replaced by ``***`` wherever they appear (e.g. in a
    command line)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    sel = facts["selection"]
    pool = facts["pool"]
    title = title or f"{sel['method']} selection of {sel['rows']:,} rows"
    data = DatasetCardData(
        pretty_name=title,
        size_categories=[_size_category(int(sel["rows"]))],
        source_datasets=[pool["source"]] if pool.get("kind") == "hub" else None,
        tags=[*CARD_TAGS, str(sel["method"])],
    )
    text = f"---\n{data.to_yaml()}\n---\n\n{_card_body(facts, title)}"
    for secret in _secrets(token):
        text = text.replace(secret, "***")
    return DatasetCard(text)


# --------------------------------------------------------------------------------------
# the upload


def _secrets(token: str | None) -> list[str]:
    found = [token] if token else []
    try:
        from huggingface_hub import get_token

        stored = get_token()
    except Exception:  # no login, unreadable token file: nothing to hide
        stored = None
    if stored:
        found.append(stored)
    return [s for s in found if len(s) >= 4]


def _one_line(err: BaseException, secrets: Sequence[str]) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    for secret in secrets:
        text = text.replace(secret, "***")
    if len(text) > 400:
        text = text[:397] + "..."
    return f"{type(err).__name__}: {text}"


def _merge_card(ours, generated):
    """``ours`` with the metadata ``datasets`` wrote (``configs``, ``dataset_info``, ...) kept
    wherever ``ours`` does not set the key."""
    from huggingface_hub import DatasetCard, DatasetCardData

    data = generated.data.to_dict()
    data.update({k: v for k, v in ours.data.to_dict().items() if v is not None})
    return DatasetCard(f"---\n{DatasetCardData(**data).to_yaml()}\n---\n{ours.text}")


def push_selection(
    subset: Dataset,
    repo_id: str,
    card,
    *,
    private: bool | None = None,
    token: str | None = None,
    overwrite: bool = False,
) -> str:
    """Upload ``subset`` as the ``train`` split of the Hub dataset ``repo_id`` with ``card`` as
    its README; return the dataset's URL.

    An existing repository is refused unless ``overwrite`` (then its ``train`` split and card
    are replaced, other files kept). ``private`` applies to a repository this call creates.
    ``token``: ``None`` lets ``huggingface_hub`` find one (``HF_TOKEN``, ``hf auth login``).
    Raises :class:`HubPushError` (one line: the repository and the cause, tokens masked) when
    offline (``HF_HUB_OFFLINE``), when the Hub cannot be reached or refuses, or when the
    repository exists and ``overwrite`` is off.
    """
    from huggingface_hub import DatasetCard, HfApi, constants

    check_repo_id(repo_id)
    where = f"push to the Hub dataset {repo_id!r} failed"
    if constants.HF_HUB_OFFLINE:
        raise HubPushError(
            f"{where}: offline mode is on (HF_HUB_OFFLINE is set); unset it to upload"
        )
    secrets = _secrets(token)
    api = HfApi(token=token)
    try:
        if api.repo_exists(repo_id, repo_type="dataset") and not overwrite:
            raise HubPushError(
                f"{where}: the dataset repository exists; pass --overwrite (overwrite=True) to "
                "replace its train split and card, or choose a new name"
            )
        commit = subset.push_to_hub(
            repo_id,
            private=private,
            token=token,
            commit_message=f"hf-mig: selection of {len(subset):,} rows",
        )
        readme = api.hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=commit.oid)
        generated = DatasetCard(Path(readme).read_text(encoding="utf-8"))
        _merge_card(card, generated).push_to_hub(
            repo_id,
            repo_type="dataset",
            token=token,
            commit_message="hf-mig: selection card",
            parent_commit=commit.oid,
        )
    except HubPushError:
        raise
    except Exception as err:
        raise HubPushError(f"{where}: {_one_line(err, secrets)}", cause=err) from None
    url = f"{constants.ENDPOINT.rstrip('/')}/datasets/{repo_id}"
    logger.info("pushed %d rows and the selection card to %s", len(subset), url)
    return url


def push_selector_selection(
    selector: Any,
    pool: Dataset,
    indices: Sequence[int] | np.ndarray,
    subset: Dataset,
    repo_id: str,
    *,
    private: bool | None = None,
    overwrite: bool = False,
) -> str:
    """Card and upload for a selection made in Python (``selector.select(pool,
    push_to_hub=...)``); the card's reproduce section is :func:`python_call`. A failed upload
    raises :class:`HubPushError` with ``subset`` attached."""
    facts = selection_facts(pool, indices, selector, pool_info=pool_identity(pool))
    card = selection_card(facts)  # the token of HF_TOKEN / the login is masked
    try:
        return push_selection(subset, repo_id, card, private=private, overwrite=overwrite)
    except HubPushError as err:
        err.subset = subset
        raise
