"""Regenerate the model-zoo table of docs/models.md: parameters, GFLOPs per clip, checkpoint
layouts and measured checkpoint parity for every registered backbone.

    python scripts/model_table.py            # rewrite the table in docs/models.md
    python scripts/model_table.py --print    # print it only

GFLOPs are multiply-accumulates (the convention of the papers and fvcore) counted by
torch.utils.flop_counter on the default input (one view of the model's recipe): convolutions
and matmuls; BN, pooling and activations are not counted. Parity runs each fixture in
tests/backbones/parity through `load_checkpoint` in float64 and reports
max|ours − ref| / max(1, max|ref|) (the contract's bound is 1e-6).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backbones import create_model, list_models, load_checkpoint, model_entry  # noqa: E402
from tests.backbones.parity_recipe import (  # noqa: E402
    PARITY_DIR,
    case_input,
    load_case,
    write_checkpoint,
)

START, END = "<!-- model-table:start -->", "<!-- model-table:end -->"
#: Table order of the family files; unknown families follow alphabetically.
FAMILY_ORDER = ["resnet3d", "densenet3d", "p3d", "x3d", "vov3d", "tpn"]


def measure_parity() -> dict[str, list[str]]:
    """model name -> ["hara2018_resnet18 1.5e-12", ...]"""
    results: dict[str, list[str]] = defaultdict(list)
    for path in sorted(PARITY_DIR.glob("*.json")):
        case = load_case(path.stem)
        with tempfile.TemporaryDirectory() as tmp:
            model, spec = load_checkpoint(write_checkpoint(case, Path(tmp) / "ckpt.pth"))
        expected = torch.tensor(case["expected_logits"], dtype=torch.float64)
        with torch.no_grad():
            logits = model.double()(case_input(case))
        error = (logits - expected).abs().max().item() / max(1.0, expected.abs().max().item())
        top5 = logits.topk(5).indices.tolist() == case["top5"]
        results[spec.backbone].append(
            f"{path.stem} {error:.0e}{'' if top5 else ' (top-5 differs)'}"
        )
        print(f"parity {path.stem}: {spec.backbone} {error:.1e}", file=sys.stderr)
    return results


def build_table() -> str:
    parity = measure_parity()
    rows = [
        "| model | params | GFLOPs | input (C×T×H×W) | default classes "
        "| checkpoint parity (float64) |",
        "|---|---:|---:|---|---|---|",
    ]

    def reading_order(name: str) -> tuple[int, str, int]:
        """Family by FAMILY_ORDER, then the order of the family's variant table."""
        family = model_entry(name).family
        rank = FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)
        variants = list(importlib.import_module(f"backbones.{family}").model_cfgs)
        return (rank, family, variants.index(name))

    for name in sorted(list_models(), key=reading_order):
        with torch.device("meta"):
            model = create_model(name).eval()
            x = torch.empty(1, *model.spec.recipe.clip_shape)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
        spec = model.spec
        params = sum(p.numel() for p in model.parameters())
        rows.append(
            f"| `{name}` | {params / 1e6:.2f}M | {counter.get_total_flops() / 2e9:.2f} "
            f"| {'×'.join(map(str, spec.recipe.clip_shape))} "
            f"| {spec.num_classes} ({spec.label_set or '-'}) "
            f"| {', '.join(parity.get(name, [])) or 'no fixture'} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--print", action="store_true", help="print the table, leave docs/models.md"
    )
    args = parser.parse_args()
    table = build_table()
    if args.print:
        print(table)
        return
    readme = ROOT / "docs" / "models.md"
    text = readme.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(f"{head}{START}\n{table}\n{END}{tail}")
    print(f"updated {readme}", file=sys.stderr)


if __name__ == "__main__":
    main()
