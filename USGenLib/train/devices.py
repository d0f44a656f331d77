"""``--device auto|cpu|cuda`` and mixed precision: one place that decides where a network runs."""

from __future__ import annotations

import contextlib
import platform
from typing import TYPE_CHECKING

from USGenLib.errors import UsgenInputError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto", local_rank: int | None = None) -> "torch.device":
    """``auto`` is CUDA when present, else CPU; ``cuda`` without a GPU is a one-line input error.

    Under torchrun each process takes the GPU of its local rank.
    """
    import torch  # on use: building the CLI parser (which names DEVICE_CHOICES) stays fast

    if name not in DEVICE_CHOICES:
        raise UsgenInputError(None, f"--device must be one of {', '.join(DEVICE_CHOICES)}, got '{name}'")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UsgenInputError(None, "--device cuda: no CUDA GPU is available on this machine (use auto or cpu)")
    return torch.device("cuda", local_rank or 0)


def autocast(device: "torch.device"):
    """bf16 autocast on CUDA (H100-class GPUs run it at full speed); plain fp32 on the CPU."""
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def describe_device(device: "torch.device") -> str:
    """Human-readable name for reports and model cards, e.g. 'cpu (x86_64, 2 threads)'."""
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
