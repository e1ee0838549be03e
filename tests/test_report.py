"""Tests of the review report: loading runs, verdict, HTML, redaction, CLI."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from report_helpers import (
    HOSTILE_CAPTION,
    HOSTILE_LABEL,
    checkerboard,
    make_synthetic_run,
)

import dejavu
from dejavu.cli import main
from dejavu.errors import InputError
from dejavu.report import (
    compare_runs,
    decide,
    holm_adjust,
    load_run,
    render_summary_markdown,
    write_report,
)
from dejavu.report.html import render_report


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report") / "run"
    return make_synthetic_run(folder, hostile=True)


@pytest.fixture(scope="module")
def run(run_dir):
    return load_run(run_dir)


@pytest.fixture(scope="module")
def blur_html(run) -> str:
    return render_report(run, redact="blur", gallery_size=20)


@pytest.fixture(scope="module")
def ids_html(run) -> str:
    return render_report(run, redact="ids", gallery_size=20)


def _set_results(run, entries):
    run.summary = {**run.summary, "results": entries}
    return run


def _entry(record_set, k, *, prg=(0.1, 0.05, 0.2), ppg_p=0.5, prg_p=0.5):
    interval = {"value": prg[0], "ci_low": prg[1], "ci_high": prg[2]}
    return {
        "set": record_set,
        "k": k,
        "n": 100,
        "ppg": dict(interval),
        "prg": interval,
        "aucg": dict(interval),
        "ppg_p_value": ppg_p,
        "prg_p_value": prg_p,
        "top_l": [],
    }


def _decoded_images(html: str, alt: str) -> list[np.ndarray]:
    pattern = re.compile(r'<img src="data:image/jpeg;base64,([^"]+)" alt="' + alt)
    arrays = []
    for encoded in pattern.findall(html):
        with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
            arrays.append(np.asarray(image.convert("RGB"), dtype=float))
    return arrays


# Loading a run


def test_load_run_reads_tables(run):
    assert len(run.records) == 20
    assert len(run.public) == 24
    assert run.summary["schema_version"] == 1


def test_load_run_results_flattens_intervals(run):
    results = run.results()
    row = results[(results["set"] == "members") & (results["k"] == 3)].iloc[0]
    entry = next(
        e for e in run.summary["results"] if e["set"] == "members" and e["k"] == 3
    )
    assert row["prg_ci_low"] == entry["prg"]["ci_low"]
    assert row["ppg"] == entry["ppg"]["value"]
    assert row["mean_recall_target"] == entry["mean_recall"]["target"]


def test_load_run_results_has_one_row_per_entry(run):
    assert len(run.results()) == len(run.summary["results"])


def test_load_run_top_l_is_tidy(run):
    top_l = run.top_l()
    assert {"ranking", "fraction", "l", "recall_gap_ci_high"} <= set(top_l.columns)
    assert top_l.loc[top_l["ranking"] == "gap", "inflated"].all()


def test_dejavu_load_run_delegates(run_dir):
    assert isinstance(dejavu.load_run(run_dir).records, pd.DataFrame)


def test_load_run_rejects_missing_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_run(tmp_path / "nothing")


def test_load_run_rejects_folder_without_summary(tmp_path):
    with pytest.raises(InputError, match="summary.json is missing"):
        load_run(tmp_path)


def test_load_run_rejects_newer_schema(tmp_path):
    folder = make_synthetic_run(tmp_path / "run", members=4, control=0, public=6)
    summary = json.loads((folder / "summary.json").read_text())
    summary["schema_version"] = 99
    (folder / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(InputError, match="schema_version 99"):
        load_run(folder)


def test_load_run_rejects_missing_records(tmp_path):
    folder = make_synthetic_run(tmp_path / "run", members=4, control=0, public=6)
    (folder / "records.parquet").unlink()
    with pytest.raises(InputError, match="records.parquet is missing"):
        load_run(folder)


def test_record_gaps_rejects_unscored_k(run):
    with pytest.raises(InputError, match="k=7 was not scored"):
        run.record_gaps(7)


def test_ranked_by_recall_gap_is_descending(run):
    gaps = run.ranked_by_recall_gap()["recall_gap"].to_numpy()
    assert np.all(np.diff(gaps) <= 0)


# Verdict


def test_holm_adjust_matches_hand_computation():
    # Sorted 0.01, 0.03, 0.04 scaled by 3, 2, 1: 0.03, 0.06, 0.04 -> running max.
    assert holm_adjust([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])


def test_holm_adjust_caps_at_one():
    assert holm_adjust([0.6, 0.7]).max() == 1.0


def test_verdict_control_detected_when_interval_above_zero(run_dir):
    run = _set_results(
        load_run(run_dir),
        [_entry("members", 3), _entry("difference", 3, prg=(0.2, 0.01, 0.3))],
    )
    assert decide(run).detected


def test_verdict_control_clear_when_interval_touches_zero(run_dir):
    run = _set_results(
        load_run(run_dir),
        [_entry("members", 3), _entry("difference", 3, prg=(0.2, 0.0, 0.3))],
    )
    assert not decide(run).detected


def test_verdict_control_uses_largest_k(run_dir):
    run = _set_results(
        load_run(run_dir),
        [
            _entry("difference", 1, prg=(0.2, 0.1, 0.3)),
            _entry("difference", 3, prg=(0.0, -0.1, 0.1)),
        ],
    )
    assert not decide(run).detected


def test_verdict_holm_detects_small_p(run_dir):
    run = _set_results(
        load_run(run_dir),
        [_entry("members", 1, prg_p=0.001), _entry("members", 3, prg_p=0.2)],
    )
    assert decide(run).detected


def test_verdict_holm_corrects_for_four_tests(run_dir):
    # 0.02 is below 0.05 alone but not after multiplying by the 4 tests.
    run = _set_results(
        load_run(run_dir),
        [_entry("members", 1, prg_p=0.02), _entry("members", 3, prg_p=0.5)],
    )
    assert not decide(run).detected


def test_verdict_holm_ignores_negative_prg(run_dir):
    run = _set_results(
        load_run(run_dir),
        [_entry("members", 1, prg=(-0.3, -0.4, -0.2), prg_p=0.0001)],
    )
    assert not decide(run).detected


def test_verdict_holm_ignores_ppg_alone(run_dir):
    run = _set_results(
        load_run(run_dir), [_entry("members", 1, ppg_p=0.0001, prg_p=0.5)]
    )
    assert not decide(run).detected


def test_verdict_rule_without_control_names_holm(run_dir):
    run = _set_results(load_run(run_dir), [_entry("members", 1)])
    assert "Holm" in decide(run).rule


# HTML report


def test_report_shows_verdict_and_rule(blur_html, run):
    verdict = decide(run)
    assert verdict.headline in blur_html
    assert "Rule:" in blur_html


def test_report_escapes_hostile_caption(blur_html):
    assert HOSTILE_CAPTION not in blur_html
    assert "&lt;script&gt;alert(&quot;caption&quot;)&lt;/script&gt;" in blur_html


def test_report_has_no_script_element(blur_html):
    assert "<script" not in blur_html.lower()


def test_report_escapes_hostile_label(blur_html):
    assert HOSTILE_LABEL not in blur_html
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;i&gt;co&lt;/i&gt;" in blur_html


def test_report_escapes_input_paths(blur_html):
    assert "/models/target &lt;tiny&gt;.pt" in blur_html


def test_report_requests_nothing_external(blur_html):
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:|//)", blur_html)
    # SVG clip paths refer to elements of the page as url(#id); nothing else may.
    assert not re.search(r"url\(\s*['\"]?(?!#)", blur_html)


def test_report_forbids_network_by_policy(blur_html):
    assert "default-src 'none'" in blur_html


def test_report_plots_are_inline_svg(blur_html):
    assert blur_html.count('<figure class="plot"><svg') == 5


def test_report_marks_objects_by_model(blur_html):
    marks = re.findall(
        r'<li class="(target-only|reference-only|both|neither)"', blur_html
    )
    assert len(marks) == 12 * 3


def test_report_blur_keeps_captions(blur_html):
    assert "a scene with a" in blur_html


def test_report_blur_removes_image_detail(blur_html):
    blurred = _decoded_images(blur_html, "training image, blurred")
    original = np.asarray(checkerboard(0), dtype=float)
    assert len(blurred) == 12
    # The checkerboard alternates between two colours; a blur that leaves it
    # recognisable keeps most of that contrast.
    assert max(array.std(axis=(0, 1)).max() for array in blurred) < (
        0.15 * original.std(axis=(0, 1)).max()
    )


def test_report_blur_shows_public_images(blur_html):
    assert len(re.findall(r'alt="public image ', blur_html)) > 0


def test_report_none_shows_training_images_sharp(run):
    html = render_report(run, redact="none", gallery_size=3)
    sharp = _decoded_images(html, "training image")
    assert min(array.std(axis=(0, 1)).max() for array in sharp) > 40


def test_report_ids_has_no_image_data(ids_html):
    assert "data:image" not in ids_html
    assert "<img" not in ids_html
    assert "<image" not in ids_html


def test_report_ids_has_no_caption(ids_html):
    assert "a scene with a" not in ids_html
    assert "alert" not in ids_html


def test_report_ids_has_no_object_labels(ids_html):
    assert "bold" not in ids_html


def test_report_ids_lists_record_ids(ids_html):
    assert "<code>train-0</code>" in ids_html


def test_report_missing_image_placeholder(tmp_path):
    folder = make_synthetic_run(tmp_path / "run", members=4, control=0, public=6)
    for png in (tmp_path / "run-images").glob("train-*.png"):
        png.unlink()
    html = render_report(load_run(folder), redact="blur")
    assert "training image not found" in html


def test_report_one_model_warns_high(tmp_path):
    folder = make_synthetic_run(
        tmp_path / "run", members=4, control=0, public=6, test="one-model"
    )
    html = render_report(load_run(folder))
    assert "tends to run high" in html


def test_report_shows_one_model_results(tmp_path):
    folder = make_synthetic_run(
        tmp_path / "run", members=4, control=0, public=6, one_model=True
    )
    html = render_report(load_run(folder))
    assert "Agreement between the two tests" in html
    assert "all-MiniLM-L6-v2" in html


def test_report_without_control_uses_holm(tmp_path):
    folder = make_synthetic_run(tmp_path / "run", members=6, control=0, public=6)
    html = render_report(load_run(folder))
    assert "Holm correction" in html


# Companion files


def test_write_report_writes_three_files(tmp_path):
    folder = make_synthetic_run(tmp_path / "run", members=4, control=2, public=6)
    write_report(folder)
    written = {p.name for p in folder.iterdir()}
    assert {"report.html", "summary.md", "memorized.csv"} <= written


def test_write_report_out_puts_files_next_to_it(tmp_path, run_dir):
    html = write_report(run_dir, out=tmp_path / "share" / "audit.html", redact="ids")
    assert (html.parent / "summary.md").is_file()
    assert (html.parent / "memorized.csv").is_file()


def test_write_report_rejects_unknown_redaction(run_dir):
    with pytest.raises(InputError, match="redaction mode 'faces'"):
        write_report(run_dir, redact="faces")


def test_memorized_csv_ranked_by_recall_gap(tmp_path, run_dir):
    write_report(run_dir, out=tmp_path / "report.html")
    memorized = pd.read_csv(tmp_path / "memorized.csv")
    ranked = load_run(run_dir).ranked_by_recall_gap()
    assert memorized["id"].tolist() == ranked["id"].tolist()
    assert memorized["recall_gap"].is_monotonic_decreasing


def test_memorized_csv_has_no_captions(tmp_path, run_dir):
    write_report(run_dir, out=tmp_path / "report.html", redact="none")
    assert "caption" not in (tmp_path / "memorized.csv").read_text()


def test_summary_md_states_verdict(run):
    assert decide(run).headline in render_summary_markdown(run)


def test_summary_md_has_no_captions(run):
    text = render_summary_markdown(run)
    assert "a scene with a" not in text
    assert "<script" not in text


def test_summary_md_one_model_warns_high(tmp_path):
    folder = make_synthetic_run(
        tmp_path / "run", members=4, control=0, public=6, test="one-model"
    )
    assert "tends to run high" in render_summary_markdown(load_run(folder))


def test_compare_runs_lists_every_run(tmp_path):
    first = make_synthetic_run(tmp_path / "rate-0.0", members=4, control=2, public=6)
    second = make_synthetic_run(
        tmp_path / "rate-0.5", members=4, control=2, public=6, seed=1
    )
    page = compare_runs([first, second], tmp_path / "compare.html").read_text()
    assert "rate-0.0" in page
    assert "rate-0.5" in page


# Command line


def test_cli_report_writes_html(tmp_path):
    folder = make_synthetic_run(tmp_path / "run", members=4, control=2, public=6)
    result = CliRunner().invoke(main, ["report", str(folder), "--redact", "ids"])
    assert result.exit_code == 0, result.output
    assert "data:image" not in (folder / "report.html").read_text()


def test_cli_report_compares_runs(tmp_path):
    first = make_synthetic_run(tmp_path / "a", members=4, control=2, public=6)
    second = make_synthetic_run(tmp_path / "b", members=4, control=2, public=6)
    out = tmp_path / "both.html"
    result = CliRunner().invoke(
        main, ["report", str(first), str(second), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.is_file()


def test_cli_report_several_runs_need_out(tmp_path):
    first = make_synthetic_run(tmp_path / "a", members=4, control=2, public=6)
    result = CliRunner().invoke(main, ["report", str(first), str(first)])
    assert result.exit_code == 2
    assert "--out" in result.output


def test_cli_report_rejects_non_run(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 1
    assert "summary.json is missing" in result.output
