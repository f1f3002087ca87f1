"""Which artifact runs where: the fp32 ONNX artifact on CPU without a GPU (and why), the fp16
one on CUDA, TorchScript when asked; all give the exported model's numbers."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from exporters.parity import parity_batch
from service.errors import ModelLoadError
from service.runtimes import RuntimeOptions, load_runtime
from service.runtimes.onnx import cuda_unavailable_reason


def _outputs(runtime, spec):
    clips = parity_batch(spec, 2).numpy()
    return runtime.run(clips)


@pytest.mark.skipif(cuda_unavailable_reason() is None, reason="a GPU is usable here")
def test_without_a_gpu_the_fp32_onnx_artifact_runs_on_cpu_and_says_why(exported, caplog) -> None:
    _, _, store, manifest = exported
    directory = store.version_dir(manifest.name, manifest.version)
    with caplog.at_level(logging.INFO, logger="actserve.runtime"):
        runtime = load_runtime(manifest, directory, RuntimeOptions())
    assert "CPU fp32 (model.onnx)" in runtime.description
    (line,) = [r.getMessage() for r in caplog.records]
    assert f"because {cuda_unavailable_reason()}" in line
    with pytest.raises(ModelLoadError, match="ACTSERVE_DEVICE=cuda but CUDA is unusable"):
        load_runtime(manifest, directory, RuntimeOptions(device="cuda"))


def test_torchscript_and_onnx_give_the_same_numbers(exported) -> None:
    _, spec, store, manifest = exported
    directory = store.version_dir(manifest.name, manifest.version)
    onnx = load_runtime(manifest, directory, RuntimeOptions(device="cpu"))
    torchscript = load_runtime(manifest, directory, RuntimeOptions(prefer_torchscript=True))
    assert torchscript.description.startswith("torch.jit")
    for a, b in zip(_outputs(onnx, spec), _outputs(torchscript, spec), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_on_cuda_the_fp16_artifact_runs_close_to_fp32(exported) -> None:
    _, spec, store, manifest = exported
    directory = store.version_dir(manifest.name, manifest.version)
    cuda = load_runtime(manifest, directory, RuntimeOptions(device="cuda"))
    cpu = load_runtime(manifest, directory, RuntimeOptions(device="cpu"))
    assert "CUDA fp16 (model.fp16.onnx)" in cuda.description
    logits16, embedding16 = _outputs(cuda, spec)
    logits32, embedding32 = _outputs(cpu, spec)
    for half, full in ((logits16, logits32), (embedding16, embedding32)):
        assert np.abs(half - full).max() / np.abs(full).max() <= 5e-2
    assert (logits16.argmax(1) == logits32.argmax(1)).all()


@pytest.mark.parametrize("spinning", [False, True])
def test_idle_runtime_threads_sleep_unless_told_to_spin(exported, spinning: bool) -> None:
    """Spinning threads busy-wait between batches on the cores the decode workers need."""
    _, _, store, manifest = exported
    directory = store.version_dir(manifest.name, manifest.version)
    runtime = load_runtime(manifest, directory, RuntimeOptions(device="cpu", spinning=spinning))
    options = runtime._session.get_session_options()
    for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
        assert options.get_session_config_entry(key) == ("1" if spinning else "0")
