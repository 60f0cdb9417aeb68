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


def test_home_is_expanded_in_path_keys_only(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    prof = tmp_path / "p.yaml"
    prof.write_text("extends: " + str(resolve_profile("local")) + "\n"
                    "data: {features: ~/f, model: /abs/m}\n"
                    "ingest: {input: [~/raw/a.tsv, s3://b/~x]}\n"
                    "prepare: {tokenizer: ~/tok}\n"
                    "spark: {app_name: ~app}\n")
    cfg = Config.load(prof, ["train.model=~/enc", "quality.repository=~/hist"])
    home = str(tmp_path / "home")
    assert cfg.get("data.features") == f"{home}/f" and cfg.get("data.model") == "/abs/m"
    assert cfg.get("ingest.input") == [f"{home}/raw/a.tsv", "s3://b/~x"]
    assert cfg.get("prepare.tokenizer") == f"{home}/tok"
    assert cfg.get("train.model") == f"{home}/enc" and cfg.get("quality.repository") == f"{home}/hist"
    assert cfg.get("spark.app_name") == "~app"          # not a path key: left as written
    cfg.apply({"data.features": "~/flag", "train.checkpoint_dir": "~/ck"})   # --x=~/... flags
    assert cfg.get("data.features") == f"{home}/flag" and cfg.get("train.checkpoint_dir") == f"{home}/ck"


def test_minilm_profile_fine_tunes_the_cached_encoder_in_its_own_directories(monkeypatch, tmp_path):
    from reviewlake.train.cli import spec_from_config

    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = Config.load("minilm")
    local = Config.load("local")
    assert cfg.source.endswith("conf/minilm.yaml")
    minilm = str(tmp_path / ".cache" / "reviewlake" / "models" / "all-MiniLM-L6-v2")
    assert cfg.get("prepare.tokenizer") == minilm and cfg.get("train.model") == minilm
    for key in ("data.features", "data.model"):   # its own outputs: the default demo's are kept
        assert cfg.get(key) != local.get(key) and "minilm" in cfg.get(key)
    for key in ("data.raw", "data.lake", "data.quality", "generate.rows", "train.np"):
        assert cfg.get(key) == local.get(key), key   # the rest is local.yaml's
    spec = spec_from_config(cfg)
    assert spec.model == minilm and spec.init == "pretrained" and spec.encoder_init == "pretrained"
    assert spec.input.endswith("data/features-minilm") and spec.output.endswith("data/model-minilm")
    assert spec.learning_rate <= 1e-4 and spec.steps_per_epoch and spec.batch_size <= 32
    assert cfg.get("prepare.max_seq_length") <= 128


def test_profiles_and_suites_load_from_the_packaged_zip(tmp_path):
    """Under spark-submit --py-files the driver imports reviewlake from the packaged zip
    (spark-submit puts it first on the driver's path too): the profiles and the quality suite
    that travel inside it must load from there (the default profile, a name that extends
    another, a suite by name), not only from a directory."""
    import subprocess
    import sys

    from reviewlake.launch.bundle import build_zip

    bundle = build_zip(tmp_path / "build")
    code = ("import reviewlake, sys\n"
            "from reviewlake.config import Config\n"
            "from reviewlake.quality.suite import load_suite\n"
            "assert '.zip' in reviewlake.__file__, reviewlake.__file__\n"
            "cfg = Config.load()\n"
            "emr = Config.load('emr')\n"
            "print(cfg.get('spark.master'), emr.get('spark.master'), emr.get('ingest.mode'),\n"
            "      len(load_suite('quality.yaml').checks) > 0)\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(bundle), "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["local[*]", "yarn", "overwrite", "True"]
