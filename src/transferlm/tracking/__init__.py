"""Experiment trackers (``train.report_to``): a run's resolved config as parameters, its training and evaluation events
as metrics by step, its system figures, and its reports and plots as artifacts.

An experiment (``compare``, ``curve``, ``tune``) opens a parent run in each tracker (``parent_run``); the runs of its
members or trials, trained in child processes, find the parent through ``PARENT_ENV`` and nest under it, so a study
reads as one experiment in the tracker.
"""

from __future__ import annotations

import json
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from transferlm.registry import Registry

log = logging.getLogger(__name__)

PARENT_ENV = "TRANSFERLM_TRACKING_PARENT"  # {tracker: {"ref": ..., "root": ...}} of the experiment a run belongs to
STATE_FILE = "tracking.json"  # in a run directory: each tracker's run reference, so that a resumed run continues it


@dataclass(frozen=True)
class RunInfo:
    """What a tracker is told about the run it records."""

    name: str
    root: Path  # the run (or experiment) directory
    kind: str  # train, adapt, compare, curve, tune
    params: dict[str, str] = field(default_factory=dict)
    parent: dict[str, str] | None = None  # this tracker's parent reference: {"ref": ..., "root": ...}
    resume: str | None = None  # this tracker's reference of the same run before an interruption


class Tracker(ABC):
    """One tracking backend. ``start`` returns the reference that names the run in the backend (an MLflow run id, a
    W&B run id, a TensorBoard log directory): saved for resuming and handed to child runs as their parent."""

    extra: ClassVar[str]  # the pip extra that installs the backend
    module: ClassVar[str]  # the module the backend needs

    def __init__(self, info: RunInfo):
        self.info = info

    @abstractmethod
    def start(self) -> str: ...

    @abstractmethod
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    @abstractmethod
    def log_artifacts(self, paths: list[Path]) -> None: ...

    @abstractmethod
    def finish(self, status: str) -> None:
        """``status``: finished, failed or killed."""


TRACKERS: Registry[type[Tracker]] = Registry("tracker", plugins="transferlm.tracking.backends")


def register_tracker(name: str):
    def wrap(cls: type[Tracker]) -> type[Tracker]:
        TRACKERS.register(name, cls)
        return cls

    return wrap


def check_trackers(names: Iterable[str]) -> None:
    """Fail now, before data is read or a model loaded, on a tracker that is unknown or whose extra is missing."""
    from transferlm.extras import require

    for name in names:
        tracker = TRACKERS.get(name)
        require(tracker.module, tracker.extra, f"train.report_to: {name}")


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as ``section.key`` parameters; lists and empty mappings as JSON."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flat_params(value, name + "."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value)
    return flat


def event_metrics(event: str, fields: dict[str, Any]) -> dict[str, float]:
    """The numbers of one training-log event, named by what they measure (``train/loss``, ``validation/accuracy``,
    ``system/samples_per_s``)."""
    numbers = {k: float(v) for k, v in fields.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}
    system = {f"system/{k}": numbers.pop(k) for k in ("samples_per_s", "peak_rss_mb") if k in numbers}
    if event == "train":
        return {f"train/{k}": v for k, v in numbers.items()} | system
    if event == "eval":
        numbers.pop("epoch", None)
        return {f"validation/{k}": v for k, v in numbers.items()} | system
    return {}


class Tracking:
    """The trackers of one run, fed like the JSONL log. A backend that fails in the middle of a run is reported and
    dropped for the rest of it: the training the user waits for is not lost to a tracking server going away."""

    def __init__(self, trackers: list[tuple[str, Tracker]]):
        self.trackers = trackers
        self.refs: dict[str, str] = {}

    @classmethod
    def open(cls, names: Iterable[str], info: RunInfo, parents: dict[str, dict[str, str]] | None = None,
             resume: dict[str, str] | None = None) -> Tracking:
        """Start a run in each named tracker. An unknown name or a missing extra fails here, before any training."""
        chosen = [(name, TRACKERS.get(name)) for name in names]
        opened = cls([])
        try:
            for name, tracker_cls in chosen:
                tracker = tracker_cls(replace(info, parent=(parents or {}).get(name), resume=(resume or {}).get(name)))
                opened.refs[name] = tracker.start()
                opened.trackers.append((name, tracker))
        except BaseException:
            opened.finish("failed")
            raise
        return opened

    def write(self, event: str, **fields: Any) -> None:
        metrics = event_metrics(event, fields)
        if metrics and "step" in fields:
            self.log_metrics(metrics, int(fields["step"]))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._each("log metrics", lambda t: t.log_metrics(metrics, step))

    def log_artifacts(self, paths: list[Path]) -> None:
        paths = [p for p in paths if p.is_file()]
        if paths:
            self._each("log artifacts", lambda t: t.log_artifacts(paths))

    def finish(self, status: str) -> None:
        trackers, self.trackers = self.trackers, []
        for name, tracker in trackers:
            try:
                tracker.finish(status)
            except Exception as e:  # noqa: BLE001 - closing one backend must not keep the others open
                log.warning("tracker %s: could not close its run: %s", name, e)

    def _each(self, what: str, call) -> None:
        for name, tracker in list(self.trackers):
            try:
                call(tracker)
            except Exception as e:  # noqa: BLE001 - any backend failure; said, and the run goes on
                log.warning("tracker %s failed to %s (%s: %s); it records nothing more of this run", name, what,
                            type(e).__name__, e)
                self.trackers.remove((name, tracker))
                try:
                    tracker.finish("failed")  # close what can be closed (a writer's buffered events, the run)
                except Exception:  # noqa: BLE001, S110 - it already failed once; the warning above said so
                    pass

    def __bool__(self) -> bool:
        return bool(self.trackers)


def parent_refs() -> dict[str, dict[str, str]]:
    """The parent runs a child process was started under (empty outside an experiment)."""
    text = os.environ.get(PARENT_ENV)
    return json.loads(text) if text else {}


def saved_refs(root: Path) -> dict[str, str]:
    path = Path(root) / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


@contextmanager
def tracked(tracking: Tracking) -> Iterator[Tracking]:
    """Close the trackers' runs as the block ends: finished, failed (an exception) or killed (an interrupt)."""
    status = "failed"
    try:
        yield tracking
        status = "finished"
    except KeyboardInterrupt:
        status = "killed"
        raise
    finally:
        tracking.finish(status)


@contextmanager
def parent_run(names: list[str], root: Path, kind: str, params: dict[str, Any]) -> Iterator[Tracking]:
    """Open a parent run for an experiment in each tracker; runs started inside (in this process or a child) nest
    under it. The experiment logs its reports to the yielded Tracking before leaving."""
    if not names:
        yield Tracking([])
        return
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tracking = Tracking.open(names, RunInfo(root.name, root, kind, flat_params(params)))
    before = os.environ.get(PARENT_ENV)
    os.environ[PARENT_ENV] = json.dumps({n: {"ref": r, "root": str(root)} for n, r in tracking.refs.items()})
    try:
        with tracked(tracking):
            yield tracking
    finally:
        if before is None:
            os.environ.pop(PARENT_ENV, None)
        else:
            os.environ[PARENT_ENV] = before


def child_name(root: Path, parent: dict[str, str] | None) -> str:
    """A run's name in its tracker: its path under the experiment's directory when it has one, else its folder."""
    root = Path(root).resolve()
    if parent and parent.get("root"):
        try:
            return str(root.relative_to(Path(parent["root"]).resolve()))
        except ValueError:
            pass
    return root.name


__all__ = ["PARENT_ENV", "RunInfo", "TRACKERS", "Tracker", "Tracking", "check_trackers", "child_name",
           "event_metrics", "flat_params", "parent_refs", "parent_run", "register_tracker", "saved_refs", "tracked"]
