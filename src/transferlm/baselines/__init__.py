"""Baselines that `compare` and `curve` fit next to the transferred models. Each task names the ones that apply
(``Task.baselines``). Most use no pretrained model at all; those in ``PRETRAINED`` read the experiment's model as
it is, with no training (the reference a fine-tuned model must beat). ``scratch`` (random initialisation) is a
training run and lives in `experiments`."""

from __future__ import annotations

from transferlm.baselines.crf import run_crf
from transferlm.baselines.embedding import run_cosine
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
BASELINES.register("cosine", run_cosine)

PRETRAINED = ("cosine",)  # called with model=<the experiment's model.name>
