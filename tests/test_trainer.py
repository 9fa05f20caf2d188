"""The generic trainer on a toy method: resume == uninterrupted, SIGINT saves, accumulation and DDP (gloo, 2 CPU
processes) give the same weights as one process on the same global batch."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from fixtures_dataset import build_fixture_dataset
from torch import nn

from toontalker_bench.core.errors import CheckpointError
from toontalker_bench.data.dataset import load_clips
from toontalker_bench.models.base import Capabilities, Method
from toontalker_bench.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from toontalker_bench.models.registry import train_config
from toontalker_bench.train.data import TrainData
from toontalker_bench.train.trainer import latest_checkpoint, train

CPU = torch.device("cpu")

TESTS = Path(__file__).parent


class Toy(Method):
    """One conv predicting the driving frame from the source; Adam, so optimiser state matters on resume."""

    name = "toy"
    capabilities = Capabilities()
    optimizer_slots = {"opt": "opt"}

    def __init__(self, cfg: dict) -> None:
        super().__init__(cfg)
        torch.manual_seed(123)
        self.net = nn.Conv2d(3, 3, 3, padding=1)
        if cfg.get("optim") == "sgd":  # gradient scale matters (Adam would hide a wrong average)
            self.opt = torch.optim.SGD(self.net.parameters(), lr=0.1, momentum=0.9)
        else:
            self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-2)
        self.noise = float(cfg.get("noise", 0.0))
        self.interrupt_at = int(cfg.get("interrupt_at", -1))

    def training_step(self, batch: dict, step: int) -> dict[str, float]:
        if step == self.interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)
        self.opt.zero_grad()
        loss = torch.zeros(())
        for b in batch.values():
            src = b["source"] + self.noise * torch.randn_like(b["source"])
            loss = loss + ((self.net(src) - b["driving"]) ** 2).mean()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item(), "autocast": float(torch.is_autocast_enabled("cpu"))}

    def animate(self, source, driving, *, source_domain, driving_domain, relative=True):  # noqa: ANN001
        return self.net(driving).clamp(0, 1)


def _cfg(noise: float = 0.0, optim: str = "adam", **train) -> dict:
    base = dict(steps=6, batch_size=4, checkpoint_every=2, sample_every=3, log_every=1, tensorboard=False)
    return {"size": 32, "noise": noise, "optim": optim, "train": {**base, **train}}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list:
    root = build_fixture_dataset(tmp_path_factory.mktemp("ds"), size=32, n_frames=12, train_clips=2, test_clips=1)
    return load_clips(root, "train", 32)


def _weights(m: Method) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _same(a: dict, b: dict, atol: float = 0.0) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=atol, rtol=0) for k in a)


def test_sigint_saves_and_resume_equals_uninterrupted(clips: list, tmp_path: Path) -> None:
    ref = Toy(_cfg(noise=0.05))
    r_ref = train(ref, TrainData(clips, seed=7), tmp_path / "ref", train_config(ref.cfg), device=CPU, seed=7)
    assert r_ref.steps == 6 and not r_ref.interrupted

    first = Toy({**_cfg(noise=0.05), "interrupt_at": 2})  # SIGINT arrives during step index 2
    r1 = train(first, TrainData(clips, seed=7), tmp_path / "cut", train_config(first.cfg), device=CPU, seed=7)
    assert r1.interrupted and r1.steps == 3
    ckpt = latest_checkpoint(tmp_path / "cut")
    assert ckpt is not None and ckpt.name == "step_00000003.safetensors"
    assert not (tmp_path / "cut" / "checkpoint.safetensors").exists()
    assert not _same(_weights(first), _weights(ref))

    second = Toy(_cfg(noise=0.05))
    r2 = train(second, TrainData(clips, seed=7), tmp_path / "cut", train_config(second.cfg), device=CPU, seed=7,
               resume=True)
    assert r2.steps == 6 and not r2.interrupted
    assert _same(_weights(second), _weights(ref))  # bit-identical on CPU
    log_steps = [int(line.split(",")[0]) for line in (tmp_path / "cut" / "train_log.csv").read_text().split()[1:]]
    assert log_steps == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "cut" / "samples" / "step_00000006.png").is_file()
    # the final checkpoint holds the same weights, and only weights
    tensors, meta = read_checkpoint(tmp_path / "cut" / "checkpoint.safetensors")
    assert meta["method"] == "toy" and meta["step"] == "6" and not any(k.startswith("optim.") for k in tensors)
    third = Toy(_cfg())
    load_checkpoint(third, tmp_path / "cut" / "checkpoint.safetensors")
    assert _same(_weights(third), _weights(ref))


def test_amp_cpu_runs_the_steps_under_bf16_autocast_and_says_so(clips: list, tmp_path: Path) -> None:
    """train.amp_cpu puts every CPU step under bfloat16 autocast (off by default: train.amp is CUDA's); the result
    says which ran, for train.json."""
    for amp_cpu, expect in ((False, "off"), (True, "bf16")):
        m = Toy(_cfg(amp_cpu=amp_cpu, steps=2))
        res = train(m, TrainData(clips, seed=1), tmp_path / str(amp_cpu), train_config(m.cfg), device=CPU, seed=1)
        assert res.autocast == expect
        log = (tmp_path / str(amp_cpu) / "train_log.csv").read_text().splitlines()
        col = log[0].split(",").index("autocast")
        assert {float(line.split(",")[col]) for line in log[1:]} == {float(amp_cpu)}


def test_seed_changes_data_order(clips: list) -> None:
    a, b = TrainData(clips, seed=1), TrainData(clips, seed=2)
    assert (a.indices(5, 8, "real") == TrainData(clips, seed=1).indices(5, 8, "real")).all()
    assert not (a.indices(5, 8, "real") == b.indices(5, 8, "real")).all()
    assert not (a.indices(5, 8, "real") == a.indices(6, 8, "real")).all()


def test_grad_accum_equals_full_batch(clips: list, tmp_path: Path) -> None:
    full = Toy(_cfg(steps=3, optim="sgd"))
    train(full, TrainData(clips, seed=3), tmp_path / "full", train_config(full.cfg), device=CPU, seed=3)
    acc = Toy(_cfg(steps=3, grad_accum=2, optim="sgd"))
    train(acc, TrainData(clips, seed=3), tmp_path / "acc", train_config(acc.cfg), device=CPU, seed=3)
    assert _same(_weights(full), _weights(acc), atol=1e-6)
    assert not _same(_weights(full), _weights(Toy(_cfg())), atol=1e-3)  # training moved the weights


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, clips: list, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    m = Toy(_cfg(steps=3, optim="sgd"))
    train(m, TrainData(clips, seed=5), out, train_config(m.cfg), device=CPU, seed=5)
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_gloo_processes_equal_single_process(clips: list, tmp_path: Path) -> None:
    mp.spawn(_ddp_worker, args=(2, _free_port(), clips, str(tmp_path / "ddp")), nprocs=2, join=True)
    single = Toy(_cfg(steps=3, optim="sgd"))
    train(single, TrainData(clips, seed=5), tmp_path / "single", train_config(single.cfg), device=CPU, seed=5)
    ddp = Toy(_cfg(steps=3, optim="sgd"))
    load_checkpoint(ddp, tmp_path / "ddp" / "checkpoint.safetensors")
    assert _same(_weights(ddp), _weights(single), atol=1e-6)
    assert not _same(_weights(ddp), _weights(Toy(_cfg())), atol=1e-3)


def test_checkpoint_from_other_method_or_shape_is_refused(tmp_path: Path) -> None:
    toy = Toy(_cfg())
    save_checkpoint(tmp_path / "toy.safetensors", toy, 0)

    class Other(Toy):
        name = "other"

    with pytest.raises(CheckpointError, match="saved by method 'toy', not 'other'"):
        load_checkpoint(Other(_cfg()), tmp_path / "toy.safetensors")

    class Wider(Toy):
        def __init__(self, cfg: dict) -> None:
            super().__init__(cfg)
            self.net = nn.Conv2d(3, 3, 5, padding=2)
            self.extra = nn.Linear(2, 2)

    with pytest.raises(CheckpointError, match=r"missing: extra.bias, extra.weight; shape differs: net.weight"):
        load_checkpoint(Wider(_cfg()), tmp_path / "toy.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(toy, tmp_path / "bad.safetensors")


class SlowToy(Toy):
    """The toy at a pace a test can interrupt from outside (registered as ``toy`` only in the CLI subprocess)."""

    name = "toy"
    profiles = {"tiny": {"size": 32, "noise": 0.05, "train": dict(steps=24, batch_size=4, checkpoint_every=100,
                                                                 sample_every=100, log_every=1, tensorboard=True)}}

    def training_step(self, batch: dict, step: int) -> dict[str, float]:
        time.sleep(0.15)
        return super().training_step(batch, step)


_CLI = ("import sys; sys.path.insert(0, sys.argv[1]); import test_trainer; "
        "from toontalker_bench.models.base import METHODS; METHODS.register('toy')(test_trainer.SlowToy); "
        "from toontalker_bench.cli import main; sys.exit(main(sys.argv[2:]))")


def _cli(cwd: Path, dataset: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _CLI, str(TESTS), "--set", f"build.out_dir={dataset}", "train",
                             "--method", "toy", *args], cwd=cwd, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_cli_sigint_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    dataset = build_fixture_dataset(tmp_path / "ds", size=32, n_frames=12, train_clips=2, test_clips=1)
    full = _cli(tmp_path, dataset, "--run-id", "full")
    cut = _cli(tmp_path, dataset, "--run-id", "cut")
    log = tmp_path / "runs" / "toy" / "cut" / "train_log.csv"
    end = time.monotonic() + 240
    while not (log.is_file() and len(log.read_text().splitlines()) >= 4):  # header + 3 steps
        assert cut.poll() is None and time.monotonic() < end, cut.stderr.read() if cut.poll() is not None else ""
        time.sleep(0.1)
    cut.send_signal(signal.SIGINT)
    assert cut.wait(120) == 130, cut.stderr.read()
    ckpts = sorted((tmp_path / "runs" / "toy" / "cut" / "checkpoints").glob("step_*.safetensors"))
    assert len(ckpts) == 1 and 3 <= int(ckpts[0].stem.split("_")[1]) < 24
    assert not (tmp_path / "runs" / "toy" / "cut" / "checkpoint.safetensors").exists()
    resumed = _cli(tmp_path, dataset, "--run-id", "cut", "--resume")
    assert resumed.wait(240) == 0, resumed.stderr.read()
    assert full.wait(240) == 0, full.stderr.read()
    a, meta_a = read_checkpoint(tmp_path / "runs" / "toy" / "cut" / "checkpoint.safetensors")
    b, meta_b = read_checkpoint(tmp_path / "runs" / "toy" / "full" / "checkpoint.safetensors")
    assert meta_a["step"] == meta_b["step"] == "24"
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "runs" / "toy" / "cut" / "tensorboard").is_dir()


class _NotATensor:
    pass


def test_third_party_pth_weights_only_unless_trusted(tmp_path: Path) -> None:
    from toontalker_bench.models.checkpoint import load_torch_file

    torch.save({"w": torch.ones(2)}, tmp_path / "plain.pth")
    assert torch.equal(load_torch_file(tmp_path / "plain.pth")["w"], torch.ones(2))
    torch.save({"w": torch.ones(2), "obj": _NotATensor()}, tmp_path / "pickle.pth")
    with pytest.raises(CheckpointError, match="refused"):
        load_torch_file(tmp_path / "pickle.pth")
    assert isinstance(load_torch_file(tmp_path / "pickle.pth", trust=True)["obj"], _NotATensor)


def test_train_log_widens_header_for_terms_logged_later(tmp_path):
    """A second training stage that logs new terms keeps them in train_log.csv (earlier rows get blanks)."""
    import csv

    from toontalker_bench.train.logs import TrainLogs

    logs = TrainLogs(tmp_path, 0, tensorboard=False)
    logs.write(1, {"loss": 1.0})
    logs.write(2, {"loss": 0.5, "analogy": 0.25})
    logs.write(3, {"loss": 0.4})
    with open(tmp_path / "train_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert [r["analogy"] for r in rows] == ["", "0.25", ""]


def test_progress_lines_when_no_bar_is_shown(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `make demo` in a log file (no TTY) training prints step, losses, speed and ETA at an interval."""
    import logging

    from toontalker_bench.train import logs as L

    monkeypatch.setattr(L, "quiet", lambda: True)
    caplog.set_level(logging.INFO, logger="toontalker_bench.train.logs")
    logs = L.TrainLogs(tmp_path, 0, tensorboard=False, name="train toy", total=10, every_s=3600.0)
    logs.progress(2, {"loss": 0.5, "rec": 0.25})
    assert caplog.text == ""  # the interval has not passed
    logs.every_s = 0.0
    logs.progress(5, {"loss": 0.5, "rec": 0.25})
    line = caplog.records[-1].getMessage()
    assert "train toy: step 5/10 (50%), loss 0.5 (rec 0.25)" in line and "steps/s, ETA " in line
    monkeypatch.setattr(L, "quiet", lambda: False)  # a progress bar is on screen: no lines
    caplog.clear()
    L.TrainLogs(tmp_path, 0, tensorboard=False, total=10, every_s=0.0).progress(5, {"loss": 0.5}, final=True)
    assert caplog.text == ""


@pytest.mark.parametrize("method", ["toontalker", "fomm", "animeceleb"])
def test_long_profile_is_tiny_at_ten_times_the_budget(method: str) -> None:
    """The `long` tier changes nothing but the step budget (>= 10x tiny's) and the checkpoint / sample cadence, so
    a long run is a tiny run trained longer (and resumable from its checkpoints)."""
    from toontalker_bench.models.registry import load_profile

    tiny, long = load_profile(method, "tiny"), load_profile(method, "long")
    assert {k: v for k, v in tiny.items() if k != "train"} == {k: v for k, v in long.items() if k != "train"}
    changed = {k for k in tiny["train"] | long["train"] if tiny["train"].get(k) != long["train"].get(k)}
    assert changed == {"steps", "checkpoint_every", "sample_every"}
    assert long["train"]["steps"] >= 10 * tiny["train"]["steps"]
    assert long["train"]["steps"] % long["train"]["checkpoint_every"] == 0
