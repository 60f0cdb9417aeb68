"""The pipeline: stages in order, step caching, the summary."""
import json

import pytest

from conftest import config_for_tests
from reviewlake.errors import UserError
from reviewlake.pipeline.runner import Pipeline, format_summary


def cfg_for(tmp_path, **extra):
    return config_for_tests(**{
        "data.raw": str(tmp_path / "raw"), "data.lake": str(tmp_path / "lake"),
        "data.quality": str(tmp_path / "quality"), "data.features": str(tmp_path / "features"),
        "data.model": str(tmp_path / "model"), "generate.rows": 1500, "generate.files": 2,
        "quality.params.min_size": 1000, "prepare.vocab_size": 400, "prepare.max_seq_length": 32,
        **extra})


def statuses(outcomes):
    return {o.stage: o.status for o in outcomes}


def test_caching_skips_unchanged_stages_and_reruns_changed_ones(spark, tmp_path):
    stages = ["generate", "ingest"]
    first = Pipeline(cfg_for(tmp_path), stages, spark=spark).run()
    assert statuses(first) == {"generate": "ran", "ingest": "ran"}
    record = json.loads((tmp_path / "lake" / "_pipeline.json").read_text())
    assert record["fingerprint"] == first[1].fingerprint

    again = Pipeline(cfg_for(tmp_path), stages, spark=spark).run()
    assert statuses(again) == {"generate": "skipped", "ingest": "skipped"}
    assert again[1].figures == first[1].figures

    # A setting of ingest: ingest re-runs, generate does not.
    changed = Pipeline(cfg_for(tmp_path, **{"ingest.max_split_bytes": "64m"}), stages,
                       spark=spark).run()
    assert statuses(changed) == {"generate": "skipped", "ingest": "ran"}

    # A setting of generate: it and everything after it re-run.
    more = Pipeline(cfg_for(tmp_path, **{"generate.rows": 1600, "ingest.max_split_bytes": "64m"}),
                    stages, spark=spark).run()
    assert statuses(more) == {"generate": "ran", "ingest": "ran"}
    assert more[1].result["rows_read"] == 1600

    forced = Pipeline(cfg_for(tmp_path, **{"generate.rows": 1600, "ingest.max_split_bytes": "64m"}),
                      stages, force=True, spark=spark).run()
    assert statuses(forced) == {"generate": "ran", "ingest": "ran"}
    text = format_summary(forced, 12.3)
    assert "ingest" in text and "rows read 1600" in text and "total 12.3s" in text


def test_a_changed_quality_setting_reruns_quality_and_prepare_only(spark, tmp_path):
    stages = ["generate", "ingest", "quality", "prepare"]
    first = Pipeline(cfg_for(tmp_path), stages, spark=spark).run()
    assert statuses(first) == dict.fromkeys(stages, "ran")
    assert first[2].figures.startswith("passed: checks passed")
    meta = json.loads((tmp_path / "features" / "_meta.json").read_text())
    assert first[3].figures == (f"records train {meta['splits']['train']['count']} / validation "
                                f"{meta['splits']['validation']['count']} / test "
                                f"{meta['splits']['test']['count']}, max_seq_length 32")
    again = Pipeline(cfg_for(tmp_path), stages, spark=spark).run()
    assert statuses(again) == dict.fromkeys(stages, "skipped")
    changed = Pipeline(cfg_for(tmp_path, **{"quality.examples": 3}), stages, spark=spark).run()
    assert statuses(changed) == {"generate": "skipped", "ingest": "skipped", "quality": "ran",
                                 "prepare": "ran"}
    only_prepare = Pipeline(cfg_for(tmp_path, **{"quality.examples": 3,
                                                 "prepare.max_seq_length": 16}),
                            stages, spark=spark).run()
    assert statuses(only_prepare) == {"generate": "skipped", "ingest": "skipped",
                                      "quality": "skipped", "prepare": "ran"}


def test_a_failing_gate_stops_before_prepare(spark, tmp_path):
    stages = ["generate", "ingest", "quality", "prepare"]
    cfg = cfg_for(tmp_path, **{"generate.defects": "all", "generate.rows": 3000})
    pipeline = Pipeline(cfg, stages, spark=spark)
    with pytest.raises(UserError, match="quality gate failed") as info:
        pipeline.run()
    assert info.value.exit_code == 3
    assert statuses(pipeline.outcomes) == {"generate": "ran", "ingest": "ran", "quality": "failed"}
    assert not (tmp_path / "features").exists()
    assert "failed: checks passed" in format_summary(pipeline.outcomes, 1.0)
    # a failed gate is never cached: the next run checks again (and fails again)
    again = Pipeline(cfg, stages, spark=spark)
    with pytest.raises(UserError, match="quality gate failed"):
        again.run()
    assert statuses(again.outcomes) == {"generate": "skipped", "ingest": "skipped",
                                        "quality": "failed"}


def test_an_incomplete_output_is_not_skipped(spark, tmp_path):
    Pipeline(cfg_for(tmp_path), ["generate", "ingest"], spark=spark).run()
    (tmp_path / "lake" / "_reports" / "ingest.json").unlink()
    out = Pipeline(cfg_for(tmp_path), ["generate", "ingest"], spark=spark).run()
    assert statuses(out) == {"generate": "skipped", "ingest": "ran"}


def test_generate_is_off_without_rows(spark, tmp_path):
    out = Pipeline(cfg_for(tmp_path, **{"generate.rows": 0}), ["generate"], spark=spark).run()
    assert statuses(out) == {"generate": "disabled"}


def test_unknown_stage():
    with pytest.raises(UserError, match="unknown stage"):
        Pipeline(config_for_tests(), ["ingest", "deploy"])
