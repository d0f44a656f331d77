"""The EchoNet-Dynamic layout: ROOT/Videos/*.avi, ROOT/FileList.csv, ROOT/VolumeTracings.csv.

`usgen dataset echo` writes its items this way too (under DIR/echonet/), so code written for the
real EchoNet-Dynamic runs on the synthetic set, and these readers read both.

FileList.csv:       FileName (no extension), EF (%), ESV, EDV (ml), FrameHeight, FrameWidth, FPS,
                    NumberOfFrames, Split (TRAIN, VAL, TEST).
VolumeTracings.csv: FileName (with .avi), X1, Y1, X2, Y2 (pixels), Frame. Per traced frame the
                    first row is the LV long axis, the others the disc chords across it; the ES and
                    ED frames are traced.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

import numpy as np

from USGenLib.errors import UsgenInputError
from USGenLib.io.atomic import atomic_write_text

FILELIST_COLUMNS = ("FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split")
TRACING_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")


def _csv_text(header, rows) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def write_echonet_tables(rows: list[dict], root: str | Path) -> None:
    """FileList.csv and VolumeTracings.csv for echo manifest rows (with ``_filename`` and ``_tracings``)."""
    root = Path(root)
    files = [(r["_filename"], f"{r['ef']:.4f}", f"{r['esv']:.4f}", f"{r['edv']:.4f}", r["height"], r["width"],
              f"{r['fps']:.4f}", r["frames"], r["split"].upper()) for r in rows]
    atomic_write_text(root / "FileList.csv", _csv_text(FILELIST_COLUMNS, files))
    tracings = [(name, f"{x1:.3f}", f"{y1:.3f}", f"{x2:.3f}", f"{y2:.3f}", frame)
                for r in rows for (name, x1, y1, x2, y2, frame) in r["_tracings"]]
    atomic_write_text(root / "VolumeTracings.csv", _csv_text(TRACING_COLUMNS, tracings))


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise UsgenInputError(path, "missing (an EchoNet-Dynamic folder holds FileList.csv, VolumeTracings.csv, Videos/)")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = set(required) - set(reader.fieldnames or [])
        if missing:
            raise UsgenInputError(path, f"lacks the column(s) {', '.join(sorted(missing))}")
        return list(reader)


def read_echonet_filelist(root: str | Path) -> list[dict]:
    """Rows of ROOT/FileList.csv with numbers converted; FileName without its extension."""
    path = Path(root) / "FileList.csv"
    out = []
    for row in _read_csv(path, FILELIST_COLUMNS):
        try:
            out.append({
                "FileName": Path(row["FileName"]).stem if row["FileName"].lower().endswith(".avi") else row["FileName"],
                "EF": float(row["EF"]), "ESV": float(row["ESV"]), "EDV": float(row["EDV"]),
                "FrameHeight": int(row["FrameHeight"]), "FrameWidth": int(row["FrameWidth"]),
                "FPS": float(row["FPS"]), "NumberOfFrames": int(row["NumberOfFrames"]),
                "Split": row["Split"].upper(),
            })
        except ValueError as err:
            raise UsgenInputError(path, f"row for {row.get('FileName')!r} is not numeric where it must be ({err})") from err
    return out


def read_volume_tracings(root: str | Path) -> dict[str, dict[int, np.ndarray]]:
    """{file stem: {frame: (N, 4) array of X1, Y1, X2, Y2}} from ROOT/VolumeTracings.csv."""
    path = Path(root) / "VolumeTracings.csv"
    out: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for row in _read_csv(path, TRACING_COLUMNS):
        stem = Path(row["FileName"]).stem
        try:
            out[stem][int(row["Frame"])].append([float(row[c]) for c in ("X1", "Y1", "X2", "Y2")])
        except ValueError as err:
            raise UsgenInputError(path, f"tracing row for {row['FileName']!r} is not numeric ({err})") from err
    return {stem: {f: np.asarray(v) for f, v in frames.items()} for stem, frames in out.items()}
