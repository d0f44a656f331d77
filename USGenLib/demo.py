"""`usgen demo OUT_DIR`: the main job on data that ships with the install.

Converts the real ultrasound DICOMs bundled with pydicom (an echo cine, a power-Doppler lymph
node in RGB and JPEG 2000, a palette-colour obstetric frame) to Slicer sequences with GIF/MP4
previews and a contact sheet, simulates a short sweep over a generated abdomen phantom at both
quality levels, removes the colour Doppler from the real power-Doppler file and from a synthetic clip
with its ground truth (bundled CFD weights), enhances the low-quality sweep (bundled pix2pix weights)
beside the high-quality one, generates labelled echo clips of each view at a low and a high EF
(bundled echo weights), and writes OUT_DIR/index.html showing them. Later capabilities add their
own section.
"""

from __future__ import annotations

import html
from pathlib import Path


from USGenLib.errors import UsgenInputError
from USGenLib.io import atomic_write_text, bundled_dicom, read_cine, write_cine, write_contact_sheet, write_seq_nrrd
from USGenLib.info import describe
from USGenLib.progress import track
from USGenLib.simulation import demo_sweep
from USGenLib.simulation.tissues import label_colors
from USGenLib.types import Cine

DEMO_DICOMS = {
    "examples_ybr_color.dcm": "Echocardiogram cine, 30 frames (YBR_FULL_422, JPEG baseline)",
    "examples_rgb_color.dcm": "Power-Doppler lymph node (RGB)",
    "examples_jpeg2k.dcm": "Power-Doppler lymph node (JPEG 2000)",
    "examples_palette.dcm": "Obstetric B-mode (PALETTE COLOR)",
}


def _section(title: str, body: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{body}</section>\n"


def colorize_labels(labels: Cine) -> Cine:
    """RGB preview of a tissue-label cine in the tissue table's display colours."""
    return labels.with_frames(label_colors(labels.frames))


def _simulation_section(out_dir: Path) -> tuple[str, list[Path]]:
    written = demo_sweep(out_dir)
    sim = out_dir / "simulation"
    cines = {"low quality": read_cine(sim / "low" / "bmode.seq.nrrd"),
             "high quality": read_cine(sim / "high" / "bmode.seq.nrrd"),
             "labels": colorize_labels(read_cine(sim / "high" / "labels.seq.nrrd")),
             "attenuation": read_cine(sim / "high" / "attenuation.seq.nrrd")}
    gifs = [write_cine(c, sim / f"{name.replace(' ', '_')}.gif") for name, c in cines.items()]
    sheet = write_contact_sheet(list(cines.values()), sim / "contact_sheet.png", frames_per_row=5, labels=list(cines))
    cells = "".join(f"<td><img src='simulation/{g.name}' height='200'><br>{html.escape(n)}</td>" for g, n in zip(gifs, cines))
    links = ", ".join(f"<a href='{p.relative_to(out_dir).as_posix()}'>{p.relative_to(out_dir).as_posix()}</a>"
                      for p in written if p.suffix != ".json")
    body = (f"<table><tr>{cells}</tr></table><p><img src='simulation/{sheet.name}' style='max-width:100%'></p>"
            f"<p>A 10-frame sweep over a seeded abdomen phantom (ribs, liver vessels, cyst, kidney) with a convex probe; "
            f"labels and integral attenuation maps are by-products (<code>usgen simulate</code>). Files: {links}</p>")
    return body, written + gifs + [sheet]


def _cfd_section(out_dir: Path) -> tuple[str, list[Path]]:
    """CFD removal on the real power-Doppler lymph node and on a synthetic clip beside its ground truth."""
    import numpy as np

    from USGenLib.cfd.remove import load_remover, remove_to_folder
    from USGenLib.datasets.cfd_scene import make_cfd_clip
    from USGenLib.metrics import ssim

    remover = load_remover()
    cfd = out_dir / "cfd"
    cfd.mkdir(exist_ok=True)
    clip = make_cfd_clip(np.random.default_rng(7), size=(256, 256), frames=16, target_coverage=0.15)
    synthetic = write_cine(clip.cfd, cfd / "synthetic_cfd.seq.nrrd")
    written = [synthetic, write_cine(clip.bmode, cfd / "synthetic_truth.seq.nrrd")]
    rows = []
    for name, src, truth in (("lymph node (real, pydicom)", bundled_dicom("examples_rgb_color.dcm"), None),
                             ("synthetic vessel clip", synthetic, clip.bmode)):
        folder = cfd / ("lymph_node" if truth is None else "synthetic")
        written += remove_to_folder(src, folder, remover)
        cines = [read_cine(src), read_cine(folder / "cfd_mask.seq.nrrd"), read_cine(folder / "bmode.seq.nrrd")]
        labels = ["input", "CFD mask", "USGen B-mode"]
        note = ""
        if truth is not None:
            cines.append(truth)
            labels.append("ground truth")
            note = f" SSIM to the ground truth {ssim(cines[2].frames, truth.frames):.3f}."
        sheet = write_contact_sheet(cines, folder / "contact_sheet.png", frames_per_row=4, labels=labels)
        written.append(sheet)
        rel = sheet.relative_to(out_dir).as_posix()
        rows.append(f"<h3>{html.escape(name)}</h3><p><img src='{rel}' style='max-width:100%'></p>"
                    f"<p>Pixels outside the mask are the input's own.{note} Files: "
                    f"<code>{folder.relative_to(out_dir).as_posix()}/bmode.seq.nrrd</code>, <code>cfd_mask.seq.nrrd</code>, "
                    f"<code>report.json</code> (<code>usgen cfd remove</code>).</p>")
    return "".join(rows), written


def _enhance_section(out_dir: Path) -> tuple[str, list[Path]]:
    """The demo sweep's low-quality simulation enhanced (bundled MSA weights) beside the high quality."""
    from USGenLib.enhance.apply import enhance_to_folder, load_enhancer
    from USGenLib.io import read_volume
    from USGenLib.metrics import patch_kl, psnr, ssim

    sim = out_dir / "simulation"
    folder = out_dir / "enhance"
    written = enhance_to_folder(sim / "low", folder, load_enhancer())
    low, high = read_cine(sim / "low" / "bmode.seq.nrrd"), read_cine(sim / "high" / "bmode.seq.nrrd")
    enhanced = read_cine(folder / "enhanced.seq.nrrd")
    fov = read_volume(sim / "low" / "fov_mask.nrrd", kind="labels").array.reshape(low.height, low.width) > 0
    sheet = write_contact_sheet([low, enhanced, high], folder / "contact_sheet.png", frames_per_row=5,
                                labels=["low quality", "USGen enhanced (MSA)", "high quality"])
    rows = "".join(f"<tr><td>{name}</td><td>{psnr(c.frames, high.frames, fov):.2f}</td>"
                   f"<td>{ssim(c.frames, high.frames, fov):.3f}</td><td>{patch_kl(high.frames, c.frames, fov):.3f}</td></tr>"
                   for name, c in (("low quality", low), ("enhanced", enhanced)))
    body = (f"<p><img src='enhance/{sheet.name}' style='max-width:100%'></p>"
            "<table><tr><th>against high quality, in the FoV</th><th>PSNR dB</th><th>SSIM</th><th>patch-KL</th></tr>"
            f"{rows}</table><p>The low-quality sweep above (1 ray per scanline) through the bundled pix2pix enhancer "
            "with its segmentation and attenuation maps (<code>usgen enhance simulation/low enhance</code>, or "
            "<code>usgen simulate ... --enhance</code>). Files: <code>enhance/enhanced.seq.nrrd</code>, "
            "<code>report.json</code>.</p>")
    return body, written + [sheet]


ECHO_DEMO = [(view, ef) for view in ("A4C", "PSAX", "PLAX") for ef in (30.0, 65.0)]
ECHO_DEMO_FRAMES, ECHO_DEMO_STEPS = 16, 4      # half a clip and half the steps: the section takes seconds


def _echo_section(out_dir: Path) -> tuple[str, list[Path]]:
    """Generated A4C, PSAX and PLAX clips at a low and a high EF, with their LV labels and EFs."""
    from USGenLib.echo.generate import generate_clip, lv_overlay
    from USGenLib.echo.models import load_models

    models = load_models()
    echo = out_dir / "echo"
    echo.mkdir(exist_ok=True)
    written, overlays, labels, rows = [], [], [], []
    for i, (view, ef) in enumerate(track(ECHO_DEMO, len(ECHO_DEMO), "demo: echo clips", unit="clip")):
        cine, lv, report = generate_clip(models, view, ef, ECHO_DEMO_FRAMES, 0, i, ECHO_DEMO_STEPS, models.config.guidance)
        stem = f"{view.lower()}_ef{ef:.0f}"
        written += [write_cine(cine, echo / f"{stem}.seq.nrrd")]
        written.append(write_seq_nrrd(lv, echo / f"{stem}_lv.seq.nrrd", labels=True))
        overlay = lv_overlay(cine, lv)
        gif = write_cine(overlay, echo / f"{stem}.gif")
        written.append(gif)
        overlays.append(overlay)
        labels.append(f"{view} EF asked {ef:.0f} %")
        rows.append(f"<tr><td><img src='echo/{gif.name}' height='160'></td><td>{view}</td><td>{ef:.0f} %</td>"
                    f"<td>{report['regressed_ef']:.0f} %</td><td>{report['mask_ef']:.0f} %</td>"
                    f"<td>{report['ed_frame']} / {report['es_frame']}</td><td>{report['reid']['rejections']}</td></tr>")
    sheet = write_contact_sheet(overlays, echo / "contact_sheet.png", frames_per_row=8, labels=labels)
    written.append(sheet)
    body = ("<table><tr><th>clip, LV outline</th><th>view</th><th>EF asked</th><th>EF regressed</th>"
            "<th>EF from the LV masks</th><th>ED / ES frame</th><th>ReId redraws</th></tr>" + "".join(rows) + "</table>"
            f"<p><img src='echo/{sheet.name}' style='max-width:100%'></p>"
            f"<p>{ECHO_DEMO_FRAMES}-frame clips, {ECHO_DEMO_STEPS} Euler steps (<code>usgen echo generate</code> makes "
            "32 frames with 8 by default). Each clip's LV labels are a label-map sequence Slicer loads as such "
            "(<code>*_lv.seq.nrrd</code>); the networks were trained on the phantom data set of "
            "<code>usgen dataset echo</code> (docs/echo.md).</p>")
    return body, written


def run_demo(out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsgenInputError(out_dir, "exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs: list[Path] = []
    rows, cines, names = [], [], []
    for name in track(DEMO_DICOMS, len(DEMO_DICOMS), "demo: real DICOM cines"):
        src = bundled_dicom(name)
        stem = name.removesuffix(".dcm")
        cine = read_cine(src)
        info = describe(src)
        seq = write_cine(cine, out_dir / f"{stem}.seq.nrrd")
        gif = write_cine(cine, out_dir / f"{stem}.gif")
        outputs += [seq, gif]
        if cine.num_frames > 1:
            outputs.append(write_cine(cine, out_dir / f"{stem}.mp4"))
        cines.append(cine)
        names.append(stem.removeprefix("examples_"))
        fps = "-" if info["fps"] is None else f"{info['fps']:.1f}"
        rows.append(
            f"<tr><td><img src='{gif.name}' height='160'></td><td>{html.escape(DEMO_DICOMS[name])}</td>"
            f"<td>{info['frames']}</td><td>{info['width']}&times;{info['height']}&times;{info['channels']}</td>"
            f"<td>{info['spacing_mm'][0]:.3f} mm<br><small>{html.escape(info['spacing_from'])}</small></td>"
            f"<td>{fps}</td><td>{'yes' if info['has_color_flow'] else 'no'}</td>"
            f"<td><a href='{seq.name}'>{seq.name}</a></td></tr>")
    sheet = write_contact_sheet(cines, out_dir / "contact_sheet.png", labels=names)
    outputs.append(sheet)

    table = ("<table><tr><th>preview</th><th>what</th><th>frames</th><th>size</th><th>spacing</th>"
             "<th>frames/s</th><th>colour flow</th><th>Slicer sequence</th></tr>" + "".join(rows) + "</table>"
             f"<p><img src='{sheet.name}' style='max-width:100%'></p>"
             "<p>Load any <code>.seq.nrrd</code> in 3D Slicer (drag and drop, or the USGen module) to get a "
             "volume sequence with the DICOM's spacing and frame times.</p>")
    sim_html, sim_outputs = _simulation_section(out_dir)
    outputs += sim_outputs
    enhance_html, enhance_outputs = _enhance_section(out_dir)
    outputs += enhance_outputs
    cfd_html, cfd_outputs = _cfd_section(out_dir)
    outputs += cfd_outputs
    echo_html, echo_outputs = _echo_section(out_dir)
    outputs += echo_outputs
    sections = [_section("Real ultrasound DICOMs (bundled with pydicom)", table),
                _section("Simulated sweep: abdomen phantom, low and high quality", sim_html),
                _section("Sim-to-real enhancement: low quality, enhanced, high quality", enhance_html),
                _section("Colour-Doppler removal", cfd_html),
                _section("Synthetic echocardiograms: view and EF in, labelled clips out", echo_html)]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>USGen demo</title>"
            "<style>body{font-family:sans-serif;background:#111;color:#ddd;margin:2em}"
            "table{border-collapse:collapse}td,th{border:1px solid #444;padding:4px 8px;vertical-align:middle}"
            "a{color:#8cf}</style></head><body><h1>USGen demo</h1>" + "".join(sections) + "</body></html>\n")
    index = out_dir / "index.html"
    atomic_write_text(index, page)
    outputs.append(index)
    return outputs
