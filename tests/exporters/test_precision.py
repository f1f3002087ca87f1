"""Serving precision below fp32: its agreement with fp32 is measured on the exported weights
(as they are and sensitised) and on other weights, recorded in the manifest, and gated; the
OpenVINO fp32 path is parity-checked like ONNX Runtime's."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import exporters.precision
from exporters import ExportError, PrecisionError, export_to_store
from exporters.openvino import cpu_bf16, openvino_version
from exporters.precision import measure_agreement, softmax
from model_store import ModelStore
from tests.exporters.conftest import small_model


def bf16_runner(model):
    """The eager model computing in bfloat16: a real lower precision, cheap to run."""
    low = copy.deepcopy(model).to(torch.bfloat16)

    def run(clips: np.ndarray):
        with torch.no_grad():
            logits, embedding = low.forward_outputs(torch.from_numpy(clips).to(torch.bfloat16))
        return logits.float().numpy(), embedding.float().numpy()

    return run


def test_the_exported_fp32_onnx_is_checked_on_openvino_too(exported) -> None:
    _, _, _, manifest = exported
    onnx = manifest.artifact("onnx", "fp32")
    if openvino_version() is None:
        assert onnx.runtime_parity == ()
        return
    (report,) = onnx.runtime_parity
    assert report.runtime.startswith("openvino ") and report.runtime.endswith("CPU fp32")
    assert report.passed and all(c.max_rel_diff <= 1e-5 for c in report.checks)
    assert all(c.top1_agreement in (None, 1.0) for c in report.checks)
    assert manifest.exporter["openvino"] == openvino_version()


def test_an_fp16_export_records_its_agreement_with_fp32(exported) -> None:
    _, _, _, manifest = exported
    assert manifest.precision == "fp16"
    agreement = manifest.precision_agreement
    assert agreement.passed and not agreement.forced
    assert agreement.checks[0].weights == "exported"
    assert agreement.checks[1].weights.startswith("exported, sensitised (logits ×")
    for check in agreement.checks:
        assert check.samples == exporters.precision.SAMPLES
        assert check.top1_agreement >= agreement.min_top1
        assert 0 < check.max_abs_prob_diff <= agreement.max_prob_diff


def test_agreement_is_measured_on_other_weights_and_sensitised() -> None:
    model, spec = small_model(seed=0)
    other, _ = small_model(seed=1)
    agreement = measure_agreement(
        model,
        spec,
        "bf16",
        bf16_runner(model),
        "torch bf16",
        also_on={"seed 1": other},
        make_runner=lambda net, _: (bf16_runner(net), "torch bf16"),
        force=True,
    )
    raw, sensitised, seeded = agreement.checks
    assert (raw.weights, seeded.weights) == ("exported", "seed 1")
    # random weights: near-uniform probabilities, on which bf16 looks better than it is
    assert sensitised.max_abs_prob_diff > 2 * raw.max_abs_prob_diff


def test_below_the_bar_nothing_is_published_unless_forced(tmp_path, monkeypatch) -> None:
    model, spec = small_model()
    flipped = lambda clips: tuple(-out for out in bf16_runner(model)(clips))  # noqa: E731
    with pytest.raises(
        PrecisionError, match=r"(?s)--force publishes anyway.*exported: top-1 agreement 0.0%"
    ):
        measure_agreement(model, spec, "bf16", flipped, "flipped")
    forced = measure_agreement(model, spec, "bf16", flipped, "flipped", force=True)
    assert not forced.passed and forced.forced
    # through the exporter: a bar no precision can meet leaves the store untouched
    monkeypatch.setattr(exporters.precision, "MAX_PROB_DIFF", 0.0)
    store = ModelStore(tmp_path / "store")
    with pytest.raises(PrecisionError, match="nothing was published"):
        export_to_store(model, spec, store, trained=False, precision="fp16")
    assert store.list_models() == []


@pytest.mark.skipif(openvino_version() is None, reason="needs openvino")
def test_bf16_is_exported_only_where_the_cpu_computes_it(tmp_path) -> None:
    model, spec = small_model()
    store = ModelStore(tmp_path / "store")
    if not cpu_bf16():
        with pytest.raises(ExportError, match="no AVX512-BF16 or AMX"):
            export_to_store(model, spec, store, trained=False, precision="bf16")
        assert not store.root.exists()
        return
    manifest = export_to_store(model, spec, store, trained=False, precision="bf16")
    assert manifest.precision == "bf16" and manifest.precision_agreement.passed
    assert manifest.precision_agreement.runtime.endswith("CPU bf16")


def test_softmax_differences_are_probabilities() -> None:
    logits = np.array([[0.0, 1.0, 2.0]])
    assert softmax(logits).sum() == pytest.approx(1.0)
