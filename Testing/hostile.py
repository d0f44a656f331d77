"""A corpus of small hostile input files, made on the fly (issue 11): each one once made a USGen
command allocate gigabytes, hang, read outside its input, write an invalid output or print a
traceback. ``build(folder)`` writes them all and returns {case name: path}; ``run_usgen`` runs one
command in a child process with its address space capped and returns its exit code, stderr and
peak memory. Also used by the measurements in the report of the branch that added them.
"""

from __future__ import annotations

import gzip
import os
import resource
import signal
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np

CAP_BYTES = 3 * 1024 ** 3  # RLIMIT_AS of each child: a case that tries to allocate gigabytes dies


def _nrrd(path: Path, fields: list[str], body: bytes = b"") -> Path:
    path.write_bytes(("\n".join(["NRRD0004"] + fields) + "\n\n").encode() + body)
    return path


def _seq_fields(sizes="16 12 1 3", encoding="raw", origin="(0,0,0)", dirs="(0.5,0,0) (0,0.5,0) (0,0,1) none",
                times="0 0.1 0.2", dtype="unsigned char") -> list[str]:
    return [f"type: {dtype}", f"dimension: {len(sizes.split())}", "space: left-posterior-superior",
            f"sizes: {sizes}", f"space directions: {dirs}", "kinds: domain domain domain list", "endian: little",
            f"encoding: {encoding}", f"space origin: {origin}", "axis 3 index type:=numeric",
            f"axis 3 index values:={times}"]


def _gzip_bomb(decompressed: int) -> bytes:
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    chunk = bytes(8 << 20)
    out = [comp.compress(chunk) for _ in range(decompressed // len(chunk))]
    return b"".join(out) + comp.flush()


def _dicom(path: Path, frames: int = 3, **changes) -> Path:
    from USGenLib.io.dicom import build_us_multiframe
    from USGenLib.types import Cine

    cine = Cine(np.random.default_rng(0).integers(0, 255, (frames, 16, 20), dtype=np.uint8))
    ds = build_us_multiframe(cine)
    for key, value in changes.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def _video(path: Path, frames: int = 40, size=(48, 64), rgb: bool = True) -> Path:
    from USGenLib.io import write_cine
    from USGenLib.types import Cine

    shape = (frames, *size, 3) if rgb else (frames, *size)
    write_cine(Cine(np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)), path)
    return path


def build(folder: Path) -> dict[str, Path]:
    """Write every hostile file into ``folder``; {case: path}."""
    import SimpleITK as sitk
    from USGenLib.io import bundled_dicom

    folder.mkdir(parents=True, exist_ok=True)
    f: dict[str, Path] = {}
    # --- memory from small files
    f["gzip_bomb"] = _nrrd(folder / "bomb.seq.nrrd", _seq_fields(encoding="gzip"), _gzip_bomb(256 << 20))
    f["lying_raw_header"] = _nrrd(folder / "liar.seq.nrrd", _seq_fields(sizes="2048 2048 1 2000", times="0"))
    f["lying_gzip_header"] = _nrrd(folder / "liargz.seq.nrrd", _seq_fields(sizes="2048 2048 1 2000", encoding="gzip",
                                                                          times="0"), gzip.compress(bytes(1000)))
    f["lying_volume_nrrd"] = _nrrd(folder / "liar.nrrd", ["type: short", "dimension: 3", "sizes: 2048 2048 1024", "endian: little",
                                                          "encoding: gzip", "space: left-posterior-superior",
                                                          "space directions: (1,0,0) (0,1,0) (0,0,1)"],
                                   gzip.compress(bytes(4096)))
    small = folder / "small.nii"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.int16)), str(small))
    nii = bytearray(small.read_bytes())
    nii[42:48] = np.array([2000, 2000, 2000], "<i2").tobytes()  # dim[1..3]
    f["lying_nifti"] = folder / "liar.nii"
    f["lying_nifti"].write_bytes(bytes(nii))
    small.unlink()
    f["devzero_link"] = folder / "zero.seq.nrrd"
    os.symlink("/dev/zero", f["devzero_link"])
    f["fifo_dicom"] = folder / "pipe.dcm"
    os.mkfifo(f["fifo_dicom"])
    # --- reads outside the input
    f["nhdr_absolute"] = _nrrd(folder / "abs.nhdr", ["type: unsigned char", "dimension: 3", "sizes: 8 8 1",
                                                     "encoding: raw", "data file: /etc/passwd"])
    f["seqnhdr_parent"] = _nrrd(folder / "up.seq.nhdr", _seq_fields(sizes="4 4 1 1", times="0")
                                + ["data file: ../secret.raw"])
    (folder.parent / "secret.raw").write_bytes(bytes(16))
    f["mhd_absolute"] = folder / "abs.mhd"
    f["mhd_absolute"].write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4 1\nElementType = MET_UCHAR\n"
                                 "ElementDataFile = /etc/passwd\n")
    # --- geometry and empty data
    f["zero_frames"] = _nrrd(folder / "empty.seq.nrrd", _seq_fields(sizes="16 12 1 0", times=""))
    f["zero_spacing"] = _nrrd(folder / "flat.seq.nrrd", _seq_fields(dirs="(0,0,0) (0,0.5,0) (0,0,1) none"),
                              bytes(16 * 12 * 3))
    f["nan_origin"] = _nrrd(folder / "nanorigin.seq.nrrd", _seq_fields(origin="(nan,0,0)"), bytes(16 * 12 * 3))
    f["dicom_negative_frames"] = _dicom(folder / "negframes.dcm", NumberOfFrames=-1)
    f["dicom_zero_rows"] = _dicom(folder / "zerorows.dcm", Rows=0)
    with warnings.catch_warnings():  # pydicom warns that 'nan' is no decimal string: that is the point
        warnings.simplefilter("ignore")
        f["dicom_nan_orientation"] = _dicom(folder / "nanorient.dcm", ImageOrientationPatient=["nan", "0", "0", "0", "1", "0"])
    f["dicom_singular_orientation"] = _dicom(folder / "singular.dcm", ImageOrientationPatient=[1, 0, 0, 1, 0, 0])
    f["dicom_negative_spacing"] = _dicom(folder / "negspacing.dcm")
    import pydicom
    ds = pydicom.dcmread(f["dicom_negative_spacing"])
    ds.SequenceOfUltrasoundRegions[0].PhysicalDeltaX = -0.03  # skipped; PixelSpacing then decides
    ds.PixelSpacing = [-0.3, 0.3]
    ds.save_as(f["dicom_negative_spacing"])
    f["nan_pixels"] = _nrrd(folder / "nanpix.seq.nrrd", _seq_fields(dtype="float", times="0 1 2"),
                            np.full(16 * 12 * 3, np.nan, "<f4").tobytes())
    # --- truncated and corrupt codecs
    avi = _video(folder / "whole.avi")
    f["truncated_avi"] = folder / "cut.avi"
    f["truncated_avi"].write_bytes(avi.read_bytes()[: avi.stat().st_size // 2])
    j2k = bytearray(bundled_dicom("examples_jpeg2k.dcm").read_bytes())
    j2k[-408:-8] = bytes(400)  # the end of the codestream with its end marker (the delimiter stays)
    f["corrupt_j2k"] = folder / "j2k.dcm"
    f["corrupt_j2k"].write_bytes(bytes(j2k))
    # --- simulation inputs
    img = sitk.GetImageFromArray(np.zeros((16, 16, 16), np.int16))
    img.SetSpacing((1e-6, 1.0, 1e6))
    f["ct_absurd_spacing"] = folder / "absurd.mha"
    sitk.WriteImage(img, str(f["ct_absurd_spacing"]))
    f["ct_1e30"] = folder / "huge.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((16, 16, 16), 1e30, np.float32)), str(f["ct_1e30"]))
    f["ct_ok"] = folder / "water.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((16, 16, 16), 40, np.int16)), str(f["ct_ok"]))
    f["deep_pose"] = folder / "deep.json"
    f["deep_pose"].write_text("[" * 100_000 + "]" * 100_000)
    return f


# The child's own peak: VmHWM of its process image, written as it exits. The rusage of a child forked
# from this (large) test process keeps the parent's peak across exec, so it measured pytest, not usgen.
PEAK_WRAPPER = """
import os, sys
from USGenLib.cli import main
code = 1
try:
    code = main(sys.argv[1:])
finally:
    with open(os.environ["USGEN_TEST_PEAK_FILE"], "w") as fh:
        fh.write(next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM:")))
sys.exit(code)
"""


def run_usgen(*args, timeout: float = 120) -> tuple[int, str, float]:
    """`usgen ARGS` in a child with RLIMIT_AS = CAP_BYTES: (exit code, stderr, the child's peak RSS in MB;
    a child killed before it could report counts with its rusage peak)."""
    import tempfile

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (CAP_BYTES, CAP_BYTES))

    peak_file = Path(tempfile.mkdtemp()) / "peak_kb"
    env = dict(os.environ, OMP_NUM_THREADS="1", USGEN_TEST_PEAK_FILE=str(peak_file))
    with open(os.devnull, "wb") as null:
        proc = subprocess.Popen([sys.executable, "-c", PEAK_WRAPPER, *map(str, args), "--quiet"], stdout=null,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, preexec_fn=cap, env=env)
        if _wait_readable(proc, timeout):
            err = proc.stderr.read()
        else:  # a hang (a FIFO read): killed; os.kill, not proc.kill, which would reap the child first
            os.kill(proc.pid, signal.SIGKILL)
            err = b"(timed out)"
        proc.stderr.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    peak_kb = int(peak_file.read_text()) if peak_file.is_file() else usage.ru_maxrss
    peak_file.unlink(missing_ok=True)
    peak_file.parent.rmdir()
    return proc.returncode, err.decode(errors="replace"), peak_kb / 1024.0


def _wait_readable(proc, timeout: float) -> bool:
    import select

    ready, _, _ = select.select([proc.stderr], [], [], timeout)
    return bool(ready)
