"""Tolerant parsing of tagger outputs: a JSON list of ``{"tag": ..., "explanation": ...}``.

Language models rarely return exactly the requested JSON. :func:`parse_tags` accepts what they
actually write and says what it repaired, and fails (``error`` set) only when no tag can be
recovered. It handles:

* a list of objects (the InsTag format), a list of strings, a list of ``[tag, explanation]``
  pairs, a single object, a sequence of objects without the enclosing list, an object holding a
  ``"tags"`` list;
* Markdown code fences (```` ```json ... ``` ````), text before and after the JSON;
* single-quoted (Python literal) strings;
* truncated output (generation stopped by ``max_new_tokens``): the complete items are kept;
* as a last resort, ``"tag": "..."`` pairs found by a regular expression (e.g. when an
  explanation holds an unescaped quote).

Tags are cleaned by :func:`clean_tag` (whitespace collapsed and stripped, surrounding quotes
dropped, lower-cased) and de-duplicated in order of first appearance. An empty list (``[]``) is
a successful parse with no tag. Nothing here guesses tags from free text: prose without any
JSON-like structure is an error.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ParsedTags", "clean_tag", "parse_tags"]

_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_-]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_TAG_PAIR = re.compile(r"""["']tag["']\s*:\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")
_SPACES = re.compile(r"\s+")
_MAX_CANDIDATES = 32  # opening brackets tried before giving up
_MAX_LITERAL = 200_000  # characters handed to ast.literal_eval at most


@dataclass
class ParsedTags:
    """The outcome of :func:`parse_tags`.

    Attributes:
        tags: cleaned (:func:`clean_tag`), de-duplicated tags in output order.
        items: the recovered items as ``{"tag": str, "explanation": str | None}`` (raw text).
        error: ``None`` when the output was understood (possibly with repairs), else why not.
        repairs: what had to be repaired, in order, from ``"fenced"``, ``"leading_text"``,
            ``"trailing_text"``, ``"single_quotes"``, ``"truncated"``, ``"no_list"``,
            ``"invalid_items"`` (items without a usable tag were skipped), ``"regex"``.
    """

    tags: list[str]
    items: list[dict[str, str | None]] = field(default_factory=list)
    error: str | None = None
    repairs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the output was understood (``error is None``)."""
        return self.error is None


def clean_tag(tag: Any) -> str | None:
    """A tag as a model wrote it, cleaned: ``" 'Python  Programming' "`` -> ``"python
    programming"``; ``None`` for a non-string or blank one. Vocabularies compare tags by
    :func:`hf_mig.annotate.vocabulary.normalize_tag`, which also lemmatises."""
    if not isinstance(tag, str):
        return None
    text = _SPACES.sub(" ", tag).strip().strip("\"'`").strip().lower()
    return text or None


def _string_end(text: str, i: int) -> int | None:
    """Index just past the string literal starting at ``text[i]`` (a quote), or ``None``."""
    quote = text[i]
    j = i + 1
    while j < len(text):
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == quote:
            return j + 1
        if c == "\n" and quote == "'":
            return None  # an apostrophe in prose, not a Python string
        j += 1
    return None


def _match(text: str, i: int) -> int | None:
    """Index just past the bracket that closes ``text[i]`` (``[`` or ``{``), or ``None``."""
    depth = 0
    j = i
    while j < len(text):
        c = text[j]
        if c in "\"'":
            end = _string_end(text, j)
            if end is None:
                return None
            j = end
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return None


def _loads(segment: str) -> tuple[bool, Any, bool]:
    """``(ok, value, used_python_literal)`` for one JSON (or Python literal) segment."""
    try:  # strict=False: raw newlines and tabs inside strings, as models often write them
        return True, json.loads(segment, strict=False), False
    except (json.JSONDecodeError, RecursionError):
        pass
    if len(segment) <= _MAX_LITERAL:
        try:
            return True, ast.literal_eval(segment), True
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    return False, None, False


def _item(value: Any) -> dict[str, str | None] | None:
    """One item as ``{"tag", "explanation"}``, or ``None`` when it holds no usable tag."""
    if isinstance(value, str):
        return {"tag": value, "explanation": None} if clean_tag(value) else None
    if isinstance(value, Mapping):
        lowered = {str(k).strip().lower(): v for k, v in value.items()}
        tag = lowered.get("tag")
        if clean_tag(tag) is None:
            return None
        explanation = lowered.get("explanation")
        return {"tag": tag, "explanation": explanation if isinstance(explanation, str) else None}
    if isinstance(value, Sequence) and value and isinstance(value[0], str):
        explanation = value[1] if len(value) > 1 and isinstance(value[1], str) else None
        return {"tag": value[0], "explanation": explanation} if clean_tag(value[0]) else None
    return None


def _items_of(value: Any) -> list[Any] | None:
    """The list of raw items a parsed value stands for, or ``None`` if it is not tag-shaped."""
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, Mapping):
        lowered = {str(k).strip().lower(): v for k, v in value.items()}
        if "tag" in lowered:
            return [value]
        for key in ("tags", "intentions", "labels"):
            inner = lowered.get(key)
            if isinstance(inner, list):
                return list(inner)
    return None


def _list_body(text: str, start: int) -> tuple[list[Any], bool, int, bool]:
    """Items of the list opened at ``text[start]``, one by one: ``(items, literal, skipped, cut)``.

    Used when the list as a whole does not parse. Items that are complete but unparsable are
    skipped (counted); the scan stops at an incomplete item or at the end of ``text`` (``cut``)
    or at the closing bracket.
    """
    items: list[Any] = []
    literal = False
    skipped = 0
    j = start + 1
    while j < len(text):
        c = text[j]
        if c in " \t\r\n,":
            j += 1
            continue
        if c == "]":
            return items, literal, skipped, False
        if c in "[{":
            end = _match(text, j)
        elif c in "\"'":
            end = _string_end(text, j)
        else:
            break
        if end is None:
            break
        ok, value, used = _loads(text[j:end])
        if ok:
            items.append(value)
            literal = literal or used
        else:
            skipped += 1
        j = end
    return items, literal, skipped, True


def _object_run(text: str, start: int) -> tuple[list[Any], bool, bool, int]:
    """Consecutive top-level objects from ``text[start]``: ``(values, literal, cut, end)``."""
    values: list[Any] = []
    literal = cut = False
    j = start
    end_of_run = start
    while j < len(text):
        c = text[j]
        if c in " \t\r\n,":
            j += 1
            continue
        if c != "{":
            break
        end = _match(text, j)
        if end is None:
            cut = True
            break
        ok, value, used = _loads(text[j:end])
        if not ok:
            break
        values.append(value)
        literal = literal or used
        j = end_of_run = end
    return values, literal, cut, end_of_run


def _candidates(text: str) -> Iterable[int]:
    count = 0
    for m in re.finditer(r"[\[{]", text):
        yield m.start()
        count += 1
        if count >= _MAX_CANDIDATES:
            return


def _finish(raw_items: list[Any], repairs: list[str]) -> ParsedTags:
    items: list[dict[str, str | None]] = []
    tags: list[str] = []
    seen: set[str] = set()
    invalid = 0
    for raw in raw_items:
        item = _item(raw)
        if item is None:
            invalid += 1
            continue
        items.append(item)
        tag = clean_tag(item["tag"])
        if tag is not None and tag not in seen:
            seen.add(tag)
            tags.append(tag)
    if invalid:
        repairs.append("invalid_items")
    if raw_items and not items:
        return ParsedTags([], [], f"none of the {len(raw_items)} items holds a usable tag", repairs)
    return ParsedTags(tags, items, None, repairs)


def parse_tags(text: str | None) -> ParsedTags:
    """Parse a tagger output into tags; see the module docstring for what is tolerated.

    Never raises for any string input: failures come back with ``error`` set and ``tags == []``.
    ``None`` (no output) is an error too.
    """
    if text is None:
        return ParsedTags([], [], "no output")
    if not isinstance(text, str):
        return ParsedTags([], [], f"output is not a string but {type(text).__name__}")
    repairs: list[str] = []
    body = text.strip()
    fenced = _FENCE.search(body)
    if fenced is not None and ("[" in fenced.group(1) or "{" in fenced.group(1)):
        body = fenced.group(1).strip()
        repairs.append("fenced")
    if not body:
        return ParsedTags([], [], "empty output", repairs)

    failure: str | None = None
    for start in _candidates(body):
        local = list(repairs)
        if body[:start].strip():
            local.append("leading_text")
        if body[start] == "[":
            result, final = _from_list(body, start, repairs, local)
        else:
            result, final = _from_objects(body, start, local), False
        if result is None:
            continue
        if result.ok or final:
            return result
        failure = failure or result.error
    return _last_resort(body, repairs, failure)


def _from_list(
    body: str, start: int, repairs: list[str], local: list[str]
) -> tuple[ParsedTags | None, bool]:
    """The tags of the list opened at ``body[start]``: ``(result, final)``, ``result`` ``None``
    when the list holds no item; ``final`` when the result is the answer even if it failed (the
    ``"tag"`` pairs of a list that does not parse as a whole outnumber its parsed items).

    A list that parses is read whole; otherwise its complete items are read one by one, up to
    its closing bracket or, when it has none, to the end of the output (``truncated``)."""
    end = _match(body, start)
    if end is None:
        items, used, skipped, _ = _list_body(body, start)
        if not items:
            return None, False
        if skipped:
            local.append("invalid_items")
        if used:
            local.append("single_quotes")
        local.append("truncated")
        return _finish(items, local), False
    ok, value, used = _loads(body[start:end])
    if ok and isinstance(value, list | tuple):
        if used:
            local.append("single_quotes")
        if body[end:].strip():
            local.append("trailing_text")
        return _finish(list(value), local), False
    items, used, skipped, _ = _list_body(body[:end], start)
    if not items:
        return None, False
    if used:
        local.append("single_quotes")
    if skipped:
        local.append("invalid_items")
    result = _finish(items, local)
    pairs = _pairs(body[start:end])
    if len(pairs) > len(result.items):
        return _finish([{"tag": p} for p in pairs], [*repairs, "regex"]), True
    return result, False


def _from_objects(body: str, start: int, local: list[str]) -> ParsedTags | None:
    """The tags of the objects that follow one another from ``body[start]`` (a ``{``), each an
    item or holding a list of items; ``None`` when they hold none."""
    values, used, cut, end = _object_run(body, start)
    raw_items: list[Any] = []
    for value in values:
        inner = _items_of(value)
        if inner is not None:
            raw_items.extend(inner)
    if not raw_items:
        return None
    if used:
        local.append("single_quotes")
    if any(isinstance(v, Mapping) and _item(v) is not None for v in values):
        local.append("no_list")
    if cut:
        local.append("truncated")
    elif body[end:].strip():
        local.append("trailing_text")
    return _finish(raw_items, local)


def _last_resort(body: str, repairs: list[str], failure: str | None) -> ParsedTags:
    """``"tag": "..."`` pairs found anywhere, else the error that says why nothing parsed."""
    pairs = _pairs(body)
    if pairs:
        return _finish([{"tag": p} for p in pairs], [*repairs, "regex"])
    if not any(c in body for c in "[{"):
        return ParsedTags([], [], f"no JSON list or object in the output: {body[:80]!r}", repairs)
    if failure is not None:
        return ParsedTags([], [], failure, repairs)
    return ParsedTags([], [], f"could not parse the output: {body[:80]!r}", repairs)


def _pairs(text: str) -> list[str]:
    """Values of ``"tag": "..."`` (or single-quoted) pairs found anywhere in ``text``."""
    return [_unescape(a if a else b) for a, b in _TAG_PAIR.findall(text)]


def _unescape(value: str) -> str:
    try:
        return json.loads(f'"{value}"')
    except json.JSONDecodeError:
        return value
