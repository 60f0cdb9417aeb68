"""How train processes split the train files: every file visible to every process
("global"), or each host holding only its own share (SageMaker's ShardedByS3Key: "host")."""
import pytest

from reviewlake.errors import UserError
from reviewlake.train.spec import TrainSpec

from features_fixture import id_features, ids_of


@pytest.mark.parametrize("counts,size", [([37] * 10, 8), ([5, 80, 3, 0, 41], 4),
                                         ([250], 3), ([9, 9], 7)])
@pytest.mark.parametrize("with_counts", [True, False])
def test_every_record_once_across_ranks_whatever_the_file_ratio(tmp_path, counts, size,
                                                                with_counts):
    """Defects 1-2 of issue 14: 10 files on 8 ranks gave two ranks twice the data, and fewer
    files than ranks sharded a differently ordered stream on every rank. Now: disjoint shares
    that cover the split and differ by at most one record, shuffled or not."""
    from reviewlake.train.data import make_dataset

    features = id_features(tmp_path, counts, with_counts)
    total = sum(counts)
    for shuffle in (False, True):
        shares = [ids_of(make_dataset(features, "train", 8, r, size, shuffle=shuffle, seed=3))
                  for r in range(size)]
        seen = sorted(i for share in shares for i in share)
        assert seen == list(range(total)), shuffle
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_each_epoch_is_one_pass_over_the_share_plus_under_one_batch(tmp_path):
    """With the steps of steps_for, epoch after epoch: every record of a rank's share once,
    topped up with fewer than batch records from a further pass; all ranks the same steps."""
    from reviewlake.train.data import make_dataset, steps_for

    counts, size, batch = [37] * 10, 8, 8
    features = id_features(tmp_path, counts)
    steps = steps_for(sum(counts), batch, size)
    epochs = 3
    for r in range(size):
        ds = make_dataset(features, "train", batch, r, size, shuffle=True, repeat=True,
                          seed=3, shuffle_buffer=64, epoch_records=steps * batch)
        got = ids_of(ds, steps * epochs)
        share = set(ids_of(make_dataset(features, "train", batch, r, size)))
        orders = []
        for e in range(epochs):
            epoch = got[e * steps * batch:(e + 1) * steps * batch]
            assert set(epoch) == share, (r, e)           # the whole share, nothing else
            assert len(epoch) - len(share) < batch       # padded by less than one batch
            orders.append(epoch)
        assert orders[0] != orders[1]                     # a new order every epoch
        # a run resumed after epoch 1 reads what the uninterrupted run reads from there on
        resumed = make_dataset(features, "train", batch, r, size, shuffle=True, repeat=True,
                               seed=3, shuffle_buffer=64, epoch_records=steps * batch,
                               first_epoch=1)
        assert ids_of(resumed, steps * (epochs - 1)) == got[steps * batch:]
        # epochs shorter than the share (capped steps): consecutive stretches of one stream
        short = dict(batch_size=batch, rank=r, size=size, shuffle=True, repeat=True, seed=3,
                     shuffle_buffer=64, epoch_records=2 * batch)
        stream = ids_of(make_dataset(features, "train", **short), 5)
        assert len(set(stream)) == len(stream)            # 5 batches < one pass: no repeats
        assert ids_of(make_dataset(features, "train", first_epoch=2, **short), 1) == \
            stream[4 * batch:]


def test_host_shares_split_by_local_rank(tmp_path):
    """SageMaker's ShardedByS3Key: a host holds only some files; its processes split exactly
    those records by local rank (counts come from _meta.json by file name)."""
    from reviewlake.train.data import make_dataset, shard_position
    from reviewlake.train.meta import Features

    full = id_features(tmp_path, [30, 10, 20, 40])
    # host 1 of 2 received part-1 and part-3 (ids 30..39 and 60..99)
    meta = dict(full.meta, splits={"train": dict(full.meta["splits"]["train"], files=[
        "train/part-00001.tfrecord", "train/part-00003.tfrecord"])})
    host = Features(root=full.root, meta=meta)
    assert shard_position("global", 2, 4, 0, 2) == (2, 4)
    assert shard_position("host", 2, 4, 0, 2) == (0, 2)
    with pytest.raises(ValueError):
        shard_position("node", 0, 1, 0, 1)
    shares = [ids_of(make_dataset(host, "train", 8, *shard_position("host", r, 4, r - 2, 2)))
              for r in (2, 3)]
    assert sorted(shares[0] + shares[1]) == list(range(30, 40)) + list(range(60, 100))
    assert len(shares[0]) == len(shares[1]) == 25


def test_spec_fields_round_trip_and_validate():
    spec = TrainSpec(input="f", output="m", shard="host", checkpoint_dir="/opt/ml/checkpoints")
    again = TrainSpec.from_json(spec.to_json()).validate()
    assert again.shard == "host" and again.checkpoint_dir == "/opt/ml/checkpoints"
    assert TrainSpec(input="f", output="m").validate().shard == "global"
    with pytest.raises(UserError, match="shard must be one of global, host"):
        TrainSpec(input="f", output="m", shard="rank").validate()
