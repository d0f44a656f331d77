"""Building and loading the six echo networks: ``<stage>.safetensors`` in a weights folder (the
bundled Resources/weights/echo by default), each with the config it was trained with and, where a
stage needs them, extra tensors: the LIFM's bank of ED masks, the ReId training embeddings and
threshold, the frame rate, pixel size and EF range of the training data and the LVFM's EF calibration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from USGenLib.echo.autoencoder import EchoAutoencoder
from USGenLib.echo.config import EchoConfig
from USGenLib.echo.image_flow import LatentImageFlow
from USGenLib.echo.labels import EFRegressor, LVSegmenter
from USGenLib.echo.reid import PrivacyFilter, ReIdEncoder
from USGenLib.echo.video_flow import LatentVideoFlow
from USGenLib.errors import UsgenInputError
from USGenLib.train.weights import RESOURCES, load_state_into, load_weights

NETWORKS = {"avae": EchoAutoencoder, "lifm": LatentImageFlow, "reid": ReIdEncoder, "lvfm": LatentVideoFlow,
            "seg": LVSegmenter, "ef": EFRegressor}
EXTRA = "extra."        # tensors stored beside a network's own (banks, thresholds)


def network_name(stage: str) -> str:
    return f"echo_{stage}"


def default_weights_dir() -> Path:
    return RESOURCES / "echo"


def load_stage(stage: str, weights_dir: str | Path | None = None,
               device: torch.device | str = "cpu") -> tuple[nn.Module, EchoConfig, dict[str, torch.Tensor], Path]:
    """(network in eval mode, its config, its extra tensors, its file) of ``stage``; one-line errors for a
    missing file, another network's weights or tensors that do not fit."""
    folder = Path(weights_dir) if weights_dir else default_weights_dir()
    path = folder / f"{stage}.safetensors"
    if not path.is_file():
        where = "bundled echo weights are missing (reinstall, or pass --weights-dir)" if weights_dir is None \
            else f"no {stage} weights here (train them with `usgen echo train {stage}`)"
        raise UsgenInputError(path, where)
    state, config_dict = load_weights(path, network_name(stage))
    try:
        config = EchoConfig.from_dict(config_dict)
        module = NETWORKS[stage](config)
    except (TypeError, ValueError) as err:
        raise UsgenInputError(path, f"holds a config this version cannot build ({err})") from err
    extra = {k[len(EXTRA):]: v for k, v in state.items() if k.startswith(EXTRA)}
    load_state_into(module, {k: v for k, v in state.items() if not k.startswith(EXTRA)}, path)
    return module.to(device).eval(), config, extra, path


@dataclass
class EchoModels:
    """Every network a generated clip needs, loaded from one weights folder."""

    vae: EchoAutoencoder
    lifm: LatentImageFlow
    reid: PrivacyFilter
    lvfm: LatentVideoFlow
    seg: LVSegmenter
    ef: EFRegressor
    config: EchoConfig
    mask_bank: torch.Tensor           # (N, H, W) uint8 ED LV masks of the training clips
    bank_views: torch.Tensor          # (N,) view index of each mask
    fps: float
    pixel_mm: float
    files: dict[str, Path]
    device: torch.device
    ef_calibration: torch.Tensor | None = None   # (views, 2) the LVFM's EF line per view (echo/calibration.py)
    ef_range: torch.Tensor | None = None         # (2,) the training data's EF range


def load_models(weights_dir: str | Path | None = None, device: torch.device | str = "cpu") -> EchoModels:
    loaded = {s: load_stage(s, weights_dir, device) for s in NETWORKS}
    sizes = {s: (v[1].size, v[1].latent_channels) for s, v in loaded.items()}
    if len(set(sizes.values())) != 1:
        raise UsgenInputError(loaded["lvfm"][3].parent, "the stages' weights were trained for different frame or "
                                                        f"latent sizes ({sizes}); train them together")
    reid, _, reid_extra, _ = loaded["reid"]
    lifm_extra, lvfm_extra = loaded["lifm"][2], loaded["lvfm"][2]
    return EchoModels(loaded["avae"][0], loaded["lifm"][0],
                      PrivacyFilter(reid, reid_extra["bank"].float().cpu(), float(reid_extra["threshold"])),
                      loaded["lvfm"][0], loaded["seg"][0], loaded["ef"][0], loaded["lvfm"][1],
                      lifm_extra["mask_bank"].cpu(), lifm_extra["bank_views"].cpu(), float(lvfm_extra["fps"]),
                      float(lvfm_extra["pixel_mm"]), {s: v[3] for s, v in loaded.items()}, torch.device(device),
                      lvfm_extra.get("ef_calibration"), lvfm_extra.get("ef_range"))
