"""The one error type of the parsing engine: what is wrong, and where in the source."""

from __future__ import annotations


class ParseError(Exception):
    """Bad input. The upload fails with this code and position; retrying cannot help."""

    def __init__(self, code: str, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = ""
        if self.line is not None:
            where = f" (line {self.line}" + (f", column {self.column}" if self.column is not None else "") + ")"
        return f"{self.code}: {self.message}{where}"
