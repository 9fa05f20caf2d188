"""dvc.yaml states the truth: each stage's params are the keys it reads, its code deps the modules it imports, its
paths come from params.yaml, and the dataset is declared as an artifact."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import yaml
from test_architecture import import_graph, modules

from toontalker_bench.data.stages import STAGES

REPO = Path(__file__).resolve().parents[1]
STAGE_MODULES = {st.name: st.module for st in STAGES}  # `data <verb>` -> the module whose run() it calls


BENCH_MODULES = {  # pipelines/benchmark stage -> the module whose function its CLI verb calls
    "train": "toontalker_bench.runs",
    "evaluate": "toontalker_bench.runs",
    "publish": "toontalker_bench.leaderboard.publish",
    "validate": "toontalker_bench.eval.validate",
}


def _registry_edges() -> dict[str, set[str]]:
    """module -> the built-in modules a ``Registry(..., modules=...)`` it defines imports on first lookup (the
    methods, the metrics): named as strings, so the import graph does not see them, yet a stage runs them. Read from
    the registry objects themselves, since a registry may compute its list (the metrics list their folder)."""
    from toontalker_bench.core.registry import Registry

    out: dict[str, set[str]] = {}
    for name, (path, _) in modules().items():
        if "Registry(" in path.read_text():
            for obj in vars(importlib.import_module(name)).values():
                if isinstance(obj, Registry):
                    out.setdefault(name, set()).update(obj._modules)
    return out


def _closure(entries: list[str]) -> set[str]:
    graph, seen, todo = import_graph(), set(), list(entries)
    for m, targets in _registry_edges().items():
        graph[m] |= targets
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph[m]
    return seen


def _files(mods: set[str]) -> set[str]:
    table = modules()
    return {table[m][0].relative_to(REPO).as_posix() for m in mods}


def _code_deps(stage: dict) -> list[str]:
    return [d for d in stage["deps"] if d.startswith("toontalker_bench")]


def _covered(deps: list[str], imported: set[str]) -> set[str]:
    """The package files the deps name. A folder dep names every .py file under it and must hold at least one file
    the stage imports (so `toontalker_bench/core` stands for the core modules once, instead of one line each)."""
    out = set()
    for d in deps:
        p = REPO / d
        assert p.exists(), f"dvc.yaml dep {d} does not exist"
        if p.is_dir():
            files = {f.relative_to(REPO).as_posix() for f in p.rglob("*.py")}
            assert files & imported, f"dvc.yaml dep {d} holds no module the stage imports"
            out |= files
        elif p.suffix == ".py":
            assert d in imported, f"dvc.yaml dep {d} is not imported by the stage"
            out.add(d)
        else:  # a package data file (a template): its folder must hold a module the stage imports
            assert any(f.rpartition("/")[0] == p.parent.relative_to(REPO).as_posix() for f in imported), d
    return out


def test_data_stage_code_deps_are_exactly_what_each_stage_imports() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(STAGE_MODULES)
    for name, module in STAGE_MODULES.items():
        assert stages[name]["cmd"] == f"toontalker-bench data {name}"
        imported = _files(_closure([module]))
        listed = _covered(_code_deps(stages[name]), imported)
        assert imported <= listed, f"{name}: imports not in deps: {sorted(imported - listed)}"


def test_registry_modules_are_followed() -> None:
    """The methods and metrics are reached only through their registries' module lists."""
    graph = import_graph()
    for entry, built_in in (("toontalker_bench.models.registry", "toontalker_bench.models.toontalker.blocks"),
                            ("toontalker_bench.metrics.base", "toontalker_bench.metrics.reconstruction")):
        seen, todo = set(), [entry]
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo += graph[m]
        assert built_in not in seen and built_in in _closure([entry]), entry


def test_benchmark_stage_code_deps_are_exactly_what_each_verb_imports() -> None:
    """Each benchmark stage's code deps name the import closure of the module its verb calls, and nothing else: a
    file dep is imported, a folder dep is imported whole (its package ``__init__`` files aside) except the core,
    which is named once, as a folder. The evaluation reads the validation the pipeline writes first."""
    stages = yaml.safe_load((REPO / "pipelines" / "benchmark" / "dvc.yaml").read_text())["stages"]
    verbs = {"train": "train", "evaluate": "evaluate run", "publish": "leaderboard publish",
             "validate": "evaluate validate-metrics"}
    assert "${eval.validation}" in stages["evaluate"]["do"]["deps"]
    assert any("${eval.validation}" in o for o in stages["validate"]["outs"])
    for name, module in BENCH_MODULES.items():
        do = stages[name].get("do", stages[name])
        assert do["cmd"].startswith(f"toontalker-bench {verbs[name]} "), name
        imported = _files(_closure([module]))
        deps = _code_deps(do)
        listed = _covered(deps, imported)
        assert imported <= listed, f"{name}: imports not in deps: {sorted(imported - listed)}"
        core = [d for d in deps if d.startswith("toontalker_bench/core")]
        assert core == ["toontalker_bench/core"], f"{name}: name the core once, as a folder: {core}"
        extra = {f for f in listed - imported if not f.endswith("__init__.py") and not f.startswith(core[0] + "/")}
        assert not extra, f"{name}: deps name files the stage does not import: {sorted(extra)}"


def test_data_stage_params_are_exactly_what_each_stage_reads() -> None:
    """Each stage works on a view of params holding only its READS (reading anything else raises), and dvc.yaml
    declares the same keys."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, module in STAGE_MODULES.items():
        reads = importlib.import_module(module).READS
        assert stages[name]["params"] == list(reads), name


def test_paths_come_from_params_yaml() -> None:
    """No path that params.yaml owns is spelled out in dvc.yaml: it is templated (${section.out_dir})."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    owned = {v for sec in params.values() if isinstance(sec, dict) for k, v in sec.items()
             if isinstance(v, str) and (k == "out_dir" or k == "manifest")}
    text = (REPO / "dvc.yaml").read_text()
    body = "\n".join(line.split("#")[0] for line in text.splitlines())
    for path in owned:
        assert not re.search(rf"(?<![\w/$]){re.escape(path)}(?![\w])", body), f"{path} is spelled out in dvc.yaml"


def test_artifacts_are_declared() -> None:
    data = yaml.safe_load((REPO / "dvc.yaml").read_text())
    art = data["artifacts"]["demo-dataset"]
    assert art["type"] == "dataset" and art["desc"] and art["labels"] and art["path"] == "${build.out_dir}"
    bench = yaml.safe_load((REPO / "pipelines" / "benchmark" / "dvc.yaml").read_text())
    for name, a in bench["artifacts"].items():
        assert a["type"] == "model" and a["desc"] and a["labels"], name
        assert a["path"].endswith("checkpoint.safetensors"), name
    trainable = {"toontalker", "fomm", "animeceleb"}
    assert {n.removesuffix("-checkpoint") for n in bench["artifacts"]} == trainable


def test_view_refuses_undeclared_keys() -> None:
    import pytest

    from toontalker_bench.core.config import Params, view

    v = view(Params(), ("scrape.out_dir", "cuts"))
    assert v.scrape.out_dir == "data/raw" and v.cuts.detector == "content" and v.n_workers() >= 1
    with pytest.raises(AttributeError, match="tubes"):
        v.tubes  # noqa: B018
    with pytest.raises(AttributeError, match="scrape.*manifests"):
        v.scrape.manifests  # noqa: B018
