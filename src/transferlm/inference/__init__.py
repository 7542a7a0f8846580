"""Inference below the run layer: batching over a backend (torch, ONNX Runtime) and text generation."""
