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
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from transferlm.errors import ConfigError, DataError, RunDirError
from transferlm.extras import require
from transferlm.runs import layout
from transferlm.serving.batcher import BatcherClosed, MicroBatcher
from transferlm.serving.settings import ServeSettings

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


@dataclass
class _Metrics:
    """The server's Prometheus metrics, in a registry of their own."""

    registry: Any
    requests: Any
    errors: Any
    latency: Any
    batch_sizes: Any
    batch_seconds: Any
    queue_depth: Any
    truncated: Any

    @classmethod
    def create(cls) -> _Metrics:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        registry = CollectorRegistry()
        return cls(
            registry,
            Counter("transferlm_requests", "HTTP requests", ["path", "status"], registry=registry),
            Counter("transferlm_errors", "Failed requests by kind", ["kind"], registry=registry),
            Histogram("transferlm_request_seconds", "Request latency", ["path"], registry=registry,
                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)),
            Histogram("transferlm_batch_size", "Inputs per model batch", registry=registry,
                      buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)),
            Histogram("transferlm_batch_seconds", "Model time per batch", registry=registry),
            Gauge("transferlm_queue_depth", "Inputs waiting for the model", registry=registry),
            Counter("transferlm_truncated_inputs", "Inputs cut to the model's window (task.long_inputs), by the side "
                    "cut", ["side"], registry=registry),
        )

    def on_batch(self, size: int, seconds: float) -> None:
        self.batch_sizes.observe(size)
        self.batch_seconds.observe(seconds)


class _Service:
    """What the routes do, over one loaded model and its micro-batcher."""

    def __init__(self, root: Path, settings: ServeSettings):
        from transferlm.runs.predictor import load

        self.root, self.settings = Path(root), settings
        self.backend = check_weights(self.root, settings.backend)
        # ONNX Runtime's idle threads would spin on the cores the event loop needs (see OnnxForward)
        self.predictor = load(self.root, batch_size=min(settings.model_batch, settings.max_batch), onnx_spin=False)
        self.metrics = _Metrics.create()
        self.batcher = MicroBatcher(self.predictor.predict_records, settings.max_batch, settings.max_wait_ms,
                                    self.metrics.on_batch)
        self.metrics.queue_depth.set_function(lambda: self.batcher.depth)
        self.ready_now = False
        self.wanted = hashlib.sha256(settings.api_key.encode()).digest() if settings.api_key else None

    @asynccontextmanager
    async def lifespan(self, app):
        self.batcher.start()
        self.ready_now = True
        log.info("serving %s (%s, task %s); max batch %d (forwards of %d), max wait %.1f ms", self.root,
                 self.backend, self.predictor.task.name, self.settings.max_batch, self.predictor.batch_size,
                 self.settings.max_wait_ms)
        yield
        self.ready_now = False
        await self.batcher.close()  # SIGTERM: uvicorn stops accepting, then this drains the queue

    def problem(self, status: int, message: str, kind: str):
        from fastapi.responses import JSONResponse

        self.metrics.errors.labels(kind).inc()
        return JSONResponse({"error": message}, status_code=status)

    async def guard(self, request: Request, call_next):
        began = time.perf_counter()
        path = request.url.path if request.url.path in KNOWN_PATHS else "other"
        response = await self._guarded(request, call_next)
        self.metrics.requests.labels(path, str(response.status_code)).inc()
        self.metrics.latency.labels(path).observe(time.perf_counter() - began)
        return response

    async def _guarded(self, request: Request, call_next):
        declared, limit = request.headers.get("content-length"), self.settings.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return self.problem(413, f"request body of {declared} bytes is over the limit of {limit}", "too_large")
        try:
            return await call_next(request)
        except Exception:  # never a traceback to the client; the server log has it
            log.exception("unhandled error on %s", request.url.path)
            return self.problem(500, "internal error; the server log has the details", "internal")

    async def require_key(self, request: Request) -> None:
        """On /v1/* and /metrics (a route dependency, so no path prefix can slip past it)."""
        from starlette.exceptions import HTTPException

        if self.wanted is None:
            return
        given = request.headers.get("x-api-key")
        if given is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else ""
        # Digests of equal length, compared in constant time: neither the key nor its length leaks.
        if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), self.wanted):
            self.metrics.errors.labels("auth").inc()
            raise HTTPException(401, "missing or wrong API key: send it as 'Authorization: Bearer KEY' or "
                                "'X-API-Key: KEY'")

    async def invalid(self, request: Request, error):
        reasons = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in error.errors()]
        return self.problem(422, "; ".join(reasons) or "invalid request", "invalid")

    async def http_error(self, request: Request, error):
        from fastapi.responses import JSONResponse

        return JSONResponse({"error": error.detail}, status_code=error.status_code)

    async def health(self):
        return {"status": "ok"}

    async def ready(self):
        from fastapi.responses import JSONResponse

        if not self.ready_now or not self.batcher.healthy:
            return JSONResponse({"status": "not ready"}, status_code=503)
        return {"status": "ready"}

    async def model_info(self):
        metrics_file, versions = self.root / layout.METRICS, self.root / layout.VERSIONS
        return {
            "task": self.predictor.task.name,
            "backend": self.backend,
            "state": self.predictor.task.state(),
            "metrics": json.loads(metrics_file.read_text()) if metrics_file.is_file() else None,
            "versions": json.loads(versions.read_text()) if versions.is_file() else None,
            "manifest": self.predictor.manifest,
            "limits": {"max_inputs": self.settings.max_inputs, "max_chars": self.settings.max_chars,
                       "max_body_bytes": self.settings.max_body_bytes},
        }

    async def predict(self, request: Request):
        body = bytearray()
        async for chunk in request.stream():  # counted as it arrives: a chunked upload cannot exhaust memory
            body += chunk
            if len(body) > self.settings.max_body_bytes:
                return self.problem(413, f"request body is over the limit of {self.settings.max_body_bytes} bytes",
                                    "too_large")
        inputs, refused = self._inputs(body)
        if refused:
            return self.problem(*refused)
        try:
            records = self.predictor.records(inputs)
            predictions = await self.batcher.submit(records)
        except BatcherClosed as e:
            return self.problem(503, f"{e}; retry on another instance", "closed")
        except (DataError, ConfigError) as e:  # (ConfigError: e.g. a run that does not predict, such as masked-lm)
            return self.problem(422, "; ".join(e.problems), "invalid")
        for prediction in predictions:
            if "truncated" in prediction:
                self.metrics.truncated.labels(side=prediction["truncated"]["side"]).inc()
        return {"predictions": predictions}

    async def explain(self, request: Request):
        """Word attributions (integrated gradients) for a few inputs; limits of their own: each input costs
        ``explain_steps`` forward and backward passes."""
        from starlette.concurrency import run_in_threadpool

        from transferlm.inference.explain import ExplainSettings

        if self.predictor.model is None:
            return self.problem(422, "an ONNX export cannot explain (no gradients); serve the run directory",
                                "invalid")
        body = await request.body()
        if len(body) > self.settings.max_body_bytes:
            return self.problem(413, f"request body is over the limit of {self.settings.max_body_bytes} bytes",
                                "too_large")
        inputs, refused = self._inputs(body, self.settings.explain_max_inputs, self.settings.explain_max_chars)
        if refused:
            return self.problem(*refused)
        target = json.loads(body).get("target")
        try:
            records = self.predictor.records(inputs)
            settings = ExplainSettings(target=target, steps=self.settings.explain_steps)
            return {"explanations": await run_in_threadpool(self.predictor.explain_records, records, settings)}
        except (DataError, ConfigError) as e:
            return self.problem(422, "; ".join(e.problems), "invalid")

    def _inputs(self, body: bytes, max_inputs: int | None = None, max_chars: int | None = None
                ) -> tuple[list, tuple | None]:
        """The request's inputs, or why they are refused: (status, message, kind)."""
        max_inputs, max_chars = max_inputs or self.settings.max_inputs, max_chars or self.settings.max_chars
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return [], (422, f"the body is not valid JSON ({e}); send {{\"inputs\": [...]}}", "invalid")
        except RecursionError:
            return [], (422, "the body nests too deeply; send {\"inputs\": [...]}", "invalid")
        inputs = payload.get("inputs") if isinstance(payload, dict) else None
        if not isinstance(inputs, list) or not inputs:
            return [], (422, 'send {"inputs": [...]}: a non-empty list of inputs', "invalid")
        if len(inputs) > max_inputs:
            return [], (422, f"{len(inputs)} inputs is over the limit of {max_inputs} per request; "
                        "split the request", "too_many")
        for i, item in enumerate(inputs, start=1):
            chars = _characters(item)
            if chars > max_chars:
                return [], (422, f"input {i} has {chars} characters, over the limit of {max_chars}", "too_long")
        return inputs, None

    async def prometheus(self):
        from fastapi.responses import Response
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def playground(self):
        from fastapi.responses import HTMLResponse

        return HTMLResponse(resources.files("transferlm.serving").joinpath("static/index.html").read_text())


def create_app(root: Path, settings: ServeSettings | None = None):
    require("prometheus_client", "serve", SERVE)
    from fastapi import Depends, FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse
    from starlette.exceptions import HTTPException

    from transferlm.serving import openapi as api

    service = _Service(root, settings or ServeSettings())
    # With an API key, the schema (it names the labels and the input shape) is behind the key like /v1/model, and
    # the interactive /docs page, which a browser loads without a key, is off.
    keyed = service.wanted is not None
    app = FastAPI(title="transferlm", version=layout.library_versions().get("transferlm", "?"),
                  lifespan=service.lifespan, description=f"A {service.predictor.task.name} model from "
                  f"{service.root.name}.", openapi_url=None if keyed else "/openapi.json",
                  docs_url=None if keyed else "/docs", redoc_url=None)
    app.middleware("http")(service.guard)
    app.exception_handler(RequestValidationError)(service.invalid)
    app.exception_handler(HTTPException)(service.http_error)
    guarded = [Depends(service.require_key)]
    app.get("/health", **api.HEALTH)(service.health)
    app.get("/ready", **api.READY)(service.ready)
    app.get("/v1/model", dependencies=guarded, **api.MODEL)(service.model_info)
    an_input, limits = service.predictor.task.input_schema(), service.settings
    app.post("/v1/predict", dependencies=guarded,
             **api.predict_route(an_input, limits.max_inputs, limits.max_chars))(service.predict)
    app.post("/v1/explain", dependencies=guarded,
             **api.explain_route(an_input, service.predictor.task.explanation_target_names(),
                                 limits.explain_max_inputs, limits.explain_max_chars))(service.explain)
    app.get("/metrics", dependencies=guarded, **api.METRICS)(service.prometheus)
    app.get("/", response_class=HTMLResponse)(service.playground)
    if keyed:
        async def openapi_schema():
            return app.openapi()

        app.get("/openapi.json", dependencies=guarded, include_in_schema=False)(openapi_schema)
    app.state.predictor, app.state.batcher = service.predictor, service.batcher
    return app


KNOWN_PATHS = {"/", "/health", "/ready", "/metrics", "/v1/model", "/v1/predict", "/v1/explain", "/docs",
               "/openapi.json"}


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
