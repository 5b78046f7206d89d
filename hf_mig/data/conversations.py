"""Conversations: the one place that reads and converts them.

Two layers:

* **Record shapes -> messages.** :func:`to_messages` (a batched ``Dataset.map`` callable) turns
  OpenAI ``messages``, ShareGPT ``conversations``, Alpaca ``instruction``/``input``/``output``
  and the MIG authors' ``dialogs`` into one column ``messages``: a list of
  ``{"role": "system" | "user" | "assistant", "content": str}``. :func:`detect_shape` names a
  dataset's shape from its columns and :func:`with_messages` adds the column to a dataset. Every
  malformed value raises :class:`ValueError` with a message of the form
  ``row 17, field 'conversations'[3]['from']: expected ..., got ...``; rows are never dropped.
* **Reading messages.** The annotation steps read OpenAI-style conversations as they come from
  a dataset (content may be ``None`` or a list of ``{"type": "text", "text": ...}`` parts):
  :func:`iter_messages` walks and validates them, :func:`content_text` reads a content value,
  and on top of them :func:`conversation_pairs` (the (user, assistant) turns as DEITA pairs
  them), :func:`clean_messages` (every message with string content) and :func:`user_turns` (the
  non-empty user texts). A malformed conversation raises :class:`ConversationError`, which names
  the field (``messages[2].content``) and renders with a row as the converters' errors do
  (:meth:`ConversationError.in_row`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

from hf_mig.data.columns import (
    MESSAGES_ARROW_TYPE,
    batch_rows,
    is_sequence,
    messages_column,
    short_repr,
    type_name,
)

__all__ = [
    "MESSAGES_ARROW_TYPE",
    "ROLES",
    "SHAPES",
    "SHAREGPT_ROLES",
    "ConversationError",
    "batch_conversations",
    "clean_messages",
    "content_text",
    "conversation_pairs",
    "detect_shape",
    "iter_messages",
    "to_messages",
    "user_turns",
    "with_messages",
]

#: Roles allowed in the output (and in ``messages`` / ``dialogs`` input).
ROLES: tuple[str, ...] = ("system", "user", "assistant")

#: Record shapes understood by :func:`to_messages`, with the columns that identify each one.
SHAPES: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "conversations": ("conversations",),
    "alpaca": ("instruction", "output"),
    "dialogs": ("dialogs",),
}

#: ShareGPT ``from`` values (compared lower-cased) and the role each one maps to.
SHAREGPT_ROLES: dict[str, str] = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "system": "system",
}

Shape = Literal["auto", "messages", "conversations", "alpaca", "dialogs"]
Parts = Literal["strict", "lenient"]


# --------------------------------------------------------------------------------------
# record shapes -> messages


def detect_shape(column_names: Iterable[str]) -> str:
    """Name the conversation shape of a dataset from its column names.

    Returns one of ``"messages"``, ``"conversations"``, ``"alpaca"`` (needs both
    ``instruction`` and ``output``) or ``"dialogs"``. Raises :class:`ValueError` listing the
    columns seen and the supported shapes when no shape matches, or when more than one does
    (e.g. a dataset with both ``conversations`` and ``messages``): pass ``shape=`` explicitly
    to :func:`to_messages` in that case.
    """
    columns = list(column_names)
    present = set(columns)
    found = [name for name, needed in SHAPES.items() if all(c in present for c in needed)]
    supported = "; ".join(f"{name!r} (columns {list(needed)})" for name, needed in SHAPES.items())
    if not found:
        raise ValueError(
            f"cannot detect the conversation shape from columns {columns}: "
            f"supported shapes are {supported}"
        )
    if len(found) > 1:
        raise ValueError(
            f"columns {columns} match several conversation shapes {found}: pass shape= "
            f"explicitly (supported shapes are {supported})"
        )
    return found[0]


def _role_content_turns(
    turns: Any, row: int, column: str, role_key: str, content_key: str, role_map: Mapping[str, str]
) -> list[dict[str, str]]:
    """Validate one row of a list-of-turns column and convert it to OpenAI messages."""
    if not is_sequence(turns):
        raise ValueError(
            f"row {row}, field {column!r}: expected a list of turns, got {type_name(turns)}"
        )
    out: list[dict[str, str]] = []
    allowed = sorted(role_map)
    for j, turn in enumerate(turns):
        where = f"row {row}, field {column!r}[{j}]"
        if not isinstance(turn, Mapping):
            raise ValueError(f"{where}: expected a dict, got {type_name(turn)}")
        if role_key not in turn or turn[role_key] is None:
            raise ValueError(f"{where}[{role_key!r}]: missing; expected one of {allowed}")
        raw_role = turn[role_key]
        role = role_map.get(raw_role.lower()) if isinstance(raw_role, str) else None
        if role is None:
            raise ValueError(
                f"{where}[{role_key!r}]: expected one of {allowed}, got {short_repr(raw_role)}"
            )
        content = turn.get(content_key)
        if not isinstance(content, str):
            raise ValueError(
                f"{where}[{content_key!r}]: expected a string, got {type_name(content)}"
            )
        out.append({"role": role, "content": content})
    return out


_OPENAI_ROLE_MAP = {r: r for r in ROLES}


def _alpaca_row(batch: Mapping[str, Sequence[Any]], i: int, row: int) -> list[dict[str, str]]:
    """Messages for row ``i`` of an Alpaca-shaped batch (``row`` is its dataset index)."""

    def text(column: str, required: bool) -> str:
        if column not in batch:
            return ""
        value = batch[column][i]
        if value is None and not required:
            return ""
        if not isinstance(value, str):
            raise ValueError(
                f"row {row}, field {column!r}: expected a string, got {type_name(value)}"
            )
        return value

    out: list[dict[str, str]] = []
    system = text("system", required=False)
    if system:
        out.append({"role": "system", "content": system})
    history = batch["history"][i] if "history" in batch else None
    if history is not None:
        if not is_sequence(history):
            raise ValueError(
                f"row {row}, field 'history': expected a list of [user, assistant] pairs, "
                f"got {type_name(history)}"
            )
        for j, pair in enumerate(history):
            is_pair = is_sequence(pair) and len(pair) == 2
            if not (is_pair and all(isinstance(p, str) for p in pair)):
                raise ValueError(
                    f"row {row}, field 'history'[{j}]: expected a [user, assistant] pair of "
                    f"strings, got {short_repr(pair)}"
                )
            out.append({"role": "user", "content": pair[0]})
            out.append({"role": "assistant", "content": pair[1]})
    instruction = text("instruction", required=True)
    extra = text("input", required=False)
    out.append({"role": "user", "content": f"{instruction}\n{extra}" if extra else instruction})
    out.append({"role": "assistant", "content": text("output", required=True)})
    return out


def to_messages(
    batch: dict[str, list],
    indices: list[int] | None = None,
    shape: Shape = "auto",
) -> dict[str, list]:
    """Convert a batch of conversations to OpenAI-style ``messages``.

    Use as ``ds.map(to_messages, batched=True, with_indices=True)`` (add
    ``fn_kwargs={"shape": ...}`` to force a shape). Pure: the input batch is not modified and
    only the ``messages`` column is returned (the original columns stay unless the caller
    passes ``remove_columns``).

    Shapes (``shape="auto"`` picks one with :func:`detect_shape`):

    * ``"messages"``: ``[{"role", "content"}]`` with roles system/user/assistant (compared
      lower-cased); validated and passed through (only ``role`` and ``content`` are kept).
    * ``"conversations"`` (ShareGPT): ``[{"from", "value"}]``; ``from`` is compared lower-cased
      and mapped with :data:`SHAREGPT_ROLES` (human/user -> user;
      gpt/chatgpt/bing/bard/assistant/model -> assistant; system -> system).
    * ``"alpaca"``: ``instruction`` + optional ``input`` (joined by a newline when ``input`` is
      not empty) is the last user turn, ``output`` the last assistant turn; an optional
      ``history`` list of ``[user, assistant]`` pairs comes before them and an optional
      non-empty ``system`` string comes first.
    * ``"dialogs"`` (the MIG authors' pools): like ``messages``.

    The returned column is a :class:`~hf_mig.data.columns.TypedColumn` of Arrow type
    :data:`MESSAGES_ARROW_TYPE` (so a first batch made only of empty conversations does not fix
    the column type to ``list<null>``).

    Contracts: one output row per input row, in order. An empty conversation gives an empty
    list (the row is kept, never dropped; filter it yourself if needed). Empty strings as
    content are allowed. Turn order and role alternation are not checked. Any malformed value
    raises :class:`ValueError` naming the row (``indices[i]`` when given, else the position in
    the batch), the field and what was expected.
    """
    if shape == "auto":
        shape = detect_shape(batch.keys())  # type: ignore[assignment]
    elif shape not in SHAPES:
        raise ValueError(f"shape: expected 'auto' or one of {list(SHAPES)}, got {shape!r}")
    missing = [c for c in SHAPES[shape] if c not in batch]
    if missing:
        raise ValueError(
            f"shape {shape!r} needs columns {list(SHAPES[shape])}, "
            f"but the batch has {list(batch.keys())}"
        )
    rows = batch_rows(batch, indices)
    messages: list[list[dict[str, str]]] = []
    if shape == "alpaca":
        for i, row in enumerate(rows):
            messages.append(_alpaca_row(batch, i, row))
    else:
        if shape == "conversations":
            role_key, content_key, role_map = "from", "value", SHAREGPT_ROLES
        else:
            role_key, content_key, role_map = "role", "content", _OPENAI_ROLE_MAP
        column = batch[shape]
        for i, row in enumerate(rows):
            messages.append(
                _role_content_turns(column[i], row, shape, role_key, content_key, role_map)
            )
    return {"messages": messages_column(messages)}


def with_messages(dataset: Any, messages_column: str = "messages") -> Any:
    """``dataset`` with an OpenAI-shaped ``messages`` column.

    ``messages_column`` (when it is not ``"messages"``) is renamed to ``messages``, replacing any
    existing one; a pool without ``messages`` is normalised with :func:`to_messages`.
    """
    ds = dataset
    if messages_column != "messages" and messages_column in ds.column_names:
        if "messages" in ds.column_names:
            ds = ds.remove_columns("messages")
        ds = ds.rename_column(messages_column, "messages")
    if "messages" not in ds.column_names:
        ds = ds.map(to_messages, batched=True, with_indices=True, desc="to messages")
    return ds


def batch_conversations(
    batch: Mapping[str, list], column: str, indices: Sequence[int] | None = None
) -> list[Any]:
    """The conversations of a batch: its ``column`` when it has one, else the record shape that
    :func:`detect_shape` finds in the batch converted with :func:`to_messages` (row numbers from
    ``indices``). Raises :func:`detect_shape`'s ``ValueError`` when the batch has neither."""
    if column in batch:
        return list(batch[column])
    detect_shape(batch.keys())
    return to_messages(dict(batch), list(indices) if indices is not None else None)["messages"]


# --------------------------------------------------------------------------------------
# reading OpenAI-style messages


class ConversationError(ValueError):
    """A malformed OpenAI-style conversation.

    ``column`` is the conversation's column, ``path`` the keys from it to the bad value
    (``(2, "content", 0, "text")``), ``expected`` what the value should be (``None`` when it is
    missing) and ``got`` how it looks. ``str(error)`` reads ``messages[2].content[0].text must
    be a string, got 3``; :meth:`in_row` gives ``row 7, field 'messages'[2]['content'][0]
    ['text']: expected a string, got 3``.
    """

    def __init__(
        self,
        column: str,
        path: tuple[int | str, ...],
        expected: str | None,
        got: str = "",
        note: str = "",
    ) -> None:
        self.column = column
        self.path = path
        self.expected = expected
        self.got = got
        self.note = note
        super().__init__(f"{self.field} {self._problem('must be')}")

    @property
    def field(self) -> str:
        """The bad value's place, as ``messages[2].content``."""
        steps = (f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.path)
        return self.column + "".join(steps)

    def _problem(self, verb: str) -> str:
        if self.expected is None:
            return "is missing" if verb == "must be" else "missing"
        got = f", got {self.got}" if self.got else ""
        return f"{verb} {self.expected}{got}{self.note}"

    def in_row(self, row: int) -> str:
        """The message with the row number, in the form of :func:`to_messages`' errors."""
        steps = "".join(f"[{p!r}]" for p in self.path)
        return f"row {row}, field {self.column!r}{steps}: {self._problem('expected')}"


def _shown(value: Any) -> str:
    return f"{value!r:.80}"


def iter_messages(
    messages: Any, column: str = "messages", *, strict: bool = True
) -> Iterator[tuple[int, str, Mapping[str, Any]]]:
    """``(position, role, message)`` for each message of one conversation, validated lazily.

    ``messages`` must be a list of dicts with a string ``role`` (a tuple works too); anything
    else raises :class:`ConversationError` when the walk reaches it, so a caller that stops
    early never sees the messages after. ``strict=False`` walks ``None`` as an empty
    conversation and skips the items that are not dicts with a string role.
    """
    if not isinstance(messages, (list, tuple)):
        if not strict:
            return
        raise ConversationError(
            column, (), "a list of {'role', 'content'} dicts", type_name(messages)
        )
    for j, message in enumerate(messages):
        if not isinstance(message, Mapping):
            if not strict:
                continue
            raise ConversationError(
                column, (j,), "a dict with 'role' and 'content'", _shown(message)
            )
        role = message.get("role")
        if not isinstance(role, str):
            if not strict:
                continue
            hint = (
                " (this looks like ShareGPT 'from'/'value'; convert to role/content)"
                if "from" in message
                else ""
            )
            raise ConversationError(column, (j, "role"), "a string", _shown(role), hint)
        yield j, role, message


def content_text(
    content: Any, column: str, path: tuple[int | str, ...], *, parts: Parts = "strict"
) -> str | None:
    """The text of one message's ``content`` (found at ``column`` + ``path``).

    A string is returned as is and ``None`` stays ``None``. A list of content parts gives the
    ``text`` of its ``{"type": "text"}`` parts joined by newlines; with ``parts="strict"`` a part
    that is not a dict with a ``type``, or a text part whose ``text`` is not a string, raises
    :class:`ConversationError`, with ``parts="lenient"`` such parts are left out. Any other value
    raises :class:`ConversationError`.
    """
    if content is None or isinstance(content, str):
        return content
    if not isinstance(content, (list, tuple)):
        raise ConversationError(column, path, "a string", _shown(content))
    pieces: list[str] = []
    for k, part in enumerate(content):
        if not isinstance(part, Mapping) or "type" not in part:
            if parts == "lenient":
                continue
            expected = "a content part dict with 'type'"
            raise ConversationError(column, (*path, k), expected, _shown(part))
        if part["type"] != "text":
            continue
        text = part.get("text")
        if not isinstance(text, str):
            if parts == "lenient":
                continue
            raise ConversationError(column, (*path, k, "text"), "a string", _shown(text))
        pieces.append(text)
    return "\n".join(pieces)


def conversation_pairs(
    messages: Any, column: str = "messages", *, strict: bool = True
) -> list[tuple[str, str]]:
    """The (user, assistant) turns of one OpenAI-style conversation, as DEITA pairs them.

    Each user message opens a turn; the next assistant message is its response. A user message
    not followed by an assistant message (e.g. the last one, or two user messages in a row) gets
    the response ``""``; ``None`` content reads as ``""``. System and tool messages, and
    assistant messages before any user message, are ignored (their content is not read).
    Raises :class:`ConversationError` for a malformed conversation (see :func:`iter_messages`
    for ``strict``) or content (:func:`content_text`).
    """
    pairs: list[tuple[str, str]] = []
    user: str | None = None
    for j, role, message in iter_messages(messages, column, strict=strict):
        if role == "user":
            if user is not None:
                pairs.append((user, ""))
            user = content_text(message.get("content"), column, (j, "content")) or ""
        elif role == "assistant" and user is not None:
            answer = content_text(message.get("content"), column, (j, "content"))
            pairs.append((user, answer or ""))
            user = None
    if user is not None:
        pairs.append((user, ""))
    return pairs


def clean_messages(messages: Any, column: str = "messages") -> list[dict[str, str]]:
    """Every message of one conversation as ``{"role", "content"}`` with string content (``None``
    reads as ``""``, content parts are joined). Raises :class:`ConversationError` for a
    malformed conversation."""
    out = []
    for j, role, message in iter_messages(messages, column):
        content = content_text(message.get("content"), column, (j, "content"))
        out.append({"role": role, "content": content or ""})
    return out


def user_turns(
    messages: Any,
    column: str = "messages",
    *,
    first: bool = False,
    parts: Parts = "strict",
    require_content: bool = False,
) -> list[str]:
    """The non-empty (not blank) user texts of one conversation, in order; with ``first`` only
    the first of them (messages after it are not read).

    ``None`` content is allowed for other roles (e.g. an assistant turn that only calls tools)
    and is an error for a user message; ``require_content`` makes a message without a
    ``content`` key an error too. ``parts`` as for :func:`content_text`. Raises
    :class:`ConversationError` for a malformed conversation.
    """
    texts: list[str] = []
    for j, role, message in iter_messages(messages, column):
        if require_content and "content" not in message:
            raise ConversationError(column, (j, "content"), None)
        content = content_text(message.get("content"), column, (j, "content"), parts=parts)
        if content is None:
            if role != "user":
                continue
            raise ConversationError(column, (j, "content"), "a string", _shown(content))
        if role == "user" and content.strip():
            texts.append(content)
            if first:
                break
    return texts
