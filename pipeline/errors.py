"""User-facing errors.

The CLI catches `LeadpropError`, prints `str(err)` as one paragraph and exits with code 2,
without a traceback. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any


class LeadpropError(Exception):
    """An error the user can fix; its message is one self-contained paragraph."""


class ConfigError(LeadpropError):
    """Bad params or configuration, e.g. "`ingest.delimiter` must be one character; got ';;'"."""


class DataError(LeadpropError):
    """Bad input data.

    Besides the message, carries where the problem is so callers and tests can inspect it:
    `file`, `column`, `n_rows` (how many rows are affected) and `example` (one offending
    value, as text).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        column: str | None = None,
        n_rows: int | None = None,
        example: str | None = None,
    ) -> None:
        super().__init__(message)
        self.file = file
        self.column = column
        self.n_rows = n_rows
        self.example = example

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only attributes survive pickling (multiprocessing, pytest-xdist).
        return (_rebuild_data_error, (str(self), self.file, self.column, self.n_rows, self.example))


def _rebuild_data_error(
    message: str, file: str | None, column: str | None, n_rows: int | None, example: str | None
) -> DataError:
    return DataError(message, file=file, column=column, n_rows=n_rows, example=example)
