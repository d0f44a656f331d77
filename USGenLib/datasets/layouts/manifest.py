"""The USGen data-set layout: one folder per item plus DIR/manifest.csv.

```
DIR/manifest.csv              one row per item (columns below)
DIR/<id>/item.json            the item's parameters (settings, scene, geometry)
DIR/<id>/<files>              per kind, see ITEM_FILES
DIR/echonet/                  echo only: the same items in EchoNet-Dynamic layout (see echonet.py)
```

Manifest columns: ``id, split, kind, path, seed, frames, height, width, fps`` and per kind
``coverage, coverage_quartile, target_coverage, scene, mode`` (cfd), ``ef, edv, esv, view, ed_frame,
es_frame, heart_rate`` (echo), ``phantom, probe, quality_pair`` (enhance). Splits are ``train``,
``val`` and ``test`` (80/10/10, drawn from the seed). Coverage is the mean fraction of frame pixels
in the CFD mask; ``coverage_quartile`` (1..4) ranks it within the data set, the sampling weight.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from USGenLib.errors import UsgenInputError
from USGenLib.io.atomic import atomic_write_text

MANIFEST_NAME = "manifest.csv"
KINDS = ("cfd", "echo", "enhance")
ITEM_FILES: dict[str, tuple[str, ...]] = {
    "cfd": ("cfd.seq.nrrd", "bmode.seq.nrrd", "mask.seq.nrrd"),
    "echo": ("cine.seq.nrrd", "lv_mask.seq.nrrd"),
    "enhance": ("lq.seq.nrrd", "hq.seq.nrrd", "labels.seq.nrrd", "attenuation.seq.nrrd", "fov_mask.nrrd"),
}
BASE_COLUMNS = ("id", "split", "kind", "path", "seed", "frames", "height", "width", "fps")
KIND_COLUMNS: dict[str, tuple[str, ...]] = {
    "cfd": ("coverage", "coverage_quartile", "target_coverage", "scene", "mode", "dual"),
    "echo": ("ef", "edv", "esv", "view", "ed_frame", "es_frame", "heart_rate"),
    "enhance": ("phantom", "probe", "quality_pair"),
}
INT_COLUMNS = {"seed", "frames", "height", "width", "coverage_quartile", "ed_frame", "es_frame"}
FLOAT_COLUMNS = {"fps", "coverage", "target_coverage", "ef", "edv", "esv", "heart_rate"}
SPLITS = ("train", "val", "test")


def manifest_columns(kind: str) -> tuple[str, ...]:
    if kind not in KIND_COLUMNS:
        raise ValueError(f"unknown data-set kind {kind!r} (one of {', '.join(KINDS)})")
    return BASE_COLUMNS + KIND_COLUMNS[kind]


def assign_splits(n: int, seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> list[str]:
    """Deterministic train/val/test labels for ``n`` items; val and test get one item each once n >= 3."""
    n_val = int(round(n * fractions[1]))
    n_test = int(round(n * fractions[2]))
    if n >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    labels = np.array(["train"] * (n - n_val - n_test) + ["val"] * n_val + ["test"] * n_test)
    perm = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED])).permutation(n)
    return [str(s) for s in labels[np.argsort(perm)]]


def coverage_quartiles(coverage) -> np.ndarray:
    """(N,) int quartile 1..4 of each coverage by rank within the set (balanced: N/4 each, ties by order)."""
    cov = np.asarray(coverage, dtype=np.float64)
    n = cov.size
    if n == 0:
        return np.zeros(0, int)
    rank = np.empty(n, int)
    rank[np.argsort(cov, kind="stable")] = np.arange(n)
    return (1 + (4 * rank) // n).astype(int)


def _fmt(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    return str(value)


def write_manifest(rows: list[dict], path: str | Path, columns: tuple[str, ...] | None = None) -> Path:
    """Write rows (dicts) as CSV with ``columns`` first (extra keys follow, sorted), atomically."""
    path = Path(path)
    if columns is None:
        columns = manifest_columns(rows[0]["kind"]) if rows else BASE_COLUMNS
    extra = sorted({k for r in rows for k in r} - set(columns))
    header = list(columns) + extra
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        writer.writerow([_fmt(r.get(c, "")) for c in header])
    atomic_write_text(path, buf.getvalue())
    return path


def _convert(key: str, value: str):
    if value == "":
        return None
    if key in INT_COLUMNS:
        return int(float(value))
    if key in FLOAT_COLUMNS:
        return float(value)
    return value


def read_manifest(path: str | Path) -> list[dict]:
    """Rows of a manifest.csv (a folder holding one is accepted), with numbers converted.

    Raises UsgenInputError when the file is missing or lacks the columns ``id`` and ``split``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise UsgenInputError(path, "no manifest.csv here (make one with `usgen dataset`)")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"id", "split"} - set(reader.fieldnames or [])
        if missing:
            raise UsgenInputError(path, f"manifest lacks the column(s) {', '.join(sorted(missing))}")
        return [{k: _convert(k, v) for k, v in row.items()} for row in reader]
