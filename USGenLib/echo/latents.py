"""A-VAE latents of a data set's cycles, computed once per A-VAE and kept beside the run
(safetensors, named by the A-VAE file's hash): the image, ReId and video jobs all train on them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from USGenLib.echo.autoencoder import EchoAutoencoder, encode_frames
from USGenLib.echo.data import EchoCycles
from USGenLib.io.atomic import atomic_path


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def latent_cycles(vae: EchoAutoencoder, vae_path: Path, cycles: EchoCycles, split: str, folder: Path) -> list[torch.Tensor]:
    """Per clip (P, 4, h, w) scaled latents of its cycle; read from ``folder`` when this A-VAE made them."""
    cache = folder / f"latents-{split}-{file_digest(vae_path)}.safetensors"
    if cache.is_file():
        stored = load_file(str(cache))
        if len(stored) == len(cycles):
            return [stored[str(i)] for i in range(len(cycles))]
    vae = vae.eval()
    out = [encode_frames(vae, c) for c in cycles.cycles]
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        save_file({str(i): z.contiguous() for i, z in enumerate(out)}, str(tmp))
    return out
