"""The one exception type for bad user input: the CLI prints it as one line and exits with code 2."""

from __future__ import annotations

from pathlib import Path


class UsgenInputError(Exception):
    """A file or argument a user gave cannot be used.

    ``str(err)`` is the single line the CLI prints: ``<path>: <problem>``.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
