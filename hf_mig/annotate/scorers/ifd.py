"""Instruction-Following Difficulty (IFD; Li et al., 2024, "Cherry LLM"; Superfiltering).

``IFD = PPL(response | instruction) / PPL(response)``: how much the instruction helps a causal
LM predict the response. Near or above 1, the instruction does not help (the pair is easy, or
the response does not follow the instruction); small values mean the instruction carries the
response. Superfiltering computes it with a small model (GPT-2) and keeps pairs with IFD < 1.

:class:`IFDScorer` is a batched ``Dataset.map`` callable::

    scorer = IFDScorer(model="openai-community/gpt2")
    ds = ds.map(scorer, batched=True, with_indices=True)   # ifd, ifd_turns, ifd_error, ...

Definition used, per turn (a user message and the assistant message answering it):

* ``prompt`` = ``prompt_template.format(instruction=user)`` (default ``"{instruction}\\n"``,
  Superfiltering's plain prompt) tokenised with the tokenizer's special tokens, or with
  ``use_chat_template=True`` the tokenizer's chat template for that one user message with the
  generation prompt. Only the turn's own instruction conditions the response.
* ``response`` = the assistant text tokenised alone, without special tokens. The prompt and the
  response are tokenised separately and concatenated, so both perplexities are over exactly the
  same response tokens.
* ``PPL(response | instruction) = exp(mean NLL of the response tokens after the prompt)``;
  ``PPL(response) = exp(mean NLL of the response tokens after a start token)``: the tokens the
  tokenizer puts before any text (e.g. ``<s>``), else its BOS token, else its EOS token (GPT-2's
  ``<|endoftext|>``), so that every response token, the first included, is predicted in both.
* Per sample, ``ifd`` is the **mean over turns** with a non-empty response (the turns'
  ``ifd_turns`` are kept). Turns whose response is empty have no tokens to score: their entry in
  ``ifd_turns`` is ``None`` and they are counted (``scorer.turns_skipped``), not averaged.

Sequences longer than the window are cut (and counted in ``ifd_truncated``): the response keeps
its first ``max(window - len(prompt), window // 2)`` tokens (all of them if they fit), and the
prompt, when it must shrink too, loses tokens from its start (after its leading special tokens),
so that the text nearest to the response stays. Both perplexities use the same kept tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from hf_mig.annotate.base import Option, register_scorer
from hf_mig.annotate.scorers._lm import (
    MODEL_OPTIONS,
    MODEL_SOURCES,
    PROMPT_OPTIONS,
    ModelScorer,
    ScoringStats,
    causal_logits,
    model_device,
    pad_batch,
)

__all__ = ["DEFAULT_IFD_MODEL", "IFDScorer", "cut_pair"]

#: Superfiltering's default filter model (124M parameters).
DEFAULT_IFD_MODEL = "openai-community/gpt2"


def cut_pair(
    prompt: list[int], response: list[int], max_length: int, head: int = 0
) -> tuple[list[int], list[int], bool]:
    """Cut ``prompt + response`` to ``max_length`` tokens (see the module docstring).

    ``head`` leading prompt tokens (special tokens such as BOS) are never removed. Returns
    ``(prompt, response, truncated)``.
    """
    if len(prompt) + len(response) <= max_length:
        return prompt, response, False
    keep_response = min(len(response), max(max_length - len(prompt), max_length // 2))
    room = max_length - keep_response
    if len(prompt) > room:
        head = min(head, room)
        tail = room - head
        prompt = prompt[:head] + (prompt[len(prompt) - tail :] if tail else [])
    return prompt, response[:keep_response], True


@dataclass
class IFDStats(ScoringStats):
    """:class:`~hf_mig.annotate.scorers._lm.ScoringStats` and ``turns_skipped``: turns whose
    response is empty (nothing to score)."""

    turns_skipped: int = 0


def _unescape(text: str) -> str:
    """A command-line template: ``\\n`` and ``\\t`` read as newline and tab."""
    return text.replace("\\n", "\n").replace("\\t", "\t")


@register_scorer("ifd")
class IFDScorer(ModelScorer):
    """Batched ``Dataset.map`` callable writing IFD per turn and per sample.

    Args:
        model: any causal LM (Hub id, folder, ``.gguf`` path, ``"smollm2"`` or a loaded model).
            Default ``openai-community/gpt2`` (Superfiltering's small filter model).
        tokenizer: tokenizer id/folder when it differs (a loaded tokenizer for a loaded model).
        batch_size: sequences per forward pass (each turn is two sequences; a map batch's
            sequences are sorted by length).
        max_length: longest sequence; default and upper bound: the model's window.
        padding_side: ``"left"`` (default; logits are computed for the response positions only,
            when the model supports ``logits_to_keep``) or ``"right"``.
        prompt_template: plain-text prompt with ``{instruction}``; default ``"{instruction}\\n"``.
        use_chat_template: build the prompt with the tokenizer's chat template instead.
        dtype, device, messages_column, trust_remote_code, progress: as for
            :class:`~hf_mig.annotate.scorers.deita.DeitaScorer`.

    Columns: ``ifd`` (float or ``None``), ``ifd_turns`` (list of float or ``None`` per turn),
    ``ifd_error`` (str or ``None``: malformed conversation, no turn with a response, a forward
    pass that failed even alone, a non-finite value) and ``ifd_truncated`` (int: sequences of the
    row cut to the window). A failed row's ``ifd`` is ``None``, never a default; failures are
    counted in :attr:`stats` and logged.
    """

    kind = "causal"
    prefix = "ifd"
    Stats = IFDStats
    score_columns = ("ifd",)
    low_score_meaning = "the answer is no harder to predict without the instruction than with it"
    options = (
        Option("model", f"causal LM: {MODEL_SOURCES} (default {DEFAULT_IFD_MODEL})"),
        *MODEL_OPTIONS,
        *PROMPT_OPTIONS,
        Option(
            "prompt_template",
            "prompt with {instruction} (\\n and \\t are read as newline and tab)",
            type=_unescape,
        ),
    )

    def __init__(
        self,
        model: Any = DEFAULT_IFD_MODEL,
        *,
        tokenizer: Any = None,
        batch_size: int = 16,
        max_length: int | None = None,
        padding_side: str = "left",
        prompt_template: str = "{instruction}\n",
        use_chat_template: bool = False,
        dtype: str = "auto",
        device: str | None = "auto",
        messages_column: str = "messages",
        output_column: str = "ifd",
        trust_remote_code: bool = False,
        progress: bool = False,
    ) -> None:
        if "{instruction}" not in prompt_template:
            raise ValueError("prompt_template must contain {instruction}")
        self._init_common(self._arguments(locals()), {"model": model}, tokenizer)

    @property
    def turns_skipped(self) -> int:
        """Turns without a response to score (``stats.turns_skipped``)."""
        return self.stats.turns_skipped

    def output_types(self) -> dict[str, pa.DataType]:
        return {
            self._config["output_column"]: pa.float64(),
            "ifd_turns": pa.list_(pa.float64()),
            "ifd_error": pa.string(),
            "ifd_truncated": pa.int64(),
        }

    # ------------------------------------------------------------------ pieces

    def start_tokens(self, tokenizer: Any) -> list[int]:
        """The context of the unconditioned perplexity (see the module docstring)."""
        prefix = list(tokenizer("", add_special_tokens=True)["input_ids"])
        if prefix:
            return prefix
        for value in (tokenizer.bos_token_id, tokenizer.eos_token_id):
            if isinstance(value, int):
                return [value]
        raise ValueError(
            "IFD needs a start token for PPL(response): the tokenizer adds none and has no BOS "
            "or EOS token"
        )

    def prompt_tokens(self, tokenizer: Any, instruction: str) -> list[int]:
        """Token ids of the conditioning prompt for one instruction."""
        if self._config["use_chat_template"]:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": instruction}],
                tokenize=False,
                add_generation_prompt=True,
            )
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])
        text = self._config["prompt_template"].format(instruction=instruction)
        return list(tokenizer(text, add_special_tokens=True)["input_ids"])

    def target_nll(
        self, pairs: Sequence[tuple[list[int], list[int]]], rank: int | None = None
    ) -> list[float | Exception]:
        """Mean negative log-likelihood (nats) of each ``target`` after its ``context``.

        ``pairs`` holds ``(context_ids, target_ids)`` with a non-empty context and target; each
        sequence is ``context + target``. Batched; a failed sequence gets its exception.
        """
        import torch

        model, tokenizer = self._load("model", rank)
        device = model_device(model)
        side = self._config["padding_side"]
        pad_id = self._pad_id(tokenizer)
        seqs = [list(c) + list(t) for c, t in pairs]

        def forward(positions: list[int]) -> list[Any]:
            batch = [seqs[p] for p in positions]
            ids, mask, pos = pad_batch(batch, pad_id, side, device)
            width = ids.shape[1]
            if side == "left":
                keep = max(len(pairs[p][1]) for p in positions) + 1
                logits = causal_logits(model, ids, mask, pos, keep=min(keep, width))
                offset = width - logits.shape[1]
            else:
                logits = causal_logits(model, ids, mask, pos, keep=None)
                offset = 0
            out: list[Any] = []
            for row, p in enumerate(positions):
                context, target = pairs[p]
                start = len(context) - 1  # position predicting the first target token
                if side == "left":
                    start += width - len(seqs[p])
                span = logits[row, start - offset : start - offset + len(target)].float()
                logp = torch.log_softmax(span, dim=-1)
                tgt = torch.tensor(target, dtype=torch.long, device=logp.device)
                nll = -logp.gather(1, tgt[:, None]).mean().item()
                out.append(nll if math.isfinite(nll) else ValueError("non-finite loss"))
            return out

        return self._run_batches(seqs, forward, desc="ifd")

    # ------------------------------------------------------------------ rows

    def _score_rows(
        self, rows: Sequence[Any], errors: list[str | None], rank: int | None
    ) -> dict[str, list]:
        n = len(rows)
        turns: list[list[Any]] = [[] for _ in range(n)]
        truncated = [0] * n
        jobs: list[tuple[list[int], list[int]]] = []
        owners: list[tuple[int, int, str]] = []
        model = tokenizer = None
        for i, pairs in enumerate(rows):
            if pairs is None:
                continue
            turns[i] = [None] * len(pairs)
            answered = [(j, q, a) for j, (q, a) in enumerate(pairs) if a.strip()]
            self.stats.turns += len(pairs)
            self.stats.turns_skipped += len(pairs) - len(answered)
            if not answered:
                errors[i] = "no turn with a non-empty response to score"
                continue
            if model is None:
                model, tokenizer, limit, specials = self._load_window("model", rank)
                start = self.start_tokens(tokenizer)
            for j, query, answer in answered:
                prompt = self.prompt_tokens(tokenizer, query)
                response = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
                if not response:
                    turns[i][j] = ValueError("the response has no tokens")
                    continue
                head = 0
                while head < len(prompt) and prompt[head] in specials:
                    head += 1
                prompt, response, cut = cut_pair(prompt, response, limit, head)
                truncated[i] += int(cut)
                jobs.append((prompt, response))
                owners.append((i, j, "cond"))
                jobs.append((start, response))
                owners.append((i, j, "alone"))
        nll = self.target_nll(jobs, rank) if jobs else []
        pieces: dict[tuple[int, int], dict[str, Any]] = {}
        for (i, j, which), value in zip(owners, nll, strict=True):
            pieces.setdefault((i, j), {})[which] = value
        for (i, j), got in pieces.items():
            cond, alone = got["cond"], got["alone"]
            if isinstance(cond, Exception):
                turns[i][j] = cond
            elif isinstance(alone, Exception):
                turns[i][j] = alone
            else:
                turns[i][j] = math.exp(cond - alone)
        self.stats.truncated += sum(truncated)
        values: list[float | None] = [None] * n
        turn_out: list[list[float | None]] = []
        for i in range(n):
            problems = [
                f"turn {j}: {type(v).__name__}: {v}"
                for j, v in enumerate(turns[i])
                if isinstance(v, Exception)
            ]
            if problems and errors[i] is None:
                errors[i] = "; ".join(problems)
            scored = [v for v in turns[i] if isinstance(v, float)]
            if errors[i] is None and scored:
                values[i] = math.fsum(scored) / len(scored)
            turn_out.append([v if isinstance(v, float) else None for v in turns[i]])
        return self._typed(
            {
                self._config["output_column"]: values,
                "ifd_turns": turn_out,
                "ifd_error": errors,
                "ifd_truncated": truncated,
            }
        )
