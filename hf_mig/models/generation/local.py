"""What the backends that run model weights in this process share (transformers, vLLM).

:class:`LocalModelBackend` keeps the tokenizer, chat template and dtype options, the content
identity of the model files (:func:`hf_mig.models.identity.model_identity`, part of every
response-cache key), renders conversations with the chat template into prompt token ids checked
against the context window, and retries a failing batch in halves (:func:`run_in_halves`).
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from hf_mig.models.generation.base import BaseBackend, ResultCallback
from hf_mig.models.generation.results import GenerationResult

__all__ = ["LocalModelBackend", "RowResults", "run_in_halves"]

#: ``(row, result)`` pairs: the row is the conversation's position in the call.
RowResults = list[tuple[int, GenerationResult]]


def run_in_halves(
    run: Callable[[Sequence[int]], RowResults],
    rows: Sequence[int],
    on_split: Callable[[int, Exception], None],
) -> RowResults:
    """``run(rows)``; when it raises, ``on_split(len(rows), error)`` and the two halves run the
    same way, down to single rows: a row that still fails gets a result with ``error`` set."""
    try:
        return run(rows)
    except Exception as err:
        if len(rows) == 1:
            message = f"generation failed: {type(err).__name__}: {err}"
            return [(rows[0], GenerationResult.failure(message))]
        on_split(len(rows), err)
        half = len(rows) // 2
        return run_in_halves(run, rows[:half], on_split) + run_in_halves(run, rows[half:], on_split)


class LocalModelBackend(BaseBackend):
    """A backend that reads the model's files itself.

    Args:
        model: Hub id or local folder.
        tokenizer: tokenizer id or folder when it differs from ``model``.
        dtype: the weights' dtype name (``"auto"``: the backend's choice).
        chat_template: a Jinja chat template overriding the tokenizer's.
        cache, progress: see :class:`~hf_mig.models.generation.base.BaseBackend`.

    Subclasses say whether the weights are loaded (:meth:`_is_loaded`) and which revision or
    file of the model they read (:meth:`_identity_arguments`).
    """

    def __init__(
        self,
        model: str | os.PathLike,
        tokenizer: str | os.PathLike | None = None,
        dtype: str = "auto",
        chat_template: str | None = None,
        *,
        cache: Any = None,
        progress: bool = True,
    ) -> None:
        super().__init__(model, cache=cache, progress=progress)
        self.tokenizer_name = None if tokenizer is None else str(tokenizer)
        self.dtype = dtype
        self.chat_template = chat_template
        self._identity: dict[str, str] | None = None

    # ------------------------------------------------------------------ description

    @abstractmethod
    def _is_loaded(self) -> bool:
        """Whether the weights are loaded in this object."""

    def _identity_arguments(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Keyword arguments of ``model_identity`` for the model and for the tokenizer."""
        return {}, {}

    def _content(self) -> dict[str, Any]:
        """``model_content`` (and ``tokenizer_content``): identities of the files read:
        as they are now or, after loading, those of the files that were loaded."""
        if not self._is_loaded() or self._identity is None:
            return self._current_identity()
        return dict(self._identity)

    def _current_identity(self) -> dict[str, str]:
        from hf_mig.models.identity import model_identity

        model_args, tokenizer_args = self._identity_arguments()
        identity = {"model_content": model_identity(self.model, **model_args)}
        if self.tokenizer_name is not None:
            identity["tokenizer_content"] = model_identity(self.tokenizer_name, **tokenizer_args)
        return identity

    def _file_options(self) -> dict[str, Any]:
        """Options naming which file of the model is read (none by default)."""
        return {}

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.tokenizer_name is not None:
            options["tokenizer"] = self.tokenizer_name
        options.update(self._file_options())
        if self.chat_template is not None:
            options["chat_template"] = self.chat_template
        if self.dtype != "auto":
            options["dtype"] = self.dtype
        return options

    # ------------------------------------------------------------------ prompts

    def _check_chat_template(self, tokenizer: Any) -> None:
        """Raise ``ValueError`` when neither the tokenizer nor this backend has a chat template."""
        if self.chat_template is None and not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"the tokenizer of {self.model!r} has no chat template; pass chat_template=..."
            )

    def _prompt_ids(self, tokenizer: Any, conversation: list[dict[str, Any]]) -> list[int]:
        text = tokenizer.apply_chat_template(
            conversation,
            tokenize=False,
            add_generation_prompt=True,
            chat_template=self.chat_template,
        )
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    def _prompts(
        self,
        tokenizer: Any,
        conversations: list[list[dict[str, Any]]],
        limit: int | None,
        limit_reason: str,
        results: list[GenerationResult | None],
        on_result: ResultCallback,
    ) -> dict[int, list[int]]:
        """``{row: prompt token ids}`` of the conversations that render and fit ``limit``.

        A conversation the chat template rejects, or whose prompt is longer than ``limit``
        tokens (``limit_reason`` says where the limit comes from), gets its failed result in
        ``results`` and through ``on_result`` at once.
        """
        prompts: dict[int, list[int]] = {}
        for i, conversation in enumerate(conversations):
            try:
                ids = self._prompt_ids(tokenizer, conversation)
            except Exception as err:  # a template that rejects this conversation
                failure = f"chat template failed: {type(err).__name__}: {err}"
            else:
                if limit is None or len(ids) <= limit:
                    prompts[i] = ids
                    continue
                failure = f"prompt has {len(ids)} tokens; the limit is {limit} ({limit_reason})"
            results[i] = GenerationResult.failure(failure)
            on_result(i, results[i])
        return prompts
