"""Rectified flow matching, written out (a few lines): x_t = (1 - t) noise + t data, the network
predicts the velocity data - noise; sampling integrates it from t = 0 to 1 with Euler steps and
classifier-free guidance v = v_uncond + g (v_cond - v_uncond).

The loop is hand-written because MONAI's inferers do not pass class labels or extra conditions to
the network, and guidance needs the conditional and unconditional velocities of one state.
"""

from __future__ import annotations

from typing import Callable

import torch

TIME_SCALE = 1000.0     # MONAI's timestep embeddings expect diffusion-like timesteps 0..1000


def flow_pair(data: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_t, t, target velocity) for a batch of data: t drawn logit-normal (more weight mid-path, as
    rectified-flow training does), noise standard normal."""
    b = data.shape[0]
    t = torch.sigmoid(torch.randn(b, generator=gen)).to(data.device)
    noise = torch.randn(data.shape, generator=gen).to(data.device)
    tt = t.view(b, *[1] * (data.dim() - 1))
    return (1 - tt) * noise + tt * data, t, data - noise


def euler_sample(velocity: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], noise: torch.Tensor,
                 steps: int, guidance: float) -> torch.Tensor:
    """Integrate ``velocity(x, t, keep)`` from ``noise`` at t = 0 to data at t = 1; ``keep`` (B,) bool
    says which samples see their conditions (False: the dropped-condition branch).

    guidance 1 is the conditional model alone; 0 the unconditional; > 1 pushes further from the
    unconditional. Both branches run as one batch when guidance differs from 1.
    """
    x = noise
    dt = 1.0 / steps
    for i in range(steps):
        b = x.shape[0]
        t = torch.full((b,), i * dt, device=x.device)
        if guidance == 1.0:
            v = velocity(x, t, torch.ones(b, dtype=torch.bool, device=x.device))
        else:
            keep = torch.arange(2 * b, device=x.device) < b
            v_cond, v_uncond = velocity(torch.cat([x, x]), torch.cat([t, t]), keep).chunk(2)
            v = v_uncond + guidance * (v_cond - v_uncond)
        x = x + dt * v
    return x
