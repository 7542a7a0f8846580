"""The built-in trackers. Each imports its library when a run starts (an absent one is an error naming the extra) and
reads its usual environment: MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_NAME, WANDB_PROJECT, WANDB_MODE and the rest of
W&B's settings."""

from __future__ import annotations

import os
import time
from pathlib import Path

from transferlm.extras import require
from transferlm.tracking import Tracker, register_tracker

EXPERIMENT = "transferlm"  # the MLflow experiment and W&B project when the environment names none
EXPERIMENT_KINDS = ("compare", "curve", "tune")


@register_tracker("tensorboard")
class TensorBoardTracker(Tracker):
    """Event files under ``<run>/tensorboard``; a member of an experiment writes under the experiment's
    ``tensorboard/<member>``, so ``tensorboard --logdir EXPERIMENT/tensorboard`` shows the study together. The config
    is a text summary and, at the end, an hparams record beside the final metrics; reports are text and images."""

    extra = "tensorboard"
    module = "tensorboard"

    def start(self) -> str:
        require("tensorboard", "tensorboard", "train.report_to: tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        if self.info.resume:
            self.logdir = Path(self.info.resume)
        elif self.info.parent:
            self.logdir = Path(self.info.parent["ref"]) / self.info.name
        else:
            self.logdir = self.info.root / "tensorboard"
        self.writer = SummaryWriter(str(self.logdir))
        self.final: dict[str, float] = {}
        self.last_step = 0
        if not self.info.resume:
            table = "\n".join(f"| {k} | {v} |" for k, v in sorted(self.info.params.items()))
            self.writer.add_text("config", f"| parameter | value |\n| --- | --- |\n{table}", 0)
        return str(self.logdir)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.last_step = step
        self.final.update({k: v for k, v in metrics.items() if k.startswith(("validation/", "test/"))})

    def log_artifacts(self, paths: list[Path]) -> None:
        for path in paths:
            if path.suffix.lower() == ".png":
                import matplotlib.image

                image = matplotlib.image.imread(str(path))[..., :3]
                self.writer.add_image(f"reports/{path.name}", image, dataformats="HWC")
            elif path.suffix.lower() in (".md", ".txt", ".json", ".yaml", ".csv"):
                text = path.read_text(encoding="utf-8", errors="replace")
                fenced = text if path.suffix.lower() == ".md" else "    " + text.replace("\n", "\n    ")
                self.writer.add_text(f"reports/{path.name}", fenced[:100_000])

    def finish(self, status: str) -> None:
        if self.final and self.info.params and status == "finished":  # the HParams dashboard's table of runs
            self.writer.add_hparams(dict(sorted(self.info.params.items())),
                                    {f"hparams/{k}": v for k, v in self.final.items()}, run_name=".",
                                    global_step=self.last_step)
        self.writer.close()


@register_tracker("mlflow")
class MlflowTracker(Tracker):
    """A run in the MLflow experiment named by MLFLOW_EXPERIMENT_NAME (default "transferlm") at MLFLOW_TRACKING_URI;
    a member of an experiment is tagged with ``mlflow.parentRunId``, which the MLflow UI nests."""

    extra = "mlflow"
    module = "mlflow"
    PARAM_LIMIT = 6000  # MLflow refuses longer parameter values

    def start(self) -> str:
        require("mlflow", "mlflow", "train.report_to: mlflow")
        from mlflow import MlflowClient
        from mlflow.entities import Param

        self.client = MlflowClient()
        if self.info.resume:
            self.run_id = self.info.resume
            self.client.update_run(self.run_id, status="RUNNING")
            return self.run_id
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        tags = {"transferlm.kind": self.info.kind, "transferlm.run_dir": str(self.info.root.resolve())}
        if self.info.parent:
            tags["mlflow.parentRunId"] = self.info.parent["ref"]
        run = self.client.create_run(experiment_id, run_name=self.info.name, tags=tags)
        self.run_id = run.info.run_id
        params = [Param(k, v[: self.PARAM_LIMIT]) for k, v in sorted(self.info.params.items())]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=params[i: i + 100])
        return self.run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def log_artifacts(self, paths: list[Path]) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path))

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status.upper())


@register_tracker("wandb")
class WandbTracker(Tracker):
    """A W&B run in the project WANDB_PROJECT (default "transferlm"), its files under ``<run>/wandb``; members of an
    experiment share its group. WANDB_MODE=offline records without a network (``wandb sync`` uploads later)."""

    extra = "wandb"
    module = "wandb"

    def start(self) -> str:
        wandb = require("wandb", "wandb", "train.report_to: wandb")
        experiment = self.info.kind in EXPERIMENT_KINDS
        if self.info.parent:
            group = self.info.parent["ref"]
        else:  # an experiment names the group its members join; a lone run has none
            group = f"{self.info.name}-{wandb.util.generate_id()}" if experiment else None
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or EXPERIMENT, name=self.info.name, dir=str(self.info.root),
            config=dict(self.info.params), group=group, job_type=self.info.kind, reinit="create_new",
            id=self.info.resume, resume="allow" if self.info.resume else None,
        )
        return group if experiment and group else self.run.id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def log_artifacts(self, paths: list[Path]) -> None:
        for path in paths:
            self.run.save(str(path), base_path=str(path.parent), policy="now")

    def finish(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "finished" else 1)

