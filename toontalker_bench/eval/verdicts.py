"""Verdicts from a metric validation report: which metrics miss their targets on which domains, and the marker a
metric value carries then. Kept apart from ``validate`` (which runs the evaluator) so the evaluator can read them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..core.domains import TASKS
from ..metrics import Metric, metric_class

# What a metric must show on the demo corpus before the leaderboard presents it without a marker, per domain (the
# figure a metric declares as its ``validation``).
POSE_MAE_TARGET_DEG = 3.0  # validation "pose": the pose estimator's mean absolute error
EXPRESSION_R_TARGET = 0.6  # validation "expression": the expression probe's mean Pearson r
IDENTITY_AUC_TARGET = 0.9  # validation "identity": same- vs different-identity ROC AUC of the embeddings

# The motion backends the report's motion part is keyed by (written by ``validate``, read by ``validation_report``).
GENERIC = "bfm3ddfa-jaw-y"
CORPUS = "corpus-ridge"
MEDIAPIPE = "mediapipe"


def _domains(metric: type[Metric], task: str) -> tuple[str, ...]:
    """The domains a metric's estimator must be valid on for a task: a metric that analyses driving faces reads
    generated (= source domain) and driving frames; the others the generated (and source) frames."""
    src, drv = TASKS[task]
    return tuple(dict.fromkeys((src, drv))) if {"faces", "driving"} <= metric.needs else (src,)


def _on(domains: list[str]) -> str:
    return f" on {', '.join(domains)}" if domains else ""


def validation_problems(report: dict[str, Any] | None, metric: str, task: str, backend: str | None = None,
                        dataset_version: str | None = None, output_size: int | None = None) -> list[str]:
    """Why ``metric`` is not validated for ``task`` by ``report`` (the machine-readable validation figures); empty
    when it is, or when the metric needs no validation (pixel metrics, which compare frames directly). With
    ``backend`` / ``dataset_version`` (the value's), a report that validated another estimator (a fallback's value
    does not inherit the validation of the backend it replaced) or another build of the data does not count; with
    ``output_size`` (the method's), neither does a report that read outputs of another size (a 64-px face enlarged
    to 256 px is read less precisely than the dataset's 256-px frames)."""
    cls = metric_class(metric)
    if cls.validation is None:
        return []
    if report is None:
        return ["no metric validation report"]
    out = []
    key = {"pose": "motion_backend", "expression": "motion_backend", "identity": "identity_backend"}.get(cls.validation)
    checked = report.get(key) if key else None
    if backend is not None and checked is not None and backend != checked:
        out.append(f"the report validated {checked}, this value is from {backend}")
    if dataset_version is not None and report.get("dataset_version") not in (None, dataset_version):
        out.append(f"the report validated dataset {report['dataset_version']}, this value is on {dataset_version}")
    if output_size is not None and report.get("output_size") not in (None, output_size):
        out.append(f"the report validated {report['output_size']}-px outputs, this value is of {output_size}-px ones")
    sens = report.get("metrics", {}).get(metric)
    if sens is not None:  # the verdicts of the domains the task reads and, across domains, the task's own (the
        # overall ones from an older report)
        keys = _domains(cls, task) + ((task,) if len(set(TASKS[task])) > 1 else ())
        verdicts = {d: sens["domains"][d] for d in keys if d in sens.get("domains", {})} or {"": sens}
        for key, default, what in (("monotone", False, "does not grow monotonically with its own injected error"),
                                   ("flat", True, "answers to errors it should ignore (sensitivity suite)")):
            failed = [d for d, v in verdicts.items() if not v.get(key, default)]
            if failed:
                out.append(what + _on([d for d in failed if d]))
    for d in _domains(cls, task):
        if cls.validation == "pose":
            mae = report.get("pose_mae_deg", {}).get(d)
            if mae is None or mae > POSE_MAE_TARGET_DEG:
                out.append(f"pose MAE {_f(mae, 1)} deg > {POSE_MAE_TARGET_DEG:g} on {d}")
        elif cls.validation == "expression":
            r = report.get("expression_probe_r", {}).get(d)
            if r is None or r < EXPRESSION_R_TARGET:
                out.append(f"expression probe r {_f(r)} < {EXPRESSION_R_TARGET:g} on {d}")
        elif cls.validation == "identity":
            auc = report.get("identity_auc", {}).get(d)
            if auc is None or auc < IDENTITY_AUC_TARGET:
                out.append(f"identity AUC {_f(auc, 3)} < {IDENTITY_AUC_TARGET:g} on {d}")
    return out


def annotate(value: Any, task: str, report_path: str | None,  # noqa: ANN401 - a MetricValue
             dataset_version: str | None = None, output_size: int | None = None) -> None:
    """Mark ``value`` (``extra["validation"]``) "not validated on this data" when its validation misses a target,
    or validated another backend, dataset or output size."""
    report = None
    if report_path and Path(report_path).is_file():
        report = json.loads(Path(report_path).read_text())
    problems = validation_problems(report, value.name, task, value.backend, dataset_version, output_size)
    if problems:
        value.extra["validation"] = "not validated on this data: " + "; ".join(problems)


def _f(v: Any, nd: int = 2) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{nd}f}"
