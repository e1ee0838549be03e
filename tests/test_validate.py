"""`dejavu validate`: the four cases run, every check is computed and reported.

At its default sizes (500 records per split, 40 epochs) `dejavu validate` is the
documented validity check; docs/validation.md has its results. Training five models
at those sizes takes too long for the test suite, so here the same code runs at a
size where the models barely learn. The tests check the command itself: every
expectation is measured and written, and the exit status shows whether all passed.
The member signal at test size is checked by tests/test_audit_e2e.py on the shared
fixture.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from dejavu.cli import main
from dejavu.validate import plant_canaries

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
    table = (out / "validation.md").read_text()
    # A header row, a separator row, then one row per check.
    assert len(table.splitlines()) == len(report["checks"]) + 2


def test_validate_rerun_skips_training(validation):
    out, _ = validation
    checkpoint = out / "models" / "target" / "checkpoints" / "epoch_2.pt"
    before = checkpoint.stat().st_mtime_ns
    CliRunner().invoke(main, ["validate", "--out", str(out), "--quiet", *TINY])
    assert checkpoint.stat().st_mtime_ns == before


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
