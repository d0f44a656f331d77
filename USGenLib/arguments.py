"""argparse pieces shared by cli.py and the job packages' own sub-commands: bounded numbers, so a
wrong value is a one-line error before anything is allocated, and the options every ``train`` shares."""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

from USGenLib.train.devices import DEVICE_CHOICES


def int_in(lo: int, hi: int):
    """An argparse type: a whole number in lo..hi (a one-line error otherwise)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is outside {lo}..{hi}")
        return value
    parse.__name__ = "int"
    return parse


def finite(lo: float, hi: float):
    """An argparse type: a finite number in lo..hi (inf and nan are refused)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if not math.isfinite(value) or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{text} is outside {lo:g}..{hi:g}")
        return value
    parse.__name__ = "float"
    return parse


def add_train_arguments(parser: argparse.ArgumentParser, steps_help: str, validate_every: int | None = 500) -> None:
    """The options of every ``train`` sub-command: run folder, steps, resume, seed, device and how often the
    loop checkpoints and validates (``validate_every`` None: the command's own default, said in its help)."""
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--steps", type=int_in(1, 10**9), help=steps_help)
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in the run folder")
    parser.add_argument("--seed", type=int_in(0, 2**63 - 1), default=0)
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument("--checkpoint-every", type=int_in(1, 10**9), default=100, help="steps (default 100)")
    parser.add_argument("--validate-every", type=int_in(1, 10**9), default=validate_every,
                        help="steps (default: a quarter of the steps)" if validate_every is None
                        else f"steps (default {validate_every})")


def command_line() -> str:
    """The command as typed, for model cards and run records."""
    return "usgen " + " ".join(shlex.quote(a) for a in sys.argv[1:])
