"""Errors of reading pools and writing outputs."""

from __future__ import annotations

import os

__all__ = ["OutputExistsError", "OutputFormatError", "PoolFormatError"]


class PoolFormatError(ValueError):
    """A pool file cannot be read as a table.

    Attributes: ``path`` (the file), ``lineno`` (1-based line of the first bad record, or
    ``None`` when the problem is the whole file, such as an empty one), ``reason`` (what is
    wrong), ``offset`` (0-based byte offset in the file, for encoding errors) and ``field``
    (the field, for type conflicts).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        lineno: int | None,
        reason: str,
        excerpt: str = "",
        *,
        offset: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path)
        self.lineno = lineno
        self.reason = reason
        self.offset = offset
        self.field = field
        where = f"{self.path}: line {lineno}" if lineno is not None else self.path
        super().__init__(f"{where}: {reason}" + (f"; near: {excerpt}" if excerpt else ""))


class OutputFormatError(ValueError):
    """A dataset holds values that the chosen output format cannot store exactly.

    The message names the output, the column (and the row where one value is at fault) and a
    format that can hold it. Raised before anything is left at the output path.
    """


class OutputExistsError(FileExistsError):
    """An output path already exists and may not be replaced.

    Raised when ``overwrite`` is off, or when the path is a folder holding files this tool did
    not write (those are never replaced, whatever ``overwrite`` says).
    """
