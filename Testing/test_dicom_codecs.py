"""Every transfer syntax ultrasound systems write decodes; a corrupted compressed frame is one line, exit 2.

The compressed files are made here: an uncompressed cine written by USGen, transcoded by GDCM
(the same library that decodes them, through pydicom's gdcm plugin, for the JPEG family).
"""

from __future__ import annotations

import gdcm
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames

from USGenLib.io import read_cine, write_dicom_cine
from USGenLib.types import Cine

TS = gdcm.TransferSyntax
# uid ending: (GDCM syntax, largest pixel error allowed)
SYNTAXES = {
    "4.50": (TS.JPEGBaselineProcess1, 4),
    "4.51": (TS.JPEGExtendedProcess2_4, 4),
    "4.57": (TS.JPEGLosslessProcess14, 0),
    "4.70": (TS.JPEGLosslessProcess14_1, 0),
    "4.80": (TS.JPEGLSLossless, 0),
    "4.81": (TS.JPEGLSNearLossless, 2),
    "4.90": (TS.JPEG2000Lossless, 0),
    "4.91": (TS.JPEG2000, 24),
    "5": (TS.RLELossless, 0),
}


def _cine(rgb: bool) -> Cine:
    rng = np.random.default_rng(1)
    grey = (rng.integers(0, 40, (3, 40, 48)) + np.linspace(0, 200, 48)).astype(np.uint8)
    frames = np.stack([grey, grey // 2, 255 - grey], -1) if rgb else grey
    return Cine(frames, spacing=(0.2, 0.25, 1.0), times=[0.0, 0.04, 0.08], meta={"modality": "US"})


def _transcode(src, dst, ending: str) -> None:
    syntax, _ = SYNTAXES[ending]
    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(TS(syntax))
    if ending == "4.81":
        codec = gdcm.JPEGLSCodec()
        codec.SetLossless(False)
        codec.SetLossyError(2)
        change.SetUserCodec(codec)
    elif ending == "4.91":
        codec = gdcm.JPEG2000Codec()
        codec.SetQuality(0, 40)
        change.SetUserCodec(codec)
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
    assert pydicom.dcmread(dst, stop_before_pixels=True).file_meta.TransferSyntaxUID == f"1.2.840.10008.1.2.{ending}"


# Grey and RGB in every syntax, but RGB JPEG baseline/extended: GDCM writes those with a colour
# transform their header does not declare (pydicom's YBR JPEG files in test_io_readers cover them).
CASES = [(ending, rgb) for rgb in (False, True) for ending in SYNTAXES if not (rgb and ending in ("4.50", "4.51"))]


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """{(uid ending, rgb): path} for every case."""
    folder = tmp_path_factory.mktemp("codecs")
    sources = {rgb: write_dicom_cine(_cine(rgb), folder / f"src_{int(rgb)}.dcm") for rgb in (False, True)}
    files = {}
    for ending, rgb in CASES:
        files[ending, rgb] = folder / f"{ending}_{int(rgb)}.dcm"
        _transcode(sources[rgb], files[ending, rgb], ending)
    return files


@pytest.mark.parametrize("ending,rgb", CASES, ids=[f"{e}-{'rgb' if c else 'grey'}" for e, c in CASES])
def test_every_transfer_syntax_reads(encoded, ending, rgb):
    cine = read_cine(encoded[ending, rgb])
    ref = _cine(rgb)
    assert cine.frames.shape == ref.frames.shape and cine.frames.dtype == np.uint8
    assert np.abs(cine.frames.astype(int) - ref.frames).max() <= SYNTAXES[ending][1]
    np.testing.assert_allclose(cine.times, ref.times)
    np.testing.assert_allclose(cine.spacing[:2], ref.spacing[:2])


@pytest.mark.parametrize("ending", ["4.50", "4.70", "4.80", "4.90", "5"])
def test_truncated_compressed_frame_is_one_line_exit_2(encoded, ending, tmp_path, usgen):
    ds = pydicom.dcmread(encoded[ending, False])
    frames = list(generate_frames(ds.PixelData, number_of_frames=3))
    frames[1] = frames[1][: len(frames[1]) // 2]
    ds.PixelData = encapsulate(frames)
    bad = tmp_path / "bad.dcm"
    ds.save_as(bad)
    res = usgen("convert", bad, tmp_path / "out.seq.nrrd", "--quiet")
    assert res.code == 2
    assert len(res.err.strip().splitlines()) == 1, res.err
    assert "bad.dcm" in res.err and "corrupt" in res.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.dcm"]
