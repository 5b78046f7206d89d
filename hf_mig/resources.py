"""Data files shipped inside the ``hf_mig`` package (see ``hf_mig/data/NOTICE.md``).

* :func:`instag_vocabulary` -- the 4,531 InsTag tags of the MIG authors' Tulu 3 vocabulary.
* :func:`demo_pool_path` -- a 427-row, Apache-2.0 demo pool built from the Self-Instruct
  seed tasks (175) and user-oriented instructions (252), one OpenAI-style
  ``{"id", "source", "messages"}`` record per line.
"""

from __future__ import annotations

import json
import pathlib
from importlib import resources

INSTAG_VOCABULARY_SIZE = 4531
DEMO_POOL_SIZE = 427

_PACKAGE = "hf_mig"
_VOCABULARY_FILE = "data/instag_vocabulary.json"
_DEMO_POOL_FILE = "data/demo_pool.jsonl"


def _data_file(relative: str):  # -> importlib.resources.abc.Traversable
    return resources.files(_PACKAGE).joinpath(relative)


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
    resource = _data_file(_DEMO_POOL_FILE)
    if not isinstance(resource, pathlib.Path) or not resource.is_file():
        raise FileNotFoundError(
            f"{_DEMO_POOL_FILE} of the {_PACKAGE} package is not available as a file "
            f"(resource: {resource!r})"
        )
    return resource
