"""The mitigation study end to end on tiny scenes: files, shared recipe, reruns, errors.

One study (two rates, two epochs, 40 records per split, 200 public images) runs once
per module through the CLI, with two training processes, and the tests read its
folder.
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from dejavu.cli import main
from dejavu.errors import InputError
from dejavu.mitigate import MitigationConfig, rate_name, run_mitigation

RATES = (0.0, 0.5)
# The columns that notebooks/02_mitigation.ipynb reads.
NOTEBOOK_COLUMNS = [
    "rate",
    "set",
    "k",
    *[f"{m}{s}" for m in ("ppg", "prg", "aucg") for s in ("", "_ci_low", "_ci_high")],
    "zero_shot",
    "linear_probe",
]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from dejavu.data.scenes import write_scenes

    out = tmp_path_factory.mktemp("mitigate-scenes")
    write_scenes(
        out,
        n_target=40,
        n_reference=40,
        n_control=40,
        n_public=200,
        seed=0,
        formats=("manifest",),
        progress=False,
    )
    return out


def _arguments(scenes, out, rates="0,0.5"):
    return [
        "mitigate",
        "--target-set", str(scenes / "target.parquet"),
        "--reference-set", str(scenes / "reference.parquet"),
        "--control-set", str(scenes / "control.parquet"),
        "--public-set", str(scenes / "public.parquet"),
        "--rates", rates,
        "--epochs", "2",
        "--batch-size", "16",
        "--k", "1,5",
        "--bootstrap", "100",
        "--device", "cpu",
        "--out", str(out),
        "--quiet",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def study(scenes, tmp_path_factory):
    out = tmp_path_factory.mktemp("mitigate") / "study"
    result = CliRunner().invoke(main, _arguments(scenes, out))
    return out, result


def _finished_files(out):
    """Return the modification time of every checkpoint, audit and utility file."""
    paths = [
        *out.glob("models/*/*/checkpoints/*.pt"),
        *out.glob("models/*/target/utility.json"),
        *out.glob("audits/*/summary.json"),
    ]
    return {str(p): p.stat().st_mtime_ns for p in paths}


def test_mitigate_cli_succeeds(study):
    _, result = study
    assert result.exit_code == 0, result.output


def test_mitigate_cli_prints_table(study):
    _, result = study
    assert "| ρ | set | k | PPG | PRG | AUCG |" in result.output


def test_mitigate_writes_outputs(study):
    out, _ = study
    missing = [
        name
        for name in ("mitigation.csv", "mitigation.json", "mitigation.png")
        if not (out / name).is_file()
    ]
    assert missing == []


def test_mitigate_csv_has_notebook_columns(study):
    out, _ = study
    table = pd.read_csv(out / "mitigation.csv")
    assert [c for c in NOTEBOOK_COLUMNS if c not in table.columns] == []


def test_mitigate_csv_covers_every_rate(study):
    out, _ = study
    table = pd.read_csv(out / "mitigation.csv")
    keys = set(zip(table["rate"], table["set"], table["k"]))
    expected = {
        (rate, record_set, k)
        for rate in RATES
        for record_set in ("members", "control", "difference")
        for k in (1, 5)
    }
    assert keys == expected


def test_mitigate_csv_names_utility_metric(study):
    out, _ = study
    table = pd.read_csv(out / "mitigation.csv")
    assert set(table["utility_metric"]) == {"mean_average_precision"}


def test_mitigate_utility_is_constant_within_rate(study):
    out, _ = study
    table = pd.read_csv(out / "mitigation.csv")
    assert (table.groupby("rate")["zero_shot"].nunique() == 1).all()


def test_mitigate_json_matches_csv(study):
    out, _ = study
    table = pd.read_csv(out / "mitigation.csv")
    rows = json.loads((out / "mitigation.json").read_text())["rows"]
    assert len(rows) == len(table)


def test_mitigate_json_records_rates(study):
    out, _ = study
    settings = json.loads((out / "mitigation.json").read_text())["settings"]
    assert settings["rates"] == list(RATES)


def test_mitigate_audits_use_control_set(study):
    out, _ = study
    for rate in RATES:
        summary = json.loads(
            (out / "audits" / rate_name(rate) / "summary.json").read_text()
        )
        assert summary["inputs"]["control_set"] is not None


@pytest.mark.parametrize("rate", RATES)
def test_mitigate_pair_shares_recipe(study, rate):
    out, _ = study
    metadata = {}
    for role in ("target", "reference"):
        path = out / "models" / rate_name(rate) / role / "checkpoints" / "epoch_2.pt"
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        metadata[role] = checkpoint["dejavu"]
    for key in ("text_mask_rate", "text_mask_mode", "epochs", "seed", "lr"):
        assert metadata["target"][key] == metadata["reference"][key], key
    assert metadata["target"]["text_mask_rate"] == rate


@pytest.mark.parametrize("rate", RATES)
def test_mitigate_pair_trains_on_its_own_set(study, scenes, rate):
    out, _ = study
    data = {}
    for role in ("target", "reference"):
        path = out / "models" / rate_name(rate) / role / "checkpoints" / "epoch_2.pt"
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        data[role] = checkpoint["dejavu"]["data"]
    assert data == {
        "target": str((scenes / "target.parquet").resolve()),
        "reference": str((scenes / "reference.parquet").resolve()),
    }


def test_mitigate_rerun_skips_finished_stages(study, scenes):
    out, first = study
    assert first.exit_code == 0, first.output
    before = _finished_files(out)
    result = CliRunner().invoke(main, _arguments(scenes, out))
    assert result.exit_code == 0, result.output
    assert _finished_files(out) == before


def test_mitigate_rerun_with_new_rate_trains_only_it(study, scenes):
    out, first = study
    assert first.exit_code == 0, first.output
    before = _finished_files(out)
    # Reuse the finished rates, and add a third one, in a copy of the folder.
    copy = out.parent / "study-more-rates"
    shutil.copytree(out, copy)
    before = {key.replace(str(out), str(copy)): v for key, v in before.items()}
    # copytree keeps modification times (copy2), so unchanged files compare equal.
    result = CliRunner().invoke(
        main, _arguments(scenes, copy, rates="0,0.5,0.3") + ["--jobs", "1"]
    )
    assert result.exit_code == 0, result.output
    after = _finished_files(copy)
    assert {key: after[key] for key in before} == before
    assert (copy / "audits" / "rate-0.3" / "summary.json").is_file()


@pytest.mark.parametrize("rates", ["0,1", "-0.1,0.5", "1.5"])
def test_mitigate_rejects_rate_outside_range(scenes, tmp_path, rates):
    out = tmp_path / "study"
    result = CliRunner().invoke(main, _arguments(scenes, out, rates=rates))
    assert result.exit_code == 1
    assert "outside [0, 1)" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_mitigate_rejects_unparsable_rates(scenes, tmp_path):
    result = CliRunner().invoke(
        main, _arguments(scenes, tmp_path / "study", rates="0,half")
    )
    assert result.exit_code == 2
    assert "comma-separated list of numbers" in result.output


def test_mitigate_rejects_repeated_rate(scenes, tmp_path):
    result = CliRunner().invoke(
        main, _arguments(scenes, tmp_path / "study", rates="0.3,0.30")
    )
    assert result.exit_code == 1
    assert "more than once" in result.output


def test_mitigate_rejects_overlapping_sets(scenes, tmp_path):
    config = MitigationConfig(
        target_set=str(scenes / "target.parquet"),
        reference_set=str(scenes / "target.parquet"),
        control_set=str(scenes / "control.parquet"),
        public_set=str(scenes / "public.parquet"),
        out=str(tmp_path / "study"),
        rates=[0.0],
        epochs=1,
        batch_size=16,
    )
    with pytest.raises(InputError, match="must be disjoint"):
        run_mitigation(config)


def test_mitigate_rejects_eval_set_without_labels(scenes, tmp_path):
    frame = pd.read_parquet(scenes / "public.parquet").drop(columns=["objects"])
    frame["image"] = [str((scenes / p).resolve()) for p in frame["image"]]
    unlabelled = tmp_path / "unlabelled.parquet"
    frame.to_parquet(unlabelled, index=False)
    config = MitigationConfig(
        target_set=str(scenes / "target.parquet"),
        reference_set=str(scenes / "reference.parquet"),
        control_set=str(scenes / "control.parquet"),
        public_set=str(scenes / "public.parquet"),
        eval_set=str(unlabelled),
        out=str(tmp_path / "study"),
        rates=[0.0],
        epochs=1,
        batch_size=16,
    )
    with pytest.raises(InputError, match="neither a 'label' nor an 'objects'"):
        run_mitigation(config)
