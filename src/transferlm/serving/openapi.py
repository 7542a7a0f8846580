"""What the server's OpenAPI schema says of each endpoint: its request body and every response it can give.

The handlers read their bodies raw (counted as they arrive, so a size limit holds before parsing), which FastAPI
cannot describe by itself; these are the route arguments that describe them. Clients generate code from the
schema, and the fuzzing test (tests/test_fuzz.py) checks every response against it.
"""

from __future__ import annotations

from typing import Any

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[int, dict[str, Any]]:
    meaning = {401: "Missing or wrong API key (only when the server has one).",
               413: "The body is over the size limit.",
               422: "The body is not JSON of the documented shape, an input is malformed (the error names it), or "
                    "a limit is passed.",
               503: "The server is shutting down; retry on another instance."}
    return {status: _json(ERROR, meaning[status]) for status in statuses}


def _body(an_input: dict[str, Any], max_inputs: int, max_chars: int, **more: Any) -> dict[str, Any]:
    inputs = {"type": "array", "items": an_input, "minItems": 1, "maxItems": max_inputs,
              "description": f"At most {max_inputs} inputs of at most {max_chars} characters each."}
    schema = {"type": "object", "required": ["inputs"], "properties": {"inputs": inputs, **more}}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def predict_route(an_input: dict[str, Any], max_inputs: int, max_chars: int) -> dict[str, Any]:
    """``an_input``: the served task's ``input_schema()``."""
    return {
        "openapi_extra": _body(an_input, max_inputs, max_chars),
        "responses": {200: _json({"type": "object", "required": ["predictions"],
                                  "properties": {"predictions": {"type": "array", "items": {"type": "object"}}}},
                                 "One prediction per input, in input order."),
                      **_errors(401, 413, 422, 503)},
    }


def explain_route(an_input: dict[str, Any], targets: list[str] | None, max_inputs: int, max_chars: int
                  ) -> dict[str, Any]:
    """``targets``: the served task's ``explanation_target_names()``."""
    named = {"type": "string"} if targets is None else {"enum": targets}
    target = {"description": "What to explain (a label, an entity type); default: what the model predicted.",
              "anyOf": [named, {"type": "null"}]}
    return {
        "openapi_extra": _body(an_input, max_inputs, max_chars, target=target),
        "responses": {200: _json({"type": "object", "required": ["explanations"],
                                  "properties": {"explanations": {"type": "array", "items": {"type": "object"}}}},
                                 "Word attributions per input."),
                      **_errors(401, 413, 422)},
    }


STATUS = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
HEALTH = {"responses": {200: _json(STATUS, "The process is up.")}}
READY = {"responses": {200: _json(STATUS, "The model is loaded and the batcher runs."),
                       503: _json(STATUS, "Starting or shutting down.")}}
MODEL = {"responses": {200: _json({"type": "object", "required": ["task", "backend"]}, "The served run."),
                       **_errors(401)}}
METRICS = {"responses": {200: {"description": "Prometheus text format.", "content": {"text/plain": {}}},
                         **_errors(401)}}
