"""Rebuild a parity case's checkpoint file and input from its JSON (the contract is
tests/backbones/parity/README.md, recipe_version 1): no reference code or real weights needed."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

PARITY_DIR = Path(__file__).parent / "parity"


def load_case(name: str) -> dict[str, Any]:
    case = json.loads((PARITY_DIR / f"{name}.json").read_text())
    assert case["recipe_version"] == 1, "only recipe_version 1 is implemented"
    return case


def per_key_seed(weight_seed: int, key: str) -> int:
    digest = hashlib.sha256(f"{weight_seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def rebuild_tensor(
    key: str, shape: list[int], dtype: str, weight_seed: int, gain: float
) -> torch.Tensor:
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    u = np.random.default_rng(per_key_seed(weight_seed, key)).random(tuple(shape))
    if key.endswith("running_mean"):
        value = (2 * u - 1) * 0.1
    elif key.endswith("running_var") or (len(shape) == 1 and key.endswith("weight")):
        value = 0.5 + u
    elif key.endswith("bias"):
        value = (2 * u - 1) * 0.1
    else:
        fan_in = math.prod(shape[1:])
        scale = (math.sqrt(3.0) * gain) / math.sqrt(fan_in)
        value = (2 * u - 1) * scale
    assert dtype == "float32", dtype
    return torch.from_numpy(np.asarray(value).astype(np.float32))


def rebuild_state_dict(case: dict[str, Any]) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict(
        (key, rebuild_tensor(key, shape, dtype, case["weight_seed"], case["gain"]))
        for key, shape, dtype in case["tensors"]
    )


def write_checkpoint(case: dict[str, Any], path: Path) -> Path:
    """The public file's container with the rebuilt state dict, saved with torch.save."""

    def fill(node: Any) -> Any:
        if node == "<tensors>":
            return rebuild_state_dict(case)
        if isinstance(node, dict):
            return {k: fill(v) for k, v in node.items()}
        return node

    torch.save(fill(copy.deepcopy(case["checkpoint_container"]["template"])), path)
    return path


def case_input(case: dict[str, Any]) -> torch.Tensor:
    spec = case["input"]
    x = np.random.default_rng(spec["seed"]).random(tuple(spec["shape"])) * 2 - 1
    return torch.from_numpy(x)
