"""Leaving backprop: ONNX files for serving runtimes (``model.export(path, format="onnx")``)."""
