"""Serving a trained model over HTTP: FastAPI app, micro-batcher, playground page."""
