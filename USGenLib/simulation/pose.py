"""Probe poses: 4x4 matrices mapping probe coordinates (mm) to the volume's physical space (LPS mm).

Probe coordinates: origin at the centre of the transducer face, x lateral, y depth, z elevation
(probe.py). Files accepted by ``read_poses``:

- JSON: ``{"space": "LPS" | "RAS", "matrix": [[4 x 4]]}`` or ``{"space": ..., "matrices": [...]}``,
  or a bare 4x4 list or list of 4x4 lists (LPS). "RAS" matrices map probe coordinates to RAS
  (Slicer's world); they are converted with diag(-1, -1, 1) on the output side.
- Plain text: 4 rows of 4 numbers (or 4N rows for N poses), LPS, as numpy.loadtxt reads it.
- ITK transform files (.tfm, .h5, .mat, or text starting "#Insight Transform File"), as Slicer saves a
  linear transform node: ITK stores the transform *from parent* (resampling direction) in LPS, so the
  probe-to-world pose is its inverse. A Slicer transform "ProbeToRAS" saved as .tfm drives the probe.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from USGenLib.errors import UsgenInputError
from USGenLib.limits import check_regular

RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
MAX_POSE_FILE_BYTES = 16 * 2 ** 20  # ~100,000 poses as text; anything larger is not a pose file


def rigid(matrix: np.ndarray, source=None) -> np.ndarray:
    """Validate a 4x4 pose and return its nearest rigid transform (scale removed, axes re-orthogonalised)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise UsgenInputError(source, f"a pose must be a finite 4x4 matrix, got shape {m.shape}")
    if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
        raise UsgenInputError(source, "the last row of a pose matrix must be 0 0 0 1")
    u, s, vt = np.linalg.svd(m[:3, :3])
    if s.min() < 1e-6 * max(s.max(), 1e-12) or np.linalg.det(m[:3, :3]) <= 0:
        raise UsgenInputError(source, "pose matrix is singular or mirrors space; it must be a rotation and translation")
    out = np.eye(4)
    out[:3, :3] = u @ vt
    out[:3, 3] = m[:3, 3]
    return out


def _from_itk(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    try:
        tx = sitk.ReadTransform(str(path))
    except RuntimeError as err:
        raise UsgenInputError(path, f"not a readable ITK transform ({str(err).strip().splitlines()[-1][:120]})") from err
    if isinstance(tx, sitk.CompositeTransform) or tx.GetName() == "CompositeTransform":
        comp = sitk.CompositeTransform(tx)
        if comp.GetNumberOfTransforms() != 1:
            raise UsgenInputError(path, "transform file holds several transforms; save one linear transform")
        tx = comp.GetNthTransform(0)
    tx = tx.Downcast()
    if not hasattr(tx, "GetMatrix"):
        raise UsgenInputError(path, f"transform is {tx.GetName()}, not a linear transform")
    a = np.asarray(tx.GetMatrix(), dtype=np.float64).reshape(3, 3)
    c = np.asarray(tx.GetCenter(), dtype=np.float64)
    t = np.asarray(tx.GetTranslation(), dtype=np.float64)
    from_parent = np.eye(4)
    from_parent[:3, :3] = a
    from_parent[:3, 3] = t + c - a @ c
    return np.linalg.inv(from_parent)[None]


def read_poses(path: str | Path) -> np.ndarray:
    """Read one or more probe poses from ``path``; returns (N, 4, 4) probe-to-LPS matrices."""
    path = Path(path)
    if not path.exists():
        raise UsgenInputError(path, "pose file does not exist")
    if not path.is_file():
        raise UsgenInputError(path, "pose file is not a file")
    check_regular(path)
    if path.stat().st_size > MAX_POSE_FILE_BYTES:
        raise UsgenInputError(path, f"pose file is {path.stat().st_size} bytes; a pose list is at most {MAX_POSE_FILE_BYTES // 2**20} MB")
    suffix = path.suffix.lower()
    with open(path, "rb") as fh:
        head = fh.read(64)
    if suffix in (".tfm", ".h5", ".hdf5", ".mat") or head.startswith(b"#Insight Transform File"):
        mats = _from_itk(path)
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as err:
            raise UsgenInputError(path, f"not valid JSON ({err})") from err
        except RecursionError:  # json recurses per nesting level
            raise UsgenInputError(path, "JSON is nested too deeply to be a pose list") from None
        space = "LPS"
        if isinstance(data, dict):
            space = str(data.get("space", "LPS")).upper()
            data = data.get("matrices", data.get("matrix"))
            if data is None:
                raise UsgenInputError(path, 'JSON pose needs a "matrix" or "matrices" entry')
        try:
            mats = np.asarray(data, dtype=np.float64)
        except (TypeError, ValueError, RecursionError) as err:
            raise UsgenInputError(path, f"pose matrix is not numeric ({err})") from err
        if mats.ndim == 2:
            mats = mats[None]
        if space not in ("LPS", "RAS"):
            raise UsgenInputError(path, f'pose space must be "LPS" or "RAS", got "{space}"')
        if mats.ndim != 3 or mats.shape[1:] != (4, 4):
            raise UsgenInputError(path, f"pose matrices must be 4x4, got shape {mats.shape}")
        if space == "RAS":
            mats = RAS_FROM_LPS @ mats  # RAS -> LPS flips the first two output axes
    else:
        try:
            mats = np.loadtxt(path, dtype=np.float64, ndmin=2)
        except ValueError as err:
            raise UsgenInputError(path, f"not a text 4x4 matrix ({err})") from err
        if mats.shape[1] != 4 or mats.shape[0] % 4 or mats.shape[0] == 0:
            raise UsgenInputError(path, f"text pose must have 4 columns and 4N rows, got {mats.shape}")
        mats = mats.reshape(-1, 4, 4)
    return np.stack([rigid(m, path) for m in mats])
