import pytest

from reviewlake.config import Config, deep_merge, resolve_profile
from reviewlake.errors import UserError


def test_local_profile_is_the_default_and_documents_every_stage():
    cfg = Config.load()
    assert cfg.source.endswith("conf/local.yaml")
    assert cfg.get("spark.master") == "local[*]"
    for key in ("data.raw", "data.lake", "generate.rows", "ingest.mode"):
        assert cfg.get(key) is not None, key


def test_cluster_profiles_extend_local(tmp_path):
    emr = Config.load("emr")
    assert emr.get("spark.master") == "yarn"
    assert emr.get("data.lake").startswith("s3://")
    assert emr.get("ingest.mode") == "overwrite"  # inherited from local.yaml
    sm = Config.load("sagemaker")
    assert sm.get("spark.s3.map_s3_scheme") is True


def test_overrides_are_yaml_typed():
    cfg = Config.load(None, ["generate.rows=123", "generate.gzip=false", "spark.packages=[a, b]"])
    assert cfg.get("generate.rows") == 123
    assert cfg.get("generate.gzip") is False
    assert cfg.get("spark.packages") == ["a", "b"]


def test_flags_override_profile_but_none_keeps_it():
    cfg = Config.load()
    cfg.apply({"data.lake": "/x", "ingest.mode": None})
    assert cfg.get("data.lake") == "/x"
    assert cfg.get("ingest.mode") == "overwrite"


def test_deep_merge_keeps_siblings():
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}


@pytest.mark.parametrize("bad", ["nope", "/no/such/profile.yaml"])
def test_unknown_profile_is_a_user_error(bad):
    with pytest.raises(UserError, match="config profile not found"):
        resolve_profile(bad)


def test_invalid_yaml_and_cycles(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        Config.load(bad)
    loop = tmp_path / "loop.yaml"
    loop.write_text("extends: loop.yaml\n")
    with pytest.raises(UserError, match="extends itself"):
        Config.load(loop)
    with pytest.raises(UserError, match="key=value"):
        Config.load(None, ["novalue"])
