"""The ``toontalker-bench`` command line. Each verb parses its options and calls one library function."""

from __future__ import annotations

import sys

import click

from .core.errors import UserError
from .data.stages import STAGES

SET_HELP = "Override a params.yaml key, e.g. --set tubes.detect_every=10 (repeatable)."


def _params(ctx: click.Context, overrides: tuple[str, ...] = ()):  # noqa: ANN202
    from .core.config import load_params

    root = ctx.find_root().obj or {}
    return load_params(root.get("params"), tuple(root.get("overrides", ())) + tuple(overrides))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--params", "params_path", type=click.Path(dir_okay=False), default=None,
              help="Parameters file (default: the nearest params.yaml here or in a parent folder; none: the "
                   "built-in defaults, equal to the project's params.yaml).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.version_option(package_name="toontalker-bench")
@click.pass_context
def app(ctx: click.Context, params_path: str | None, overrides: tuple[str, ...], verbose: int) -> None:
    """Cross-domain face reenactment: build the cartoon/real dataset and benchmark methods on it."""
    from .core.progress import setup_logging

    setup_logging(verbose)
    ctx.obj = {"params": params_path, "overrides": overrides}


# ------------------------------------------------------------------------------------------------ data
@app.group()
def data() -> None:
    """Dataset construction stages (what `dvc repro` runs)."""


def stage_options(fn):  # noqa: ANN001, ANN201 - click decorator
    """``--workers`` and ``--set``, the options every stage verb shares."""
    fn = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)(fn)
    return click.option("--workers", type=click.IntRange(min=1), default=None,
                        help="Worker processes (default: params `workers`, 0 there = number of cores).")(fn)


def _stage_params(ctx: click.Context, workers: int | None, overrides: tuple[str, ...], *extra: str):  # noqa: ANN202
    return _params(ctx, overrides + extra + ((f"workers={workers}",) if workers is not None else ()))


@data.command("synth")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: params synth.out_dir, data/synth); the manifest then goes to OUT/demo.csv "
                   "unless synth.manifest is set, so the committed manifests/demo.csv is left alone.")
@click.option("--seed", type=int, default=None, help="Random seed (default: params `seed`).")
@click.option("--contact-sheet", type=click.Path(dir_okay=False), default=None,
              help="Also write a contact-sheet PNG of the corpus to this path.")
@stage_options
@click.pass_context
def data_synth(ctx: click.Context, out_dir: str | None, seed: int | None, contact_sheet: str | None,
               workers: int | None, overrides: tuple[str, ...]) -> None:
    """Generate the built-in demo corpus (cartoon + real talking heads with ground truth) and manifests/demo.csv."""
    from .data.synth import run, write_contact_sheet

    extra = tuple(f"{k}={v}" for k, v in (("synth.out_dir", out_dir), ("seed", seed)) if v is not None)
    params = _stage_params(ctx, workers, overrides, *extra)
    report = run(params)
    click.echo(f"synth: {report['videos']} videos ({report['generated']} generated, {report['skipped']} skipped, "
               f"{len(report['failed'])} failed), {report['minutes']} min of video, identities {report['identities']}, "
               f"{report['wall_seconds']} s")
    if contact_sheet:
        write_contact_sheet(params.synth.out_dir, contact_sheet)
        click.echo(f"contact sheet: {contact_sheet}")
    if report["failed"]:
        raise UserError(f"{len(report['failed'])} synth videos failed: {sorted(report['failed'])}",
                        hint="see the log above; rerun to retry only those")


@data.command("scrape")
@click.option("--manifest", "manifests", multiple=True, metavar="CSV",
              help="Manifest(s) to fetch (default: scrape.manifests in params.yaml).")
@stage_options
@click.pass_context
def data_scrape(ctx: click.Context, manifests: tuple[str, ...], workers: int | None,
                overrides: tuple[str, ...]) -> None:
    """Download/copy every manifest source into data/raw (sources.parquet + report.json)."""
    from .data.scrape import run

    params = _stage_params(ctx, workers, overrides)
    if manifests:
        params.scrape.manifests = list(manifests)
    run(params)


@data.command("build")
@click.option("--push-to-hub", "repo", default=None, metavar="REPO",
              help="Also upload the dataset to the Hugging Face Hub as REPO (needs the network and a login).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.pass_context
def data_build(ctx: click.Context, repo: str | None, overrides: tuple[str, ...]) -> None:
    """Split, package and document the dataset (data/dataset/); optionally push it to the Hub."""
    from .data.build import push_to_hub, run

    params = _params(ctx, overrides)
    stats = run(params)
    click.echo(f"built {stats['clips']} clips ({stats['minutes']} min), params hash {stats['params_hash']}")
    if repo:
        click.echo(push_to_hub(params.build.out_dir, repo))


def _stage_verb(name: str, module: str, summary: str) -> None:
    """``data <name>`` for a stage with no options of its own: ``--workers``/``--set``, then its ``run(params)``."""

    @data.command(name, help=summary)
    @stage_options
    @click.pass_context
    def verb(ctx: click.Context, workers: int | None, overrides: tuple[str, ...]) -> None:
        import importlib

        importlib.import_module(module).run(_stage_params(ctx, workers, overrides))


@data.command("checksums")
@click.option("--write", "write_path", type=click.Path(dir_okay=False), default=None,
              help="Write the list to this file (sha256sum format).")
@click.option("--check", "check_path", type=click.Path(dir_okay=False), default=None,
              help="Compare the built data with this list; fail when a file differs, is missing or is extra.")
@click.pass_context
def data_checksums(ctx: click.Context, write_path: str | None, check_path: str | None) -> None:
    """sha256 of every file the dataset stages wrote (default: print them; the demo's list is
    docs/demo-dataset.sha256)."""
    from .data.checksums import checksums, compare_checksums, write_checksums

    params = _params(ctx)
    if write_path:
        click.echo(f"wrote {write_checksums(params, write_path)} checksums to {write_path}")
    elif check_path:
        res = compare_checksums(params, check_path)
        bad = {k: v for k, v in res.items() if v}
        if not bad:
            click.echo(f"every file matches {check_path}")
            return
        for kind, files in bad.items():
            click.echo(f"{kind} ({len(files)}): {' '.join(files[:10])}{' ...' if len(files) > 10 else ''}")
        raise UserError(f"the built data differ from {check_path}",
                        hint="same code and params should give the same bytes on any x86-64 CPU: please report it")
    else:
        for path, digest in checksums(params).items():
            click.echo(f"{digest}  {path}")


@data.command("check-corpus")
@click.option("--out", "out_json", default="docs/corpus-check.json", show_default=True,
              type=click.Path(dir_okay=False), help="The summary (JSON).")
@click.option("--picture", "out_png", default="docs/corpus-check.png", show_default=True,
              type=click.Path(dir_okay=False), help="The picture (first frame, blink, mouth open, smile per identity).")
@click.option("--every", default=2, show_default=True, type=click.IntRange(1), help="Analyse every N-th frame.")
@click.option("--max-clips", type=click.IntRange(1), default=None, help="Only the first N clips (a quick look).")
@click.pass_context
def data_check_corpus(ctx: click.Context, out_json: str, out_png: str, every: int, max_clips: int | None) -> None:
    """Check that the corpus's pictures carry their ground-truth expressions, read by MediaPipe's Face Landmarker:
    r per domain and channel (blink, mouth_open, smile) on values relative to each clip's first frame."""
    from .data.corpus_check import check_corpus

    params = _params(ctx)
    res = check_corpus(params.align.out_dir, params.build.out_dir, out_json, out_png, every, max_clips).summary
    for dom, chans in res["r"].items():
        click.echo(f"{dom:8s} " + "  ".join(f"{ch} r {'-' if v is None else f'{v:.3f}'}" for ch, v in chans.items())
                   + f"  (detection {res['detection_rate'][dom]:.0%})")
    click.echo(f"below target: {', '.join(res['missed'])}" if res["missed"] else "every channel meets its target")
    click.echo(f"wrote {out_json} and {out_png}")


@data.command("import-manifest")
@click.option("--format", "fmt", type=click.Choice(["vox", "celebvhq", "hdtf", "fomm-csv"]), required=True,
              help="Metadata format: VoxCeleb txt files, CelebV-HQ celebvhq_info.json, HDTF_dataset folder, "
                   "first-order-model vox-metadata.csv / taichi-metadata.csv (fomm-csv; also read by --format vox).")
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Manifest CSV to write.")
@click.option("--limit", type=int, default=None, help="Keep only the first N rows.")
def data_import_manifest(fmt: str, input_path: str, out: str, limit: int | None) -> None:
    """Turn VoxCeleb / CelebV-HQ / HDTF / first-order-model metadata into a manifest (segments and face boxes)."""
    from .data.importers import import_manifest

    res = import_manifest(fmt, input_path, out, limit=limit)
    click.echo(f"wrote {res['rows']} rows to {res['out']} ({len(res['skipped'])} entries skipped)")


for _stage in STAGES:
    if _stage.name not in data.commands:  # synth, scrape and build have verbs of their own (more options)
        _stage_verb(*_stage)


# ------------------------------------------------------------------------------------------------ assets
@app.group()
def assets() -> None:
    """External model files: list, fetch, import, build offline."""


@assets.command("list")
def assets_list() -> None:
    """Every asset: status (present / buildable / missing / corrupt), size, licence, features that need it."""
    from .assets import list_table

    click.echo(list_table())


@assets.command("fetch")
@click.argument("name")
def assets_fetch(name: str) -> None:
    """Download asset NAME from its recorded URLs and verify its sha256 (needs internet)."""
    from .assets import fetch

    click.echo(fetch(name))


@assets.command("import")
@click.argument("name")
@click.argument("path", type=click.Path())
def assets_import(name: str, path: str) -> None:
    """Copy a local file (a folder for bfm-3ddfa) in as asset NAME after verifying its sha256."""
    from .assets import import_file

    click.echo(import_file(name, path))


@assets.command("build")
@click.argument("name", required=False)
@click.option("--all", "build_all", is_flag=True, help="Build every buildable asset that is not present yet.")
def assets_build(name: str | None, build_all: bool) -> None:
    """Build asset NAME offline from files inside installed packages (or --all)."""
    from . import assets as A

    if bool(name) == build_all:
        raise UserError("give one asset name or --all", hint="see `toontalker-bench assets list`")
    for built in A.build_all() if build_all else [A.build(name)]:  # type: ignore[arg-type]
        click.echo(built)


# ------------------------------------------------------------------------------------------------ doctor
@app.command("doctor")
@click.option("--short", is_flag=True, help="One line per section.")
def doctor_cmd(short: bool) -> None:
    """Versions, device, ffmpeg, every asset's status and licence, and which features are unavailable and why."""
    from .doctor import doctor

    click.echo(doctor(short))


# ------------------------------------------------------------------------------------------------ evaluate
@app.group()
def evaluate() -> None:
    """Metrics on generated frames, metric validation, benchmark runs."""


class _MetricsOption(click.Option):
    """``--metrics``, whose help lists the registered metrics: read when help is shown (loading them imports torch)."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        from .eval.evaluator import metrics_help

        self.help = metrics_help()
        return super().get_help_record(ctx)


@evaluate.command("metrics")
@click.option("--generated", required=True, type=click.Path(), help="Generated frames: folder of images or a video.")
@click.option("--driving", type=click.Path(), default=None, help="Driving (target) frames, aligned 1:1 with generated.")
@click.option("--source", type=click.Path(), default=None, help="Source image (or folder/video: its first frame).")
@click.option("--reference", type=click.Path(), default=None,
              help="FID/KID reference set: real frames of the generated frames' domain (folder of images or video).")
@click.option("--metrics", "metric_names", default=None, cls=_MetricsOption)
@click.option("--face-stride", type=click.IntRange(min=1), default=1, show_default=True,
              help="Face metrics on every k-th frame.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 or auto (default: run.device).")
@click.option("--batch-size", type=int, default=None, help="Network batch size (default: eval.batch_size).")
@click.option("--id-backend", default=None, help="auto, arcface, dlib-resnet128 or sface (default: eval.id_backend).")
@click.option("--motion-backend", default=None,
              help="bfm3ddfa, bfm3ddfa-jaw-y, corpus-ridge, deep3d or mediapipe (default: eval.motion_backend).")
@click.option("--coeffs-generated", type=click.Path(exists=True, dir_okay=False), default=None,
              help="deep3d backend: (T, 257) .npy coefficients of the generated frames.")
@click.option("--coeffs-driving", type=click.Path(exists=True, dir_okay=False), default=None,
              help="deep3d backend: (T, 257) .npy coefficients of the driving frames.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write the results as JSON.")
@click.pass_context
def evaluate_metrics(ctx: click.Context, generated: str, driving: str | None, source: str | None,
                     reference: str | None, metric_names: str | None, face_stride: int, device: str | None,
                     batch_size: int | None, id_backend: str | None, motion_backend: str | None,
                     coeffs_generated: str | None, coeffs_driving: str | None, json_out: str | None) -> None:
    """Compute metrics of one generated sequence against its driving frames, source image and reference set.

    Face analysis runs at eval.analysis_size (frames of another size are resized for it, bicubic when enlarging);
    pixel metrics compare the frames as given."""
    from .core.io import write_json
    from .eval.evaluator import evaluate_paths

    p = _params(ctx)
    coeffs = {k: v for k, v in (("generated", coeffs_generated), ("driving", coeffs_driving)) if v}
    res = evaluate_paths(generated, driving, source, metric_names, coeffs, reference,
                         device=device or p.run.device, batch_size=batch_size or p.eval.batch_size,
                         id_backend=id_backend or p.eval.id_backend,
                         motion_backend=motion_backend or p.eval.motion_backend, fid_min_frames=p.eval.fid_min_frames,
                         analysis_size=p.eval.analysis_size, face_stride=face_stride, cache=p.eval.cache)
    for v in res.values():
        shown = f"{v.value:.6g}" if v.value is not None else f"n/a ({v.reason})"
        notes = "".join(f" {k}={v.extra[k]}" for k in ("std", "reliable") if k in v.extra)
        click.echo(f"{v.name:<15} {shown:<14} backend={v.backend} n={v.n}{notes}")
    if json_out:
        write_json(json_out, {k: v.to_dict() for k, v in res.items()})


@evaluate.command("validate-metrics")
@click.option("--out", default="docs/metrics-validation.md", show_default=True, type=click.Path(dir_okay=False))
@click.option("--dataset", "dataset_dir", default=None, type=click.Path(),
              help="Built dataset (default: build.out_dir when it exists, else the demo corpus synth.out_dir).")
@click.option("--max-clips", type=int, default=12, show_default=True, help="Clips per domain (identity and FID).")
@click.option("--frames-per-clip", type=int, default=24, show_default=True)
@click.option("--sensitivity-pairs", type=click.IntRange(min=0), default=3, show_default=True,
              help="Pairs per task for the injected-error suite (0 skips it).")
@click.option("--sensitivity-frames", type=click.IntRange(min=2), default=24, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default="docs/metrics-validation.json",
              show_default=True, help="The figures as JSON (what the leaderboard's validation markers read).")
@click.option("--motion-frames-per-clip", type=int, default=48, show_default=True,
              help="Frames per clip for the pose/expression part, which reads every clip (0 = all frames).")
@click.option("--output-size", type=click.IntRange(min=0), default=None,
              help="Read frames as a method of this size outputs them (shrunk, then enlarged as the evaluation does); "
                   "default: the methods' output size in run.profile (the board's); 0 = the dataset's frames.")
@click.pass_context
def evaluate_validate_metrics(ctx: click.Context, out: str, dataset_dir: str | None, max_clips: int,
                              frames_per_clip: int, sensitivity_pairs: int, sensitivity_frames: int, device: str,
                              json_out: str | None, motion_frames_per_clip: int, output_size: int | None) -> None:
    """Measure the metrics against the demo corpus's known motion and identities, and inject known errors into the
    exact answers; write the validation report and its JSON figures."""
    from .eval.validate import board_output_size
    from .eval.validate import run as validate

    p = _params(ctx)
    report = validate(p, out=out, dataset_dir=dataset_dir, max_clips=max_clips,
                      frames_per_clip=frames_per_clip, device=device, json_out=json_out,
                      sensitivity_pairs=sensitivity_pairs, sensitivity_frames=sensitivity_frames,
                      motion_frames_per_clip=motion_frames_per_clip,
                      output_size=board_output_size(p.run.profile) if output_size is None else output_size)
    click.echo(f"wrote {out} and {json_out} ({report['n_frames']} frames from {report['n_clips']} clips, "
               f"{report['seconds']} s)")


# ------------------------------------------------------------------------------------------------ benchmark harness
_TASKS_HELP = "Tasks to evaluate: self_real, self_cartoon, real2cartoon, cartoon2real (repeat or comma-separate; " \
              "default: every task the method supports)."
_DIRTY_HELP = ("Publish even though the code has uncommitted changes (refused by default: such a row cannot name its "
               "code); its code_commit then carries the hash of the diff.")
_HSET_HELP = ("Override a method profile key (train.steps=50, size=128) or a params.yaml key (eval.max_pairs=2, "
              "run.device=cpu); repeatable.")


def _harness_params(ctx: click.Context, sets: tuple[str, ...]):  # noqa: ANN202
    from .runs import split_overrides

    to_params, to_profile = split_overrides(sets)
    return _params(ctx, tuple(to_params)), to_profile


def _task_list(tasks: tuple[str, ...]) -> list[str]:
    return [t for item in tasks for t in item.replace(",", " ").split()]


@app.command("methods")
def methods_cmd() -> None:
    """List the registered reenactment methods, their capabilities and profiles."""
    from .models.base import METHODS
    from .models.registry import profile_names

    for entry in METHODS:
        cap = entry.factory.capabilities  # type: ignore[attr-defined]
        kind = "trainable" if cap.trainable else "fixed"
        scope = "self+cross" if cap.cross_domain else "self only"
        try:
            profiles = ",".join(profile_names(entry.name))
        except UserError as e:
            profiles = f"none ({e.message})"
        click.echo(f"{entry.name:<16} {kind:<9} {scope:<10} profiles={profiles:<12} {entry.summary}")


@app.command("train")
@click.option("--method", required=True, help="Registered method (see `toontalker-bench methods`).")
@click.option("--profile", default=None, help="Profile name (default: run.profile, i.e. tiny).")
@click.option("--run-id", default=None, help="Run directory name under runs/<method>/ (default: a new id).")
@click.option("--resume", is_flag=True, help="Continue --run-id from its newest checkpoint.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=_HSET_HELP)
@click.pass_context
def train_cmd(ctx: click.Context, method: str, profile: str | None, run_id: str | None, resume: bool,
              sets: tuple[str, ...]) -> None:
    """Train a method on the dataset's train split (torchrun-compatible: DDP when WORLD_SIZE > 1)."""
    import os

    from .runs import plan_run, train

    if resume and not run_id:
        raise UserError("--resume needs --run-id", hint="ls runs/<method>/ to find it")
    params, profile_sets = _harness_params(ctx, sets)
    plan = plan_run(params, method, profile, profile_sets, run_id=run_id, resume=resume, evaluate=False)
    rec = train(plan)
    if os.environ.get("RANK", "0") == "0":  # one summary line under torchrun
        click.echo(f"{plan.run_dir}: {rec['steps']} steps in {rec['train_seconds']:.1f} s")
    if rec["interrupted"]:
        click.echo(f"interrupted; checkpoint saved. Continue with: toontalker-bench train --method {method} "
                   f"--run-id {plan.run_id} --resume", err=True)
        raise click.exceptions.Abort()  # main() prints "aborted" and exits 130


def checkpoint_options(fn):  # noqa: ANN001, ANN201 - click decorator
    """The options that pick a trained model: ``--method``, ``--run-id``, ``--checkpoint``, ``--profile``,
    ``--trust-checkpoint``."""
    for option in reversed((
        click.option("--method", required=True, help="Registered method."),
        click.option("--run-id", default=None, help="Run directory under runs/<method>/ (default: a new id)."),
        click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
                     help="Checkpoint (.safetensors, or a release .pth the method can load; default: the run's own)."),
        click.option("--profile", default=None, help="Profile, when the run directory has no config.yaml."),
        click.option("--trust-checkpoint", is_flag=True, help="Allow a full pickle .pth (runs code from the file)."),
    )):
        fn = option(fn)
    return fn


@evaluate.command("run")
@checkpoint_options
@click.option("--tasks", multiple=True, help=_TASKS_HELP)
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="train: pairs drawn the protocol's way from the train clips, into <run>/eval-train/ (never "
                   "published): what the method scores on faces it trained on, against the test pairs.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=_HSET_HELP)
@click.pass_context
def evaluate_run_cmd(ctx: click.Context, method: str, run_id: str | None, checkpoint: str | None,
                     profile: str | None, tasks: tuple[str, ...], trust_checkpoint: bool, split: str,
                     sets: tuple[str, ...]) -> None:
    """Evaluate a checkpoint on the protocol pairs: metrics.json, pairs.csv, sample grids and videos."""
    from .runs import evaluate, plan_run

    params, profile_sets = _harness_params(ctx, sets)
    plan = plan_run(params, method, profile, profile_sets, _task_list(tasks), run_id=run_id, checkpoint=checkpoint,
                    trust_checkpoint=trust_checkpoint, train=False)
    _echo_metrics(evaluate(plan, split))
    click.echo(f"results in {plan.run_dir if split == 'test' else plan.run_dir / f'eval-{split}'}")


@evaluate.command("diagnose")
@checkpoint_options
@click.option("--split", "splits", multiple=True, type=click.Choice(["test", "train"]),
              help="Pairs of these splits (repeatable; default: test and train).")
@click.option("--pairs", "max_pairs", type=click.IntRange(min=0), default=8, show_default=True,
              help="Self-reenactment pairs per task and split (0 = all).")
@click.option("--frames", "max_frames", type=click.IntRange(min=2), default=32, show_default=True,
              help="Driving frames per pair.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=_HSET_HELP)
@click.pass_context
def evaluate_diagnose_cmd(ctx: click.Context, method: str, run_id: str | None, checkpoint: str | None,
                          profile: str | None, trust_checkpoint: bool, splits: tuple[str, ...], max_pairs: int,
                          max_frames: int, sets: tuple[str, ...]) -> None:
    """Why a method does (not) beat copy-source: appearance error (re-drawing the source) against motion error
    (following the driver), on self-reenactment windows whose first frame is the source."""
    from .core.domains import SELF_TASKS
    from .runs import diagnose, plan_run

    params, profile_sets = _harness_params(ctx, sets)
    plan = plan_run(params, method, profile, profile_sets, list(SELF_TASKS), run_id=run_id,
                    checkpoint=checkpoint, trust_checkpoint=trust_checkpoint, train=False)
    click.echo(diagnose(plan, splits or ("test", "train"), max_pairs, max_frames), nl=False)
    click.echo(f"per pair: {plan.run_dir / 'diagnosis.csv'}")


def _echo_metrics(metrics: dict[str, dict[str, float | None]]) -> None:
    for task, values in metrics.items():
        click.echo(f"{task:<13} " + "  ".join(f"{m}={'n/a' if v is None else f'{v:.4g}'}" for m, v in values.items()))


@app.command("run")
@click.option("--method", required=True, help="Registered method (see `toontalker-bench methods`).")
@click.option("--profile", default=None, help="Profile name (default: run.profile, i.e. tiny).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="Skip training; evaluate this.")
@click.option("--tasks", multiple=True, help=_TASKS_HELP)
@click.option("--resume", "resume", default=None, metavar="RUN_ID", help="Continue an interrupted run.")
@click.option("--trust-checkpoint", is_flag=True, help="Allow a full pickle .pth (runs code from the file).")
@click.option("--no-publish", is_flag=True, help="Do not add the results to the leaderboard.")
@click.option("--allow-dirty", is_flag=True, help=_DIRTY_HELP)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=_HSET_HELP)
@click.pass_context
def run_cmd(ctx: click.Context, method: str, profile: str | None, checkpoint: str | None, tasks: tuple[str, ...],
            resume: str | None, trust_checkpoint: bool, no_publish: bool, allow_dirty: bool,
            sets: tuple[str, ...]) -> None:
    """Train (unless --checkpoint) -> evaluate -> runs/<method>/<run-id>/ -> leaderboard."""
    from .runs import plan_run, run

    params, profile_sets = _harness_params(ctx, sets)
    plan = plan_run(params, method, profile, profile_sets, _task_list(tasks), run_id=resume, resume=bool(resume),
                    checkpoint=checkpoint, trust_checkpoint=trust_checkpoint, publish=not no_publish,
                    allow_dirty=allow_dirty)
    out = run(plan, publish_rows=not no_publish)
    if out.interrupted:
        click.echo(f"interrupted; checkpoint saved. Continue with: toontalker-bench run --method {method} "
                   f"--resume {out.run_id}", err=True)
        raise click.exceptions.Abort()  # main() prints "aborted" and exits 130
    _echo_metrics(out.metrics)
    click.echo(f"run {out.run_id}: {out.run_dir}" + (f" -> {out.leaderboard}" if out.leaderboard else ""))


@app.group()
def leaderboard() -> None:
    """Published results: show, render README.md/index.html, publish a run."""


@leaderboard.command("show")
@click.option("--benchmark", default=None, help="Leaderboard name (default: run.benchmark).")
@click.option("--quick", is_flag=True, help="Show the quick runs (a subset of the protocol pairs, e.g. make demo's) "
                                            "instead of the whole-protocol ones.")
@click.pass_context
def leaderboard_show(ctx: click.Context, benchmark: str | None, quick: bool) -> None:
    """Print the newest result per method and task."""
    from .leaderboard.render import show

    p = _params(ctx)
    click.echo(show(p.run.leaderboard_dir, benchmark or p.run.benchmark, quick))


@leaderboard.command("render")
@click.option("--benchmark", default=None, help="Leaderboard name (default: run.benchmark).")
@click.pass_context
def leaderboard_render(ctx: click.Context, benchmark: str | None) -> None:
    """Write leaderboard/README.md, index.html and plots/ from the CSV."""
    from .leaderboard.render import render

    p = _params(ctx)
    md, page = render(p.run.leaderboard_dir, benchmark or p.run.benchmark)
    click.echo(f"wrote {md} and {page}")


@leaderboard.command("publish")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="A finished run directory.")
@click.option("--benchmark", default=None, help="Leaderboard name (default: run.benchmark).")
@click.option("--allow-dirty", is_flag=True, help=_DIRTY_HELP)
@click.pass_context
def leaderboard_publish(ctx: click.Context, run_dir: str, benchmark: str | None, allow_dirty: bool) -> None:
    """Add (or replace) a run's rows in the leaderboard CSV and re-render the pages."""
    from .leaderboard.publish import publish_run

    p = _params(ctx)
    path = publish_run(run_dir, p.run.leaderboard_dir, benchmark or p.run.benchmark, allow_dirty=allow_dirty)
    click.echo(f"published to {path}")


@leaderboard.command("prune")
@click.option("--benchmark", default=None, help="Leaderboard name (default: run.benchmark).")
@click.option("--dataset-version", default=None,
              help="Rows to keep (default: the current dataset's version, from dvc.lock or its tables).")
@click.pass_context
def leaderboard_prune(ctx: click.Context, benchmark: str | None, dataset_version: str | None) -> None:
    """Drop rows measured on other dataset versions (e.g. after the dataset was rebuilt) and the samples of rows
    the board does not show (superseded runs, other versions), then re-render."""
    from .data.version import dataset_version as current_version
    from .leaderboard.artifacts import prune_artifacts
    from .leaderboard.render import render
    from .leaderboard.store import prune

    p = _params(ctx)
    name = benchmark or p.run.benchmark
    keep = dataset_version or current_version(p.build.out_dir)
    rows, samples = prune(p.run.leaderboard_dir, name, keep)
    files = prune_artifacts(p.run.leaderboard_dir)
    render(p.run.leaderboard_dir, name)
    click.echo(f"kept rows of {keep}: dropped {rows} rows, {samples} samples and {files} per-pair tables and "
               "checkpoint files")


@leaderboard.command("verify")
@click.argument("run_id", required=False)
@click.option("--max-pairs", type=click.IntRange(min=0), default=1, show_default=True,
              help="Re-check the first N protocol pairs of each task (0: every pair, and then FID/KID too).")
@click.option("--tasks", default="", help="Comma-separated tasks of the row (default: all of them).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="The run's checkpoint fetched from elsewhere, for a row whose checkpoint was not committed.")
@click.option("--no-cache", is_flag=True, help="Analyse the driving and source faces again instead of reading the "
                                               "on-disk cache.")
@click.option("--benchmark", default=None, help="Leaderboard name (default: run.benchmark).")
@click.pass_context
def leaderboard_verify(ctx: click.Context, run_id: str | None, max_pairs: int, tasks: str, checkpoint: str | None,
                       no_cache: bool, benchmark: str | None) -> None:
    """Re-compute a published row (default: every run the board shows) from the leaderboard's committed checkpoint,
    config and per-pair values; exit 1 when a metric disagrees beyond the tolerance (docs/benchmark.md)."""
    from .leaderboard.verify import current_runs, verify_run

    p = _params(ctx)
    name = benchmark or p.run.benchmark
    if run_id is None:
        if checkpoint:
            raise UserError("--checkpoint belongs to one run", hint="name its RUN_ID")
        run_ids, without = current_runs(p.run.leaderboard_dir, name)
        for r in without:
            click.echo(f"run {r}: no committed checkpoint, not re-checked (`leaderboard verify {r} --checkpoint PATH`)")
    else:
        run_ids = [run_id]
    chosen = [t.strip() for t in tasks.split(",") if t.strip()]
    ok = True
    for r in run_ids:
        result = verify_run(p, r, benchmark=name, max_pairs=max_pairs, tasks=chosen, checkpoint=checkpoint,
                            cache=not no_cache)
        click.echo(result.text() + "\n")
        ok = ok and result.ok
    ctx.exit(0 if ok else 1)


@leaderboard.command("rescore")
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--benchmark", default=None, help="Leaderboard name (default: run.benchmark).")
@click.pass_context
def leaderboard_rescore(ctx: click.Context, run_ids: tuple[str, ...], benchmark: str | None) -> None:
    """Score published runs on the current dataset version without training again: allowed when the data a run
    was trained on is this dataset's train split (its checkpoint records it); each becomes a new run on the board."""
    from .rescore import rescore

    p = _params(ctx)
    for r in run_ids:
        click.echo(f"run {r} rescored as {rescore(p, r, benchmark)}")


@leaderboard.command("backfill")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--benchmark", default=None, help="Leaderboard name (default: run.benchmark).")
@click.pass_context
def leaderboard_backfill(ctx: click.Context, run_dir: str, benchmark: str | None) -> None:
    """Keep the per-pair values, config and checkpoint of a run published before they were kept (its rows gain
    their checkpoint column; no value changes)."""
    from .leaderboard.artifacts import backfill

    p = _params(ctx)
    rows = backfill(run_dir, p.run.leaderboard_dir, benchmark or p.run.benchmark)
    where = rows[0]["checkpoint"] or "not committed (over the budget)"
    click.echo(f"run {rows[0]['run_id']}: {len(rows)} rows; checkpoint {where}")


@app.command("animate")
@click.option("--method", required=True, help="Registered method (see `toontalker-bench methods`).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint (.safetensors, or a release .pth the method can load); default: the leaderboard's best "
                   "published checkpoint of the method (by apd_rel_deg); not needed by copy-source.")
@click.option("--source", required=True, type=click.Path(exists=True, dir_okay=False), help="Source image.")
@click.option("--driving", required=True, type=click.Path(exists=True, dir_okay=False), help="Driving video.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .mp4 (H.264).")
@click.option("--source-domain", type=click.Choice(["cartoon", "real"]), default="cartoon", show_default=True)
@click.option("--driving-domain", type=click.Choice(["cartoon", "real"]), default="real", show_default=True)
@click.option("--profile", default=None, help="Profile (default: the checkpoint's own config, else run.profile).")
@click.option("--paste-back", is_flag=True, help="Paste the animated face back into the full source image.")
@click.option("--no-blend", is_flag=True,
              help="Paste back the whole crop square (hard edge) instead of a feathered ellipse over the face.")
@click.option("--no-colour-match", is_flag=True,
              help="Paste back the method's own colours instead of matching them to the source face (LAB mean/std).")
@click.option("--no-crop", is_flag=True, help="Inputs are already face crops: no detection, just a square resize.")
@click.option("--max-frames", type=int, default=0, help="Use only the first N driving frames (0 = all).")
@click.option("--trust-checkpoint", is_flag=True, help="Allow a full pickle .pth (runs code from the file).")
@click.option("--strip", type=click.Path(dir_okay=False), default=None,
              help="Also write a before/after PNG: the source face beside 6 evenly spaced driving faces over the "
                   "output faces.")
@click.pass_context
def animate_cmd(ctx: click.Context, method: str, checkpoint: str | None, source: str, driving: str, out: str,
                source_domain: str, driving_domain: str, profile: str | None, paste_back: bool, no_blend: bool,
                no_colour_match: bool, no_crop: bool, max_frames: int, trust_checkpoint: bool,
                strip: str | None) -> None:
    """Animate the face in SOURCE with the face motion in DRIVING."""
    from .animate import animate_files, load_method
    from .core.device import resolve_device

    p = _params(ctx)
    model = load_method(p, method, checkpoint, profile, trust_checkpoint)
    res = animate_files(p, model, source, driving, out, source_domain=source_domain,  # type: ignore[arg-type]
                        driving_domain=driving_domain, crop=not no_crop,  # type: ignore[arg-type]
                        paste_back=paste_back, blend=not no_blend, colour_match=not no_colour_match,
                        max_frames=max_frames, device=resolve_device(p.run.device), strip=strip)
    click.echo(f"wrote {res.out} ({res.n_frames} frames)" + (f" and {res.strip}" if res.strip else ""))


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line and exit 2; bugs keep their traceback."""
    try:
        rv = app.main(args=argv, prog_name="toontalker-bench", standalone_mode=False)
    except UserError as e:
        click.echo(f"error: {e.message}", err=True)
        if e.hint:
            click.echo(f"hint: {e.hint}", err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return 2
    except click.exceptions.Exit as e:
        return e.exit_code
    return rv if isinstance(rv, int) else 0  # standalone_mode=False returns ctx.exit()'s code


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
