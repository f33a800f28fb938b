"""Small shared helpers: ONNX export, model statistics, training loops."""
