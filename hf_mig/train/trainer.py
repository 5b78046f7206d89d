"""``SelectionSFTTrainer``: TRL's ``SFTTrainer`` whose model card carries the selection section.

TRL writes the model card (``README.md`` in ``output_dir``) in ``create_model_card``, which it
calls at every checkpoint and inside ``push_to_hub`` right before the upload. Adding the hf-mig
section there, in the same call, means that every card TRL writes, and so every card uploaded
to the Hub (at the end of training and, with ``hub_strategy="every_save"``, at each checkpoint),
holds the section (:func:`hf_mig.train.callbacks.update_model_card`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trl import SFTTrainer

from hf_mig.train.callbacks import update_model_card

__all__ = ["SelectionSFTTrainer"]


class SelectionSFTTrainer(SFTTrainer):
    """``SFTTrainer`` + ``selection_manifest`` (a manifest dict, or ``None`` for none).

    :meth:`create_model_card` writes TRL's card, then adds (or replaces) the selection section.
    The card is tagged ``hf-mig`` besides TRL's tags.
    """

    _tag_names = [*SFTTrainer._tag_names, "hf-mig"]

    def __init__(self, *args: Any, selection_manifest: Mapping[str, Any] | None = None, **kwargs):
        self.selection_manifest = None if selection_manifest is None else dict(selection_manifest)
        super().__init__(*args, **kwargs)

    def create_model_card(
        self,
        model_name: str | None = None,
        dataset_name: str | None = None,
        tags: str | list[str] | None = None,
    ) -> None:
        """TRL's model card with the selection section (main process only, as TRL's)."""
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if self.selection_manifest is not None and self.is_world_process_zero():
            update_model_card(Path(self.args.output_dir) / "README.md", self.selection_manifest)
