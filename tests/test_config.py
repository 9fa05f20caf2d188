"""One home for defaults: the dataclass defaults of ``core/config.py`` equal the project's ``params.yaml``, and
``load_params`` finds ``params.yaml`` in the working directory or a parent (else uses those defaults and says so)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from toontalker_bench.core.config import RUN_CONTROL, Params, find_params, load_params

PROJECT_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
# the metric lists are declared by the metrics themselves (another change); not held here
NOT_HELD = {"eval.self_metrics", "eval.cross_metrics"}


def _differences(obj: Any, doc: dict[str, Any], where: str = "") -> list[str]:
    """Dotted keys whose dataclass default differs from ``doc`` (tuples compared as YAML lists), and dataclass keys
    ``doc`` lacks (run-control keys excepted: how a stage runs, never what it outputs)."""
    out = []
    for f in dataclasses.fields(obj):
        key, value = f"{where}{f.name}", getattr(obj, f.name)
        if key in NOT_HELD:
            continue
        if f.name not in doc:
            if not (where == "" and f.name in RUN_CONTROL):
                out.append(f"{key}: missing from params.yaml")
        elif dataclasses.is_dataclass(value):
            out.extend(_differences(value, doc[f.name], key + "."))
        elif (list(value) if isinstance(value, tuple) else value) != doc[f.name]:
            out.append(f"{key}: default {value!r} != params.yaml {doc[f.name]!r}")
    return out


def test_dataclass_defaults_equal_params_yaml() -> None:
    doc = yaml.safe_load(PROJECT_PARAMS.read_text())
    assert _differences(Params(), doc) == []


def test_the_walk_sees_a_difference() -> None:
    doc = yaml.safe_load(PROJECT_PARAMS.read_text())
    doc["synth"]["real_videos"] += 1
    del doc["tubes"]["min_score"]
    assert _differences(Params(), doc) == [
        f"synth.real_videos: default {doc['synth']['real_videos'] - 1} != params.yaml {doc['synth']['real_videos']}",
        "tubes.min_score: missing from params.yaml"]


def test_params_yaml_found_in_a_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "params.yaml").write_text("seed: 7\neval:\n  max_pairs: 3\n")
    (tmp_path / "notebooks" / "deep").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "notebooks" / "deep")
    assert find_params() == tmp_path.resolve() / "params.yaml"
    with caplog.at_level(logging.INFO):
        params = load_params(overrides=["eval.max_frames=5"])
    assert (params.seed, params.eval.max_pairs, params.eval.max_frames) == (7, 3, 5)
    assert not caplog.records


def test_without_params_yaml_the_defaults_are_the_projects_and_one_line_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    if find_params(tmp_path) is not None:
        pytest.skip(f"a params.yaml above the temporary folder: {find_params(tmp_path)}")
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO):
        params = load_params()
    assert [r.getMessage() for r in caplog.records] == [
        f"no params.yaml in {tmp_path.resolve()} or its parents: using the built-in defaults "
        "(equal to the project's params.yaml)"]
    project = load_params(PROJECT_PARAMS)
    assert params.synth.real_videos == project.synth.real_videos == 4
    assert params.eval.motion_backend == project.eval.motion_backend == "corpus-ridge"
    assert params.run.methods == project.run.methods


def test_a_choice_key_takes_only_its_choices() -> None:
    """Keys typed as a ``Literal`` (``build.cross_start``) refuse other values with one line naming the choices."""
    import typing

    from toontalker_bench.core.config import coerce
    from toontalker_bench.core.errors import ConfigError

    tp = typing.get_type_hints(type(Params().build))["cross_start"]
    assert Params().build.cross_start == "neutral" and coerce(tp, "any", "build.cross_start") == "any"
    with pytest.raises(ConfigError, match="must be one of neutral, any, got 'closed'"):
        coerce(tp, "closed", "build.cross_start")
