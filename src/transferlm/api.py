"""The product from Python: each command as a function taking the CLI's settings (a settings object, a dict or keyword
arguments) and returning a result object; tables come as pandas DataFrames. ``transferlm.compare`` and the rest are
these functions."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from transferlm.config.load import build_config, format_validation_error, read_yaml
from transferlm.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from transferlm.config.schema import RunConfig


def run_config(config: RunConfig | dict | str | Path, section: str | None = None) -> tuple[RunConfig, dict | None]:
    """A validated run config from a RunConfig, a dict or a YAML file; with ``section`` (compare, curve, tune), that
    section of the dict or file is returned beside it."""
    from transferlm.config.schema import RunConfig

    if isinstance(config, RunConfig):
        return config, None
    data = read_yaml(Path(config)) if isinstance(config, (str, Path)) else dict(config)
    extra = data.pop(section, None) if section else None
    from transferlm.experiments.config import SECTIONS

    for other in set(SECTIONS) - {section}:
        data.pop(other, None)
    return build_config(data), extra


def settings_of(cls, given: Any = None, **values: Any):
    """``cls`` validated from a settings object, a dict, keyword arguments, or a dict updated by keyword arguments."""
    if isinstance(given, cls) and not values:
        return given
    base = given.model_dump(exclude_unset=True) if isinstance(given, cls) else dict(given or {})
    try:
        return cls.model_validate({**base, **values})
    except ValidationError as e:  # in the product's words, as the CLI reports it
        raise ConfigError(format_validation_error(e, cls)) from None


@dataclass
class ExperimentResult:
    """What ``compare``, ``curve`` or ``tune`` wrote: its output folder, the report (report.json as a dict) and its
    main table as a DataFrame."""

    kind: str
    output: Path
    report: dict[str, Any]
    table: pd.DataFrame = field(repr=False)

    def __repr__(self) -> str:
        head = f"{self.kind} in {self.output}: {self.report.get('metric', '')}"
        return f"{head}\n{self.table.to_string(index=False)}"

    def _repr_html_(self) -> str:
        return f"<p><b>{self.kind}</b> in <code>{self.output}</code></p>" + self.table.to_html(index=False)


def _compare_table(report: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for member in report["members"]:
        summary, verdict = member.get("summary") or {}, member.get("verdict") or {}
        rows.append({"member": member["title"], "kind": member["kind"], "mean": summary.get("mean"),
                     "std": summary.get("std"), "seeds": summary.get("seeds"),
                     "difference": verdict.get("difference"), "outcome": verdict.get("outcome"),
                     "trainable": member.get("trainable"), "train_seconds": member.get("train_seconds"),
                     "peak_rss_mb": member.get("peak_rss_mb")})
    return pd.DataFrame(rows)


def _curve_table(report: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame([{"member": member, **point} for member, line in report["curves"].items() for point in line])


def compare(config: RunConfig | dict | str | Path, settings: Any = None, overwrite: bool = False,
            **values: Any) -> ExperimentResult:
    """``transferlm compare``: the members (strategies and baselines) trained on the same split over seeds, each
    judged against the best baseline beyond its seed noise. ``settings``: CompareSettings, a dict, or the
    ``compare:`` section of ``config``; keyword arguments override it (``members=["full", "tfidf"]``)."""
    from transferlm.experiments.compare import compare as _compare
    from transferlm.experiments.config import CompareSettings
    from transferlm.models.load import quiet_loading

    run, section = run_config(config, "compare")
    chosen = settings_of(CompareSettings, settings if settings is not None else section, **values)
    with quiet_loading():
        report = _compare(run, chosen, overwrite=overwrite)
    return ExperimentResult("compare", Path(run.output), report, _compare_table(report))


def curve(config: RunConfig | dict | str | Path, settings: Any = None, overwrite: bool = False,
          **values: Any) -> ExperimentResult:
    """``transferlm curve``: each member at several training-set sizes; the table has one row per member and size."""
    from transferlm.experiments.config import CurveSettings
    from transferlm.experiments.curve import curve as _curve
    from transferlm.models.load import quiet_loading

    run, section = run_config(config, "curve")
    chosen = settings_of(CurveSettings, settings if settings is not None else section, **values)
    with quiet_loading():
        report = _curve(run, chosen, overwrite=overwrite)
    return ExperimentResult("curve", Path(run.output), report, _curve_table(report))


def tune(config: RunConfig | dict | str | Path, settings: Any = None, **values: Any) -> ExperimentResult:
    """``transferlm tune``: an Optuna search over the run's settings; the table is trials.csv."""
    import pandas as pd

    from transferlm.experiments.config import TuneSettings
    from transferlm.experiments.tune import tune as _tune
    from transferlm.models.load import quiet_loading

    run, section = run_config(config, "tune")
    chosen = settings_of(TuneSettings, settings if settings is not None else section, **values)
    with quiet_loading():
        report = _tune(run, chosen)
    out = Path(run.output)
    return ExperimentResult("tune", out, report, pd.read_csv(out / "trials.csv"))


@dataclass
class InspectResult:
    """``transferlm inspect``'s report (inspect.json as a dict), its folder, and the slices as a DataFrame."""

    output: Path
    report: dict[str, Any]
    slices: pd.DataFrame = field(repr=False)

    def __repr__(self) -> str:
        from transferlm.experiments.inspect import summary_lines

        return "\n".join(summary_lines(self.report)) + f"\nreport: {self.output / 'inspect.html'}"


def inspect(run: str | Path, data: str | Path, output: str | Path, settings: Any = None,
            **values: Any) -> InspectResult:
    """``transferlm inspect``: calibration, confidently wrong examples, slices (and with ``label_errors=True``
    suspected label errors) of a run on a labelled file."""
    import pandas as pd

    from transferlm.experiments.inspect import InspectSettings, inspect_run
    from transferlm.models.load import quiet_loading

    chosen = settings_of(InspectSettings, settings, **values)
    with quiet_loading():
        report = inspect_run(Path(run), Path(data), Path(output), chosen)
    return InspectResult(Path(output), report, pd.DataFrame(report.get("slices") or []))


def export(run: str | Path, output: str | Path, settings: Any = None, overwrite: bool = False, **values: Any):
    """``transferlm export``: an ONNX directory (``quantize="int8"`` for int8), checked against torch; returns the
    ExportReport."""
    from transferlm.exporting.onnx import ExportSettings
    from transferlm.exporting.onnx import export as _export
    from transferlm.models.load import quiet_loading

    with quiet_loading():
        return _export(Path(run), Path(output), settings_of(ExportSettings, settings, **values), overwrite=overwrite)


def serve(run: str | Path, settings: Any = None, **values: Any):
    """The HTTP service of ``transferlm serve`` as a FastAPI app, to mount in your own service or run with uvicorn
    (``uvicorn.run(app)``); nothing is started here."""
    from transferlm.models.load import quiet_loading
    from transferlm.serving.app import create_app
    from transferlm.serving.settings import ServeSettings

    with quiet_loading():
        return create_app(Path(run), settings_of(ServeSettings, settings, **values))


def rank(config: RunConfig | dict | str | Path, settings: Any = None, **values: Any) -> ExperimentResult:
    """``transferlm rank``: candidate models scored on the training data from frozen features (LogME; a linear
    probe too with ``probe=True``), best first, without training any; ``models=["minilm", "smollm2"]``."""
    import pandas as pd

    from transferlm.experiments.config import RankSettings
    from transferlm.experiments.rank import rank as _rank
    from transferlm.models.load import quiet_loading

    run, section = run_config(config, "rank")
    chosen = settings_of(RankSettings, settings if settings is not None else section, **values)
    with quiet_loading():
        ranked = _rank(run, chosen)
    out = Path(run.output)
    report = json.loads((out / "rank.json").read_text())
    return ExperimentResult("rank", out, report, pd.DataFrame([asdict(r) for r in ranked]))


def auto(config: dict | str | Path, settings: Any = None, **values: Any) -> dict[str, Any]:
    """``transferlm auto``: profile the data, plan, train and compare against the baseline (``dry_run=True``: plan
    only). ``config``: the settings you fix (a dict or YAML with at least ``data.train``); everything else is
    chosen, and the returned report (auto-report.json) says why."""
    from transferlm.experiments.auto import auto as _auto
    from transferlm.experiments.auto import load_raw
    from transferlm.experiments.config import AutoSettings
    from transferlm.models.load import quiet_loading

    if isinstance(config, (str, Path)):
        raw, section = load_raw(Path(config), [])
    else:
        raw = dict(config)
        section = raw.pop("auto", None)
    chosen = settings_of(AutoSettings, settings if settings is not None else section, **values)
    with quiet_loading():
        return _auto(raw, chosen)


def push(run: str | Path, repo: str, private: bool = False, message: str | None = None):
    """``transferlm push``: upload the run's model files and card to the Hub repository ``repo``."""
    from transferlm.runs.push import push as _push

    return _push(Path(run), repo, private=private, message=message)


__all__ = ["ExperimentResult", "InspectResult", "auto", "compare", "curve", "export", "inspect", "push", "rank",
           "run_config", "serve", "settings_of", "tune"]

