"""The one exception type for bad user input: the CLI prints it as one line and exits with code 2."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path


class UsgenInputError(Exception):
    """A file or argument a user gave cannot be used.

    ``str(err)`` is the single line the CLI prints: ``<path>: <problem>``.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


@contextmanager
def refuse_invalid(path: str | Path | None):
    """Turn the ValueError a Cine or Volume raises for impossible values read from a file (zero
    spacing, a singular orientation, NaN times) into the one-line UsgenInputError naming that file."""
    try:
        yield
    except ValueError as err:
        raise UsgenInputError(path, str(err)) from None
