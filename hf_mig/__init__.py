"""hf-mig: MIG data selection (Chen et al., ACL 2025 Findings) for Hugging Face datasets."""

__version__ = "0.2.0"

from hf_mig import _compat  # noqa: E402
from hf_mig.annotate.base import SCORERS, TAGGERS, get_scorer, get_tagger  # noqa: E402
from hf_mig.annotate.graph import LabelGraph  # noqa: E402
from hf_mig.annotate.scorers import (  # noqa: E402
    ConstantScorer,
    DeitaScorer,
    IFDScorer,
    LabelCountScorer,
    LengthScorer,
    RewardModelScorer,
)
from hf_mig.annotate.taggers import EmbeddingTagger, InsTagTagger  # noqa: E402
from hf_mig.annotate.vocabulary import TagVocabulary  # noqa: E402
from hf_mig.core.greedy import GreedyResult, greedy_select  # noqa: E402
from hf_mig.core.objective import Objective  # noqa: E402
from hf_mig.data.annotations import MIGAnnotations  # noqa: E402
from hf_mig.data.conversations import to_messages  # noqa: E402
from hf_mig.data.io import load_pool, save_dataset  # noqa: E402
from hf_mig.data.pool import prepare_pool  # noqa: E402
from hf_mig.data.resources import load_vocabulary  # noqa: E402
from hf_mig.selectors import (  # noqa: E402
    SELECTORS,
    MIGSelector,
    RandomSelector,
    Selector,
    as_dataset,
    get_selector,
)

_compat.install()


def select(
    dataset,
    k: int | None = None,
    *,
    method: str = "mig",
    push_to_hub: str | None = None,
    private: bool | None = None,
    overwrite: bool = False,
    **options,
):
    """Select ``k`` rows of ``dataset`` with ``method`` (default MIG); returns a ``Dataset``.

    ``k`` may be left out only where the method has another bound, as MIG's ``budget``.

    ``dataset``: a ``datasets.Dataset``, or a ``DatasetDict`` with exactly one split (what
    ``load_dataset(path)`` returns for one data file), which is used as that split. A
    ``DatasetDict`` with several splits raises ``ValueError`` naming them: pass one, e.g.
    ``ds["train"]``. Streaming and other inputs raise ``TypeError`` (see
    :func:`hf_mig.selectors.as_dataset`).

    ``options`` are the selector's ``__init__`` arguments, e.g. ``label_graph=...``.

    ``push_to_hub="user/name"`` also uploads the selection, with its dataset card, to that Hub
    dataset (``private``: for a repository the upload creates; ``overwrite``: replace the
    ``train`` split and card of an existing one). See :meth:`hf_mig.selectors.BaseSelector.select`.
    """
    selector = get_selector(method, k, **options)
    pool = as_dataset(dataset, what=f"{method} selection")
    if push_to_hub is None:
        return selector.select(pool)
    return selector.select(pool, push_to_hub, private=private, overwrite=overwrite)


__all__ = [
    "SCORERS",
    "SELECTORS",
    "TAGGERS",
    "ConstantScorer",
    "DeitaScorer",
    "EmbeddingTagger",
    "IFDScorer",
    "InsTagTagger",
    "LabelCountScorer",
    "LengthScorer",
    "RewardModelScorer",
    "TagVocabulary",
    "GreedyResult",
    "LabelGraph",
    "MIGAnnotations",
    "MIGSelector",
    "Objective",
    "RandomSelector",
    "Selector",
    "__version__",
    "get_scorer",
    "get_selector",
    "get_tagger",
    "greedy_select",
    "load_pool",
    "load_vocabulary",
    "prepare_pool",
    "save_dataset",
    "select",
    "to_messages",
]
