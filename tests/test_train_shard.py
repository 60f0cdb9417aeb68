"""How train processes split the train files: every file visible to every process
("global"), or each host holding only its own share (SageMaker's ShardedByS3Key: "host")."""
import pytest

from reviewlake.errors import UserError
from reviewlake.train.spec import TrainSpec


def test_shard_position_global_and_host():
    from reviewlake.train.data import shard_files, shard_position

    # 2 hosts x 2 processes; rank 2 is host 1's first process.
    assert shard_position("global", 2, 4, 0, 2) == (2, 4)
    assert shard_position("host", 2, 4, 0, 2) == (0, 2)
    with pytest.raises(ValueError):
        shard_position("node", 0, 1, 0, 1)

    # Host 1 received part-1 and part-3 of part-0..3 (ShardedByS3Key); its two processes
    # split those two files by local rank and together read exactly the host's share.
    host_files = ["train/part-00001.tfrecord", "train/part-00003.tfrecord"]
    taken = [shard_files(host_files, *shard_position("host", r, 4, r - 2, 2))[0]
             for r in (2, 3)]
    assert taken == [["train/part-00001.tfrecord"], ["train/part-00003.tfrecord"]]
    # Global sharding of the host's two files would fall back to every 4th record: ranks 2
    # and 3 would together read only half of what their host received.
    assert shard_files(host_files, 2, 4) == (host_files, True)


def test_spec_fields_round_trip_and_validate():
    spec = TrainSpec(input="f", output="m", shard="host", checkpoint_dir="/opt/ml/checkpoints")
    again = TrainSpec.from_json(spec.to_json()).validate()
    assert again.shard == "host" and again.checkpoint_dir == "/opt/ml/checkpoints"
    assert TrainSpec(input="f", output="m").validate().shard == "global"
    with pytest.raises(UserError, match="shard must be one of global, host"):
        TrainSpec(input="f", output="m", shard="rank").validate()
