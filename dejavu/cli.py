"""The ``dejavu`` command line: thin click commands over the library.

Each command parses and validates its options, calls one library function and prints
a short summary. Errors raised as :class:`dejavu.errors.DejavuError` become a one-line
message and exit status 1, with no traceback.
"""

from __future__ import annotations

import logging

import click

import dejavu
from dejavu.errors import DejavuError


class _Group(click.Group):
    """A click group that turns DejavuError into a clean message and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DejavuError as err:
            raise click.ClickException(str(err)) from err


@click.group(cls=_Group)
@click.version_option(dejavu.__version__, prog_name="dejavu")
@click.option("-v", "--verbose", is_flag=True, help="Log debugging messages.")
def main(verbose: bool) -> None:
    """Audit CLIP-style models for deja vu memorization of their training data."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )


def _parse_float_list(ctx, param, value):
    """Parse a comma-separated list of numbers, such as ``0.001,0.01,0.1``."""
    if value is None or isinstance(value, list | tuple):
        return value
    try:
        return [float(part) for part in str(value).split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a comma-separated list of numbers, e.g. 0.01,0.1"
        ) from None


def _parse_int_list(ctx, param, value):
    """Parse a comma-separated list of positive integers, such as ``1,5,10``."""
    if value is None or isinstance(value, list | tuple):
        return value
    try:
        numbers = [int(part) for part in str(value).split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a comma-separated list of integers, e.g. 1,5,10"
        ) from None
    if not numbers or any(n < 1 for n in numbers):
        raise click.BadParameter(f"{value!r} must list integers of at least 1")
    return numbers


def _load_config_section(path: str, section: str) -> dict:
    """Read a YAML config and return its ``section`` (or the whole file).

    Relative paths in the file are resolved against the file's folder.
    """
    from pathlib import Path

    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as err:
        raise click.BadParameter(f"cannot read config {path}: {err}") from err
    if not isinstance(data, dict):
        raise click.BadParameter(f"config {path} must be a YAML mapping")
    values = data.get(section, data)
    if not isinstance(values, dict):
        raise click.BadParameter(
            f"section {section!r} of config {path} must be a mapping"
        )
    base = Path(path).resolve().parent
    resolved = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name in _PATH_OPTIONS and isinstance(value, str) and value:
            candidate = Path(value).expanduser()
            if not candidate.is_absolute():
                candidate = base / candidate
            value = str(candidate)
        resolved[name] = value
    return resolved


# Options whose values are files or folders; a config file gives them relative to
# its own folder.
_PATH_OPTIONS = {
    "target",
    "reference",
    "target_set",
    "control_set",
    "public_set",
    "out",
    "target_labels",
    "control_labels",
    "public_labels",
    "cache_dir",
}


def _apply_config(ctx: click.Context, params: dict, section: str) -> dict:
    """Fill options not given on the command line from ``--config``."""
    path = params.pop("config", None)
    if not path:
        return params
    from click.core import ParameterSource

    values = _load_config_section(path, section)
    unknown = sorted(set(values) - set(params))
    if unknown:
        raise click.BadParameter(
            f"config {path} sets unknown option(s) {', '.join(unknown)}; "
            f"see 'dejavu {section} --help'",
            param_hint="--config",
        )
    for name, value in values.items():
        if ctx.get_parameter_source(name) != ParameterSource.COMMANDLINE:
            params[name] = value
    return params


@main.command()
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML file setting any of these options (its `audit:` section, or "
    "the whole file); command-line flags win.",
)
@click.option("--target", help="Target model: checkpoint file or open_clip name.")
@click.option("--reference", help="Reference CLIP: checkpoint file or open_clip name.")
@click.option(
    "--reference-text",
    "reference_text",
    is_flag=False,
    flag_value="default",
    help="Text-only reference for the one-model test: a sentence-transformers "
    "folder or name; 'default' (or no value) is the bundled all-MiniLM-L6-v2.",
)
@click.option("--target-set", help="Manifest of the target model's training records.")
@click.option("--public-set", help="Manifest of the public images.")
@click.option("--control-set", help="Manifest of records neither model trained on.")
@click.option("--out", help="Run folder to write.")
@click.option(
    "--model",
    help="Architecture of both checkpoints when they carry no "
    "config: open_clip name, hf-hub:/local-dir: name, or config JSON file.",
)
@click.option("--target-model", help="Architecture of the target checkpoint.")
@click.option("--reference-model", help="Architecture of the reference checkpoint.")
@click.option(
    "--k",
    callback=_parse_int_list,
    default="1,5,10",
    show_default=True,
    help="Numbers of nearest public neighbours, comma-separated.",
)
@click.option(
    "--mode",
    type=click.Choice(["t2i", "t2t"]),
    default="t2i",
    show_default=True,
    help="t2i: captions query public images; t2t: captions query public captions.",
)
@click.option(
    "--rank",
    type=click.Choice(["min_dist", "correct", "gap"]),
    default="min_dist",
    show_default=True,
    help="Ranking of records for the top-L scores shown first.",
)
@click.option(
    "--top-l",
    "top_l",
    callback=_parse_float_list,
    default="0.001,0.01,0.1",
    show_default=True,
    help="Fractions of records in the top-L scores, comma-separated.",
)
@click.option(
    "--top-m",
    type=int,
    help="Predict only the m most frequent labels "
    "among the neighbours (default: all of them).",
)
@click.option(
    "--bootstrap",
    type=int,
    default=1000,
    show_default=True,
    help="Bootstrap resamples for every confidence interval.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap."
)
@click.option(
    "--batch-size",
    type=int,
    default=64,
    show_default=True,
    help="Images per forward pass.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option(
    "--target-labels",
    type=click.Path(exists=True, dir_okay=False),
    help="Labels file for the target set (from 'dejavu annotate').",
)
@click.option(
    "--control-labels",
    type=click.Path(exists=True, dir_okay=False),
    help="Labels file for the control set.",
)
@click.option(
    "--public-labels",
    type=click.Path(exists=True, dir_okay=False),
    help="Labels file for the public set.",
)
@click.option(
    "--detector",
    help="Detector weights that label sets without a labels "
    "file (default: the manifests' objects column).",
)
@click.option("--cache-dir", help="Cache folder (default: RUN_DIR/cache).")
@click.option(
    "--skip-bad-records",
    is_flag=True,
    help="Leave out bad records and list them in summary.json.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace a run folder written with other settings.",
)
@click.option("--quiet", is_flag=True, help="Hide progress bars.")
@click.pass_context
def audit(ctx: click.Context, **params) -> None:
    """Run the deja vu memorization test on a target model.

    \b
    Two-model test:
      dejavu audit --target T.pt --reference R.pt --target-set A.parquet \\
                   --public-set P.parquet --out runs/audit
    One-model test (text-only reference):
      dejavu audit --target T.pt --reference-text default ...
    """
    from dejavu.audit import AuditConfig, run_audit

    params = _apply_config(ctx, params, "audit")
    for required in ("target", "target_set", "public_set", "out"):
        if not params.get(required):
            raise click.UsageError(
                f"missing option --{required.replace('_', '-')} (or set it in --config)"
            )
    quiet = params.pop("quiet")
    config = AuditConfig(**params, progress=not quiet)
    run_dir = run_audit(config)
    _print_audit_table(run_dir)


def _print_audit_table(run_dir) -> None:
    import json
    from pathlib import Path

    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    click.echo(f"dejavu audit ({summary['test']}): {run_dir}")
    click.echo(f"{'set':<11}{'k':>4}  {'PPG':>24}  {'PRG':>24}  {'AUCG':>24}")
    for entry in summary["results"]:
        cells = [
            f"{entry[m]['value']:+.3f} [{entry[m]['ci_low']:+.3f}, "
            f"{entry[m]['ci_high']:+.3f}]"
            for m in ("ppg", "prg", "aucg")
        ]
        click.echo(
            f"{entry['set']:<11}{entry['k']:>4}  "
            + "  ".join(f"{c:>24}" for c in cells)
        )
    for note in summary.get("notes", []):
        click.echo(f"note: {note}")
    report = Path(run_dir) / "report.html"
    if report.exists():
        click.echo(f"report: {report}")
