"""The HTTP server: every endpoint, each limit, the API key, the micro-batcher, and the playground page."""

from __future__ import annotations

import asyncio
import shutil

import pytest

import transferlm
from conftest import qa_rows, sentiment_rows, tiny_config, write_jsonl

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from transferlm.errors import ConfigError, RunDirError  # noqa: E402
from transferlm.serving.app import ServeSettings, create_app  # noqa: E402
from transferlm.serving.batcher import MicroBatcher  # noqa: E402


@pytest.fixture(scope="module")
def classifier_run(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    files = {"train": write_jsonl(root / "train.jsonl", sentiment_rows(24, seed=1)),
             "dev": write_jsonl(root / "dev.jsonl", sentiment_rows(8, seed=2))}
    return transferlm.train(tiny_config(tiny_model_dir, files, root / "run", epochs=2)).run_dir


def client(run, **settings) -> TestClient:
    return TestClient(create_app(run, ServeSettings(**settings)))


def test_predict_matches_the_python_api_and_health_ready_model_metrics_answer(classifier_run):
    texts = ["the film was great", "a dull and boring story"]
    with client(classifier_run) as http:
        assert http.get("/health").json() == {"status": "ok"}
        assert http.get("/ready").json() == {"status": "ready"}
        response = http.post("/v1/predict", json={"inputs": texts})
        assert response.status_code == 200
        assert response.json()["predictions"] == transferlm.load(classifier_run).predict(texts)
        info = http.get("/v1/model").json()
        assert info["task"] == "classification" and info["backend"] == "torch"
        assert set(info["state"]["label_map"]["labels"]) == {"pos", "neg"} and "validation" in info["metrics"]
        metrics = http.get("/metrics").text
        assert 'transferlm_requests_total{path="/v1/predict",status="200"} 1.0' in metrics
        assert "transferlm_batch_size_bucket" in metrics and "transferlm_queue_depth" in metrics
        assert "/v1/predict" in http.get("/openapi.json").json()["paths"]
        assert "transferlm playground" in http.get("/").text


def test_a_micro_batch_runs_as_length_sorted_forwards_of_model_batch(classifier_run, monkeypatch):
    import transferlm.inference.batches as inference

    forwards: list[int] = []
    order = inference.inference_order

    def recording(lengths, batch_size, max_tokens):
        chunks = order(lengths, batch_size, max_tokens)
        forwards.extend(len(c) for c in chunks)
        return chunks

    monkeypatch.setattr(inference, "inference_order", recording)
    texts = ["the film was great", "a dull and boring story that never ends", "fine", "bad acting", "great fun"]
    with client(classifier_run, model_batch=2, max_batch=8) as http:
        response = http.post("/v1/predict", json={"inputs": texts})
    assert forwards == [2, 2, 1]  # one micro-batch of 5, three forwards
    assert response.json()["predictions"] == transferlm.load(classifier_run).predict(texts)  # input order kept


def test_an_export_is_served_with_onnx_runtime_threads_that_do_not_spin(classifier_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from transferlm.exporting.onnx import export

    export(classifier_run, tmp_path / "onnx")
    texts = ["the film was great", "a dull and boring story"]
    with client(tmp_path / "onnx") as http:
        session = http.app.state.predictor.onnx.session
        assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
        response = http.post("/v1/predict", json={"inputs": texts})
    assert [p["label"] for p in response.json()["predictions"]] == [
        p["label"] for p in transferlm.load(classifier_run).predict(texts)]


@pytest.mark.parametrize("bad", [{"model_batch": 0}, {"max_batch": 0}, {"max_wait_ms": -1}])
def test_serve_settings_below_their_minimum_are_refused_with_the_setting_named(bad):
    name = next(iter(bad))
    with pytest.raises(ConfigError, match=f"serve.{name}: Input should be greater than or equal to"):
        ServeSettings(**bad)


@pytest.mark.parametrize(
    ("request_kwargs", "status", "says"),
    [
        ({"content": b"{not json"}, 422, "not valid JSON"),
        ({"json": {"texts": ["a"]}}, 422, 'send {"inputs": [...]}'),
        ({"json": {"inputs": ["a"] * 5}}, 422, "5 inputs is over the limit of 4"),
        ({"json": {"inputs": ["x" * 101]}}, 422, "input 1 has 101 characters, over the limit of 100"),
        ({"json": {"inputs": [["a", "b"]]}}, 422, "input 1: got a 2-item sequence"),
        ({"content": b'{"inputs": ["' + b"y" * 400 + b'"]}'}, 413, "over the limit of 300"),
    ],
)
def test_each_limit_and_bad_input_gets_a_status_that_says_why(classifier_run, request_kwargs, status, says):
    with client(classifier_run, max_inputs=4, max_chars=100, max_body_bytes=300) as http:
        response = http.post("/v1/predict", headers={"content-type": "application/json"}, **request_kwargs)
        assert response.status_code == status, response.text
        assert says in response.json()["error"]
        assert "Traceback" not in response.text


def test_the_api_key_guards_the_api_but_not_the_probes(classifier_run):
    with client(classifier_run, api_key="s3cret") as http:
        assert http.post("/v1/predict", json={"inputs": ["a"]}).status_code == 401
        assert http.post("/v1/predict", json={"inputs": ["a"]}, headers={"X-API-Key": "wrong"}).status_code == 401
        assert http.post("/v1/predict", json={"inputs": ["a"]},
                         headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert http.get("/metrics").status_code == 401
        assert http.get("/health").status_code == 200 and http.get("/ready").status_code == 200
        # the schema names the labels: behind the key too; the docs page (a browser sends no key) is off
        assert http.get("/openapi.json").status_code == 401 and http.get("/docs").status_code == 404
        schema = http.get("/openapi.json", headers={"Authorization": "Bearer s3cret"}).json()
        assert "/v1/predict" in schema["paths"] and "/openapi.json" not in schema["paths"]


def test_an_internal_error_never_reaches_the_client_as_a_traceback(classifier_run, monkeypatch):
    with client(classifier_run) as http:
        def broken(records):
            raise RuntimeError("secret internals")

        monkeypatch.setattr(http.app.state.batcher, "run", broken)
        response = http.post("/v1/predict", json={"inputs": ["a"]})
        assert response.status_code == 500
        assert "secret internals" not in response.text and "internal error" in response.json()["error"]


def test_serving_refuses_pickled_weights_and_the_wrong_backend(classifier_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(classifier_run, copy)
    (copy / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(RunDirError, match="only from safetensors or ONNX"):
        create_app(copy)
    with pytest.raises(RunDirError, match="export it first"):
        create_app(classifier_run, ServeSettings(backend="onnx"))


def test_qa_is_served_with_answers_and_offsets(tiny_model_dir, tmp_path):
    files = {"train": write_jsonl(tmp_path / "train.jsonl", qa_rows(16, seed=1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", qa_rows(8, seed=2))}
    config = tiny_config(tiny_model_dir, files, tmp_path / "run", max_steps=2)
    config["task"] = {"type": "qa"}
    run = transferlm.train(config).run_dir
    question = {"question": "the plot", "context": "a great bank story"}
    with client(run) as http:
        answer = http.post("/v1/predict", json={"inputs": [question]}).json()["predictions"][0]
        assert question["context"][answer["start"]:answer["end"]] == answer["answer"]
        bad = http.post("/v1/predict", json={"inputs": [{"question": "q"}]})
        assert bad.status_code == 422 and "no context" in bad.json()["error"]


# --- the batcher ---
def test_batcher_keeps_order_batches_concurrent_requests_and_isolates_a_failure():
    seen_batches = []

    def run(inputs):
        seen_batches.append(len(inputs))
        if "bad" in inputs:
            raise ValueError("bad input")
        return [x.upper() for x in inputs]

    async def main():
        batcher = MicroBatcher(run, max_batch=64, max_wait_ms=50)
        batcher.start()
        requests = [[f"r{i}a", f"r{i}b"] for i in range(10)] + [["ok", "bad"]]
        results = await asyncio.gather(*(batcher.submit(r) for r in requests), return_exceptions=True)
        await batcher.close()
        return requests, results

    requests, results = asyncio.run(main())
    for request, result in zip(requests[:10], results[:10], strict=True):
        assert result == [x.upper() for x in request]  # each request gets its own results, in order
    assert isinstance(results[10], ValueError)  # only the bad request fails
    assert seen_batches[0] == 22  # all eleven requests arrived within the wait: one combined batch


def test_batcher_drains_queued_requests_on_close():
    async def main():
        batcher = MicroBatcher(lambda xs: [x * 2 for x in xs], max_batch=1, max_wait_ms=0)
        batcher.start()
        pending = [asyncio.ensure_future(batcher.submit([i])) for i in range(20)]
        await asyncio.sleep(0)
        await batcher.close()
        return [await p for p in pending]

    assert asyncio.run(main()) == [[i * 2] for i in range(20)]


# --- the playground page, in a real browser against a real server ---
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium); .ci/run installs it")
def test_playground_page_shows_the_label_in_a_real_browser(classifier_run):
    import socket
    import subprocess
    import sys
    import time

    import httpx

    playwright = pytest.importorskip("playwright.sync_api")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "transferlm", "serve", str(classifier_run), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.25)
        else:
            pytest.fail("the server did not become ready in 30 s")
        text = "the film was great"
        expected = transferlm.load(classifier_run).predict([text])[0]
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(base + "/")
            page.wait_for_function("document.getElementById('about').textContent.startsWith('Task: classification')")
            page.fill("#text", text)
            page.click("#run")
            page.wait_for_function("document.getElementById('prediction').textContent.length > 0")
            assert page.text_content("#prediction") == expected["label"]
            shown = page.locator("#bars .bar .name").all_text_contents()
            assert sorted(shown) == sorted(expected["probabilities"])
            page.check("#explain")  # the words shaded by their attributions
            page.click("#run")
            page.wait_for_selector("#highlighted .shaded")
            assert page.locator("#highlighted .shaded").all_text_contents() == text.split()
            browser.close()
    finally:
        server.terminate()  # SIGTERM: uvicorn shuts down gracefully (then re-raises the signal: exit -15)
        output, _ = server.communicate(timeout=30)  # reads and closes the pipe
        log = output.decode()
        assert server.returncode in (0, -15) and "Application shutdown complete" in log, log[-2000:]


def test_a_chunked_body_over_the_limit_is_refused_and_the_key_works_in_x_api_key(classifier_run):
    def chunks():
        yield b'{"inputs": ["'
        for _ in range(20):
            yield b"z" * 50
        yield b'"]}'

    with client(classifier_run, max_body_bytes=300, api_key="k") as http:
        response = http.post("/v1/predict", content=chunks(), headers={"X-API-Key": "k",
                                                                       "content-type": "application/json"})
        assert response.status_code == 413 and "over the limit of 300 bytes" in response.json()["error"]
        assert http.post("/v1/predict", json={"inputs": ["fine"]}, headers={"X-API-Key": "k"}).status_code == 200


def test_a_model_returning_garbage_answers_with_an_error_instead_of_hanging():
    async def main():
        batcher = MicroBatcher(lambda xs: None, max_batch=4, max_wait_ms=1)  # wrong result type
        batcher.start()
        answers = await asyncio.gather(batcher.submit([1]), batcher.submit([2, 3]), return_exceptions=True)
        healthy = batcher.healthy
        await batcher.close()
        return answers, healthy

    answers, healthy = asyncio.run(main())
    assert all(isinstance(a, Exception) for a in answers) and healthy  # answered, and the worker lives on


def test_batcher_keeps_batches_within_max_batch():
    sizes = []

    def run(inputs):
        sizes.append(len(inputs))
        return inputs

    async def main():
        batcher = MicroBatcher(run, max_batch=8, max_wait_ms=50)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit([i] * 3) for i in range(10)))
        await batcher.close()
        return results

    assert asyncio.run(main()) == [[i] * 3 for i in range(10)]
    assert max(sizes) <= 8 and sum(sizes) == 30


def test_a_cut_input_is_marked_in_its_prediction_and_counted(tiny_model_dir, tmp_path):
    files = {"train": write_jsonl(tmp_path / "train.jsonl", sentiment_rows(16, seed=1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", sentiment_rows(8, seed=2))}
    config = tiny_config(tiny_model_dir, files, tmp_path / "run", max_steps=1)
    config["task"] = {"type": "classification", "long_inputs": "truncate"}
    run = transferlm.train(config).run_dir
    long = " ".join(["the film was really great"] * 20)  # 100 tokens, max_length 32
    with client(run) as http:
        short, cut = http.post("/v1/predict", json={"inputs": ["great", long]}).json()["predictions"]
        assert "truncated" not in short
        assert cut["truncated"] == {"tokens": 100, "kept": 30, "cut": 70, "side": "text"}
        assert 'transferlm_truncated_inputs_total{side="text"} 1.0' in http.get("/metrics").text


def test_explain_answers_with_word_scores_under_limits_of_its_own(classifier_run):
    with client(classifier_run, explain_max_inputs=2, explain_steps=8) as http:
        response = http.post("/v1/explain", json={"inputs": ["the film was great"]})
        assert response.status_code == 200
        [result] = response.json()["explanations"]
        assert [w["word"] for w in result["explanations"][0]["words"]] == ["the", "film", "was", "great"]
        too_many = http.post("/v1/explain", json={"inputs": ["a", "b", "c"]})
        assert too_many.status_code == 422 and "over the limit of 2 per request" in too_many.json()["error"]
        unknown = http.post("/v1/explain", json={"inputs": ["a"], "target": "nope"})
        assert unknown.status_code == 422 and "has no label 'nope'" in unknown.json()["error"]
