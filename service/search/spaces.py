"""Which index table a model version reads and writes, and a probe version's linear head.

A version made by `actserve probe` runs its base version's network unchanged (only the head
is new), so its embeddings are its base's: it indexes into and searches its base's table, and
its head can score that table's stored windows without decoding a frame again.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from model_store import Manifest, ModelStore
from window_index import Space, WrongSpace


def space_of(manifest: Manifest) -> Space:
    """The model version whose embeddings `manifest`'s network computes."""
    if manifest.probe is not None:
        return Space(manifest.probe.base_model, manifest.probe.base_version)
    return Space(manifest.name, manifest.version)


def probe_head(store: ModelStore, manifest: Manifest) -> tuple[np.ndarray, np.ndarray]:
    """A probe version's head (weight (K, D), bias (K,)), read from its ONNX graph."""
    if manifest.probe is None:
        raise WrongSpace(
            f"{manifest.name}@{manifest.version} is not a probe-trained version: search its "
            "index with a query clip or a stored window, or name a version `actserve probe` made"
        )
    return linear_head(store, manifest)


def linear_head(store: ModelStore, manifest: Manifest) -> tuple[np.ndarray, np.ndarray]:
    """The version's `logits = embedding @ weight.T + bias` (weight (K, D), bias (K,)), read
    from its fp32 ONNX graph: the Gemm that turns the `embedding` output into `logits`, as
    the exporters and `actserve probe` write it."""
    artifact = manifest.artifact("onnx", "fp32")
    if artifact is None:
        raise WrongSpace(f"{manifest.name}@{manifest.version} has no fp32 ONNX artifact")
    path = store.version_dir(manifest.name, manifest.version) / artifact.file
    return _read_head(path, manifest.files[artifact.file].sha256)


@lru_cache(maxsize=16)
def _read_head(path: Path, sha256: str) -> tuple[np.ndarray, np.ndarray]:
    """(The file's digest keys the cache: a store's versions are immutable.)"""
    import onnx
    from onnx import helper, numpy_helper

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {i.name: i for i in graph.initializer}
    node = next((n for n in graph.node if "logits" in n.output), None)
    if (
        node is None
        or node.op_type != "Gemm"
        or len(node.input) != 3
        or node.input[0] != "embedding"
        or not all(name in weights for name in node.input[1:])
    ):
        raise WrongSpace(f"{path.name}: its logits are not a linear head on its embedding")
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    weight = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
    bias = numpy_helper.to_array(weights[node.input[2]]).astype(np.float32)
    if not attributes.get("transB", 0):
        weight = weight.T
    return np.ascontiguousarray(weight * attributes.get("alpha", 1.0)), bias * attributes.get(
        "beta", 1.0
    )
