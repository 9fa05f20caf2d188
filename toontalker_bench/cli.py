"""The ``toontalker-bench`` command line. Each verb parses its options and calls one library function."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .errors import UserError

SET_HELP = "Override a params.yaml key, e.g. --set faces.detect_every=10 (repeatable)."


def _params(ctx: click.Context, overrides: tuple[str, ...] = ()):  # noqa: ANN202
    from .config import load_params

    root = ctx.find_root().obj or {}
    return load_params(root.get("params"), tuple(root.get("overrides", ())) + tuple(overrides))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--params", "params_path", type=click.Path(dir_okay=False), default=None,
              help="Parameters file (default: ./params.yaml if present).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.version_option(package_name="toontalker-bench")
@click.pass_context
def app(ctx: click.Context, params_path: str | None, overrides: tuple[str, ...], verbose: int) -> None:
    """Cross-domain face reenactment: build the cartoon/real dataset and benchmark methods on it."""
    from .progress import setup_logging

    setup_logging(verbose)
    ctx.obj = {"params": params_path, "overrides": overrides}


# ------------------------------------------------------------------------------------------------ data
@app.group()
def data() -> None:
    """Dataset construction stages (what `dvc repro` runs)."""


# ------------------------------------------------------------------------------------------------ assets
@app.group()
def assets() -> None:
    """External model files: list, fetch, import, build offline."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line and exit 2; bugs keep their traceback."""
    try:
        app.main(args=argv, prog_name="toontalker-bench", standalone_mode=False)
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
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
