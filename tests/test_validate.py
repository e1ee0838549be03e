"""The planted-memorization check at small scale: every expectation holds.

`dejavu validate` at its default sizes is the documented run (docs/validation.md).
Here the same code runs on fewer records and epochs, with the same four cases.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from dejavu.cli import main
from dejavu.validate import plant_canaries

SMALL = [
    "--n-records", "250",
    "--n-public", "2000",
    "--epochs", "30",
    "--n-canaries", "15",
    "--bootstrap", "300",
    "--device", "cpu",
]  # fmt: skip


@pytest.fixture(scope="module")
def validation(tmp_path_factory):
    out = tmp_path_factory.mktemp("validate") / "run"
    result = CliRunner().invoke(main, ["validate", "--out", str(out), "--quiet", *SMALL])
    return out, result


def test_validate_all_checks_pass(validation):
    out, result = validation
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "case", ["members", "non-members", "text randomization", "canaries"]
)
def test_validate_case_passes(validation, case):
    out, _ = validation
    checks = json.loads((out / "validation.json").read_text())["checks"]
    failed = [c for c in checks if c["case"] == case and not c["passed"]]
    assert failed == []


def test_validate_writes_markdown_table(validation):
    out, _ = validation
    assert (out / "validation.md").read_text().startswith("| case |")


def test_plant_canaries_picks_rare_unmentioned_objects(scene_models, tmp_path):
    dest = tmp_path / "canaries.parquet"
    ids = plant_canaries(scene_models.target_set, dest, n_canaries=10, repeats=5)
    frame = pd.read_parquet(dest)
    canaries = frame[frame["id"].isin(ids)]
    assert len(canaries) == 10
    assert set(canaries["repeats"]) == {5}
    assert set(frame.loc[~frame["id"].isin(ids), "repeats"]) == {1}
    hidden = [set(o) - set(m) for o, m in zip(canaries["objects"], canaries["mentioned"])]
    assert all(hidden)
