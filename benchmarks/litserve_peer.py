"""The LitServe peer of `benchmarks/load.py`: the same ONNX artifact, the same decode.

    python benchmarks/litserve_peer.py --port 8100                 # the bundled demo model
    python benchmarks/litserve_peer.py --store S --model M --workers 2 --threads 1

What a careful LitServe user would write for this model, tuned for a CPU box: `POST /predict`
takes the upload as multipart field `video`; each of `--workers` inference worker processes
(LitServe's `workers_per_device`) spools the upload to a temporary file, decodes it with
actserve's own PyAV decoder (`decode_video`: the same frames, sizes and normalisation as the
service), runs ONNX Runtime (`--threads` intra-op threads, spinning off so idle threads do not
steal the other worker's core) and returns the top-5 of the softmax averaged over the views.
Decode and inference run in the same worker, one request at a time per worker, which is how
LitServe runs `decode_request` and `predict`; the API server runs in its own process and
talks to the workers over ZeroMQ (`fast_queue`). Batching is off: on CPU a convolution costs
the same per view at batch 1 and 32, and a batch would make each request wait for its
batch-mates' decodes. On the project's 2-core box, 2 workers × 1 thread and 1 decoder thread
was the fastest of the settings tried (1 or 2 workers, 1 or 2 ORT threads, decoder threads 0 or 1).
"""

import argparse
import os
import tempfile
from pathlib import Path

import litserve as ls
import numpy as np

from model_store import ModelStore
from service.settings import BUNDLED_STORE
from service.video import DecodeOptions, VideoLimits, decode_video


class VideoClassifierAPI(ls.LitAPI):
    def __init__(
        self,
        store: Path,
        model: str | None,
        profile: str | None,
        threads: int,
        decoder_threads: int,
    ) -> None:
        super().__init__(max_batch_size=1)
        self.store, self.model, self.profile = store, model, profile
        self.threads, self.decoder_threads = threads, decoder_threads

    def setup(self, device: str) -> None:
        import onnxruntime as ort

        store = ModelStore(self.store)
        manifest = store.resolve(self.model)
        artifact = manifest.artifact("onnx", "fp32")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(store.version_dir(manifest.name, manifest.version) / artifact.file),
            options,
            providers=["CPUExecutionProvider"],
        )
        self.recipe = manifest.spec.recipe
        self.labels = manifest.spec.labels
        self.options = DecodeOptions(
            profile=self.profile or manifest.default_profile, decoder_threads=self.decoder_threads
        )
        self.limits = VideoLimits()

    def decode_request(self, request):
        upload = request["video"]
        with tempfile.NamedTemporaryFile(prefix="litserve-", suffix=".video") as file:
            file.write(upload.file.read())
            file.flush()
            return decode_video(file.name, self.recipe, self.options, self.limits).views

    def predict(self, views: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run(["logits"], {"clips": views})
        return logits

    def encode_response(self, logits: np.ndarray) -> dict:
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        scores = (shifted / shifted.sum(axis=1, keepdims=True)).mean(axis=0)
        best = np.argsort(scores)[::-1][:5]
        return {
            "top_k": [
                {"label": self.labels[i], "index": int(i), "score": float(scores[i])} for i in best
            ],
            "views": len(logits),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=BUNDLED_STORE)
    parser.add_argument("--model", default=None)
    parser.add_argument("--profile", choices=("fast", "accurate"), default=None)
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--decoder-threads", type=int, default=1)
    args = parser.parse_args()
    api = VideoClassifierAPI(
        args.store, args.model, args.profile, args.threads, args.decoder_threads
    )
    server = ls.LitServer(
        api, accelerator="cpu", workers_per_device=args.workers, timeout=300, fast_queue=True
    )
    os.environ.setdefault("LITSERVE_DISABLE_TELEMETRY", "1")
    server.run(
        host="127.0.0.1",
        port=args.port,
        num_api_servers=1,
        generate_client_file=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
