"""Per-row token counts: the cost column of MIG's token budget.

:class:`TokenCounter` (scorer ``tokens``) is a batched ``Dataset.map`` callable writing one
int64 column (``num_tokens`` by default)::

    ds = ds.map(TokenCounter("HuggingFaceTB/SmolLM2-135M-Instruct"), batched=True)
    MIGSelector(k, budget=5_000_000, cost_column="num_tokens")

What is counted: the text of every message's ``content`` (system, user, assistant, tool, ... in
order; content parts give their text parts joined by newlines, ``None`` reads as ``""``, as
:func:`hf_mig.data.conversations.clean_messages` reads them). Each text is counted on its own
and the counts are summed over the messages; roles, chat-template markup and special tokens are
not counted.

* With ``tokenizer`` (a Hub id or local folder), a text counts
  ``len(tok(text, add_special_tokens=False).input_ids)``. The tokenizer is loaded through
  ``transformers.AutoTokenizer`` on the first call, once per process; a tokenizer that cannot be
  loaded raises ``FileNotFoundError`` (there is no fallback). Its content identity is pickled
  with the configuration, so the ``datasets`` fingerprint changes when its files do.
* With ``tokenizer=None`` (offline, no model), a text counts ``ceil(characters / 4)``.

A row whose count is 0 (no message, or only empty texts) counts 1, so every cost stays > 0 as
the budget needs. A malformed conversation raises
``ValueError`` naming the row and the field.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from hf_mig.annotate.base import (
    ConfigValue,
    Option,
    Scorer,
    map_arguments,
    register_scorer,
    row_label,
)
from hf_mig.data.conversations import ConversationError, clean_messages

__all__ = ["TokenCounter", "load_tokenizer"]

#: (source, content identity) -> loaded tokenizer, per process.
_TOKENIZERS: dict[tuple[str, str], Any] = {}


def load_tokenizer(source: str | os.PathLike) -> Any:
    """The ``transformers`` tokenizer of a Hub id or local folder, loaded once per process
    (keyed by the files' content identity, so files replaced in place are loaded again).

    Raises ``FileNotFoundError`` when it cannot be loaded (no such folder or repository,
    offline without a cached copy, no tokenizer files)."""
    from hf_mig.models.lm import source_identity

    text = str(source)
    try:
        key = (text, source_identity(text))
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"cannot load the tokenizer {text!r}: {err}") from err
    if key not in _TOKENIZERS:
        import transformers

        try:
            _TOKENIZERS[key] = transformers.AutoTokenizer.from_pretrained(text)
        except (OSError, ValueError) as err:
            raise FileNotFoundError(f"cannot load the tokenizer {text!r}: {err}") from err
    return _TOKENIZERS[key]


@register_scorer("tokens")
class TokenCounter(Scorer):
    """``num_tokens`` = tokens (or ``ceil(chars / 4)``) of every message's content, summed.

    Args:
        tokenizer: Hub id or local folder of a ``transformers`` tokenizer; ``None`` counts
            ``ceil(characters / 4)`` per message text instead.
        messages_column: column of OpenAI-style messages.
        output_column: the int64 count column.

    See the module docstring for exactly what is counted; rows counting 0 get 1.
    """

    score_columns = ("num_tokens",)
    low_score_meaning = "a row with no text counts 1 token"
    low_score = 1.0
    options = (
        Option("tokenizer", "tokenizer id/folder (tokens: default none, ceil(chars / 4))"),
        Option("output_column", "column to write (tokens: default num_tokens)"),
    )

    tokenizer = ConfigValue("Tokenizer id/folder, or None for ceil(characters / 4).")
    messages_column = ConfigValue("Column of OpenAI-style messages.")
    output_column = ConfigValue("The int64 count column.")

    def __init__(
        self,
        tokenizer: str | os.PathLike | None = None,
        messages_column: str = "messages",
        output_column: str = "num_tokens",
    ) -> None:
        if tokenizer is not None:
            tokenizer = str(tokenizer)
        self._setup(self._arguments(locals()))

    def output_types(self) -> dict[str, pa.DataType]:
        return {self.output_column: pa.int64()}

    def content_identity(self) -> dict[str, str]:
        if self.tokenizer is None:
            return {}
        from hf_mig.models.lm import source_identity

        return {"tokenizer": source_identity(self.tokenizer)}

    def count(self, texts: Sequence[str]) -> int:
        """The summed count of ``texts`` (at least 1)."""
        if self.tokenizer is None:
            total = sum(math.ceil(len(text) / 4) for text in texts)
        else:
            tok = load_tokenizer(self.tokenizer)
            ids = tok(list(texts), add_special_tokens=False)["input_ids"] if texts else []
            total = sum(len(row) for row in ids)
        return max(total, 1)

    def __call__(self, batch: Mapping[str, list], *args: Any) -> dict[str, Any]:
        """Count one batch: ``{output_column: [int, ...]}``, one value per row."""
        indices, _ = map_arguments(args, type(self).__name__)
        column = self.messages_column
        counts = []
        for pos, messages in enumerate(self._messages(batch, indices)):
            try:
                texts = [m["content"] for m in clean_messages(messages, column)]
            except ConversationError as err:
                raise ValueError(f"TokenCounter: {row_label(pos, indices)}: {err}") from None
            counts.append(self.count(texts))
        self.stats.rows += len(counts)
        return self._typed({self.output_column: counts})
