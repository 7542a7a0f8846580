"""`transferlm serve`: a run or export directory behind an HTTP API (FastAPI on uvicorn).

Endpoints: ``POST /v1/predict`` ({"inputs": [...]} -> {"predictions": [...]}, the shape ``predict`` gives
for the task), ``GET /health`` (the process is up), ``GET /ready`` (the model answers), ``GET /v1/model``
(task, labels, metrics, versions), ``GET /metrics`` (Prometheus), ``GET /docs`` (OpenAPI) and ``GET /``
(the playground page). Requests are micro-batched (``serve/batcher.py``).

Safe by default: the CLI binds 127.0.0.1; an API key, when set, is required on /v1/* and /metrics and
compared in constant time; the body size, inputs per request and characters per input are limited,
and each limit is answered with a status that says the limit (413 for the body, 422 otherwise);
malformed JSON is a 422 with the reason; no traceback reaches a client; shutdown drains the queue.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from transferlm.errors import DataError, RunDirError
from transferlm.extras import require
from transferlm.runs import layout
from transferlm.serve.batcher import BatcherClosed, MicroBatcher
from transferlm.serve.settings import ServeSettings

log = logging.getLogger(__name__)

SERVE = "`transferlm serve`"  # what needs the serve extra, in its messages
# At module level: FastAPI resolves the handlers' string annotations here.
Request = require("fastapi", "serve", SERVE).Request


def check_weights(root: Path, backend: str | None) -> str:
    """The backend to use, refusing any directory whose weights are not safetensors or ONNX."""
    root = Path(root)
    manifest = layout.read_manifest(root)
    holds = manifest.get("backend", "torch")
    if backend not in (None, holds):
        hint = (f"; export it first: transferlm export {root} --output DIR" if backend == "onnx"
                else "; serve the run directory it was exported from")
        raise RunDirError(f"{root}: holds a {holds} model, not {backend}{hint}")
    if holds == "torch":
        weights = list(root.glob("*.safetensors"))
        pickled = [p.name for p in root.glob("*.bin")] + [p.name for p in root.glob("*.pt")]
        if not weights or pickled:
            raise RunDirError(f"{root}: serving loads weights only from safetensors or ONNX; found "
                              f"{', '.join(pickled) or 'no .safetensors file'}")
    return holds


def create_app(root: Path, settings: ServeSettings | None = None):
    settings = settings or ServeSettings()
    require("prometheus_client", "serve", SERVE)
    from fastapi import Depends, FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from starlette.exceptions import HTTPException

    from transferlm.runs.predictor import load

    root = Path(root)
    backend = check_weights(root, settings.backend)
    # ONNX Runtime's idle threads would spin on the cores the event loop needs (see OnnxForward)
    predictor = load(root, batch_size=min(settings.model_batch, settings.max_batch), onnx_spin=False)
    registry = CollectorRegistry()
    requests = Counter("transferlm_requests", "HTTP requests", ["path", "status"], registry=registry)
    errors = Counter("transferlm_errors", "Failed requests by kind", ["kind"], registry=registry)
    latency = Histogram("transferlm_request_seconds", "Request latency", ["path"], registry=registry,
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
    batch_sizes = Histogram("transferlm_batch_size", "Inputs per model batch", registry=registry,
                            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
    batch_seconds = Histogram("transferlm_batch_seconds", "Model time per batch", registry=registry)
    queue_depth = Gauge("transferlm_queue_depth", "Inputs waiting for the model", registry=registry)

    def on_batch(size: int, seconds: float) -> None:
        batch_sizes.observe(size)
        batch_seconds.observe(seconds)

    batcher = MicroBatcher(predictor.predict_records, settings.max_batch, settings.max_wait_ms, on_batch)
    queue_depth.set_function(lambda: batcher.depth)
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        state["ready"] = True
        log.info("serving %s (%s, task %s); max batch %d (forwards of %d), max wait %.1f ms", root, backend,
                 predictor.task.name, settings.max_batch, predictor.batch_size, settings.max_wait_ms)
        yield
        state["ready"] = False
        await batcher.close()  # SIGTERM: uvicorn stops accepting, then this drains the queue

    app = FastAPI(title="transferlm", version=layout.library_versions().get("transferlm", "?"), lifespan=lifespan,
                  description=f"A {predictor.task.name} model from {root.name}.")

    def problem(status: int, message: str, kind: str) -> JSONResponse:
        errors.labels(kind).inc()
        return JSONResponse({"error": message}, status_code=status)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        began = time.perf_counter()
        path = request.url.path if request.url.path in KNOWN_PATHS else "other"
        response = await _guarded(request, call_next)
        requests.labels(path, str(response.status_code)).inc()
        latency.labels(path).observe(time.perf_counter() - began)
        return response

    async def _guarded(request: Request, call_next):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > settings.max_body_bytes:
            return problem(413, f"request body of {declared} bytes is over the limit of {settings.max_body_bytes}",
                           "too_large")
        try:
            return await call_next(request)
        except Exception:  # never a traceback to the client; the server log has it
            log.exception("unhandled error on %s", request.url.path)
            return problem(500, "internal error; the server log has the details", "internal")

    wanted = hashlib.sha256(settings.api_key.encode()).digest() if settings.api_key else None

    async def require_key(request: Request) -> None:
        """On /v1/* and /metrics (a route dependency, so no path prefix can slip past it)."""
        if wanted is None:
            return
        given = request.headers.get("x-api-key")
        if given is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else ""
        # Digests of equal length, compared in constant time: neither the key nor its length leaks.
        if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), wanted):
            errors.labels("auth").inc()
            raise HTTPException(401, "missing or wrong API key: send it as 'Authorization: Bearer KEY' or "
                                "'X-API-Key: KEY'")

    guarded = [Depends(require_key)]

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        reasons = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in error.errors()]
        return problem(422, "; ".join(reasons) or "invalid request", "invalid")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        return JSONResponse({"error": error.detail}, status_code=error.status_code)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        if not state["ready"] or not batcher.healthy:
            return JSONResponse({"status": "not ready"}, status_code=503)
        return {"status": "ready"}

    @app.get("/v1/model", dependencies=guarded)
    async def model_info():
        metrics_file = root / layout.METRICS
        return {
            "task": predictor.task.name,
            "backend": backend,
            "state": predictor.task.state(),
            "metrics": json.loads(metrics_file.read_text()) if metrics_file.is_file() else None,
            "versions": json.loads((root / layout.VERSIONS).read_text()) if (root / layout.VERSIONS).is_file()
            else None,
            "manifest": predictor.manifest,
            "limits": {"max_inputs": settings.max_inputs, "max_chars": settings.max_chars,
                       "max_body_bytes": settings.max_body_bytes},
        }

    @app.post("/v1/predict", dependencies=guarded)
    async def predict(request: Request):
        body = bytearray()
        async for chunk in request.stream():  # counted as it arrives: a chunked upload cannot exhaust memory
            body += chunk
            if len(body) > settings.max_body_bytes:
                return problem(413, f"request body is over the limit of {settings.max_body_bytes} bytes",
                               "too_large")
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return problem(422, f"the body is not valid JSON ({e}); send {{\"inputs\": [...]}}", "invalid")
        except RecursionError:
            return problem(422, "the body nests too deeply; send {\"inputs\": [...]}", "invalid")
        inputs = payload.get("inputs") if isinstance(payload, dict) else None
        if not isinstance(inputs, list) or not inputs:
            return problem(422, 'send {"inputs": [...]}: a non-empty list of inputs', "invalid")
        if len(inputs) > settings.max_inputs:
            return problem(422, f"{len(inputs)} inputs is over the limit of {settings.max_inputs} per request; "
                           "split the request", "too_many")
        for i, item in enumerate(inputs, start=1):
            chars = _characters(item)
            if chars > settings.max_chars:
                return problem(422, f"input {i} has {chars} characters, over the limit of {settings.max_chars}",
                               "too_long")
        try:
            records = [predictor.task.input_record(item, i) for i, item in enumerate(inputs, start=1)]
        except DataError as e:
            return problem(422, "; ".join(e.problems), "invalid")
        try:
            predictions = await batcher.submit(records)
        except BatcherClosed as e:
            return problem(503, f"{e}; retry on another instance", "closed")
        except DataError as e:
            return problem(422, "; ".join(e.problems), "invalid")
        return {"predictions": predictions}

    @app.get("/metrics", dependencies=guarded)
    async def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    async def playground():
        return HTMLResponse(resources.files("transferlm.serve").joinpath("static/index.html").read_text())

    app.state.predictor, app.state.batcher = predictor, batcher
    return app


KNOWN_PATHS = {"/", "/health", "/ready", "/metrics", "/v1/model", "/v1/predict", "/docs", "/openapi.json"}


def _characters(item: Any) -> int:
    if isinstance(item, str):
        return len(item)
    if isinstance(item, dict):
        return sum(_characters(v) for v in item.values())
    if isinstance(item, (list, tuple)):
        return sum(_characters(v) for v in item)
    return 0


def serve(root: Path, settings: ServeSettings | None = None) -> None:
    settings = settings or ServeSettings()
    uvicorn = require("uvicorn", "serve", SERVE)
    app = create_app(root, settings)
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        log.warning("serving on %s without an API key: anyone who can reach this address can use the model",
                    settings.host)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=30)
