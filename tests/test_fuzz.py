"""The server fuzzed from its own OpenAPI schema (Schemathesis): requests generated for every endpoint, with the
API key, without it, and with no key configured; no server error, and every response conforms to the schema."""

from __future__ import annotations

from collections import Counter

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

import transferlm  # noqa: E402
from conftest import sentiment_rows, tiny_config, write_jsonl  # noqa: E402
from transferlm.serving.app import ServeSettings, create_app  # noqa: E402

# Per operation, generation mode (valid and invalid requests) and server set-up: the two POST operations alone
# take 2 x 2 x 3 x 90 = 1,080 requests (Hypothesis stops early where few distinct requests exist, as for a GET).
EXAMPLES = 90
KEY = "fuzz-key"


@pytest.fixture(scope="module")
def classifier_run(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    files = {"train": write_jsonl(root / "train.jsonl", sentiment_rows(16, seed=1)),
             "dev": write_jsonl(root / "dev.jsonl", sentiment_rows(8, seed=2))}
    return transferlm.train(tiny_config(tiny_model_dir, files, root / "run", epochs=1)).run_dir


def fuzz(app, headers: dict[str, str], key: str | None) -> Counter:
    """Every operation's generated requests, sent with ``headers``; ``call_and_validate`` fails on a 5xx or a
    response that does not conform to the schema (status documented, body of the documented shape, content type).
    The schema itself is read with ``key`` (with a key, it is served only to those who have it)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app,
                                            headers={"Authorization": f"Bearer {key}"} if key else {})
    statuses: Counter = Counter()
    operations = [r.ok() for r in schema.get_all_operations()]
    # Invalid requests for the operations that take a body (the others have no input to get wrong)
    runs = [(op, mode) for op in operations for mode in GenerationMode
            if op.method == "post" or mode == GenerationMode.POSITIVE]
    for operation, mode in runs:

        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(mode))
        def check(case):
            response = case.call_and_validate(headers=headers)
            assert response.status_code < 500, (case.method, case.path, response.text[:300])
            statuses[(case.operation.path, response.status_code)] += 1

        check()
    return statuses


@pytest.mark.parametrize("key, sent", [(None, None), (KEY, KEY), (KEY, None)],
                         ids=["no-key-configured", "with-the-key", "without-the-key"])
def test_fuzzed_requests_get_no_server_error_and_conform_to_the_schema(classifier_run, key, sent):
    app = create_app(classifier_run, ServeSettings(api_key=key, explain_steps=4))
    statuses = fuzz(app, {"Authorization": f"Bearer {sent}"} if sent else {}, key)
    total = sum(statuses.values())
    assert total >= 2 * 2 * EXAMPLES, statuses
    guarded = {path for path, _ in statuses if path.startswith("/v1/") or path == "/metrics"}
    assert len(guarded) == 4
    if key and not sent:  # the key guards everything under /v1 and /metrics, whatever the body
        assert {status for (path, status) in statuses if path in guarded} == {401}
    else:
        assert statuses[("/v1/predict", 200)] > 0 and statuses[("/v1/predict", 422)] > 0
