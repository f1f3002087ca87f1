"""Turn a trained backbone into TorchScript and ONNX artifacts with a recorded parity check,
publish them to the model store, and write Triton repositories from the store."""

from exporters.errors import (
    ExportError,
    OutputShapeError,
    ParityError,
    PrecisionError,
    TritonExportError,
)
from exporters.onnx import export_onnx, onnx_runner
from exporters.parity import check_parity
from exporters.pipeline import (
    Stream,
    describe_checkpoint,
    export_to_store,
    export_two_stream_to_store,
)
from exporters.torchscript import export_torchscript, torchscript_runner
from exporters.triton import render_config, write_triton_repository

__all__ = [
    "ExportError",
    "OutputShapeError",
    "ParityError",
    "PrecisionError",
    "Stream",
    "TritonExportError",
    "check_parity",
    "describe_checkpoint",
    "export_onnx",
    "export_to_store",
    "export_torchscript",
    "export_two_stream_to_store",
    "onnx_runner",
    "render_config",
    "torchscript_runner",
    "write_triton_repository",
]
