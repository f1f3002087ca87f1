"""Turn a trained backbone into TorchScript and ONNX artifacts with a recorded parity check."""
