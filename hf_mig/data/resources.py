"""Data files shipped inside the ``hf_mig`` package (see ``hf_mig/data/bundled/NOTICE.md``).

Each file has a bundled id, accepted by recipes wherever a file path is (``data.pool``,
``data.vocabulary``, ``data.selection.options.label_graph``, ...), and resolved by
:func:`bundled_path`, the one resolver of ``hf-mig:`` data ids:

=========================  ================================================================
``hf-mig:instag``          the 4,531 InsTag tags of the MIG authors' Tulu 3 vocabulary
                           (:func:`instag_vocabulary`)
``hf-mig:demo``            a 427-row, Apache-2.0 demo pool built from the Self-Instruct seed
                           tasks (175) and user-oriented instructions (252), one OpenAI-style
                           ``{"id", "source", "messages"}`` record per line
                           (:func:`demo_pool_path`)
``hf-mig:demo-annotated``  the same 427 rows in the same order with ``labels`` (offline
                           :class:`~hf_mig.annotate.taggers.EmbeddingTagger`) and ``score``
                           (:class:`~hf_mig.annotate.scorers.LengthScorer`) added
``hf-mig:demo-graph``      the label graph of those labels (all-MiniLM-L6-v2, T=0.8), a
                           :meth:`~hf_mig.LabelGraph.save` ``.npz``
=========================  ================================================================

``hf-mig:tiny-llama`` is a model built on first use, not a shipped file: see
:mod:`hf_mig.train.tiny`.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Sequence
from importlib import resources

from hf_mig.data.columns import short_repr, type_name

INSTAG_VOCABULARY_SIZE = 4531
#: The bundled id of the InsTag vocabulary (:func:`instag_vocabulary`).
INSTAG_VOCABULARY_ID = "hf-mig:instag"
DEMO_POOL_SIZE = 427

_PACKAGE = "hf_mig"
_VOCABULARY_FILE = "data/bundled/instag_vocabulary.json"
_DEMO_POOL_FILE = "data/bundled/demo_pool.jsonl"

#: Bundled data ids -> file inside the ``hf_mig`` package.
BUNDLED_FILES: dict[str, str] = {
    INSTAG_VOCABULARY_ID: _VOCABULARY_FILE,
    "hf-mig:demo": _DEMO_POOL_FILE,
    "hf-mig:demo-annotated": "data/bundled/demo_pool_annotated.jsonl",
    "hf-mig:demo-graph": "data/bundled/demo_label_graph.npz",
}


def _data_file(relative: str):  # -> importlib.resources.abc.Traversable
    return resources.files(_PACKAGE).joinpath(relative)


def is_bundled_id(value: object) -> bool:
    """True when ``value`` is one of the :data:`BUNDLED_FILES` ids (an exact string match)."""
    return isinstance(value, str) and value in BUNDLED_FILES


def bundled_path(name: str) -> pathlib.Path:
    """Return the filesystem path of the bundled data file with id ``name`` (``hf-mig:...``).

    Raises ``ValueError`` for an id that is not in :data:`BUNDLED_FILES` (the message lists the
    known ones) and ``FileNotFoundError`` when the package was installed without its data files
    or as a zip, so that the file has no real path.
    """
    if not is_bundled_id(name):
        raise ValueError(
            f"unknown bundled data id {name!r}; known ids: {', '.join(sorted(BUNDLED_FILES))}"
        )
    relative = BUNDLED_FILES[name]
    resource = _data_file(relative)
    if not isinstance(resource, pathlib.Path) or not resource.is_file():
        raise FileNotFoundError(
            f"{name}: {relative} of the {_PACKAGE} package is not available as a file "
            f"(resource: {resource!r})"
        )
    return resource


def instag_vocabulary() -> list[str]:
    """Return the InsTag vocabulary as a new list of 4,531 distinct strings, in the shipped order.

    The order is that of the MIG authors' ``configs/valid_tag_path.json``. Raises
    ``FileNotFoundError`` if the package was installed without its data files and ``ValueError``
    if the file is not a JSON list of strings.
    """
    text = _data_file(_VOCABULARY_FILE).read_text(encoding="utf-8")
    labels = json.loads(text)
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise ValueError(f"{_VOCABULARY_FILE} in {_PACKAGE} is not a JSON list of strings")
    return labels


def demo_pool_path() -> pathlib.Path:
    """Return a filesystem path to ``demo_pool.jsonl`` (427 JSON lines), loadable with
    ``datasets.load_dataset("json", data_files=str(demo_pool_path()))``.

    The package must be installed as plain files (a normal or editable install, not a zip), so
    that the resource has a real path; otherwise ``FileNotFoundError`` is raised.
    """
    return bundled_path("hf-mig:demo")


# --------------------------------------------------------------------------------------
# label vocabularies

VocabularySource = str | os.PathLike | Sequence[str]


def load_vocabulary(
    source: VocabularySource | None = None, *, skip_blank_lines: bool = False
) -> list[str]:
    """The labels of a vocabulary, in their order. The one reader of vocabulary files.

    ``source``: ``None`` or ``"hf-mig:instag"`` for the shipped InsTag tags
    (:func:`instag_vocabulary`); a path to a file; or a list/tuple of labels, validated by
    :func:`check_labels` and returned as a new list.

    The rule for files: a ``.json`` file holds a JSON list of strings (like the authors'
    ``valid_tag_path.json``); any other file is UTF-8 text (a BOM is ignored) with one label per
    line. Every label is stripped of surrounding whitespace. An empty label, a repeated label and
    a file without labels are errors naming the position (JSON, 0-based) or line (text, 1-based)
    and the file; so are a non-string JSON item and invalid JSON (``ValueError``), and a missing
    file (``FileNotFoundError``). ``skip_blank_lines=True`` ignores blank lines of a text file
    instead (the taggers read hand-written lists that way); it changes nothing else.
    """
    if source is None or (isinstance(source, str) and source == INSTAG_VOCABULARY_ID):
        return instag_vocabulary()
    if isinstance(source, (str, os.PathLike)):
        return _read_vocabulary_file(pathlib.Path(source), skip_blank_lines)
    if isinstance(source, Sequence):
        return check_labels(source)
    raise TypeError(f"vocabulary must be a list of labels or a path, got {type_name(source)}")


def check_labels(labels: Sequence[str], source: str = "vocabulary") -> list[str]:
    """``labels`` as a new list, validated: not empty, every label a string that is not blank,
    no label twice. Raises ``ValueError`` naming ``source`` and the position (``source[2]``)."""
    items = list(labels)
    if not items:
        raise ValueError(f"{source} is empty")
    seen: dict[str, int] = {}
    for pos, label in enumerate(items):
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"{source}[{pos}] must be a non-empty string, got {label!r}")
        if label in seen:
            raise ValueError(f"{source}[{pos}] duplicates {source}[{seen[label]}]: {label!r}")
        seen[label] = pos
    return items


def _read_vocabulary_file(path: pathlib.Path, skip_blank_lines: bool) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    entries: list[tuple[str, str]] = []  # (where, label)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path}: not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
            ) from err
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of labels, got {type_name(data)}")
        for pos, item in enumerate(data):
            if not isinstance(item, str):
                raise ValueError(
                    f"{path}: position {pos}: expected a string label, got {short_repr(item)}"
                )
            entries.append((f"position {pos}", item))
    else:
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.strip() or not skip_blank_lines:
                entries.append((f"line {lineno}", line))
    labels: list[str] = []
    first_seen: dict[str, str] = {}
    for where, raw in entries:
        label = raw.strip()
        if not label:
            raise ValueError(f"{path}: {where}: empty label")
        if label in first_seen:
            raise ValueError(
                f"{path}: {where}: duplicate label {label!r} (first at {first_seen[label]})"
            )
        first_seen[label] = where
        labels.append(label)
    if not labels:
        raise ValueError(f"{path}: no labels in file")
    return labels
