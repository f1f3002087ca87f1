"""Below fp32, honestly: how a lower serving precision agrees with fp32, measured at export.

A version may be published at bf16 (OpenVINO on CPUs with AVX512-BF16 or AMX) or fp16 (the
fp16 ONNX artifact on GPUs). Before it is, the lower-precision runtime and the eager fp32 model
classify the same clips and the exporter records, per set of weights, the share of clips whose
top-1 class agrees and the largest difference of a class probability (softmax of the logits):

- on the exported weights, as they are, and *sensitised*: the same logits scaled so that their
  spread across classes is a trained model's (per-sample std `SENSITISED_LOGIT_STD`; the parity
  fixtures' reference logits have 5–6). Random weights give near-uniform probabilities, on
  which any precision looks perfect; the head is linear, so scaling its logits is scaling its
  weights, and the scaled probabilities move as a trained model's would;
- on any other weights the caller passes (`also_on`): the parity fixtures' weights of the
  family, rebuilt from their JSON, whose logits come from the reference code.

Below the bar (`MIN_TOP1`, `MAX_PROB_DIFF`) the export stops unless forced; forced versions
say so in their manifest.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from backbones import VideoClassifier
from exporters.errors import PrecisionError
from exporters.parity import Runner, parity_batch
from model_store.manifest import AgreementCheck, PrecisionAgreement
from model_store.spec import ModelSpec

MIN_TOP1 = 0.99
MAX_PROB_DIFF = 1e-2
SENSITISED_LOGIT_STD = 5.0
#: Clips per set of weights, in batches of `BATCH` (seeded standard-normal clips, as parity's).
SAMPLES = 8
BATCH = 2

#: Exports a network to ONNX in a folder and returns a runner at the lower precision.
LowRunnerFactory = Callable[[VideoClassifier, Path], tuple[Runner, str]]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def agreement_check(label: str, low: np.ndarray, full: np.ndarray) -> AgreementCheck:
    return AgreementCheck(
        weights=label,
        samples=len(full),
        top1_agreement=float((low.argmax(1) == full.argmax(1)).mean()),
        max_abs_prob_diff=float(np.abs(softmax(low) - softmax(full)).max()),
    )


def logits_pair(
    model: VideoClassifier, runner: Runner, spec: ModelSpec
) -> tuple[np.ndarray, np.ndarray]:
    """(lower precision, eager fp32) logits of `SAMPLES` seeded clips."""
    low, full = [], []
    model = model.eval().float()
    for seed in range(SAMPLES // BATCH):
        clips = parity_batch(spec, BATCH, seed=100 + seed)
        with torch.no_grad():
            full.append(model.forward_outputs(clips)[0].float().numpy())
        low.append(np.asarray(runner(clips.numpy())[0], dtype=np.float32))
    return np.concatenate(low), np.concatenate(full)


def measure_agreement(
    model: VideoClassifier,
    spec: ModelSpec,
    precision: str,
    runner: Runner,
    runtime: str,
    *,
    also_on: Mapping[str, VideoClassifier] | None = None,
    make_runner: LowRunnerFactory | None = None,
    force: bool = False,
) -> PrecisionAgreement:
    """Measure `runner` (the exported model at `precision`) against fp32 on the exported
    weights, raw and sensitised, and on each of `also_on` (exported with `make_runner`).
    Raises `PrecisionError` below the bar unless `force`."""
    low, full = logits_pair(model, runner, spec)
    checks = [agreement_check("exported", low, full)]
    spread = float(full.std(axis=1).mean()) or 1.0
    scale = SENSITISED_LOGIT_STD / spread
    checks.append(
        agreement_check(f"exported, sensitised (logits ×{scale:.3g})", low * scale, full * scale)
    )
    for label, other in (also_on or {}).items():
        if make_runner is None:
            raise ValueError("also_on needs make_runner")
        with tempfile.TemporaryDirectory(prefix="actserve-agreement-") as tmp:
            other_runner, _ = make_runner(other, Path(tmp))
            checks.append(agreement_check(label, *logits_pair(other, other_runner, spec)))
    passed = all(
        c.top1_agreement >= MIN_TOP1 and c.max_abs_prob_diff <= MAX_PROB_DIFF for c in checks
    )
    agreement = PrecisionAgreement(
        precision=precision,
        runtime=runtime,
        checks=tuple(checks),
        min_top1=MIN_TOP1,
        max_prob_diff=MAX_PROB_DIFF,
        passed=passed,
        forced=force and not passed,
    )
    if not passed and not force:
        raise PrecisionError(agreement)
    return agreement
