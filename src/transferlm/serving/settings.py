"""`transferlm serve`'s settings: importable without the serve extra (the CLI builds its flags from them)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from transferlm.config.selected import CommandSettings


class ServeSettings(CommandSettings):
    section = "serve"
    host: str = Field("127.0.0.1", description="Address to bind (127.0.0.1: this machine only).")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on.")
    max_batch: int = Field(32, ge=1, description="Inputs per model batch (1: no batching).")
    max_wait_ms: float = Field(5.0, ge=0, description="How long a batch waits to fill, in ms.")
    # Requests arrive in random lengths, so one forward over a whole batch pads every input to the longest of 32;
    # on 2 CPU cores, forwards of 8 similar-length inputs ran 1.37x faster for torch and 1.50x for ONNX int8
    # (bench/README.md, serve section).
    model_batch: int = Field(
        8, ge=1, description="Inputs per forward pass within a batch, in length order (less padding than one forward "
        "over the whole batch).",
    )
    api_key: Optional[str] = Field(
        None, description="Require this key (Authorization: Bearer KEY or X-API-Key) on /v1/* and /metrics; the CLI "
        "reads $TRANSFERLM_API_KEY when it is not given.",
    )
    max_body_bytes: int = Field(1_000_000, ge=1, description="Request body size.")
    max_inputs: int = Field(256, ge=1, description="Inputs per request.")
    max_chars: int = Field(20_000, ge=1, description="Characters per input, all its strings together.")
    explain_max_inputs: int = Field(
        4, ge=1, description="Inputs per /v1/explain request (each costs explain_steps forward and backward passes).",
    )
    explain_max_chars: int = Field(5_000, ge=1, description="Characters per /v1/explain input.")
    explain_steps: int = Field(32, ge=2, le=1000, description="Integration steps of /v1/explain.")
    backend: Optional[Literal["torch", "onnx"]] = Field(
        None, description="Check that the directory holds this backend (default: whatever it holds)."
    )
