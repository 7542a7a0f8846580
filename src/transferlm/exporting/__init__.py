"""Shipping a trained model: ONNX export (and, built on it, serving)."""
