"""Training checkpoints: written atomically, read without unpickling code.

A checkpoint holds the step reached, every module's and optimiser's state dict and the run's
config. ``torch.load(weights_only=True)`` reads it: tensors, numbers, strings, lists and dicts only.
"""

from __future__ import annotations

from pathlib import Path

import torch

from USGenLib.errors import UsgenInputError
from USGenLib.io.atomic import atomic_path

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: str | Path, step: int, modules: dict[str, torch.nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer], config: dict) -> Path:
    state = {
        "step": int(step),
        "modules": {k: m.state_dict() for k, m in modules.items()},
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "config": config,
    }
    # A kill during torch.save leaves only the hidden temporary; the previous checkpoint stays valid.
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, modules: dict[str, torch.nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer]) -> int:
    """Restore modules and optimisers in place; returns the step reached (the config is kept for people)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        for k, m in modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in optimizers.items():
            o.load_state_dict(state["optimizers"][k])
    except (RuntimeError, KeyError, ValueError, EOFError) as err:
        raise UsgenInputError(path, f"is not a checkpoint of this run ({str(err).splitlines()[0]})") from err
    return int(state["step"])


def checkpoint_config(path: str | Path) -> dict:
    """The config a checkpoint was written with (to refuse resuming it as something else)."""
    try:
        return dict(torch.load(path, map_location="cpu", weights_only=True).get("config") or {})
    except (RuntimeError, ValueError, EOFError, AttributeError) as err:
        raise UsgenInputError(path, f"is not a readable checkpoint ({str(err).splitlines()[0]})") from err
