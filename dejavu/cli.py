"""The ``dejavu`` command line: thin click commands over the library.

Each command parses and validates its options, calls one library function and prints
a short summary. Errors raised as :class:`dejavu.errors.DejavuError` become a one-line
message and exit status 1, with no traceback.
"""

from __future__ import annotations

import logging

import click

import dejavu
from dejavu.errors import DejavuError, InputError


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
    # Other libraries (open_clip, ultralytics) log to the root logger at INFO; show
    # only their warnings, and dejavu's own progress messages.
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("dejavu").setLevel(logging.DEBUG if verbose else logging.INFO)


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


def _apply_config(ctx: click.Context, params: dict, section: str) -> dict:
    """Fill options not given on the command line from ``--config``."""
    path = params.pop("config", None)
    if not path:
        return params
    from click.core import ParameterSource

    from dejavu.config import read_config_section

    try:
        values, relative_to_out = read_config_section(path, section, params.get("out"))
    except InputError as err:
        raise click.BadParameter(str(err), param_hint="--config") from err
    unknown = sorted(set(values) - set(params))
    if unknown:
        raise click.BadParameter(
            f"config {path} sets unknown option(s) {', '.join(unknown)}; "
            f"see 'dejavu {section} --help'",
            param_hint="--config",
        )
    options = {param.name: param for param in ctx.command.params}
    for name, value in values.items():
        from_command_line = (
            ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE
        )
        # With paths relative to --out, the command line's --out is the base folder
        # and the config's `out` has already been resolved inside it.
        if not from_command_line or (name == "out" and relative_to_out):
            option = options[name]
            # A YAML list of a comma-separated option (k: [1, 5]) becomes the
            # string the command line would give, so that it gets the same checks.
            if isinstance(value, list | tuple) and option.nargs == 1:
                value = ",".join(str(item) for item in value)
            try:
                params[name] = option.process_value(ctx, value)
            except click.BadParameter as err:
                err.param_hint = f"'{name}' in config {path}"
                raise
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
@click.option(
    "--conf",
    type=click.FloatRange(0, 1),
    default=0.25,
    show_default=True,
    help="Detector confidence threshold, with --detector.",
)
@click.option(
    "--imgsz",
    type=click.IntRange(min=32),
    help="Detector input size in "
    "pixels, with --detector (default: the size it was trained at).",
)
@click.option(
    "--label-map",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML label map from detector class names to the data set's "
    "labels, with --detector.",
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
    detector_options = {
        "conf": params.pop("conf"),
        "imgsz": params.pop("imgsz"),
        "label_map": params.pop("label_map"),
    }
    if params.get("detector"):
        params["detector_options"] = detector_options
    config = AuditConfig(**params, progress=not quiet)
    run_dir = run_audit(config)
    _print_audit_table(run_dir)


def _print_audit_table(run_dir) -> None:
    import json
    from pathlib import Path

    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    click.echo(f"dejavu audit ({summary['test']} test): {run_dir}")
    _print_results(summary["results"])
    one_model = summary.get("one_model")
    if one_model:
        reference = one_model["reference"].get("architecture") or "text encoder"
        click.echo(f"one-model test (text-only reference {reference}):")
        _print_results(one_model["results"])
        _print_agreement(one_model["agreement"])
    for note in summary.get("notes", []):
        click.echo(f"note: {note}")
    report = Path(run_dir) / "report.html"
    if report.exists():
        click.echo(f"report: {report}")


def _print_results(results: list) -> None:
    click.echo(f"{'set':<11}{'k':>4}  {'PPG':>24}  {'PRG':>24}  {'AUCG':>24}")
    for entry in results:
        cells = [_interval_text(entry[m]) for m in ("ppg", "prg", "aucg")]
        click.echo(
            f"{entry['set']:<11}{entry['k']:>4}  "
            + "  ".join(f"{c:>24}" for c in cells)
        )


def _interval_text(interval: dict) -> str:
    # The bounds are null when the run used --bootstrap 0.
    if interval["ci_low"] is None or interval["ci_high"] is None:
        return f"{interval['value']:+.3f}"
    return (
        f"{interval['value']:+.3f} [{interval['ci_low']:+.3f}, "
        f"{interval['ci_high']:+.3f}]"
    )


def _print_agreement(agreement: list) -> None:
    click.echo(
        "agreement of the two tests: Spearman rho of per-record recall gaps, and "
        "the share of top-L records (gap ranking) both tests select"
    )
    click.echo(f"{'set':<11}{'k':>4}  {'Spearman':>18}  top-L overlap")
    for entry in agreement:
        if entry["spearman"] is None:
            rho = "undefined"
        else:
            rho = f"{entry['spearman']:+.3f} (p={entry['spearman_p_value']:.1g})"
        overlaps = ", ".join(
            f"{item['fraction'] * 100:g}% (L={item['l']}): {item['overlap']:.2f}"
            for item in entry["top_l_overlap"]
        )
        click.echo(f"{entry['set']:<11}{entry['k']:>4}  {rho:>18}  {overlaps}")


def _parse_name_list(ctx, param, value):
    """Parse a comma-separated list of class names, such as ``cat,dining table``."""
    if value is None or isinstance(value, list | tuple):
        return value
    names = [part.strip() for part in str(value).split(",") if part.strip()]
    if not names:
        raise click.BadParameter(f"{value!r} names no class, e.g. 'cat,dog'")
    return names


@main.command()
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True),
    help="Manifest of the records to annotate (CSV, TSV, JSONL, Parquet or "
    "WebDataset shards).",
)
@click.option(
    "--detector",
    help="Detector weights: a local ultralytics .pt file, 'scenes' for the "
    "bundled scene detector, or a published name such as yolo11n.pt (downloaded "
    "only when online).",
)
@click.option(
    "--coco",
    type=click.Path(exists=True, dir_okay=False),
    help="COCO instances JSON file to import labels and boxes from, instead of "
    "a detector.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="Labels file (Parquet) to write.",
)
@click.option(
    "--conf",
    type=click.FloatRange(0, 1),
    default=0.25,
    show_default=True,
    help="Minimum box confidence kept.",
)
@click.option(
    "--imgsz",
    type=click.IntRange(min=32),
    help="Inference size in pixels (default: the size the weights were trained "
    "at, else 640).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Images per detector forward pass.",
)
@click.option(
    "--device",
    help="Detector device: cpu, 0, cuda:0 (default: the first GPU if any, else cpu).",
)
@click.option(
    "--classes",
    callback=_parse_name_list,
    help="Comma-separated class names to keep; for open-vocabulary weights "
    "(YOLO-World, YOLOE) they set the vocabulary (default: all classes).",
)
@click.option(
    "--label-map",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML file mapping detector or COCO class names to the data set's "
    "labels (name: label, or name: null to drop).",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    help="Detection cache folder (default: the labels file's name with the "
    "suffix .cache, next to it).",
)
@click.option(
    "--skip-bad-records",
    is_flag=True,
    help="Leave out records whose image cannot be decoded, instead of stopping.",
)
@click.option("--quiet", is_flag=True, help="Hide progress bars.")
def annotate(
    data,
    detector,
    coco,
    out,
    conf,
    imgsz,
    batch_size,
    device,
    classes,
    label_map,
    cache_dir,
    skip_bad_records,
    quiet,
) -> None:
    """Label the objects in every image of a manifest and write a labels file.

    \b
    dejavu annotate --data public.parquet --detector yolo11n.pt --out labels.parquet
    dejavu annotate --data val.csv --coco instances_val2017.json --out labels.parquet

    Detections are cached by image content and detector settings, so a rerun on a
    grown manifest detects only the new images and an interrupted run resumes.
    Detector weights are unpickled when loaded: use only weights you trust.
    """
    from pathlib import Path

    from dejavu.annotate import annotate as annotate_manifest
    from dejavu.data.manifest import read_manifest

    if (detector is None) == (coco is None):
        raise click.UsageError("pass exactly one of --detector and --coco")
    manifest = read_manifest(
        data,
        set_name="data set",
        skip_bad_records=skip_bad_records,
        check_images=False,
        progress=not quiet,
    )
    options = {
        "conf": conf,
        "imgsz": imgsz,
        "batch_size": batch_size,
        "device": device,
        "classes": classes,
        "label_map": label_map,
    }
    if cache_dir is None:
        cache_dir = Path(out).with_suffix(".cache")
    result = annotate_manifest(
        manifest,
        out,
        detector=detector,
        coco_file=coco,
        options=options,
        cache_dir=cache_dir,
        skip_bad_records=skip_bad_records,
        progress=not quiet,
    )
    skipped = len(manifest.skipped) + len(result.skipped)
    labelled = sum(1 for labels in result.frame["labels"] if labels)
    click.echo(
        f"wrote {out}: {len(result.frame)} records, {labelled} with labels, "
        f"{result.detected} images detected now, {skipped} skipped as bad"
    )


@main.command("train-detector")
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True),
    help="YOLO data set: the yolo folder of the scene generator, or a data.yaml "
    "with train and val parts.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder; the best weights are written to OUT/best.pt.",
)
@click.option(
    "--model",
    default="yolo11n.yaml",
    show_default=True,
    help="Model YAML to train from scratch, or .pt weights to fine-tune.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=40,
    show_default=True,
    help="Training epochs.",
)
@click.option(
    "--imgsz",
    type=click.IntRange(min=32),
    default=64,
    show_default=True,
    help="Training and validation image size in pixels.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Images per training batch.",
)
@click.option("--device", help="cpu, 0, cuda:0 (default: the first GPU if any).")
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed.")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Data loader worker processes.",
)
@click.option(
    "--optimizer",
    default="SGD",
    show_default=True,
    help="ultralytics optimizer name (SGD, AdamW, auto, ...).",
)
@click.option(
    "--lr0",
    type=float,
    default=0.01,
    show_default=True,
    help="Initial learning rate.",
)
@click.option(
    "--mosaic",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Probability of mosaic augmentation (four images tiled into one, which "
    "halves object sizes; ultralytics' own default is 1.0).",
)
@click.option(
    "--cache-images",
    is_flag=True,
    help="Keep decoded training images in memory.",
)
def train_detector(
    data,
    out,
    model,
    epochs,
    imgsz,
    batch_size,
    device,
    seed,
    workers,
    optimizer,
    lr0,
    mosaic,
    cache_images,
) -> None:
    """Train a YOLO detector with ultralytics' trainer and report its val mAP.

    \b
    dejavu train-detector --data scenes/yolo --model yolo11n.yaml \\
                          --epochs 40 --imgsz 64 --out runs/detector
    """
    from pathlib import Path

    from dejavu._io import write_json
    from dejavu.annotate.yolo import train_detector as train

    metrics = train(
        data,
        out,
        model=model,
        epochs=epochs,
        imgsz=imgsz,
        batch_size=batch_size,
        device=device,
        seed=seed,
        workers=workers,
        optimizer=optimizer,
        lr0=lr0,
        mosaic=mosaic,
        cache_images=cache_images,
    )
    write_json(Path(out) / "metrics.json", metrics)
    click.echo(f"weights: {metrics['weights']}")
    click.echo(f"val mAP50 {metrics['map50']:.3f}, mAP50-95 {metrics['map50_95']:.3f}")


@main.command()
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True),
    help="Manifest of the training set (id, image, caption; optional repeats).",
)
@click.option(
    "--model",
    default="dejavu-tiny-vit",
    show_default=True,
    help="Architecture: packaged config (dejavu-tiny-vit, dejavu-tiny-resnet), "
    "open_clip model name, or model config JSON file.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Run folder for checkpoints/epoch_E.pt and train_log.jsonl; a rerun with "
    "the same settings resumes there.",
)
@click.option("--epochs", type=int, required=True, help="Passes over the data.")
@click.option(
    "--batch-size", type=int, default=64, show_default=True, help="Records per batch."
)
@click.option(
    "--lr", type=float, default=1e-3, show_default=True, help="Peak learning rate."
)
@click.option(
    "--warmup",
    type=int,
    default=50,
    show_default=True,
    help="Optimizer steps of linear learning-rate warmup.",
)
@click.option(
    "--wd",
    "weight_decay",
    type=float,
    default=0.1,
    show_default=True,
    help="AdamW weight decay (not applied to gains, biases, logit scale).",
)
@click.option(
    "--text-mask-rate",
    type=float,
    default=0.0,
    show_default=True,
    help="Probability in [0, 1) of dropping or masking each caption word, drawn "
    "afresh every epoch.",
)
@click.option(
    "--text-mask-mode",
    type=click.Choice(["drop", "mask"]),
    default="drop",
    show_default=True,
    help="Drop the chosen words or replace them by a placeholder word.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of all randomness."
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto, cpu, cuda or cuda:N; CUDA trains in mixed precision.",
)
@click.option(
    "--accum-freq",
    type=int,
    default=1,
    show_default=True,
    help="Batches pooled into one contrastive batch per optimizer step.",
)
@click.option(
    "--save-every",
    type=int,
    help="Also keep the checkpoints of every N-th epoch (default: the last only).",
)
@click.option(
    "--resume",
    type=click.Path(exists=True, dir_okay=False),
    help="Checkpoint to continue training from.",
)
@click.option(
    "--workers",
    type=int,
    default=0,
    show_default=True,
    help="Processes decoding images (0: the training process).",
)
@click.option(
    "--threads",
    type=int,
    help="CPU threads for torch while training (default: one per core); 1 can "
    "be much faster on a machine shared with other jobs.",
)
@click.option(
    "--skip-bad-records",
    is_flag=True,
    help="Leave out records with missing or undecodable images.",
)
@click.option(
    "--overwrite", is_flag=True, help="Replace a run folder written otherwise."
)
@click.option("--quiet", is_flag=True, help="Hide the progress bar.")
def train(quiet: bool, **params) -> None:
    """Train a CLIP model on image-caption records.

    \b
    Example:
      dejavu train --data scenes/target.parquet --model dejavu-tiny-vit \\
                   --out runs/target --epochs 40 --text-mask-rate 0.3
    """
    from dejavu.train import train_clip

    checkpoint = train_clip(**params, progress=not quiet)
    click.echo(f"checkpoint: {checkpoint}")


@main.command()
@click.option(
    "--checkpoint",
    required=True,
    help="Model to score: checkpoint file or open_clip pretrained name.",
)
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True),
    help="Labelled manifest: a label column (accuracy) or objects (mAP).",
)
@click.option(
    "--model", help="Architecture of a checkpoint that carries no model config."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Also write the JSON result to this file.",
)
@click.option(
    "--test-fraction",
    type=float,
    default=0.2,
    show_default=True,
    help="Fraction of records held out to score the linear probe.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the linear probe's train/test split.",
)
@click.option(
    "--batch-size", type=int, default=64, show_default=True, help="Images per batch."
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option(
    "--skip-bad-records",
    is_flag=True,
    help="Leave out records with missing or undecodable images.",
)
@click.option("--quiet", is_flag=True, help="Hide the progress bar.")
def evaluate(out, quiet: bool, **params) -> None:
    """Score zero-shot and linear-probe utility of a CLIP model, as JSON."""
    import json

    from dejavu._io import write_json
    from dejavu.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(**params, progress=not quiet)
    if out:
        write_json(out, result)
    click.echo(json.dumps(result, indent=2))


def _parse_set_size(ctx, param, value):
    """Parse a set size: a whole number of records or a fraction such as 0.25."""
    if value is None or isinstance(value, int | float):
        return value
    text = str(value).strip()
    try:
        if any(ch in text for ch in ".eE"):
            return float(text)
        return int(text)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither a number of records (500) nor a fraction (0.25)"
        ) from None


_SET_SIZE_HELP = "Records in the {} set: a count (500) or a fraction (0.25)."


@main.command()
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True),
    help="Manifest to split (CSV, TSV, JSONL, Parquet or WebDataset shards).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for the set manifests and split.json.",
)
@click.option(
    "--target-size", callback=_parse_set_size, help=_SET_SIZE_HELP.format("target")
)
@click.option(
    "--reference-size",
    callback=_parse_set_size,
    help=_SET_SIZE_HELP.format("reference"),
)
@click.option(
    "--control-size", callback=_parse_set_size, help=_SET_SIZE_HELP.format("control")
)
@click.option(
    "--public-size", callback=_parse_set_size, help=_SET_SIZE_HELP.format("public")
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--stratify",
    metavar="COLUMN",
    help="Keep this column's mix of values equal across the sets (default: none).",
)
@click.option(
    "--drop-duplicates",
    is_flag=True,
    help="Keep one record per group of identical images (default: keep each "
    "group together in one set).",
)
@click.option(
    "--skip-bad-records",
    is_flag=True,
    help="Leave out records with missing or undecodable images.",
)
@click.option("--overwrite", is_flag=True, help="Replace a folder written otherwise.")
@click.option("--quiet", is_flag=True, help="Hide progress bars.")
def split(
    data,
    out,
    seed,
    stratify,
    drop_duplicates,
    skip_bad_records,
    overwrite,
    quiet,
    **sizes,
) -> None:
    """Split a manifest into disjoint target, reference, control and public sets.

    \b
    Example:
      dejavu split --data records.parquet --out splits --target-size 0.25 \\
                   --reference-size 0.25 --control-size 0.1 --public-size 0.4
    """
    import json
    from pathlib import Path

    from dejavu.data.split import split_manifest

    sizes = {
        name.removesuffix("_size"): value
        for name, value in sizes.items()
        if value is not None
    }
    written = split_manifest(
        data,
        out,
        sizes,
        seed=seed,
        stratify=stratify,
        drop_duplicates=drop_duplicates,
        skip_bad_records=skip_bad_records,
        overwrite=overwrite,
        progress=not quiet,
    )
    report = json.loads((Path(out) / "split.json").read_text(encoding="utf-8"))
    for name, path in written.items():
        click.echo(f"{name:<10} {report['sets'][name]['records']:>7} records  {path}")
    click.echo(f"unassigned {report['unassigned_records']:>7} records")
    groups = report["duplicate_groups"]
    if groups:
        click.echo(
            f"duplicates: {len(groups)} groups of identical images "
            f"({sum(len(g) for g in groups)} records), listed in split.json"
        )


def _parse_count_range(ctx, param, value):
    """Parse ``N`` or ``MIN-MAX`` into an inclusive (min, max) pair of integers."""
    if value is None or isinstance(value, list | tuple):
        return value
    parts = str(value).split("-")
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2):
        raise click.BadParameter(f"{value!r} is not a count or a range such as 2-5")
    return (numbers[0], numbers[-1])


def _parse_word_list(ctx, param, value):
    """Parse a comma-separated list of words, such as ``street,farm``."""
    if value is None or isinstance(value, list | tuple):
        return value
    words = [part.strip() for part in str(value).split(",") if part.strip()]
    if not words:
        raise click.BadParameter(f"{value!r} lists nothing; give comma-separated names")
    return words


@main.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder to write the images, manifests and copies into.",
)
@click.option(
    "--n-target",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Number of target-set images.",
)
@click.option(
    "--n-reference",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Number of reference-set images.",
)
@click.option(
    "--n-control",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Number of control-set images.",
)
@click.option(
    "--n-public",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Number of public-set images.",
)
@click.option(
    "--n-detector",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Number of images for training and validating a detector.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--size",
    type=int,
    default=64,
    show_default=True,
    help="Image width and height, in pixels (at least 32).",
)
@click.option(
    "--objects-per-image",
    callback=_parse_count_range,
    default="2-5",
    show_default=True,
    help="Number of objects in one image: N or an inclusive range MIN-MAX.",
)
@click.option(
    "--mention-fraction",
    type=float,
    default=0.5,
    show_default=True,
    help="Expected fraction of an image's object classes that its caption names, "
    "in [0, 1]; captions name at least one and never all of two or more.",
)
@click.option(
    "--scene-types",
    callback=_parse_word_list,
    help="Comma-separated scene types to draw from (default: all of street, "
    "kitchen, farm, beach, home, forest, park, office).",
)
@click.option(
    "--backgrounds",
    type=click.Choice(["procedural", "photo", "mixed"]),
    default="procedural",
    show_default=True,
    help="Procedural textures, crops of scikit-image's public-domain photographs, "
    "or half of each.",
)
@click.option(
    "--formats",
    callback=_parse_word_list,
    default="manifest,yolo",
    show_default=True,
    help="Comma-separated outputs: manifest (always written), yolo (the detector "
    "split in YOLO layout), webdataset (tar shards of every split).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Processes that draw scenes in parallel (default: 2, or 1 on a "
    "single-CPU machine).",
)
@click.option("--overwrite", is_flag=True, help="Replace a folder written otherwise.")
@click.option("--quiet", is_flag=True, help="Hide progress bars.")
def scenes(out, quiet: bool, **params) -> None:
    """Generate captioned scene images with known objects, split into sets.

    \b
    Example:
      dejavu scenes --out data/scenes --n-target 500 --n-reference 500 \\
                    --n-control 500 --n-public 5000 --n-detector 2000 --seed 0
    """
    from dejavu.data.scenes import write_scenes

    manifests = write_scenes(out, **params, progress=not quiet)
    for split, path in manifests.items():
        click.echo(f"{split:<10} {params[f'n_{split}']:>7} images  {path}")


@main.command()
@click.argument(
    "run_dirs",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False),
    metavar="RUN_DIR...",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=True),
    help="HTML file (or folder) to write. One run: default RUN_DIR/report.html, "
    "with summary.md and memorized.csv beside it. Several runs: required; writes "
    "one comparison page.",
)
@click.option(
    "--redact",
    type=click.Choice(["blur", "ids", "none"]),
    default="blur",
    show_default=True,
    help="How the gallery shows training records: blur their images and keep "
    "captions, show record ids only (no image data at all), or show them unchanged.",
)
@click.option(
    "--gallery-size",
    type=click.IntRange(min=0),
    default=12,
    show_default=True,
    help="Member records shown in the gallery, largest recall gap first.",
)
@click.option("--quiet", is_flag=True, help="Hide progress bars.")
def report(run_dirs, out, redact: str, gallery_size: int, quiet: bool) -> None:
    """Write the review report of an audit run, or compare several runs.

    \b
    Examples:
      dejavu report runs/audit
      dejavu report runs/audit --redact ids --out share/report.html
      dejavu report runs/rate-0.0 runs/rate-0.3 runs/rate-0.6 --out compare.html
    """
    from dejavu.report import compare_runs, write_report

    if len(run_dirs) == 1:
        path = write_report(
            run_dirs[0],
            out=out,
            redact=redact,
            gallery_size=gallery_size,
            progress=not quiet,
        )
        click.echo(f"report: {path}")
        click.echo(f"summary: {path.parent / 'summary.md'}")
        click.echo(f"ranked records: {path.parent / 'memorized.csv'}")
        return
    if out is None:
        raise click.UsageError("comparing several runs needs --out FILE")
    path = compare_runs(run_dirs, out)
    click.echo(f"comparison of {len(run_dirs)} runs: {path}")


@main.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder of the demo run; the report is OUT/audit/report.html.",
)
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    help="Demo settings, one section per stage (default: the packaged "
    "demo.yaml; configs/demo.yaml is a copy to edit).",
)
@click.option(
    "--overwrite", is_flag=True, help="Replace a folder written with other settings."
)
@click.option("--quiet", is_flag=True, help="Hide progress bars.")
def demo(out, config, overwrite, quiet) -> None:
    """Run the whole chain on generated scenes and write the report.

    Generates scene data, trains a target and a reference CLIP on disjoint splits,
    labels the images with the shipped scene detector, audits the pair with a
    control set, and writes the report. A rerun skips the finished stages.
    """
    from dejavu.demo import run_demo

    report = run_demo(out, config_path=config, overwrite=overwrite, progress=not quiet)
    _print_audit_table(report.parent)


@main.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Run folder; validation.md and validation.json are written there.",
)
@click.option(
    "--n-records",
    type=click.IntRange(min=20),
    default=500,
    show_default=True,
    help="Records per split (target, reference, "
    "control, and the other records of the non-member case).",
)
@click.option(
    "--n-public",
    type=click.IntRange(min=10),
    default=5000,
    show_default=True,
    help="Public images.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=40,
    show_default=True,
    help="Training epochs of every model.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Training batch size of every model; at most --n-records.",
)
@click.option(
    "--text-mask-rate",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.5,
    show_default=True,
    help="Caption randomization rate of the text-randomization case.",
)
@click.option(
    "--n-canaries",
    type=click.IntRange(min=2),
    default=20,
    show_default=True,
    help="Planted canary records.",
)
@click.option(
    "--bootstrap",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Bootstrap resamples of every interval.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the data, the training and the bootstrap.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option(
    "--overwrite", is_flag=True, help="Replace a folder written with other settings."
)
@click.option("--quiet", is_flag=True, help="Hide progress bars.")
def validate(
    out,
    n_records,
    n_public,
    epochs,
    batch_size,
    text_mask_rate,
    n_canaries,
    bootstrap,
    seed,
    device,
    overwrite,
    quiet,
) -> None:
    """Check on scenes that the audit finds planted memorization and no other.

    Trains six tiny CLIPs (a target, a reference, a target on other records, a pair
    trained with text randomization, and a target with planted canaries), audits
    them, and exits with status 1 when any expectation fails.
    """
    from pathlib import Path

    from dejavu.validate import ValidationSettings, run_validation

    settings = ValidationSettings(
        n_records=n_records,
        n_public=n_public,
        epochs=epochs,
        batch_size=batch_size,
        text_mask_rate=text_mask_rate,
        n_canaries=n_canaries,
        bootstrap=bootstrap,
        seed=seed,
        device=device,
    )
    checks = run_validation(out, settings, overwrite=overwrite, progress=not quiet)
    # The checks' table and the canary controls, as written to the run folder.
    click.echo(Path(out, "validation.md").read_text(encoding="utf-8"))
    failed = [c for c in checks if not c.passed]
    if failed:
        raise click.ClickException(
            f"{len(failed)} of {len(checks)} checks failed; details in "
            f"{out}/validation.md"
        )
    click.echo(f"all {len(checks)} checks passed; details in {out}/validation.md")


@main.command()
@click.option(
    "--target-set",
    required=True,
    type=click.Path(exists=True),
    help="Manifest of the records every target model trains on and the audit scores.",
)
@click.option(
    "--reference-set",
    required=True,
    type=click.Path(exists=True),
    help="Manifest of the records every reference model trains on.",
)
@click.option(
    "--control-set",
    required=True,
    type=click.Path(exists=True),
    help="Manifest of records neither model trains on, scored alongside the members.",
)
@click.option(
    "--public-set",
    required=True,
    type=click.Path(exists=True),
    help="Manifest of the public images the audits retrieve from.",
)
@click.option(
    "--eval-set",
    type=click.Path(exists=True),
    help="Labelled manifest (label or objects) for zero-shot and linear-probe "
    "utility (default: the public set).",
)
@click.option(
    "--rates",
    required=True,
    callback=_parse_float_list,
    help="Comma-separated text randomization rates, each in [0, 1), e.g. 0,0.3,0.5.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Study folder; a rerun with the same settings skips finished stages.",
)
@click.option(
    "--model",
    default="dejavu-tiny-vit",
    show_default=True,
    help="Architecture of every model: packaged config, open_clip model name, or "
    "model config JSON file.",
)
@click.option("--epochs", type=int, required=True, help="Passes over the data.")
@click.option(
    "--batch-size", type=int, default=64, show_default=True, help="Records per batch."
)
@click.option(
    "--lr", type=float, default=1e-3, show_default=True, help="Peak learning rate."
)
@click.option(
    "--text-mask-mode",
    type=click.Choice(["drop", "mask"]),
    default="drop",
    show_default=True,
    help="Drop the chosen caption words or replace them by a placeholder word.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the training, the bootstrap and the linear probe's split.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto, cpu, cuda or cuda:N; CUDA trains in mixed precision.",
)
@click.option(
    "--threads",
    type=int,
    default=1,
    show_default=True,
    help="CPU threads for torch in each training process.",
)
@click.option(
    "--jobs",
    type=int,
    default=2,
    show_default=True,
    help="Models trained at once, each in its own process.",
)
@click.option(
    "--k",
    default="1,5,10",
    show_default=True,
    callback=_parse_int_list,
    help="Comma-separated numbers of nearest public neighbours.",
)
@click.option(
    "--bootstrap",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Bootstrap resamples of every interval.",
)
@click.option(
    "--overwrite", is_flag=True, help="Replace a folder written with other settings."
)
@click.option("--quiet", is_flag=True, help="Hide progress bars.")
def mitigate(quiet: bool, **params) -> None:
    """Measure memorization against utility across text randomization rates.

    For each rate, trains a target on the target set and a reference on the
    reference set with the same recipe, audits the pair on the target and control
    sets, and scores the target's utility. Writes mitigation.csv, mitigation.json
    and mitigation.png to the study folder.

    \b
    Example:
      dejavu mitigate --target-set scenes/target.parquet \\
          --reference-set scenes/reference.parquet \\
          --control-set scenes/control.parquet --public-set scenes/public.parquet \\
          --rates 0,0.5,0.8 --epochs 30 --out runs/mitigation
    """
    from dejavu.mitigate import MitigationConfig, format_table, run_mitigation

    table = run_mitigation(MitigationConfig(**params, progress=not quiet))
    click.echo(f"dejavu mitigate: {params['out']}")
    click.echo(format_table(table))
    click.echo(
        "memorization: members, control and member-minus-control (difference); "
        f"utility of the target on the evaluation set as "
        f"{table['utility_metric'].iloc[0].replace('_', ' ')}"
    )
