"""Run under `horovodrun --gloo -H localhost:1,127.0.0.1:1`: gives each process the
environment SageMaker gives the instance it stands for (host index = HOROVOD_CROSS_RANK,
from hosts.json), records what its train dataset reads, then runs jobs/sagemaker_train.py.

    python sagemaker_hosts.py HOSTS_JSON OUT_DIR ENTRY --key value ...
"""
import json
import os
import runpy
import sys

hosts_json, out_dir, entry, *hps = sys.argv[1:]
host = int(os.environ["HOROVOD_CROSS_RANK"])
os.environ.update(json.load(open(hosts_json))[host])

import reviewlake.train.data as data  # noqa: E402  (the worker looks it up at call time)

real = data.make_dataset


def make_dataset(features, split, batch_size, rank=0, size=1, *args, **kwargs):
    if split == "train":
        import horovod.tensorflow as hvd

        listed = data.file_records(features, split)
        share = data.record_ranges([n for _, n in listed], rank, size)
        record = {"host": os.environ["SM_CURRENT_HOST"], "rank": hvd.rank(), "size": hvd.size(),
                  "local_rank": hvd.local_rank(), "local_size": hvd.local_size(),
                  "cross_rank": hvd.cross_rank(), "cross_size": hvd.cross_size(),
                  "shard": [rank, size],
                  "read": [[os.path.realpath(listed[i][0]), first, n] for i, first, n in share]}
        with open(os.path.join(out_dir, f"rank{hvd.rank()}.json"), "w") as fh:
            json.dump(record, fh)
    return real(features, split, batch_size, rank, size, *args, **kwargs)


data.make_dataset = make_dataset
sys.argv = [entry, *hps]
runpy.run_path(entry, run_name="__main__")
