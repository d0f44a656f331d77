"""Bundled and trained weights: safetensors beside a model card (Markdown) and its data (JSON).

``<name>.safetensors`` holds the tensors and, in its metadata, the network name and its config;
``<name>.json`` the config, the exact training command, data, seed, steps, wall time, machine and
evaluation figures; ``<name>.md`` the same for people. Loading never unpickles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from USGenLib.errors import UsgenInputError
from USGenLib.io.atomic import atomic_path, atomic_write_text

RESOURCES = Path(__file__).resolve().parents[2] / "Resources" / "weights"


def bundled_weights(job: str, name: str = "default") -> Path:
    """Where the bundled weights of ``job`` live: Resources/weights/<job>/<name>.safetensors."""
    return RESOURCES / job / f"{name}.safetensors"


def save_weights(path: str | Path, network: str, state: dict[str, torch.Tensor], config: dict,
                 card: dict[str, Any]) -> Path:
    """Write safetensors + ``.json`` + ``.md`` (each atomically). ``card`` is rendered by ``card_markdown``."""
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"usgen_network": network, "config": json.dumps(config)})
    record = {"network": network, "config": config, **card}
    atomic_write_text(path.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    atomic_write_text(path.with_suffix(".md"), card_markdown(network, record))
    return path


def update_card(path: str | Path, **fields) -> Path:
    """Merge ``fields`` (figures, tables, sections) into the card of ``path`` and re-render its Markdown:
    evaluation commands add what they measured to the weights they measured."""
    path = Path(path)
    card = path.with_suffix(".json")
    if not card.is_file():
        raise UsgenInputError(card, "model card not found beside the weights")
    record = json.loads(card.read_text())
    for key, value in fields.items():
        record[key] = {**record.get(key, {}), **value} if isinstance(value, dict) else value
    atomic_write_text(card, json.dumps(record, indent=2) + "\n")
    atomic_write_text(path.with_suffix(".md"), card_markdown(record["network"], record))
    return card


def load_weights(path: str | Path, network: str) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, config) from a safetensors file written by ``save_weights`` for ``network``.

    Anything else (a missing file, another format, another network's weights) is one UsgenInputError.
    """
    path = Path(path)
    if not path.is_file():
        raise UsgenInputError(path, "weights file does not exist")
    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise UsgenInputError(path, f"is not a safetensors weights file ({str(err).splitlines()[0]})") from err
    found = meta.get("usgen_network")
    if found != network:
        what = f"weights for '{found}'" if found else "no USGen network name in its metadata"
        raise UsgenInputError(path, f"holds {what}, not '{network}' weights")
    try:
        config = json.loads(meta["config"])
    except (KeyError, ValueError) as err:
        raise UsgenInputError(path, "has no readable network config in its metadata") from err
    return state, config


def load_state_into(module: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """``load_state_dict(strict=True)`` with a one-line error when the tensors do not fit."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:200]
        raise UsgenInputError(path, f"weights do not fit the network ({detail})") from err


def load_network(weights: str | Path | None, network: str, build, bundled: tuple[str, str], label: str,
                 option: str = "--weights") -> tuple[torch.nn.Module, dict, Path]:
    """(module, record, path): ``weights``, or the bundled ``(job, name)`` file when None, read as
    ``network`` weights, the module made by ``build(record)`` and filled; every problem one line
    (``label`` names the weights and ``option`` the command-line option that passes others in the
    message about missing bundled ones)."""
    path = Path(weights) if weights else bundled_weights(*bundled)
    if weights is None and not path.is_file():
        raise UsgenInputError(path, f"bundled {label} weights are missing (reinstall, or pass {option})")
    state, record = load_weights(path, network)
    try:
        module = build(record)
    except (TypeError, ValueError) as err:
        raise UsgenInputError(path, f"holds a config this version cannot build ({err})") from err
    load_state_into(module, state, path)
    return module, record, path


def card_markdown(network: str, record: dict[str, Any]) -> str:
    """The model card: what was trained, how (the exact command), on what, how long, and how well."""
    lines = [f"# Model card: {record.get('title', network)}", ""]
    if record.get("summary"):
        lines += [record["summary"], ""]
    facts = [("Network", network), ("Command", f"`{record.get('command', '')}`"), ("Data", record.get("data")),
             ("Seed", record.get("seed")), ("Steps", record.get("steps")),
             ("Wall time", record.get("wall_time")), ("Machine", record.get("machine")),
             ("Parameters", record.get("parameters"))]
    lines += ["| | |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in facts if v not in (None, "", "``")]
    if record.get("figures"):
        lines += ["", "## Figures", "", "| figure | value |", "| --- | --- |"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in record["figures"].items()]
    for title, table in record.get("tables", {}).items():
        lines += ["", f"## {title}", ""]
        if table:
            cols = list(table[0])
            lines += ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
            lines += ["| " + " | ".join(_cell(row.get(c)) for c in cols) + " |" for row in table]
    for title, text in record.get("sections", {}).items():
        lines += ["", f"## {title}", "", text]
    lines += ["", "## Config", "", "```json", json.dumps(record.get("config", {}), indent=2), "```", ""]
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)
