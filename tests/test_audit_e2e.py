"""End to end: a target trained for many epochs on the audited records is caught.

Uses the shared fixture of tests/conftest.py: scene data, and a tiny ViT target and
reference trained on disjoint splits of the same size.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from dejavu.cli import main


def _entry(summary, set_name, k):
    matches = [e for e in summary["results"] if e["set"] == set_name and e["k"] == k]
    assert len(matches) == 1
    return matches[0]


@pytest.fixture(scope="module")
def summary(scene_audit):
    return json.loads((scene_audit / "summary.json").read_text())


def test_audit_member_prg_interval_above_zero(summary):
    prg = _entry(summary, "members", 10)["prg"]
    assert prg["ci_low"] > 0


def test_audit_member_minus_control_prg_positive(summary):
    assert _entry(summary, "difference", 10)["prg"]["value"] > 0


@pytest.mark.parametrize("k", [5, 10])
@pytest.mark.parametrize("metric", ["ppg", "prg"])
def test_audit_control_gaps_small(summary, k, metric):
    assert abs(_entry(summary, "control", k)[metric]["value"]) < 0.1


def test_audit_summary_has_every_set_and_k(summary):
    pairs = {(e["set"], e["k"]) for e in summary["results"]}
    expected = {
        (s, k) for s in ("members", "control", "difference") for k in (1, 5, 10)
    }
    assert pairs == expected


def test_audit_summary_records_settings_and_counts(summary):
    assert summary["settings"]["bootstrap"] == 500
    assert summary["settings"]["seed"] == 0
    assert summary["counts"]["members"]["scored"] > 0
    assert summary["test"] == "two-model"


def test_audit_top_l_entries_cover_rankings(summary):
    entry = _entry(summary, "members", 10)
    rankings = {t["ranking"] for t in entry["top_l"]}
    assert rankings == {"min_dist", "correct", "gap"}
    gap_entries = [t for t in entry["top_l"] if t["ranking"] == "gap"]
    assert all(t["inflated"] for t in gap_entries)


def test_audit_records_parquet_columns(scene_audit):
    records = pd.read_parquet(scene_audit / "records.parquet")
    for column in (
        "id",
        "set",
        "objects",
        "min_dist",
        "target_neighbours",
        "reference_k10_recall",
        "target_k1_precision",
        "rank_min_dist",
        "rank_gap_k5",
    ):
        assert column in records.columns, column


def test_audit_records_neighbours_are_public_ids(scene_audit):
    records = pd.read_parquet(scene_audit / "records.parquet")
    public = pd.read_parquet(scene_audit / "public.parquet")
    neighbour_ids = {i for row in records["target_neighbours"] for i in row}
    assert neighbour_ids <= set(public["id"])


def test_audit_recall_matches_predicted_objects(scene_audit):
    records = pd.read_parquet(scene_audit / "records.parquet")
    row = records.iloc[0]
    truth = set(row["objects"])
    predicted = set(row["target_k5_predicted"])
    assert row["target_k5_recall"] == pytest.approx(len(truth & predicted) / len(truth))


def test_audit_rerun_reuses_cache_and_matches(scene_models, scene_audit, tmp_path):
    """Running the CLI again into the same folder reproduces summary.json exactly."""
    before = json.loads((scene_audit / "summary.json").read_text())
    args = [
        "audit",
        "--target", str(scene_models.target),
        "--reference", str(scene_models.reference),
        "--target-set", str(scene_models.target_set),
        "--control-set", str(scene_models.control_set),
        "--public-set", str(scene_models.public_set),
        "--out", str(scene_audit),
        "--bootstrap", "500",
        "--quiet",
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    after = json.loads((scene_audit / "summary.json").read_text())
    assert after["results"] == before["results"]
