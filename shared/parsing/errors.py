"""The one error type of the parsing engine: what is wrong, and where in the source.

``ParseErrorCode`` is every code the engine can fail an input with, defined here once; the
domain's ``ErrorCode`` (``shared/domain/uploads.py``) adds the pipeline's own codes to these, and the
API documents both from there. The engine itself depends on nothing outside this package.
"""

from __future__ import annotations

from enum import StrEnum


class ParseErrorCode(StrEnum):
    """Why an input was refused. Stable strings: they are stored, shown to users and tested."""

    EMPTY_FILE = "empty_file"
    NO_RECORDS = "no_records"
    UNSUPPORTED_FORMAT = "unsupported_format"
    CORRUPT_COMPRESSION = "corrupt_compression"
    TRUNCATED_COMPRESSION = "truncated_compression"
    DECOMPRESSION_LIMIT = "decompression_limit"
    INVALID_CHARACTER = "invalid_character"
    INVALID_ENCODING = "invalid_encoding"
    INVALID_HEADER_ENCODING = "invalid_header_encoding"
    MISSING_HEADER = "missing_header"
    HEADER_TOO_LONG = "header_too_long"
    TITLE_TOO_LONG = "title_too_long"
    FIELD_TOO_LONG = "field_too_long"
    ATTRIBUTES_TOO_LONG = "attributes_too_long"
    LINE_TOO_LONG = "line_too_long"
    ROW_TOO_LONG = "row_too_long"
    READ_TOO_LONG = "read_too_long"
    TOO_MANY_RECORDS = "too_many_records"
    TRUNCATED_RECORD = "truncated_record"
    PLUS_TITLE_MISMATCH = "plus_title_mismatch"
    INVALID_QUALITY = "invalid_quality"
    QUALITY_LENGTH = "quality_length"
    WHITESPACE_IN_SEQUENCE = "whitespace_in_sequence"
    WHITESPACE_IN_QUALITY = "whitespace_in_quality"
    MISSING_COLUMN = "missing_column"
    MISSING_NAME = "missing_name"
    WRONG_FIELD_COUNT = "wrong_field_count"
    UNTERMINATED_QUOTE = "unterminated_quote"
    INVALID_QUOTING = "invalid_quoting"


# A message is stored and shown on every status poll: it quotes the input in excerpts at most.
MAX_MESSAGE_BYTES = 1024


def bounded(message: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """``message`` cut to at most ``limit`` bytes of UTF-8, marked with an ellipsis when cut."""
    data = message.encode("utf-8", "replace")
    if len(data) <= limit:
        return message
    return data[: limit - 3].decode("utf-8", "ignore") + "\u2026"


class ParseError(Exception):
    """Bad input. The upload fails with this code and position; retrying cannot help."""

    def __init__(self, code: ParseErrorCode, message: str, line: int | None = None, column: int | None = None) -> None:
        message = bounded(message)
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
