"""Test instrumentation of the train input (tests/test_multihost.py), for processes started
with this directory first on PYTHONPATH and REVIEWLAKE_TRACE_INPUT=<a directory>.

When ``reviewlake.train.data`` is imported, its ``make_dataset`` is wrapped: the train split's
repeating dataset (the one ``model.fit`` draws from) passes each batch through a recorder
that appends the batch's record ids (``input_ids[:, 0]``, see features_fixture.stamp_record_ids)
to ``<dir>/rank-<rank>.jsonl``, in the order the batches are drawn. The file's first line says
where the process runs: its Horovod rank and topology, its host name, its network namespace
(``ip netns identify`` and the namespace's inode) and its IPv4 addresses. Batch k of a run
that starts at epoch e0 with s steps an epoch belongs to epoch e0 + k // s; Keras prefetches,
so batches past the last epoch may be recorded too (drawn, never trained on).

Nothing happens without REVIEWLAKE_TRACE_INPUT; the library itself is unchanged. (In those
processes this module stands in for the distribution's sitecustomize, which only installs
Ubuntu's apport crash hook.)
"""
import os
import sys

_DIR = os.environ.get("REVIEWLAKE_TRACE_INPUT")
_TARGET = "reviewlake.train.data"


def _where() -> dict:
    import socket
    import subprocess

    import horovod.tensorflow as hvd
    import psutil

    ns = subprocess.run(["ip", "netns", "identify", str(os.getpid())], capture_output=True,
                        text=True).stdout.strip()
    ipv4 = sorted(a.address for addrs in psutil.net_if_addrs().values() for a in addrs
                  if a.family == socket.AF_INET)
    return {"rank": hvd.rank(), "size": hvd.size(), "local_rank": hvd.local_rank(),
            "local_size": hvd.local_size(), "cross_rank": hvd.cross_rank(),
            "cross_size": hvd.cross_size(), "hostname": socket.gethostname(), "netns": ns,
            "netns_inode": os.readlink("/proc/self/ns/net"), "ipv4": ipv4, "pid": os.getpid()}


def _wrap(module) -> None:
    import functools
    import inspect
    import json

    original = module.make_dataset
    signature = inspect.signature(original)

    @functools.wraps(original)
    def make_dataset(*args, **kwargs):
        ds = original(*args, **kwargs)
        call = signature.bind(*args, **kwargs)
        call.apply_defaults()
        a = call.arguments
        if a["split"] != "train" or not a["repeat"]:
            return ds
        import tensorflow as tf

        where = _where()
        where.update(first_epoch=int(a["first_epoch"]), batch_size=int(a["batch_size"]),
                     epoch_records=a["epoch_records"], shard_index=int(a["rank"]),
                     shard_count=int(a["size"]))
        out = open(os.path.join(_DIR, f"rank-{where['rank']}.jsonl"), "a", encoding="utf-8")
        out.write(json.dumps({"where": where}) + "\n")
        out.flush()
        batches = iter(range(1 << 62))

        def record(ids):
            out.write(json.dumps({"batch": next(batches),
                                  "ids": ids.numpy()[:, 0].tolist()}) + "\n")
            out.flush()
            return ids

        def tap(inputs, label):
            ids = tf.py_function(record, [inputs["input_ids"]], tf.int32)
            ids.set_shape(inputs["input_ids"].shape)
            return dict(inputs, input_ids=ids), label

        return ds.map(tap)   # sequential: the file's order is the order batches are drawn

    module.make_dataset = make_dataset


if _DIR:
    import importlib.abc
    import importlib.machinery

    class _Loader(importlib.abc.Loader):
        def __init__(self, inner):
            self.inner = inner

        def create_module(self, spec):
            return self.inner.create_module(spec)

        def exec_module(self, module):
            self.inner.exec_module(module)
            _wrap(module)

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != _TARGET:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader)
            return spec

    sys.meta_path.insert(0, _Finder())
