"""The Open Inference Protocol's two encodings side by side, and against the bare runtime.

    python benchmarks/oip.py                          # the bundled demo model, 10 views/request
    python benchmarks/oip.py --store S --model M --views 10 --requests 40

One server on loopback (`service.embedded`), one `tritonclient.http` client sending the same
(V, C, T, H, W) float32 batch `--requests` times per mode, one request at a time: JSON
(`data` lists) and the binary tensor extension. Printed per mode: mean request time, payload
size, and the ratio of the bare runtime's time on the same batch (ONNX Runtime, nothing else
running) to the request's; ratios come from this one run, absolute times drift on shared
machines.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import tritonclient.http as triton

from model_store import ModelStore
from service.embedded import EmbeddedServer
from service.runtimes import RuntimeOptions, load_runtime
from service.settings import BUNDLED_STORE, Settings


def timed(repeat: int, run) -> float:
    """Mean seconds per call, after one warm-up call."""
    run()
    started = time.perf_counter()
    for _ in range(repeat):
        run()
    return (time.perf_counter() - started) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default=str(BUNDLED_STORE))
    parser.add_argument("--model", default=None)
    parser.add_argument("--views", type=int, default=10)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()

    store = ModelStore(args.store)
    manifest = store.resolve(args.model or store.default_model())
    shape = manifest.artifact("onnx").inputs[0].shape[1:]
    batch = np.random.default_rng(0).normal(size=(args.views, *shape)).astype(np.float32)

    version_dir = store.version_dir(manifest.name, manifest.version)
    runtime = load_runtime(manifest, version_dir, RuntimeOptions(device="cpu"))
    bare = timed(args.requests, lambda: runtime.run(batch))
    runtime.close()

    settings = Settings(store=args.store, default_model=manifest.name, device="cpu")
    print(
        f"{manifest.name} v{manifest.version}, {args.views} views of {list(shape)}, "
        f"{args.requests} requests per mode; bare runtime {bare * 1e3:.1f} ms per batch"
    )
    print(f"{'mode':<8} {'ms/request':>11} {'request MB':>11} {'runtime/request':>16}")
    with EmbeddedServer(settings) as server:
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        for mode in ("json", "binary"):
            binary = mode == "binary"
            clips = triton.InferInput("clips", list(batch.shape), "FP32")
            clips.set_data_from_numpy(batch, binary_data=binary)
            names = ("logits", "embedding")
            outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in names]

            def send(clips=clips, outputs=outputs):
                return client.infer(manifest.name, [clips], outputs=outputs)

            seconds = timed(args.requests, send)
            size = batch.nbytes if binary else len(json.dumps(batch.ravel().tolist()))
            print(f"{mode:<8} {seconds * 1e3:>11.1f} {size / 1e6:>11.2f} {bare / seconds:>16.2f}")
        client.close()


if __name__ == "__main__":
    main()
