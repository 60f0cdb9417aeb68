"""The pipeline: stages in order, step caching, the summary."""
import json

import pytest

from conftest import config_for_tests
from reviewlake.errors import UserError
from reviewlake.pipeline.runner import Pipeline, format_summary


def cfg_for(tmp_path, **extra):
    return config_for_tests(**{"data.raw": str(tmp_path / "raw"), "data.lake": str(tmp_path / "lake"),
                          "generate.rows": 1500, "generate.files": 2, **extra})


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
