"""transferlm from Python, notebook style: train from a DataFrame, compare against a baseline, draw a learning curve,
tune, inspect, use the model through scikit-learn, export it to ONNX and serve it from your own FastAPI app. Every
step is one call.

Run from the repository root (the bundled MiniLM, the example reviews; a few minutes on 2 CPU cores):

    .venv/bin/python examples/python_api.py
    .venv/bin/python examples/python_api.py --model PATH --output DIR   # any model; the tests use a tiny one
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import transferlm

HERE = Path(__file__).resolve().parent / "reviews"

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--model", default="minilm", help="bundled alias, model directory or hub id")
parser.add_argument("--output", default="runs/python-api", help="folder for the runs this example writes")
args = parser.parse_args()
out = Path(args.output)

# 1. Data you already hold in memory: a DataFrame (a list of dicts or a datasets.Dataset work the same way).
train = pd.read_csv(HERE / "train.csv")
dev = pd.read_csv(HERE / "dev.csv")
config = {
    "model": {"name": args.model, "max_length": 64},
    "strategy": {"name": "frozen"},  # a linear probe on cached features: seconds
    "data": {"train": train, "validation": dev},
    "train": {"epochs": 3, "progress": False},
    "output": str(out / "frozen"),
}
result = transferlm.train(config, overwrite=True)
print(f"trained from a DataFrame of {len(train)} rows: validation accuracy {result.summary.validation['accuracy']:.3f}")

predictor = transferlm.load(result.run_dir)
print(predictor)
print(predictor.predict(["The strap broke after two days.", "Arrived on time, works as described."]))

# 2. Prove transfer helped: the frozen model against a TF-IDF baseline, over two seeds; the table is a DataFrame.
# The members name their strategies, so the shared config has none.
shared = {key: value for key, value in config.items() if key != "strategy"}
compared = transferlm.compare({**shared, "output": str(out / "compare")}, members=["frozen", "tfidf"], seeds=[0, 1],
                              overwrite=True)
print("compare:")
print(compared.table[["member", "kind", "mean", "std", "outcome"]].to_string(index=False))

# How many labels does it take? A learning curve: each member at 8 examples per class and at all of them.
curved = transferlm.curve({**shared, "output": str(out / "curve")}, members=["frozen", "tfidf"], seeds=[0],
                          sizes=[8, "all"], overwrite=True)
print("curve:")
print(curved.table[["member", "n_train", "mean"]].to_string(index=False))

# A small search over the learning rate (Optuna); trials.csv as a DataFrame.
tuned = transferlm.tune({**config, "output": str(out / "tune")}, trials=3,
                        space={"train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}})
print(f"tune: best validation {tuned.report['best']['validation']:.3f} with {tuned.report['best']['params']}")

# Can it be trusted? Calibration, confidently wrong examples and slices on held-out data.
inspected = transferlm.inspect(result.run_dir, HERE / "test.csv", out / "inspect", top=3)
print("inspect:", inspected)

# 3. scikit-learn: the same model as an estimator, cross-validated like any other.
from sklearn.model_selection import cross_val_score  # noqa: E402

from transferlm.sklearn import TransferClassifier  # noqa: E402

estimator = TransferClassifier(model=args.model, strategy="frozen", epochs=3, max_length=64)
scores = cross_val_score(estimator, train["text"].tolist(), train["label"].tolist(), cv=2)
print(f"scikit-learn cross-validated accuracy: {scores.mean():.3f} ({', '.join(f'{s:.3f}' for s in scores)})")

# 4. Ship it: ONNX int8, checked against torch on the validation data.
exported = transferlm.export(result.run_dir, out / "onnx", quantize="int8", overwrite=True)
print(f"exported {exported.output}: {exported.size_mb} MB, {exported.metric} torch {exported.torch_metric:.3f} "
      f"-> int8 {exported.onnx_metric:.3f}")

# 5. Serve it inside your own FastAPI service: transferlm.serve returns the app; mount it or run it with uvicorn.
from fastapi.testclient import TestClient  # noqa: E402

app = transferlm.serve(out / "onnx")
with TestClient(app) as client:  # in production: uvicorn.run(app, host="0.0.0.0", port=8000)
    answer = client.post("/v1/predict", json={"inputs": ["Great value, would buy again."]}).json()
print(f"served: {answer['predictions'][0]['label']} ({answer['predictions'][0]['probabilities']})")
