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
import pathlib
from importlib import resources

INSTAG_VOCABULARY_SIZE = 4531
DEMO_POOL_SIZE = 427

_PACKAGE = "hf_mig"
_VOCABULARY_FILE = "data/bundled/instag_vocabulary.json"
_DEMO_POOL_FILE = "data/bundled/demo_pool.jsonl"

#: Bundled data ids -> file inside the ``hf_mig`` package.
BUNDLED_FILES: dict[str, str] = {
    "hf-mig:instag": _VOCABULARY_FILE,
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
