"""What every ``usgen bench TARGET`` shares: its sub-parser, ending in --json, and a run that prints
the measured figures (one JSON object with --json, else the target's own words) and writes no files."""

from __future__ import annotations

import json
from contextlib import contextmanager
from functools import partial
from pathlib import Path


@contextmanager
def bench_target(targets, common, name: str, help: str, headline: str, measure):
    """Register ``usgen bench NAME`` and yield its parser for the target's own options; --json is added
    after them (the help lists it last) and names ``headline``, the key of the CPU figure.
    ``measure(args)`` returns (figures, words): the figures dict and the function that formats it as
    text; it imports what it times itself, so building the CLI parser stays fast."""
    parser = targets.add_parser(name, parents=[common], help=help)
    yield parser
    parser.add_argument("--json", action="store_true", help=f"print one JSON object (key {headline}: the CPU figure)")
    parser.set_defaults(run=partial(_print_figures, measure))


def _print_figures(measure, args) -> list[Path]:
    figures, words = measure(args)
    print(json.dumps(figures) if args.json else words(figures))
    return []
