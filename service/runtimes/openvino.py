"""OpenVINO's own runtime on the CPU, reading the version's fp32 ONNX artifact.

Why the native API and not ONNX Runtime's OpenVINO execution provider: both run the same
OpenVINO kernels at the same speed (issue 27's table), but the provider ships as the
`onnxruntime-openvino` wheel, which replaces the `onnxruntime` package that our
`onnxruntime-gpu` dependency provides, so the two cannot share an environment; the native API
also gives the model cache, the precision and the performance hints directly.

Choices made here, each measured in benchmarks/runtime.py and docs/runtimes.md:

- precision: `INFERENCE_PRECISION_HINT` is always pinned. OpenVINO otherwise compiles in bf16
  on its own on CPUs with AVX512-BF16 or AMX; actserve runs bf16 only for a version exported
  and checked at bf16 (its manifest's `precision`), and only where the CPU has bf16;
- threads: `INFERENCE_NUM_THREADS` is the `threads` setting (0: OpenVINO's default, one per
  core) and threads are not pinned to cores, so the decode workers keep their share;
- hint `latency` (default): one stream, one infer request, the whole batch on all threads, one
  batch at a time. On 2 cores the streams below measured no faster on a quiet box and hold up
  better on a busy one; one CI run saw a 60 s hang promoting a version under traffic with
  them that did not reproduce, so they are opt-in until that is explained.
  `auto` (`plan`): on two or more cores, the throughput hint's streams (one per
  core on a small CPU), one infer request each, and the batcher runs one batch per stream at
  once: a stream's few threads do not stall at each layer's barrier when a decode worker
  takes a core, and a batch starts while the previous one runs. A lone batch with fewer views
  than streams (a single request on an idle service) runs instead on a second copy of the
  model compiled with the latency hint, on all threads, holding every stream meanwhile. On
  one core: the latency hint.
  `throughput`: the streams alone (a lone batch split across the idle ones);
- the compiled model is cached on disk (`CACHE_DIR`): a restart imports it instead of
  compiling again. Each artifact (by its digest) has a folder of its own, and the cache is
  bounded: a store that publishes a version a day does not fill the disk with blobs of
  versions long gone (`ModelCache`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import re
import shutil
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np

from model_store.spec import ModelSpec, TensorNames
from service.errors import ModelLoadError
from service.runtimes.base import Outputs, RuntimeOptions, to_layout

logger = logging.getLogger("actserve.runtime")

#: Manifest precision → OpenVINO's inference precision.
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}


@cache
def openvino_unavailable_reason() -> str | None:
    """Why OpenVINO cannot run here, or None when it can (an x86 CPU with `openvino`)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"OpenVINO's CPU plugin is x86-only here and this CPU is {platform.machine()}"
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        return f"the openvino package cannot be imported ({exc})"
    return None


@cache
def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes natively in bf16 here (AVX512-BF16 or AMX)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "actserve" / "openvino"


#: What `ModelCache` may remove: its artifact folders (`cache_key`) and OpenVINO's blobs.
_CACHE_ENTRY = re.compile(r"[0-9a-f]{32}|file-[0-9a-f]{27}|[0-9]+\.blob")


class ModelCache:
    """OpenVINO's compiled-model cache under `root`: one folder per artifact (named by its
    digest), its modification time the last load that used it, at most `max_bytes` in all
    (0: unbounded). Several processes may share it: a folder removed under another process's
    feet costs that process a compile at its next load, nothing else."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root, self.max_bytes = root, max_bytes

    def folder(self, key: str) -> Path | None:
        """The folder for the artifact `key`, made and marked as just used; None (the cache
        off, with a warning) where it cannot be written."""
        folder = self.root / key
        try:
            folder.mkdir(parents=True, exist_ok=True)
            os.utime(folder)
        except OSError as exc:
            logger.warning("OpenVINO's model cache is off: cannot write %s (%s)", folder, exc)
            return None
        return folder

    def prune(self, keep: Path) -> list[Path]:
        """Remove the least recently used entries (artifact folders, and blobs of the flat
        layout before them) until the cache fits, never `keep`. Returns them. Nothing else in
        the directory is touched, should it be shared with other files."""
        if not self.max_bytes:
            return []
        entries = []
        with os.scandir(self.root) as found:
            for entry in found:
                path = Path(entry.path)
                if path == keep or not _CACHE_ENTRY.fullmatch(entry.name):
                    continue
                try:
                    entries.append((entry.stat().st_mtime, _size(path), path))
                except OSError:
                    continue  # removed meanwhile by another process
        total = _size(keep) + sum(size for _, size, _ in entries)
        removed = []
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            total -= size
            removed.append(path)
        if removed:
            logger.info(
                "OpenVINO's model cache: removed %d least recently used entries to stay under "
                "%d MB",
                len(removed),
                self.max_bytes >> 20,
            )
        return removed


def _size(path: Path) -> int:
    """Bytes under `path` (a file or a folder); files inside that vanish meanwhile count 0."""
    if not path.is_dir():
        return path.stat().st_size
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += os.stat(os.path.join(folder, name)).st_size
    return total


def cache_key(path: Path, digest: str | None) -> str:
    """An artifact's cache folder name: its sha256 where the manifest has it, else its path,
    size and time (an imported file served straight from disk)."""
    if digest:
        return digest[:32]
    stat = path.stat()
    return (
        "file-"
        + hashlib.sha256(
            f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()
        ).hexdigest()[:27]
    )


def available_cores() -> int:
    """The CPUs this process may run on (its affinity, e.g. a container's cpuset)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Plan:
    """How OpenVINO runs the batcher's batches on this CPU."""

    hint: Literal["latency", "throughput"]
    #: NUM_STREAMS under the throughput hint; 0: OpenVINO's choice.
    streams: int = 0
    #: Also a latency-compiled copy for a lone batch too small to split across the streams.
    wide: bool = False


def plan(options: RuntimeOptions, cores: int) -> Plan:
    """The hint, streams and lone-batch copy for `options` on `cores` CPUs."""
    if options.openvino_hint == "latency" or (options.openvino_hint == "auto" and cores < 2):
        return Plan("latency")
    streams = options.openvino_streams
    if options.threads and streams > options.threads:
        streams = options.threads  # a stream needs a thread
    return Plan("throughput", streams, wide=options.openvino_hint == "auto" and streams != 1)


def compile_config(
    options: RuntimeOptions,
    precision: str,
    cache_dir: Path | None,
    hint: str = "latency",
    streams: int = 0,
) -> dict:
    """The CPU plugin's configuration for `options` at `precision` ('fp32' or 'bf16') under
    `hint` ('latency' or 'throughput', with `streams` streams; 0: the hint's choice)."""
    config: dict[str, str] = {
        "PERFORMANCE_HINT": hint.upper(),
        "INFERENCE_PRECISION_HINT": _OV_PRECISION[precision],
        "ENABLE_CPU_PINNING": "NO",
    }
    if options.threads:
        config["INFERENCE_NUM_THREADS"] = str(options.threads)
    if hint == "throughput" and streams:
        config["NUM_STREAMS"] = str(streams)
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
    return config


def serving_precision(version_precision: str) -> tuple[str, str | None]:
    """The precision OpenVINO runs a version at here, and why it differs when it does: a bf16
    version runs in fp32 on a CPU without bf16 (higher precision, never lower); an fp16
    version is a GPU artifact, its fp32 ONNX runs here."""
    if version_precision == "bf16" and not cpu_has_bf16():
        return "fp32", "this CPU has no bf16 (AVX512-BF16 or AMX), so the bf16 version runs in fp32"
    if version_precision == "fp16":
        return "fp32", "fp16 is a GPU precision; on the CPU the fp32 artifact runs"
    return version_precision, None


class OpenVinoRuntime:
    def __init__(
        self,
        path: Path,
        options: RuntimeOptions,
        *,
        precision: str = "fp32",
        spec: ModelSpec | None = None,
        digest: str | None = None,
    ) -> None:
        import openvino as ov

        reason = openvino_unavailable_reason()
        if reason is not None:
            raise ModelLoadError(f"cannot run on OpenVINO: {reason}")
        cache = ModelCache(
            options.openvino_cache_dir or default_cache_dir(), options.openvino_cache_max_mb << 20
        )
        cache_dir = cache.folder(cache_key(path, digest))
        core = ov.Core()
        self.plan = plan(options, available_cores())
        config = compile_config(options, precision, cache_dir, self.plan.hint, self.plan.streams)
        try:
            self._compiled = core.compile_model(str(path), "CPU", config)
            requests = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            self._wide = None
            if self.plan.wide and requests > 1:
                wide = compile_config(options, precision, cache_dir)
                self._wide = core.compile_model(str(path), "CPU", wide).create_infer_request()
        except RuntimeError as exc:
            raise ModelLoadError(f"OpenVINO cannot compile {path.name}: {exc}") from None
        if cache_dir is not None:
            cache.prune(keep=cache_dir)
        # An imported artifact names its own tensors and may take (N, T, C, H, W).
        names = spec.tensors if spec is not None else TensorNames()
        outputs = (names.logits, names.embedding)
        self._outputs = [self._compiled.output(name).get_any_name() for name in outputs]
        self._input = names.input
        self._layout = spec.recipe.layout if spec is not None else None
        if self.plan.hint == "latency":
            requests = 1
        self._requests = [self._compiled.create_infer_request() for _ in range(requests)]
        #: `run` calls that may be in flight at once: one per infer request (stream).
        self.lanes = requests
        self._idle = list(self._requests)
        self._freed = threading.Condition()
        running = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        streams = int(self._compiled.get_property("NUM_STREAMS"))
        threads = int(self._compiled.get_property("INFERENCE_NUM_THREADS"))
        #: What the CPU computes in, read back from the compiled model ('fp32' or 'bf16').
        self.precision = {"f32": "fp32"}.get(running, running)
        lone = f", batches under {requests} views on all threads" if self._wide is not None else ""
        self.description = (
            f"openvino {ov.get_version().split('-')[0]} CPU {self.precision} ({path.name}; "
            f"{self.plan.hint} hint: {streams} stream(s), {threads} threads, "
            f"{requests} request(s){lone})"
        )

    def run(self, clips: np.ndarray) -> Outputs:
        """Run `clips` on the idle infer requests, split across as many as are idle (at least
        one: waits for it), or on the latency copy (see `plan`). Called from up to `lanes`
        threads at once: under load each batch gets a stream of its own."""
        if self._layout is not None:
            clips = to_layout(clips, self._layout)
        clips = np.ascontiguousarray(clips, dtype=np.float32)
        with self._freed:
            self._freed.wait_for(lambda: self._idle)
            # Too small to split and nothing else running: all threads, holding every stream
            # so that no batch starts beside it on the same cores.
            wide = self._wide is not None and len(clips) < len(self._idle) == len(self._requests)
            take = len(self._idle) if wide else min(len(self._idle), len(clips))
            mine = [self._idle.pop() for _ in range(take)]
        try:
            if wide:
                return self._infer(self._wide, clips)
            if len(mine) == 1:
                return self._infer(mine[0], clips)
            parts = np.array_split(clips, len(mine))
            for request, part in zip(mine, parts, strict=True):
                request.start_async({self._input: part}, share_inputs=True)
            results = []
            for request in mine:
                request.wait()
                results.append([request.get_tensor(o).data.copy() for o in self._outputs])
            return Outputs(*(np.concatenate(r) for r in zip(*results, strict=True)))
        finally:
            with self._freed:
                self._idle.extend(mine)
                self._freed.notify_all()

    def _infer(self, request, clips: np.ndarray) -> Outputs:
        request.infer({self._input: clips}, share_inputs=True)
        return Outputs(*(request.get_tensor(o).data.copy() for o in self._outputs))

    def close(self) -> None:
        self._requests = []
        self._idle = []
        self._wide = None
        self._compiled = None
