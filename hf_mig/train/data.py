"""Training data for a recipe: a ready subset, or a pool + a selection computed once and cached.

:func:`load_training_data` turns a :class:`~hf_mig.train.config.DataConfig` into the datasets a
trainer needs. With a pool and a selection spec:

1. the pool is loaded (:func:`hf_mig.load_pool`) and brought to the ``labels`` / ``score`` shape
   (:func:`hf_mig.prepare_pool`);
2. the cache key is computed from the *pool fingerprint* (SHA-256 of the pool file's bytes, or of
   a saved dataset folder's files, read at every run: a pool rewritten in place is a new pool,
   whatever its size and modification time; the ``datasets`` fingerprint for a Hub dataset)
   and the *spec*
   (method, k, options with every file option replaced by the SHA-256 of its content, the
   token budget and quotas among them, pool format, vocabulary, columns, hf-mig version; a
   label graph or array option enters by the hash of its content):
   ``<cache_dir>/<key>/`` holds ``indices.npy``, ``manifest.json`` and ``spec.json``. An option
   whose content cannot be hashed (a function, an embedder object) leaves the selection
   uncached: it is computed, the reason is logged (``selection cache not used``), nothing is
   read from or written to the cache;
3. on a miss the selector runs and the folder is written atomically (temporary folder + rename);
   on a hit the indices are read back and the selector is not called (logged as ``selection
   cache hit``). Either way the manifest names the pool and options of *this* run, and
   ``selection_cache`` (key, hit) says whether the selection was reused. A selection made with
   a budget or quotas has them in the manifest's ``budget``
   (:func:`hf_mig.data.hub.constraint_facts`: the budget, the cost column and the cost of the
   picks; the quotas, their column and the picks per group), else ``None``.

In multi-process runs the whole step runs on the global main process first (``accelerate``'s
``main_process_first``); the other ranks wait, then find the cache (on a shared file system) and
reuse it. The log says which happened on which rank (``selection computed`` /
``selection cache hit``).

Conversations are normalised to OpenAI ``messages`` with :func:`hf_mig.to_messages` (errors name
the *pool* row). Rows without an assistant turn cannot train anything under assistant-only loss;
they are dropped and counted (warning + manifest), never silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hf_mig import __version__
from hf_mig.core.config import cache_root
from hf_mig.data.atomic import rename_or_keep, temporary_folder
from hf_mig.data.io import file_fingerprint
from hf_mig.train.config import PATH_OPTIONS, DataConfig

logger = logging.getLogger(__name__)

__all__ = [
    "BUNDLED_VOCABULARY",
    "TrainingData",
    "UncacheableOptionError",
    "file_fingerprint",
    "load_prepared_pool",
    "load_training_data",
    "pool_fingerprint",
    "selection_key",
    "selection_spec",
    "selections_dir",
]


@dataclass
class TrainingData:
    """What :func:`load_training_data` returns.

    ``train`` / ``eval``: datasets with one column, ``messages`` (what ``SFTTrainer`` gets).
    ``train_rows`` / ``eval_rows``: the same rows with the labels column, ``pool_index`` and the
    config's ``keep_columns`` kept (for the callbacks). ``manifest``: the selection manifest.
    ``cache_path`` / ``cache_hit``: the selection's cache folder and whether it was reused
    (``None`` for a ready subset; ``cache_path`` ``None`` and ``cache_hit`` ``False`` for a
    selection not cached because an option's content cannot be hashed).
    """

    train: Any
    eval: Any
    train_rows: Any
    eval_rows: Any
    manifest: dict[str, Any]
    cache_path: Path | None = None
    cache_hit: bool | None = None


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def selections_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` or ``$HF_MIG_CACHE/selections`` (default ``~/.cache/hf_mig/selections``)."""
    return Path(cache_dir).expanduser() if cache_dir else cache_root() / "selections"


def pool_fingerprint(source: str, dataset: Any) -> str:
    """SHA-256 fingerprint of a local pool file/folder's content (:func:`file_fingerprint`);
    ``datasets:<fingerprint>`` of the loaded dataset for a Hub dataset."""
    path = Path(source).expanduser()
    if path.exists():
        return file_fingerprint(path)
    return f"datasets:{getattr(dataset, '_fingerprint', None)}"


class UncacheableOptionError(TypeError):
    """A selection option has a value whose content cannot be hashed into the cache key (a
    function, an embedder object, ...): the selection is then computed and not cached."""


def _array_digest(array: np.ndarray) -> dict[str, str]:
    head = json.dumps([array.dtype.str, list(array.shape)]).encode()
    data = np.ascontiguousarray(array).tobytes()
    return {"array_sha256": hashlib.sha256(head + b"\0" + data).hexdigest()}


def _describe_option(key: str, value: Any) -> Any:
    """``value`` as JSON that changes whenever its content does: files by the SHA-256 of their
    bytes, a label graph by :meth:`~hf_mig.annotate.graph.LabelGraph.fingerprint`, arrays by
    the SHA-256 of their dtype, shape and values, sets sorted. Any other object raises
    :class:`UncacheableOptionError` naming ``key``."""
    from hf_mig.annotate.graph import LabelGraph

    if isinstance(value, (str, os.PathLike)) and key in PATH_OPTIONS:
        p = Path(value).expanduser()
        if p.exists():
            return {"file_sha256": file_fingerprint(p)}
    if isinstance(value, LabelGraph):
        return {"label_graph": value.fingerprint()}
    if isinstance(value, Mapping):
        return {str(k): _describe_option(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_describe_option(key, v) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [_describe_option(key, v) for v in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufcSU":
        return _array_digest(value)
    if isinstance(value, np.generic) and value.dtype.kind in "biufU":
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise UncacheableOptionError(
        f"selection option {key!r} is a {type(value).__name__} ({value!r:.80}), whose content "
        "cannot be part of the selection cache key; pass a file path, a LabelGraph, an array "
        "or plain values to have the selection cached"
    )


#: ``data.vocabulary`` value naming the InsTag vocabulary shipped with hf-mig (4,531 tags).
BUNDLED_VOCABULARY = "hf-mig:instag"


def _vocabulary_file(name: str) -> Path:
    from hf_mig.data.resources import bundled_path, is_bundled_id

    return bundled_path(name) if is_bundled_id(name) else Path(name)


def _load_vocabulary(name: str | None) -> list[str] | None:
    """``data.vocabulary``'s labels (:func:`hf_mig.data.resources.load_vocabulary`; the bundled
    id ``hf-mig:instag`` included), or ``None`` when it is not set."""
    from hf_mig.data.resources import load_vocabulary

    return load_vocabulary(name) if name else None


def selection_spec(config: DataConfig) -> dict[str, Any]:
    """The JSON-ready spec that, with the pool fingerprint, keys the selection cache.

    File-valued options (``label_graph``, ``vocabulary``, ...) and ``data.vocabulary`` enter by
    content hash, not by path, so moving a file keeps the cache and editing it invalidates it;
    a :class:`~hf_mig.annotate.graph.LabelGraph` or an array option enters by the hash of its
    content. An option whose content cannot be hashed (a function, an embedder object) raises
    :class:`UncacheableOptionError` naming it.
    """
    sel = config.selection
    if sel is None:
        raise ValueError("selection_spec needs a data config with a selection")
    vocabulary = None
    if config.vocabulary:
        vocabulary = {"file_sha256": file_fingerprint(_vocabulary_file(config.vocabulary))}
    return {
        "method": sel.method,
        "k": None if sel.k is None else int(sel.k),
        "options": {str(k): _describe_option(str(k), v) for k, v in sorted(sel.options.items())},
        "split": config.split,
        "pool_format": config.pool_format,
        "score_reduce": config.score_reduce,
        "labels_column": config.labels_column,
        "score_column": config.score_column,
        "vocabulary": vocabulary,
        "skip_bad_lines": config.skip_bad_lines,
        "hf_mig_version": __version__,
    }


def selection_key(fingerprint: str, spec: Mapping[str, Any]) -> str:
    """24 hex digits of SHA-256 over the pool fingerprint and the canonical JSON of ``spec``."""
    payload = json.dumps({"pool": fingerprint, "spec": spec}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _selector_options(config: DataConfig, vocabulary: list[str] | None) -> dict[str, Any]:
    from hf_mig.selectors import SELECTORS

    sel = config.selection
    assert sel is not None
    cls = SELECTORS.get(sel.method)
    if cls is None:
        raise ValueError(
            f"unknown selection method {sel.method!r}; available: {', '.join(sorted(SELECTORS))}"
        )
    accepted = inspect.signature(cls.__init__).parameters
    options = dict(sel.options)
    defaults = {
        "labels_column": config.labels_column,
        "score_column": config.score_column,
        "vocabulary": vocabulary,
    }
    for key, value in defaults.items():
        if key in accepted and key not in options and value is not None:
            options[key] = value
    return options


def _load_cached(
    folder: Path, k: int | None, pool_rows: int, *, budgeted: bool = False
) -> tuple[np.ndarray, dict] | None:
    """The cached indices and manifest, when they fit this pool: ``k`` distinct rows (between 1
    and ``k``, or the pool's rows when ``k`` is ``None``, when ``budgeted``: a budget may stop
    the picks early) and, when the manifest records it, the SHA-256 of the indices."""
    try:
        indices = np.load(folder / "indices.npy", allow_pickle=False)
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    most = pool_rows if k is None else k
    sized = 0 < len(indices) <= most if budgeted else len(indices) == k
    ok = indices.ndim == 1 and sized and (not len(indices) or indices.max() < pool_rows)
    recorded = manifest.get("indices_sha256") if isinstance(manifest, dict) else None
    if ok and recorded is not None:
        ok = hashlib.sha256(indices.astype(np.int64).tobytes()).hexdigest() == recorded
    if not ok:
        logger.warning("selection cache %s does not match this pool; recomputing", folder)
        return None
    return indices.astype(np.int64), manifest


def _write_cache(folder: Path, indices: np.ndarray, manifest: dict, spec: dict) -> None:
    """Write the cached selection once; a folder another process completed first is kept."""
    with temporary_folder(folder) as tmp:
        np.save(tmp / "indices.npy", np.asarray(indices, dtype=np.int64), allow_pickle=False)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        (tmp / "spec.json").write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        rename_or_keep(tmp, folder, lambda f: (f / "indices.npy").is_file())


def _this_run(
    manifest: Mapping[str, Any], config: DataConfig, fingerprint: str, rows: int, hit: bool
) -> dict[str, Any]:
    """The cached selection manifest with the pool and options of this run.

    The cache is keyed by content, so a hit may come from a run that read the same bytes under
    another path or with file options at other paths: the manifest (and the model card made
    from it) names what this run was given, and ``selection_cache`` says whether it was reused.
    """
    from hf_mig.train.callbacks import _json_safe

    sel = config.selection
    assert sel is not None
    out = json.loads(json.dumps(manifest))
    pool = dict(out.get("pool") or {})
    pool.update(source=config.pool, fingerprint=fingerprint, rows=rows)
    out["pool"] = pool
    out["selection"] = {**(out.get("selection") or {}), "options": _json_safe(dict(sel.options))}
    out["selection_cache"] = {"key": out.get("cache_key"), "hit": hit}
    return out


def _check_columns(rows: Any, config: DataConfig) -> None:
    """Refuse, before any selection or training, ``keep_columns`` the rows do not have."""
    missing = [c for c in config.keep_columns if c not in rows.column_names]
    if missing:
        source = config.pool or config.dataset
        raise ValueError(
            f"{source}: the rows have no column(s) {missing} (columns: {rows.column_names})"
        )


def load_prepared_pool(
    config: DataConfig, *, num_proc: int | None = None, strict: bool = True
) -> tuple[Any, Any, list[str] | None]:
    """Load ``config.pool`` and bring it to the labels / score shape; only the
    :data:`~hf_mig.train.config.POOL_FIELDS` of ``config`` are read.

    The vocabulary is read first (``config.vocabulary``: a labels file or ``hf-mig:instag``), then
    the pool (:func:`hf_mig.data.io.load_pool` with ``split`` and ``skip_bad_lines``), which
    :func:`hf_mig.data.pool.prepare_pool` prepares (``pool_format``, the vocabulary's labels,
    ``score_reduce``, the columns, ``num_proc``, ``strict``). Returns ``(raw, pool, vocabulary)``:
    the pool as loaded (what its fingerprint and identity are read from), the prepared pool and
    the vocabulary's labels (``None`` when ``config.vocabulary`` is not set).
    """
    from hf_mig.data.io import load_pool
    from hf_mig.data.pool import prepare_pool

    if config.pool is None:
        raise ValueError("load_prepared_pool needs a data config with a pool")
    vocabulary = _load_vocabulary(config.vocabulary)
    raw = load_pool(config.pool, split=config.split, skip_bad_lines=config.skip_bad_lines)
    pool = prepare_pool(
        raw,
        config.pool_format,
        vocabulary=vocabulary,
        reduce=config.score_reduce,
        labels_column=config.labels_column,
        score_column=config.score_column,
        num_proc=num_proc,
        strict=strict,
    )
    return raw, pool, vocabulary


def _cache_entry(
    config: DataConfig, fingerprint: str
) -> tuple[dict[str, Any], Path] | tuple[None, None]:
    """The spec and cache folder of this selection, or ``(None, None)`` when an option's
    content cannot be hashed (logged: the selection is then computed and not cached)."""
    try:
        spec = selection_spec(config)
    except UncacheableOptionError as err:
        logger.warning("selection cache not used: %s [rank %d]", err, _rank())
        return None, None
    return spec, selections_dir(config.cache_dir) / selection_key(fingerprint, spec)


def _select(config: DataConfig) -> tuple[Any, np.ndarray, dict, Path | None, bool]:
    """Load and prepare the pool; return (prepared pool, indices, manifest, folder, hit);
    ``folder`` is ``None`` when the selection is not cached (:func:`_cache_entry`)."""
    from hf_mig.data.hub import constraint_facts
    from hf_mig.selectors import get_selector
    from hf_mig.train.callbacks import build_selection_manifest

    sel = config.selection
    assert sel is not None and config.pool is not None
    raw, pool, vocabulary = load_prepared_pool(config)
    _check_columns(pool, config)
    fingerprint = pool_fingerprint(config.pool, raw)
    spec, folder = _cache_entry(config, fingerprint)
    budgeted = sel.options.get("budget") is not None
    cached = None
    if folder is not None and folder.is_dir():
        cached = _load_cached(folder, sel.k, len(pool), budgeted=budgeted)
    if cached is not None:
        indices, manifest = cached
        logger.info(
            "selection cache hit: reusing %s (%s, k=%s; pool %s, %s) [rank %d]",
            folder,
            sel.method,
            sel.k,
            config.pool,
            fingerprint,
            _rank(),
        )
        manifest = _this_run(manifest, config, fingerprint, len(pool), True)
        return pool, indices, manifest, folder, True
    start = time.perf_counter()
    selector = get_selector(sel.method, sel.k, **_selector_options(config, vocabulary))
    indices = np.asarray(selector.select_indices(pool), dtype=np.int64)
    seconds = time.perf_counter() - start
    manifest = build_selection_manifest(
        pool,
        pool.select(indices),
        method=sel.method,
        k=sel.k,
        options=sel.options,
        selector=selector,
        pool_source=config.pool,
        pool_fingerprint=fingerprint,
        labels_column=config.labels_column,
        score_column=config.score_column,
        extra={
            "cache_key": None if folder is None else folder.name,
            "selection_seconds": round(seconds, 3),
            "indices_sha256": hashlib.sha256(indices.tobytes()).hexdigest(),
            "pool_format": config.pool_format,
            "budget": constraint_facts(selector, pool, indices),
        },
    )
    if folder is not None and spec is not None:
        _write_cache(folder, indices, manifest, spec)
    manifest = _this_run(manifest, config, fingerprint, len(pool), False)
    logger.info(
        "selection computed: %s k=%s of %d rows in %.1f s -> %s [rank %d]",
        sel.method,
        sel.k,
        len(pool),
        seconds,
        "not cached" if folder is None else folder,
        _rank(),
    )
    return pool, indices, manifest, folder, False


def _normalise(rows: Any, shape: str, pool_index: list[int]) -> Any:
    """Add ``messages`` (via :func:`hf_mig.to_messages`; errors name the pool row)."""
    from hf_mig.data.formats import to_messages

    def convert(batch: dict, idx: list[int]) -> dict:
        return to_messages(batch, [pool_index[i] for i in idx], shape=shape)

    return rows.map(
        convert, batched=True, with_indices=True, desc="Normalising conversations to messages"
    )


def _keep_trainable(rows: Any, what: str) -> tuple[Any, int]:
    before = len(rows)
    rows = rows.filter(
        lambda messages: any(m["role"] == "assistant" for m in messages),
        input_columns="messages",
        desc="Dropping rows without an assistant turn",
    )
    dropped = before - len(rows)
    if dropped:
        logger.warning("%s: dropped %d of %d rows without an assistant turn", what, dropped, before)
    return rows, dropped


@contextlib.contextmanager
def _main_first() -> Iterator[None]:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield
        return
    from accelerate import PartialState

    with PartialState().main_process_first():
        yield


def load_training_data(config: DataConfig) -> TrainingData:
    """Load (and select) the training rows described by ``config``; see the module docstring.

    Raises ``ValueError`` for an invalid config, an unknown method, an eval split larger than the
    data, or conversations that cannot be normalised (naming the pool row and the field).
    """
    from hf_mig.core.summary import selection_summary
    from hf_mig.data.io import load_pool

    config.validate()
    with _main_first():
        if config.selection is not None:
            pool, indices, manifest, folder, hit = _select(config)
            rows = pool.select(indices)
            pool_index = [int(i) for i in indices]
        else:
            assert config.dataset is not None
            rows = load_pool(
                config.dataset, split=config.split, skip_bad_lines=config.skip_bad_lines
            )
            _check_columns(rows, config)
            pool_index = list(range(len(rows)))
            manifest = {
                "hf_mig_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "pool": None,
                "dataset": {
                    "source": config.dataset,
                    "fingerprint": pool_fingerprint(config.dataset, rows),
                    "rows": len(rows),
                },
                "selection": None,
                "label_graph": None,
            }
            if config.labels_column in rows.column_names:
                manifest["coverage"] = selection_summary(
                    rows,
                    rows,
                    labels_column=config.labels_column,
                    score_column=config.score_column,
                )
            folder, hit = None, None
        if "pool_index" not in rows.column_names:
            rows = rows.add_column("pool_index", pool_index)
        rows = _normalise(rows, config.shape, pool_index)
        rows, dropped = _keep_trainable(rows, "training data")

        eval_rows = None
        if config.eval_size:
            if config.eval_size >= len(rows):
                raise ValueError(
                    f"data.eval_size = {config.eval_size} leaves no training rows "
                    f"({len(rows)} rows)"
                )
            split = rows.train_test_split(test_size=config.eval_size, seed=config.seed)
            rows, eval_rows = split["train"], split["test"]
        elif config.eval_dataset:
            eval_raw = load_pool(config.eval_dataset, split=config.eval_split)
            eval_raw = eval_raw.add_column("pool_index", list(range(len(eval_raw))))
            eval_rows = _normalise(eval_raw, config.shape, list(range(len(eval_raw))))
            eval_rows, _ = _keep_trainable(eval_rows, "evaluation data")

    manifest = dict(manifest)
    manifest["training_rows"] = len(rows)
    manifest["eval_rows"] = 0 if eval_rows is None else len(eval_rows)
    manifest["dropped_without_assistant_turn"] = dropped
    keep = [c for c in ("messages", config.labels_column, "pool_index") if c in rows.column_names]
    keep += [c for c in config.keep_columns if c not in keep]
    train_rows = rows.select_columns(keep)
    eval_keep = None
    if eval_rows is not None:
        eval_keep = eval_rows.select_columns([c for c in keep if c in eval_rows.column_names])
    return TrainingData(
        train=train_rows.select_columns(["messages"]),
        eval=None if eval_keep is None else eval_keep.select_columns(["messages"]),
        train_rows=train_rows,
        eval_rows=eval_keep,
        manifest=manifest,
        cache_path=folder,
        cache_hit=hit,
    )
