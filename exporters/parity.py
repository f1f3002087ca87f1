"""Eager vs exported: does the artifact compute what the model computes?

Runs a fixed random batch of the recipe's clip shape (batch 1 and batch 2, so the dynamic
batch axis is exercised) through the eager model and through the artifact, and records per
output the max abs diff, the max diff relative to the output's scale
(max|exported − eager| / max|eager|) and, for logits, top-1 agreement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from backbones import VideoClassifier
from exporters.errors import OutputShapeError
from model_store.manifest import ParityCheck, ParityReport
from model_store.spec import ModelSpec

#: A loaded artifact: clips (N, C, T, H, W) float32 -> (logits (N, K), embedding (N, D)).
Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

PARITY_BATCH_SIZES = (1, 2)
#: Largest accepted max_rel_diff. fp32 artifacts reorder float sums (~1e-6); fp16 keeps ~3
#: significant digits through dozens of layers.
TOLERANCE = {"fp32": 1e-4, "fp16": 5e-2}


def parity_batch(spec: ModelSpec, batch_size: int, seed: int = 0) -> torch.Tensor:
    """A fixed standard-normal batch shaped like normalised clips of the recipe."""
    generator = torch.Generator().manual_seed(seed + batch_size)
    return torch.randn((batch_size, *spec.recipe.clip_shape), generator=generator)


def check_parity(
    model: VideoClassifier,
    runner: Runner,
    spec: ModelSpec,
    *,
    runtime: str,
    precision: str = "fp32",
    batch_sizes: Sequence[int] = PARITY_BATCH_SIZES,
) -> ParityReport:
    checks: list[ParityCheck] = []
    model = model.eval()
    for batch_size in batch_sizes:
        clips = parity_batch(spec, batch_size)
        with torch.no_grad():
            eager = [t.float().numpy() for t in model.forward_outputs(clips)]
        exported = runner(clips.numpy())
        for output, ours, theirs in zip(("logits", "embedding"), eager, exported, strict=True):
            theirs = np.asarray(theirs, dtype=np.float32)
            if theirs.shape != ours.shape:
                raise OutputShapeError(
                    f"{output}: the artifact on {runtime} gave shape {theirs.shape}, the eager "
                    f"model {ours.shape}"
                )
            checks.append(compare(batch_size, output, theirs, ours))
    return parity_report(checks, runtime=runtime, precision=precision)


def compare(batch_size: int, output: str, ours: np.ndarray, reference: np.ndarray) -> ParityCheck:
    """One output of an artifact against its reference (top-1 agreement for logits)."""
    diff = float(np.abs(ours - reference).max())
    scale = float(np.abs(reference).max()) or 1.0
    top1 = None
    if output == "logits":
        top1 = float((ours.argmax(1) == reference.argmax(1)).mean())
    return ParityCheck(
        batch_size=batch_size,
        output=output,
        max_abs_diff=diff,
        max_rel_diff=diff / scale,
        top1_agreement=top1,
    )


def parity_report(checks: Sequence[ParityCheck], *, runtime: str, precision: str) -> ParityReport:
    """Pass when every check is within the precision's tolerance (and, for fp32, top-1 agrees)."""
    tolerance = TOLERANCE[precision]
    passed = all(c.max_rel_diff <= tolerance for c in checks)
    if precision == "fp32":  # fp16 may flip near-ties; its numbers are reported, not gated
        passed = passed and all(c.top1_agreement in (None, 1.0) for c in checks)
    return ParityReport(runtime=runtime, tolerance=tolerance, checks=tuple(checks), passed=passed)
