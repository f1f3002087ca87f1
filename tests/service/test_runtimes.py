"""Which artifact runs where: OpenVINO on x86 CPUs, ONNX Runtime's CPU provider when asked (and
why), the fp16 artifact on CUDA, TorchScript when asked; all give the exported model's numbers;
OpenVINO computes in fp32 unless a version was exported at bf16 and caches what it compiles."""

from __future__ import annotations

import logging
import os
import platform
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from exporters.parity import parity_batch
from service.errors import ModelLoadError
from service.runtimes import RuntimeOptions, load_runtime
from service.runtimes.onnx import cuda_unavailable_reason
from service.runtimes.openvino import (
    ModelCache,
    OpenVinoRuntime,
    Plan,
    cache_key,
    plan,
    serving_precision,
)

X86 = platform.machine().lower() in ("x86_64", "amd64")


def _outputs(runtime, spec):
    clips = parity_batch(spec, 2).numpy()
    return runtime.run(clips)


@pytest.mark.skipif(cuda_unavailable_reason() is None, reason="a GPU is usable here")
def test_without_a_gpu_the_fp32_onnx_artifact_runs_on_cpu_and_says_why(exported, caplog) -> None:
    _, _, store, manifest = exported
    directory = store.version_dir(manifest.name, manifest.version)
    with caplog.at_level(logging.INFO, logger="actserve.runtime"):
        runtime = load_runtime(manifest, directory, RuntimeOptions(kind="onnxruntime"))
    assert "CPU fp32 (model.onnx)" in runtime.description
    (line,) = [r.getMessage() for r in caplog.records]
    assert f"because {cuda_unavailable_reason()}" in line
    with pytest.raises(ModelLoadError, match="ACTSERVE_DEVICE=cuda but CUDA is unusable"):
        load_runtime(manifest, directory, RuntimeOptions(device="cuda"))


def test_torchscript_and_onnx_give_the_same_numbers(exported) -> None:
    _, spec, store, manifest = exported
    directory = store.version_dir(manifest.name, manifest.version)
    onnx = load_runtime(manifest, directory, RuntimeOptions(kind="onnxruntime", device="cpu"))
    torchscript = load_runtime(manifest, directory, RuntimeOptions(prefer_torchscript=True))
    assert torchscript.description.startswith("torch.jit")
    for a, b in zip(_outputs(onnx, spec), _outputs(torchscript, spec), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_on_cuda_the_fp16_artifact_runs_close_to_fp32(exported) -> None:
    _, spec, store, manifest = exported
    directory = store.version_dir(manifest.name, manifest.version)
    cuda = load_runtime(manifest, directory, RuntimeOptions(device="cuda"))
    cpu = load_runtime(manifest, directory, RuntimeOptions(kind="onnxruntime", device="cpu"))
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
    options = RuntimeOptions(kind="onnxruntime", device="cpu", spinning=spinning)
    runtime = load_runtime(manifest, directory, options)
    options = runtime._session.get_session_options()
    for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
        assert options.get_session_config_entry(key) == ("1" if spinning else "0")


# --------------------------------------------------------------------------- OpenVINO


@pytest.mark.skipif(cuda_unavailable_reason() is None, reason="a GPU is usable here")
def test_auto_picks_openvino_on_x86_cpus_and_logs_why(exported, caplog, tmp_path) -> None:
    _, _, store, manifest = exported
    directory = store.version_dir(manifest.name, manifest.version)
    with caplog.at_level(logging.INFO, logger="actserve.runtime"):
        runtime = load_runtime(manifest, directory, RuntimeOptions(openvino_cache_dir=tmp_path))
    line = caplog.records[0].getMessage()
    if X86:
        assert runtime.description.startswith("openvino ")
        assert "because an x86 CPU and " + cuda_unavailable_reason() in line
    else:
        assert runtime.description.startswith("onnxruntime ")


@pytest.mark.skipif(not X86, reason="OpenVINO's CPU plugin is x86-only here")
@pytest.mark.parametrize("hint", ["latency", "throughput"])
def test_openvino_gives_onnx_runtimes_numbers_in_fp32(exported, tmp_path, hint: str) -> None:
    """Pinned to f32 (OpenVINO would pick bf16 on its own on AMX CPUs); the throughput hint
    splits a batch across its infer requests and puts the parts back in order."""
    _, spec, store, manifest = exported
    directory = store.version_dir(manifest.name, manifest.version)
    options = RuntimeOptions(kind="openvino", openvino_hint=hint, openvino_cache_dir=tmp_path)
    openvino = load_runtime(manifest, directory, options)
    onnx = load_runtime(manifest, directory, RuntimeOptions(kind="onnxruntime"))
    assert isinstance(openvino, OpenVinoRuntime) and openvino.precision == "fp32"
    assert openvino._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    assert not openvino._compiled.get_property("ENABLE_CPU_PINNING")
    clips = np.concatenate([parity_batch(spec, 2).numpy(), parity_batch(spec, 3).numpy()])
    for ours, theirs in zip(openvino.run(clips), onnx.run(clips), strict=True):
        assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()
    assert (openvino.run(clips).logits.argmax(1) == onnx.run(clips).logits.argmax(1)).all()


@pytest.mark.skipif(not X86, reason="OpenVINO's CPU plugin is x86-only here")
def test_openvino_caches_the_compiled_model_on_disk(exported, tmp_path) -> None:
    _, _, store, manifest = exported
    directory = store.version_dir(manifest.name, manifest.version)
    options = RuntimeOptions(kind="openvino", openvino_cache_dir=tmp_path / "cache", threads=1)
    first = load_runtime(manifest, directory, options)
    assert not first._compiled.get_property("LOADED_FROM_CACHE")
    digest = manifest.files["model.onnx"].sha256
    (folder,) = (tmp_path / "cache").iterdir()  # the artifact's own folder, by its digest
    assert folder.name == cache_key(directory / "model.onnx", digest) == digest[:32]
    assert list(folder.glob("*.blob"))
    again = load_runtime(manifest, directory, options)  # a restart
    assert again._compiled.get_property("LOADED_FROM_CACHE")
    assert "1 threads" in again.description


def _fill(path, size: int, used_at: float) -> None:
    """A cache entry of `size` bytes at `path`, last used at `used_at`: its artifact folder's
    time, or the file's own for a file at the cache's root."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    os.utime(path.parent if path.parent.name != "cache" else path, (used_at, used_at))


def test_the_model_cache_forgets_the_least_recently_used_artifacts_first(tmp_path) -> None:
    """A store that publishes a version a day would fill the disk with compiled blobs of
    versions long gone: past its bound the cache drops the folders used longest ago (and the
    loose blobs of the earlier flat layout), never the one just compiled."""
    root = tmp_path / "cache"
    a, b, c = ("a" * 32, "b" * 32, "c" * 32)  # artifacts' digests
    _fill(root / "123.blob", 500, used_at=1_000)  # the flat layout of earlier releases
    _fill(root / a / "1.blob", 1000, used_at=2_000)
    _fill(root / b / "1.blob", 1000, used_at=4_000)
    _fill(root / c / "1.blob", 1000, used_at=3_000)
    _fill(root / "notes.txt", 5000, used_at=0)  # not the cache's: never touched
    cache = ModelCache(root, max_bytes=2500)
    keep = cache.folder(a)  # just used: the newest now, and kept whatever its age
    _fill(keep / "2.blob", 400, used_at=5_000)
    removed = cache.prune(keep=keep)
    assert removed == [root / "123.blob", root / c]  # 3,900 B → 2,400 B, oldest first
    assert sorted(p.name for p in root.iterdir()) == [a, b, "notes.txt"]
    assert ModelCache(root, max_bytes=0).prune(keep=keep) == []  # 0: unbounded
    assert ModelCache(root, max_bytes=1).prune(keep=keep) == [root / b]
    assert (keep / "1.blob").exists() and (root / "notes.txt").exists()


@pytest.mark.skipif(not X86, reason="OpenVINO's CPU plugin is x86-only here")
def test_a_version_loaded_past_the_cache_bound_evicts_the_others(exported, tmp_path) -> None:
    _, _, store, manifest = exported
    directory = store.version_dir(manifest.name, manifest.version)
    stale = tmp_path / "cache" / ("0" * 32)  # an artifact long gone
    _fill(stale / "1.blob", 4096, used_at=1_000)
    options = RuntimeOptions(
        kind="openvino", openvino_cache_dir=tmp_path / "cache", openvino_cache_max_mb=1
    )
    load_runtime(manifest, directory, options)
    assert not stale.exists()
    (kept,) = (tmp_path / "cache").iterdir()
    assert list(kept.glob("*.blob"))


def test_openvino_plan_streams_on_shared_cores_latency_on_one() -> None:
    """`auto`: streams on 2+ cores (a batch per stream at once, a view too few to split on a
    latency copy over all threads); one core has nothing to share: the latency hint."""
    assert plan(RuntimeOptions(), cores=8) == Plan("latency")  # the default
    auto = RuntimeOptions(openvino_hint="auto")
    assert plan(auto, cores=1) == Plan("latency")
    assert plan(auto, cores=2) == plan(auto, cores=64) == Plan("throughput", 0, wide=True)
    streams = dict(openvino_hint="auto", openvino_streams=1)
    assert plan(RuntimeOptions(**streams), cores=8) == Plan("throughput", 1)
    capped = dict(openvino_hint="auto", openvino_streams=4, threads=2)
    assert plan(RuntimeOptions(**capped), cores=8).streams == 2
    assert plan(RuntimeOptions(openvino_hint="throughput"), cores=8) == Plan("throughput")


@pytest.mark.skipif(not X86, reason="OpenVINO's CPU plugin is x86-only here")
def test_openvino_streams_run_batches_at_once_and_a_lone_view_on_all_threads(
    exported, tmp_path, monkeypatch
) -> None:
    import service.runtimes.openvino as ov_runtime

    _, spec, store, manifest = exported
    directory = store.version_dir(manifest.name, manifest.version)
    monkeypatch.setattr(ov_runtime, "available_cores", lambda: 2)
    options = RuntimeOptions(
        kind="openvino", openvino_hint="auto", openvino_streams=2, openvino_cache_dir=tmp_path
    )
    openvino = load_runtime(manifest, directory, options)
    onnx = load_runtime(manifest, directory, RuntimeOptions(kind="onnxruntime"))
    assert openvino.lanes == 2 and openvino._wide is not None
    assert "2 stream(s)" in openvino.description
    clips = [parity_batch(spec, n).numpy() for n in (1, 1, 2, 3)]
    with ThreadPoolExecutor(2) as pool:  # as the batcher's two lanes call it
        results = list(pool.map(openvino.run, clips))
    for batch, ours in zip(clips, results, strict=True):
        theirs = onnx.run(batch)
        assert np.abs(ours.logits - theirs.logits).max() <= 1e-5 * np.abs(theirs.logits).max()
    assert len(openvino._idle) == 2  # every infer request back


def test_a_version_runs_at_its_precision_or_higher_never_lower(monkeypatch) -> None:
    import service.runtimes.openvino as ov_runtime

    assert serving_precision("fp32") == ("fp32", None)
    assert serving_precision("fp16")[0] == "fp32"  # a GPU precision: fp32 on the CPU
    monkeypatch.setattr(ov_runtime, "cpu_has_bf16", lambda: False)
    precision, why = serving_precision("bf16")
    assert precision == "fp32" and "no bf16" in why
    monkeypatch.setattr(ov_runtime, "cpu_has_bf16", lambda: True)
    assert serving_precision("bf16") == ("bf16", None)


def test_an_explicit_runtime_that_cannot_run_says_why(exported) -> None:
    _, _, store, manifest = exported
    directory = store.version_dir(manifest.name, manifest.version)
    onnx_only = manifest.model_copy(
        update={"artifacts": tuple(a for a in manifest.artifacts if a.format == "onnx")}
    )
    with pytest.raises(ModelLoadError, match="ACTSERVE_RUNTIME=torchscript but .* no TorchScript"):
        load_runtime(onnx_only, directory, RuntimeOptions(kind="torchscript"))
    ts_only = manifest.model_copy(
        update={"artifacts": tuple(a for a in manifest.artifacts if a.format == "torchscript")}
    )
    assert load_runtime(ts_only, directory, RuntimeOptions()).description.startswith("torch.jit")
