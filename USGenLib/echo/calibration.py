"""EF calibration of the LVFM: which EF to condition the video flow on so its clips show the EF asked for.

Sampled on validation hearts at the EF they were asked for, the bundled LVFM's clips contracted 7 to
10 EF points too little, with a slope that differs by view (0.7 for PLAX, 1.1 for PSAX). The LVFM job
therefore measures, at export, the EF of the segmenter's masks of clips sampled at a grid of
conditioning EFs, and stores per view the line measured = slope * conditioned + intercept;
generation inverts it, within the EFs the training data holds.
"""

from __future__ import annotations

import numpy as np
import torch

GRID = (20.0, 40.0, 60.0, 80.0)   # conditioning EFs sampled per validation heart
MIN_SLOPE = 0.2                   # a flatter line means the EF barely moves the clip: keep the identity


def fit_calibration(conditioned: np.ndarray, measured: np.ndarray, views: np.ndarray, n_views: int) -> torch.Tensor:
    """(n_views, 2) slope and intercept of measured vs conditioned EF per view; (1, 0) for a view with
    under two distinct conditioning EFs or a slope under MIN_SLOPE."""
    out = torch.tensor([[1.0, 0.0]] * n_views)
    for v in range(n_views):
        sel = views == v
        if len(np.unique(conditioned[sel])) < 2:
            continue
        slope, intercept = np.polyfit(conditioned[sel], measured[sel], 1)
        if slope >= MIN_SLOPE:
            out[v] = torch.tensor([slope, intercept])
    return out


def conditioning_ef(calibration: torch.Tensor | None, ef_range: torch.Tensor | None, view: int, ef: float) -> float:
    """The EF to condition on for a clip that should show ``ef``: the inverted line of ``view``, clipped to
    ``ef_range`` (the training EFs: the flow knows nothing outside them); ``ef`` itself without a calibration."""
    if calibration is None:
        return float(ef)
    slope, intercept = (float(x) for x in calibration[view])
    cond = (float(ef) - intercept) / slope
    if ef_range is not None:
        cond = float(np.clip(cond, float(ef_range[0]), float(ef_range[1])))
    return cond
