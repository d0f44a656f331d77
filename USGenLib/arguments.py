"""argparse types shared by cli.py and the job packages' own sub-commands: bounded numbers, so a
wrong value is a one-line error before anything is allocated."""

from __future__ import annotations

import argparse
import math


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
