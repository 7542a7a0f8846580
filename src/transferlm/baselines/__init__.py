"""Baselines without transfer that `compare` and `curve` fit next to the transferred models. Each task
names the ones that apply (``Task.baselines``); ``scratch`` (random initialisation) is a training run and
lives in `experiments`."""

from __future__ import annotations

from transferlm.baselines.crf import run_crf
from transferlm.baselines.overlap import run_overlap
from transferlm.baselines.regression import run_mean, run_ridge
from transferlm.baselines.tfidf import run_tfidf
from transferlm.registry import Registry

BASELINES = Registry("baseline")
BASELINES.register("tfidf", run_tfidf)
BASELINES.register("crf", run_crf)
BASELINES.register("overlap", run_overlap)
BASELINES.register("mean", run_mean)
BASELINES.register("ridge", run_ridge)
