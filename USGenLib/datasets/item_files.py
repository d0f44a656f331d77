"""What every data-set item writer shares: the item's name and its item.json (numpy values as JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from USGenLib.io.atomic import atomic_write_text


def item_id(kind: str, index: int) -> str:
    return f"{kind}_{index:06d}"


def write_item_json(path: Path, obj: dict) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, default=_jsonable) + "\n")


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON-serialisable: {type(o)}")
