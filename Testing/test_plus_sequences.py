"""PLUS tracked sequences (.igs.mha, .igs.nrrd) read as cines with frame times and per-frame transforms."""

from __future__ import annotations

import json

import numpy as np
import pytest

from USGenLib.io import is_volume_input, read_any, read_cine
from USGenLib.io.plus import frame_fields
from USGenLib.types import Cine

STAMPS = [232.5, 232.6, 232.75, 232.8]


def _frames() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (len(STAMPS), 12, 16)).astype(np.uint8)


def _probe_to_tracker(f: int) -> np.ndarray:
    c, s = np.cos(0.1 * f), np.sin(0.1 * f)
    return np.array([[c, -s, 0, 250.5 + f], [s, c, 0, -52.25], [0, 0, 1, 25.125], [0, 0, 0, 1]])


def _frame_lines(separator: str) -> list[str]:
    lines = []
    for f, stamp in enumerate(STAMPS):
        values = " ".join(f"{v:g}" for v in _probe_to_tracker(f).reshape(-1))
        lines += [f"Seq_Frame{f:04d}_ProbeToTrackerTransform{separator}{values}",
                  f"Seq_Frame{f:04d}_ProbeToTrackerTransformStatus{separator}{'INVALID' if f == 2 else 'OK'}",
                  f"Seq_Frame{f:04d}_Timestamp{separator}{stamp}",
                  f"Seq_Frame{f:04d}_ImageStatus{separator}OK"]
    return lines


def write_igs_mha(path) -> None:
    """A MetaImage sequence as PLUS writes it (uncompressed)."""
    header = ["ObjectType = Image", "NDims = 3", "AnatomicalOrientation = RAI", "BinaryData = True",
              "BinaryDataByteOrderMSB = False", "CompressedData = False", f"DimSize = 16 12 {len(STAMPS)}",
              "Kinds = domain domain list", "ElementNumberOfChannels = 1", "ElementSpacing = 0.2 0.3 1",
              "ElementType = MET_UCHAR", "Offset = 0 0 0", "TransformMatrix = 1 0 0 0 1 0 0 0 1",
              "UltrasoundImageOrientation = MF", "UltrasoundImageType = BRIGHTNESS",
              *_frame_lines(" = "), "ElementDataFile = LOCAL"]
    path.write_bytes(("\n".join(header) + "\n").encode() + _frames().tobytes())


def write_igs_nrrd(path) -> None:
    header = ["NRRD0004", "type: unsigned char", "dimension: 3", "space: left-posterior-superior",
              f"sizes: 16 12 {len(STAMPS)}", "space directions: (0.2,0,0) (0,0.3,0) none",
              "kinds: domain domain list", "endian: little", "encoding: raw", "space origin: (0,0,0)",
              *_frame_lines(":=")]
    path.write_bytes(("\n".join(header) + "\n\n").encode() + _frames().tobytes())


def _check_tracked(cine: Cine) -> None:
    np.testing.assert_array_equal(cine.frames, _frames())
    np.testing.assert_allclose(cine.times, np.array(STAMPS) - STAMPS[0], atol=1e-12)
    np.testing.assert_allclose(cine.spacing[:2], [0.2, 0.3])
    (name,) = cine.meta["transforms"]
    assert name == "ProbeToTrackerTransform"
    np.testing.assert_allclose(cine.meta["transforms"][name], [_probe_to_tracker(f) for f in range(len(STAMPS))],
                               atol=1e-5)
    assert cine.meta["transform_status"][name] == ["OK", "OK", "INVALID", "OK"]


@pytest.mark.parametrize("writer,name", [(write_igs_mha, "sweep.igs.mha"), (write_igs_nrrd, "sweep.igs.nrrd")])
def test_plus_sequence_reads_as_a_tracked_cine(tmp_path, writer, name):
    path = tmp_path / name
    writer(path)
    assert not is_volume_input(path)
    cine = read_any(path)
    assert isinstance(cine, Cine)
    _check_tracked(cine)


def test_info_counts_frames_and_names_transforms(tmp_path, usgen):
    write_igs_mha(tmp_path / "sweep.igs.mha")
    info = json.loads(usgen("info", tmp_path / "sweep.igs.mha", "--json").out)
    assert (info["type"], info["frames"], info["width"], info["height"]) == ("cine", 4, 16, 12)
    assert info["transforms"] == ["ProbeToTrackerTransform"]
    assert info["duration_s"] == pytest.approx(0.3)
    assert "tracking:    ProbeToTrackerTransform" in usgen("info", tmp_path / "sweep.igs.mha").out


def test_convert_keeps_transforms_in_the_sequence_and_a_slicer_transform_file(tmp_path, usgen):
    write_igs_mha(tmp_path / "sweep.igs.mha")
    res = usgen("convert", tmp_path / "sweep.igs.mha", tmp_path / "out.seq.nrrd", "--progress-json")
    assert res.code == 0, res.err
    outputs = res.json_lines()[-1]["outputs"]
    assert [p.rsplit("/", 1)[-1] for p in outputs] == ["out.seq.nrrd", "out.transforms.seq.mha"]
    _check_tracked(read_cine(tmp_path / "out.seq.nrrd"))  # round trip through the .seq.nrrd header

    text = (tmp_path / "out.transforms.seq.mha").read_text()
    assert text.endswith("ElementDataFile = LOCAL\n") and "DimSize = 0 0 4" in text
    fields = dict(line.split(" = ", 1) for line in text.splitlines())
    stamps, transforms, status = frame_fields(fields, 4, tmp_path / "out.transforms.seq.mha")
    np.testing.assert_allclose(stamps, read_cine(tmp_path / "out.seq.nrrd").times)  # browser plays them in step
    np.testing.assert_allclose(transforms["ProbeToTrackerTransform"][3], _probe_to_tracker(3), atol=1e-5)
    assert status["ProbeToTrackerTransform"][2] == "INVALID"
    assert str(tmp_path) not in text


def test_a_plain_mha_volume_stays_a_volume(tmp_path):
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16) - 1000), str(tmp_path / "ct.mha"))
    assert is_volume_input(tmp_path / "ct.mha")
    assert read_any(tmp_path / "ct.mha").shape_ijk == (6, 5, 4)
