"""The one training loop and what consumes it."""
