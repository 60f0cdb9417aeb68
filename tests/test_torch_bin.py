"""reviewlake.train.torch_bin: PyTorch checkpoints (torch.save's zip format) read without torch.

A real file written by torch (torchfcpe's pitch estimator, from its PyPI wheel, fetched by
`make models`), files written by tests/torch_zip.py (shared storages, offsets, strides, every
dtype), the restricted unpickler, MiniLM as a pytorch_model.bin directory, and the one-line
errors of files that cannot be read."""
import hashlib
import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

import torch_zip as tz
from reviewlake.errors import UserError
from reviewlake.train import torch_bin
from test_pretrained import _keep_the_environment, assert_every_weight_is, minilm  # noqa: F401

# torchfcpe==0.0.4's torchfcpe/assets/fcpe_c_v001.pt (the Makefile pins the same sha256)
FCPE = Path(os.environ.get("REVIEWLAKE_FCPE", Path.home() / ".cache" / "reviewlake" / "models" /
                           "torchfcpe" / "fcpe_c_v001.pt"))
FCPE_SHA256 = "b9aeaeb673436eeda50ceafd632aa681aa63417e52eae4207503d180c9b10015"


@pytest.fixture(scope="module")
def fcpe():
    if not FCPE.is_file():
        pytest.skip(f"no real torch checkpoint at {FCPE}: `make models` takes it from PyPI's "
                    f"torchfcpe==0.0.4 wheel (it could not be fetched)")
    assert hashlib.sha256(FCPE.read_bytes()).hexdigest() == FCPE_SHA256, \
        f"{FCPE} is not torchfcpe 0.0.4's fcpe_c_v001.pt: delete it and run `make models`"
    return torch_bin.load(FCPE)


def test_a_checkpoint_written_by_torch_reads_as_its_own_config_says(fcpe):
    """torch 2.x wrote {'global_step', 'model': state dict, 'config_dict'} with 73 float32
    tensors, one storage each, saved on cuda:0. What only a right reading gives:

    * every tensor's shape follows the config in the same pickle (mel bins, hidden size,
      layers, output classes), and their bytes add up to the storage records' sizes;
    * the two buffers CFNaiveMelPE computes from the config come back as computed:
      cent_table = linspace(1200 log2(f0_min / 10), 1200 log2(f0_max / 10), out_dims) and
      gaussian_blurred_cent_mask = 1200 log2(f0_max / 10), a 0-d tensor;
    * the per-layer LayerNorms that a conv-only model never trains are still at their
      initial values, exactly 1 and 0, while the trained weights are finite and spread."""
    assert set(fcpe) == {"global_step", "model", "config_dict"} and fcpe["global_step"] == 600000
    cfg, state = fcpe["config_dict"]["model"], fcpe["model"]
    assert cfg["type"] == "CFNaiveMelPE" and cfg["conv_only"] is True
    hidden, out_dims = cfg["hidden_dims"], cfg["out_dims"]
    mels = fcpe["config_dict"]["mel"]["num_mels"]
    assert isinstance(state, OrderedDict) and len(state) == 73
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in state.values())
    with zipfile.ZipFile(FCPE) as zf:
        records = [i for i in zf.infolist() if "/data/" in i.filename]
    assert len(records) == 73
    assert sum(v.nbytes for v in state.values()) == sum(i.file_size for i in records)

    assert state["input_stack.0.weight"].shape == (hidden, mels, 3)
    assert state["input_stack.3.weight"].shape == (hidden, hidden, 3)
    layers = {k.split(".")[2] for k in state if k.startswith("net.encoder_layers.")}
    assert layers == {str(i) for i in range(cfg["n_layers"])}
    assert state["net.encoder_layers.0.conformer.net.2.weight"].shape == (4 * hidden, hidden, 1)
    assert state["net.encoder_layers.0.conformer.net.4.conv.weight"].shape == (2 * hidden, 1, 31)
    assert state["output_proj.weight_v"].shape == (out_dims, hidden)
    assert state["output_proj.weight_g"].shape == (out_dims, 1)

    def cents(f0: float) -> float:
        return 1200 * np.log2(f0 / 10)

    expected = np.linspace(cents(cfg["f0_min"]), cents(cfg["f0_max"]), out_dims)
    np.testing.assert_allclose(state["cent_table"], expected, rtol=1e-6, atol=1e-3)
    mask = state["gaussian_blurred_cent_mask"]
    assert mask.shape == () and abs(float(mask) - cents(cfg["f0_max"])) < 1e-3

    for i in range(cfg["n_layers"]):
        assert np.all(state[f"net.encoder_layers.{i}.norm.weight"] == 1)
        assert np.all(state[f"net.encoder_layers.{i}.norm.bias"] == 0)
    for name, values in state.items():
        assert np.isfinite(values).all(), name
        if name.endswith("conv.weight") or name.endswith("net.2.weight"):
            assert 0.1 < values.std() < 0.5 and abs(values.mean()) < 0.01, name


def test_views_of_shared_storages_and_every_dtype_round_trip(tmp_path):
    """What torch writes for views: tensors sharing one storage at offsets, a transposed view,
    a strided slice, a broadcast (stride 0), 0-d and empty tensors, and every dtype."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 6)).astype(np.float32)
    shared = tz.storage_of(np.arange(40, dtype=np.float32))
    arrays = {"float64": rng.standard_normal(5), "float16": w.astype(np.float16),
              "int64": np.array([-2 ** 40, 0, 7]), "int32": np.array([-5, 2 ** 30], np.int32),
              "int16": np.array([-300, 300], np.int16), "int8": np.array([-128, 127], np.int8),
              "uint8": np.array([0, 200, 255], np.uint8), "bool": np.array([True, False, True])}
    tensors = {name: tz.tensor(values) for name, values in arrays.items()}
    tensors.update({
        "head": tz.contiguous(shared, (2, 3)), "tail": tz.contiguous(shared, (3, 4), offset=28),
        "every_other": tz.Tensor(shared, 1, (2, 5), (10, 2)),
        "column": tz.Tensor(shared, 3, (4,), (8,)),
        "broadcast": tz.Tensor(shared, 9, (3, 2), (0, 1)), "scalar": tz.Tensor(shared, 39, (), ()),
        "empty": tz.Tensor(shared, 0, (0, 5), (5, 1)), "transposed": tz.transposed(w),
        "bfloat16": tz.contiguous(tz.bfloat16_storage(
            np.array([1.0, -0.375, 2 ** -20, 1.5 * 2 ** 127, 1 + 2 ** -8, 1 + 3 * 2 ** -8,
                      1 + 2 ** -8 + 2 ** -20])), (7,)),
    })
    tz.save(tmp_path / "views.bin", tensors)
    state = torch_bin.load_state_dict(tmp_path / "views.bin")

    assert list(state) == list(tensors)
    for name, values in arrays.items():
        assert state[name].dtype == values.dtype and state[name].tolist() == values.tolist(), name
    flat = np.arange(40, dtype=np.float32)
    np.testing.assert_array_equal(state["head"], flat[:6].reshape(2, 3))
    np.testing.assert_array_equal(state["tail"], flat[28:].reshape(3, 4))
    np.testing.assert_array_equal(state["every_other"], [[1, 3, 5, 7, 9], [11, 13, 15, 17, 19]])
    np.testing.assert_array_equal(state["column"], [3, 11, 19, 27])
    np.testing.assert_array_equal(state["broadcast"], [[9, 10]] * 3)
    assert state["scalar"].shape == () and float(state["scalar"]) == 39
    assert state["empty"].shape == (0, 5) and state["empty"].dtype == np.float32
    np.testing.assert_array_equal(state["transposed"], w)
    # bfloat16 is float32's high half: exact where representable, else to nearest even
    assert state["bfloat16"].dtype == np.float32
    assert state["bfloat16"].tolist() == [1.0, -0.375, 2 ** -20, 1.5 * 2 ** 127, 1.0, 1 + 2 ** -6,
                                          1 + 2 ** -7]
    for values in state.values():
        assert values.flags.c_contiguous and values.flags.writeable


def test_one_storage_is_read_once_and_views_are_copies(tmp_path):
    shared = tz.storage_of(np.arange(10, dtype=np.int64))
    tz.save(tmp_path / "a.bin", {"a": tz.contiguous(shared, (5,)),
                                 "b": tz.contiguous(shared, (5,), offset=5)})
    with zipfile.ZipFile(tmp_path / "a.bin") as zf:
        assert sorted(n for n in zf.namelist() if "/data/" in n) == ["archive/data/0"]
    state = torch_bin.load_state_dict(tmp_path / "a.bin")
    state["a"][0] = 100                           # no aliasing between tensors
    assert state["b"].tolist() == [5, 6, 7, 8, 9]


def _checkpoint(path: Path, pickled: bytes, prefix: str = "archive") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{prefix}/data.pkl", pickled)
        zf.writestr(f"{prefix}/byteorder", "little")
        zf.writestr(f"{prefix}/version", "3\n")
    return path


class _RunsACommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Evaluates:
    def __reduce__(self):
        return eval, ("__import__('os').getpid()",)


def test_a_pickle_that_names_any_other_global_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    payloads = {"system": {"weight": _RunsACommand(marker)}, "eval": [_Evaluates()],
                "numpy": np.float32(1.5), "torch": pickle.GLOBAL + b"torch._utils\n"
                b"_rebuild_device_tensor_from_numpy\n" + pickle.STOP}
    for name, payload in payloads.items():
        data = payload if isinstance(payload, bytes) else pickle.dumps(payload, protocol=2)
        path = _checkpoint(tmp_path / f"{name}.bin", data)
        with pytest.raises(UserError, match="which a state dict does not need: refused") as err:
            torch_bin.load(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


def test_a_pickle_cannot_change_the_stand_ins(tmp_path):
    """BUILD (setstate) on a name the unpickler resolved is refused: the next load is not
    changed by this one."""
    build = (pickle.PROTO + b"\x02" + pickle.GLOBAL + b"torch\nFloatStorage\n" + pickle.EMPTY_DICT
             + pickle.SHORT_BINUNICODE + b"\x05dtype" + pickle.SHORT_BINUNICODE + b"\x02<i"
             + pickle.SETITEM + pickle.BUILD + pickle.STOP)
    with pytest.raises(UserError, match="truncated or corrupt .*sets the state"):
        torch_bin.load(_checkpoint(tmp_path / "build.bin", build))
    assert torch_bin.STORAGE_TYPES["FloatStorage"].dtype == np.float32


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_minilm_as_pytorch_model_bin_loads_every_weight(minilm, tmp_path, dtype):  # noqa: F811
    """MiniLM's safetensors written as pytorch_model.bin: every float tensor a view of one
    shared storage at its offset, the 2-D ones transposed views; every TF weight equals the
    safetensors' tensor (in float16 / bfloat16: that tensor rounded so)."""
    import safetensors.numpy

    from reviewlake.train.model import load_pretrained_encoder

    state = safetensors.numpy.load_file(str(minilm / "model.safetensors"))
    (tmp_path / "config.json").write_text((minilm / "config.json").read_text())
    tz.save(tmp_path / "pytorch_model.bin", tz.packed(state, dtype))
    with zipfile.ZipFile(tmp_path / "pytorch_model.bin") as zf:
        assert len([n for n in zf.namelist() if "/data/" in n]) == 2   # floats, position_ids
    rounded = {"float32": lambda a: a, "float16": lambda a: a.astype(np.float16),
               "bfloat16": tz.bfloat16_round}[dtype]
    expected = {k: rounded(v) if v.dtype.kind == "f" else v for k, v in state.items()}
    assert_every_weight_is(load_pretrained_encoder(str(tmp_path)), expected)


def test_safetensors_wins_over_pytorch_model_bin(minilm, tmp_path):  # noqa: F811
    from reviewlake.train.model import _read_state_dict

    (tmp_path / "model.safetensors").symlink_to(minilm / "model.safetensors")
    (tmp_path / "pytorch_model.bin").write_bytes(b"PK")
    source, _ = _read_state_dict(str(tmp_path))
    assert source.endswith("model.safetensors")


def test_a_state_dict_that_does_not_fit_the_config_is_one_line(minilm, tmp_path):  # noqa: F811
    import safetensors.numpy

    from reviewlake.train.model import load_pretrained_encoder

    state = safetensors.numpy.load_file(str(minilm / "model.safetensors"))
    (tmp_path / "config.json").write_text((minilm / "config.json").read_text())
    bin_file = tmp_path / "pytorch_model.bin"
    cases = {"1 weights missing": {k: v for k, v in state.items() if k != "pooler.dense.bias"},
             "of another shape": dict(state, **{"pooler.dense.bias": np.zeros(7, np.float32)})}
    for message, broken in cases.items():
        tz.save(bin_file, {k: tz.tensor(v) for k, v in broken.items()})
        with pytest.raises(UserError, match=f"pytorch_model.bin does not fit its config.json: "
                                            f".*{message}") as err:
            load_pretrained_encoder(str(tmp_path))
        assert "\n" not in str(err.value)


def _good(path: Path) -> Path:
    tz.save(path, {"w": tz.tensor(np.arange(64, dtype=np.float32).reshape(8, 8)),
                   "b": tz.tensor(np.ones(8, np.float32))})
    return path


def _replace(path: Path, name: str, record: str, data: bytes | None) -> Path:
    """A copy of a checkpoint, ``name``, with one record replaced (None: left out)."""
    out = path.with_name(name)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename != record:
                dst.writestr(info, src.read(info))
        if data is not None:
            dst.writestr(record, data)
    return out


def test_files_that_cannot_be_read_are_one_line_errors_naming_the_file(tmp_path):
    good = _good(tmp_path / "good.bin")
    raw = good.read_bytes()
    storage = raw.index(np.arange(64, dtype=np.float32).tobytes())
    flipped = bytearray(raw)
    flipped[storage + 5] ^= 0xFF
    (tmp_path / "flipped.bin").write_bytes(bytes(flipped))
    (tmp_path / "truncated.bin").write_bytes(raw[:len(raw) // 2])
    (tmp_path / "pk.bin").write_bytes(b"PK")
    (tmp_path / "empty.bin").write_bytes(b"")
    (tmp_path / "text.bin").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    (tmp_path / "legacy.bin").write_bytes(b"".join(pickle.dumps(v, protocol=2) for v in (
        torch_bin.LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True})))
    big = tmp_path / "big.bin"
    tz.save(big, {"w": tz.tensor(np.ones(2, np.float32))}, byteorder="big")
    past = tmp_path / "past.bin"
    tz.save(past, {"w": tz.contiguous(tz.storage_of(np.ones(4, np.float32)), (2, 2), offset=1)})
    cases = {
        "flipped": ("truncated or corrupt", tmp_path / "flipped.bin"),
        "truncated": ("truncated or corrupt", tmp_path / "truncated.bin"),
        "pk": ("truncated or corrupt", tmp_path / "pk.bin"),
        "empty": ("truncated or corrupt", tmp_path / "empty.bin"),
        "text": ("truncated or corrupt", tmp_path / "text.bin"),
        "short storage": ("holds 252 bytes, not 64 elements", _replace(
            good, "short.bin", "archive/data/0", raw[storage:storage + 252])),
        "no storage": ("no record archive/data/1",
                       _replace(good, "nostorage.bin", "archive/data/1", None)),
        "no data.pkl": ("0 <archive>/data.pkl records",
                        _replace(good, "nopickle.bin", "archive/data.pkl", None)),
        "bad pickle": ("truncated or corrupt .*Ran out of input",
                       _replace(good, "badpickle.bin", "archive/data.pkl", b"\x80\x02}(")),
        "past the storage": ("reaches past its storage of 4 elements", past),
        "legacy": ("legacy format .* re-save it with a newer torch .* model.safetensors",
                   tmp_path / "legacy.bin"),
        "big-endian": ("byte order 'big'; only little-endian", big),
        "missing": ("cannot read", tmp_path / "missing.bin"),
        "not a state dict": ("holds a list, not a state dict", _checkpoint(
            tmp_path / "list.bin", pickle.dumps([1, 2], protocol=2))),
        "not tensors": ("is not a state dict: 'step' is of type int, not a tensor", _checkpoint(
            tmp_path / "step.bin", pickle.dumps({"step": 3}, protocol=2))),
    }
    for name, (message, path) in cases.items():
        with pytest.raises(UserError, match=message) as err:
            torch_bin.load_state_dict(path)
        text = str(err.value)
        assert str(path) in text and "\n" not in text, name
