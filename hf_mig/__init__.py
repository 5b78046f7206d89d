"""hf-mig: MIG data selection (Chen et al., ACL 2025 Findings) for Hugging Face datasets."""

__version__ = "0.1.0"

from .formats import MIGAnnotations, load_vocabulary, to_messages  # noqa: E402
from .graph import LabelGraph  # noqa: E402
from .greedy import GreedyResult, greedy_select  # noqa: E402
from .io import load_pool, save_dataset  # noqa: E402
from .objective import Objective  # noqa: E402
from .pool import prepare_pool  # noqa: E402
from .selectors import (  # noqa: E402
    SELECTORS,
    MIGSelector,
    RandomSelector,
    Selector,
    get_selector,
)


def select(dataset, k: int, *, method: str = "mig", **options):
    """Select ``k`` rows of ``dataset`` with ``method`` (default MIG); returns a ``Dataset``.

    ``options`` are the selector's ``__init__`` arguments, e.g. ``label_graph=...``.
    """
    return get_selector(method, k, **options).select(dataset)


__all__ = [
    "SELECTORS",
    "GreedyResult",
    "LabelGraph",
    "MIGAnnotations",
    "MIGSelector",
    "Objective",
    "RandomSelector",
    "Selector",
    "__version__",
    "get_selector",
    "greedy_select",
    "load_pool",
    "load_vocabulary",
    "prepare_pool",
    "save_dataset",
    "select",
    "to_messages",
]
