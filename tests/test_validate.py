"""`dejavu validate`: the command, and the validity check at small settings.

The validity check runs on the shared fixture's settings (400 records per split,
3,000 public images, 40 epochs). The fixture's target/reference pair is its members
case, and the non-member target, the text-randomization pair and the canary target
are trained here in the same folder. Each case's expectations are asserted. The
canary case fails at these settings as at the documented size, and the repeats add
nothing measurable to the canaries' recall gaps (docs/validation.md), so its test
is an expected failure that turns into an error if the canaries start to pass.

The command tests run the same code at a size where the models barely learn (100
records, 2 epochs): every expectation is measured and written, and the exit status
shows whether all passed.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from click.testing import CliRunner

from dejavu.cli import main
from dejavu.errors import InputError
from dejavu.validate import (
    ValidationSettings,
    compare_canaries,
    plant_canaries,
    prepare_models,
)

TINY = [
    "--n-records", "100",
    "--n-public", "300",
    "--epochs", "2",
    "--n-canaries", "6",
    "--bootstrap", "50",
    "--device", "cpu",
]  # fmt: skip
CASES = {"members", "non-members", "text randomization", "canaries"}


@pytest.fixture(scope="module")
def validation(tmp_path_factory):
    out = tmp_path_factory.mktemp("validate") / "run"
    result = CliRunner().invoke(main, ["validate", "--out", str(out), "--quiet", *TINY])
    return out, result


@pytest.fixture(scope="module")
def report(validation):
    out, _ = validation
    return json.loads((out / "validation.json").read_text())


def test_validate_measures_every_case(report):
    assert {check["case"] for check in report["checks"]} == CASES


def test_validate_measures_eight_checks(report):
    assert len(report["checks"]) == 8


def test_validate_exit_status_matches_checks(validation, report):
    _, result = validation
    assert (result.exit_code == 0) == report["passed"], result.output


def test_validate_failure_is_a_clean_exit(validation, report):
    _, result = validation
    assert result.exit_code in (0, 1)
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_validate_writes_markdown_table(validation, report):
    out, _ = validation
    rows = [
        line
        for line in (out / "validation.md").read_text().splitlines()
        if line.startswith("|")
    ]
    # A header row, a separator row, then one row per check.
    assert len(rows) == len(report["checks"]) + 2
    for row in rows:
        # Four cells: escaped pipes, as in \|PPG\|, do not split a cell.
        cells = re.split(r"(?<!\\)\|", row.strip())[1:-1]
        assert len(cells) == 4, row


def test_validate_reports_canary_controls(validation, report):
    out, _ = validation
    controls = report["canary_controls"]
    assert set(controls) == {"without_repeats", "repeats"}
    assert controls["without_repeats"]["n_canaries"] == 6
    assert controls["repeats"]["n_canaries"] == 6
    written = (out / "validation.md").read_text()
    assert "trained without repeats: p = " in written


def test_validate_prints_what_it_writes(validation):
    out, result = validation
    assert (out / "validation.md").read_text() in result.output


def test_canary_controls_use_members_audit(validation, report):
    out, _ = validation
    canaries = pd.read_parquet(out / "scenes" / "target_canaries.parquet")
    ids = set(canaries.loc[canaries["canary"], "id"])
    members, planted = out / "audits" / "members", out / "audits" / "canaries"
    without = compare_canaries(members, ids, 10)
    repeats = compare_canaries(planted, ids, 10, baseline=members)
    controls = report["canary_controls"]
    assert controls["without_repeats"]["p_value"] == without.p_value
    assert controls["without_repeats"]["canary_gap"] == without.canary_gap
    assert controls["repeats"]["p_value"] == repeats.p_value
    assert controls["repeats"]["canary_gap"] == repeats.canary_gap


def _write_audit(run_dir, target_recall, reference_recall, *, reverse=False):
    """Write a records.parquet with members m0, m1, ... and one control record."""
    n = len(target_recall)
    frame = pd.DataFrame(
        {
            "id": [f"m{i}" for i in range(n)] + ["c0"],
            "set": ["members"] * n + ["control"],
            "target_k10_recall": [*target_recall, 1.0],
            "reference_k10_recall": [*reference_recall, 0.0],
        }
    )
    run_dir.mkdir()
    frame[:: -1 if reverse else 1].to_parquet(run_dir / "records.parquet")


CANARIES = {"m0", "m1", "m2", "m3"}


def test_compare_canaries_tests_gaps_of_members_only(tmp_path):
    # Canaries m0-m3 gain 0.5 over the reference, the other members nothing.
    _write_audit(tmp_path / "run", [1.0] * 4 + [0.5] * 8, [0.5] * 12)
    test = compare_canaries(tmp_path / "run", CANARIES, 10)
    assert test.canary_gap == 0.5
    assert test.other_gap == 0.0
    assert test.n_canaries == 4
    assert test.p_value < 0.01


def test_compare_canaries_baseline_removes_what_records_bring(tmp_path):
    # The canaries stand out as much without repeats as with them.
    _write_audit(tmp_path / "plain", [1.0] * 4 + [0.5] * 8, [0.5] * 12)
    _write_audit(tmp_path / "repeated", [1.0] * 4 + [0.5] * 8, [0.5] * 12)
    same = compare_canaries(
        tmp_path / "repeated", CANARIES, 10, baseline=tmp_path / "plain"
    )
    assert same.canary_gap == 0.0
    assert same.other_gap == 0.0
    assert same.p_value > 0.5


def test_compare_canaries_baseline_finds_repeat_gains(tmp_path):
    # Repeats that lift only the canaries from the baseline are found, whatever
    # the row order of the two audits.
    _write_audit(tmp_path / "lifted", [1.0] * 4 + [0.5] * 8, [0.5] * 12)
    _write_audit(tmp_path / "before", [0.5] * 12, [0.5] * 12, reverse=True)
    lifted = compare_canaries(
        tmp_path / "lifted", CANARIES, 10, baseline=tmp_path / "before"
    )
    assert lifted.canary_gap == 0.5
    assert lifted.other_gap == 0.0
    assert lifted.p_value < 0.01


def test_compare_canaries_baseline_needs_the_same_members(tmp_path):
    _write_audit(tmp_path / "run", [1.0] * 6, [0.5] * 6)
    _write_audit(tmp_path / "plain", [1.0] * 5, [0.5] * 5)
    with pytest.raises(InputError, match=r"lacks 1 members .*'m5'"):
        compare_canaries(tmp_path / "run", {"m0"}, 10, baseline=tmp_path / "plain")


def test_compare_canaries_baseline_needs_same_reference(tmp_path):
    _write_audit(tmp_path / "run", [1.0] * 6, [0.5] * 6)
    _write_audit(tmp_path / "plain", [1.0] * 6, [0.5] * 5 + [0.0])
    with pytest.raises(InputError, match=r"reference's recall differs .*'m5'"):
        compare_canaries(tmp_path / "run", {"m0"}, 10, baseline=tmp_path / "plain")


def test_compare_canaries_rejects_unknown_canary(tmp_path):
    _write_audit(tmp_path / "run", [1.0] * 6, [0.5] * 6)
    # A control record is not a member.
    with pytest.raises(InputError, match=r"1 canary ids .*'c0'"):
        compare_canaries(tmp_path / "run", {"m0", "c0"}, 10)


def test_compare_canaries_needs_other_members(tmp_path):
    _write_audit(tmp_path / "run", [1.0] * 3, [0.5] * 3)
    with pytest.raises(InputError, match="every scored member is a canary"):
        compare_canaries(tmp_path / "run", {"m0", "m1", "m2"}, 10)


def test_validate_rerun_skips_training(validation):
    out, _ = validation
    checkpoint = out / "target" / "checkpoints" / "epoch_2.pt"
    before = checkpoint.stat().st_mtime_ns
    CliRunner().invoke(main, ["validate", "--out", str(out), "--quiet", *TINY])
    assert checkpoint.stat().st_mtime_ns == before


def test_validate_new_bootstrap_reruns_only_audits(validation):
    out, first = validation
    checkpoint = out / "target" / "checkpoints" / "epoch_2.pt"
    trained = checkpoint.stat().st_mtime_ns
    other = list(TINY)
    other[other.index("--bootstrap") + 1] = "60"
    result = CliRunner().invoke(
        main, ["validate", "--out", str(out), "--quiet", *other]
    )
    assert result.exception is None or isinstance(result.exception, SystemExit)
    summary = json.loads((out / "audits" / "members" / "summary.json").read_text())
    assert summary["settings"]["bootstrap"] == 60
    assert checkpoint.stat().st_mtime_ns == trained
    # Back to the module's settings, for the tests that follow.
    rerun = CliRunner().invoke(main, ["validate", "--out", str(out), "--quiet", *TINY])
    assert rerun.output == first.output


def _failed(checks):
    return [f"{c.expectation}: {c.measured}" for c in checks if not c.passed]


def test_validity_members_show_memorization(scene_validation):
    checks = scene_validation["members"]
    assert len(checks) == 2
    assert _failed(checks) == []


def test_validity_non_members_show_none(scene_validation):
    checks = scene_validation["non-members"]
    assert len(checks) == 4
    assert _failed(checks) == []


def test_validity_text_randomization_halves_signal(scene_validation):
    checks = scene_validation["text randomization"]
    assert len(checks) == 1
    assert _failed(checks) == []


@pytest.mark.xfail(
    strict=True,
    reason="five repeats do not raise the canaries' recall gaps measurably at "
    "these sizes, even against the same records trained without repeats; "
    "docs/validation.md has the measurements",
)
def test_validity_canaries_stand_out(scene_validation):
    checks = scene_validation["canaries"]
    assert len(checks) == 1
    assert _failed(checks) == []


def test_plant_canaries_picks_rare_unmentioned_objects(scene_models, tmp_path):
    dest = tmp_path / "canaries.parquet"
    ids = plant_canaries(scene_models.target_set, dest, n_canaries=10, repeats=5)
    frame = pd.read_parquet(dest)
    canaries = frame[frame["id"].isin(ids)]
    assert len(canaries) == 10
    assert set(canaries["repeats"]) == {5}
    assert set(frame.loc[~frame["id"].isin(ids), "repeats"]) == {1}
    hidden = [
        set(o) - set(m) for o, m in zip(canaries["objects"], canaries["mentioned"])
    ]
    assert all(hidden)


def test_prepare_models_rejects_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'teacher'"):
        prepare_models(tmp_path / "run", ValidationSettings(), names=["teacher"])
    assert not (tmp_path / "run").exists()


def test_validate_rejects_empty_output_path(tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("keep")
    monkeypatch.chdir(tmp_path)
    args = ["validate", "--out", "", "--overwrite", "--quiet", *TINY]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "empty string" in result.output
    assert (tmp_path / "notes.txt").read_text() == "keep"


def test_validate_overwrite_keeps_foreign_folder(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    args = ["validate", "--out", str(out), "--overwrite", "--quiet", *TINY]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "not written by dejavu" in result.output
    assert (out / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--n-records", "30", "batch size 64 is larger than the 30 records"),
        ("--n-canaries", "60", "60 canaries cannot be planted among 100 records"),
        ("--device", "banana", "device 'banana' is invalid"),
    ],
)
def test_validate_rejects_bad_settings_before_work(tmp_path, option, value, message):
    out = tmp_path / "run"
    args = ["validate", "--out", str(out), "--quiet", *TINY, option, value]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert not (out / "scenes").exists()


def test_validate_rejects_negative_seed(tmp_path):
    args = ["validate", "--out", str(tmp_path / "run"), *TINY, "--seed", "-1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "--seed" in result.output


def test_validate_rejects_zero_bootstrap(tmp_path):
    args = ["validate", "--out", str(tmp_path / "run"), *TINY, "--bootstrap", "0"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "--bootstrap" in result.output


def test_prepare_models_rejects_zero_bootstrap(tmp_path):
    settings = ValidationSettings(n_records=100, bootstrap=0)
    with pytest.raises(InputError, match="0 bootstrap resamples give no intervals"):
        prepare_models(tmp_path / "run", settings)
    assert not (tmp_path / "run").exists()


def test_validate_reruns_stage_whose_output_was_deleted(validation):
    out, first = validation
    (out / "audits" / "members" / "records.parquet").unlink()
    rerun = CliRunner().invoke(main, ["validate", "--out", str(out), "--quiet", *TINY])
    assert (out / "audits" / "members" / "records.parquet").exists()
    assert rerun.output == first.output


def test_compare_canaries_names_unreadable_audit(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "records.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match=r"records.parquet cannot be read .* delete"):
        compare_canaries(tmp_path / "run", {"m0"}, 10)
