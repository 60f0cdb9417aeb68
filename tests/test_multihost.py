"""`reviewlake train --hosts` across two hosts for real: two network namespaces on a bridge,
each with its own sshd (tests/hosts.py); horovodrun starts one rank per host over ssh and
the ranks all-reduce over TCP between the namespaces (Gloo).

What each rank reads is recorded by tests/input_trace (its namespace, its Horovod topology,
the record ids of every batch it draws: features_fixture.stamp_record_ids puts each train
record's id in input_ids[0]).
"""
import json
import os
import subprocess
from collections import Counter

import pytest

from conftest import ROOT, run_cli
from hosts import NAMESPACES, _alive, leftovers, two_hosts, unavailable

pytestmark = pytest.mark.slow

BATCH = 16
TRACE_HOOK = ROOT / "tests" / "input_trace"
CLEAN = {"namespaces": {}, "links": [], "etc": []}
# a small model (its graph is traced once per run: most of an epoch on 2 busy cores), and no
# dropout: its random state is not checkpointed, so a resumed run would draw other masks
TRAIN_FLAGS = ["--np", "2", "--batch-size", str(BATCH), "--set", "train.controller=gloo",
               "--set", "train.baseline=false",
               "--set", "train.tensorboard=false", "--set", "train.dropout=0",
               "--set", "train.tiny.dropout=0", "--set", "train.tiny.attention_dropout=0",
               "--set", "train.tiny.n_layers=1", "--set", "train.tiny.dim=32",
               "--set", "train.tiny.hidden_dim=64", "--set", "train.lstm_units=16",
               "--set", "train.dense_units=16"]


@pytest.fixture(scope="module", autouse=True)
def _needs_hosts():
    reason = unavailable()
    if reason:
        pytest.skip(f"two hosts in network namespaces: {reason}")


def test_hosts_are_reachable_isolated_and_torn_down_also_on_failure(tmp_path):
    """The harness itself: what a crashed run left is removed first; inside, each host is
    its own namespace and host name reachable by ssh, with no route out; after an exception
    in the block, no namespace, interface, hosts file, sshd or directory is left."""
    stale = subprocess.Popen(["sh", "-c", f"ip netns add {NAMESPACES[0]} && ip link add rlh0 "
                              f"type bridge && exec ip netns exec {NAMESPACES[0]} sleep 600"])
    try:
        for _ in range(100):
            if leftovers()["namespaces"].get(NAMESPACES[0]):
                break
            subprocess.run(["sleep", "0.05"])
        assert leftovers()["namespaces"].get(NAMESPACES[0]) == [stale.pid]
        with pytest.raises(RuntimeError, match="failed inside"):
            with two_hosts(base=tmp_path) as hosts:
                assert stale.wait(timeout=10) != 0            # the crashed run's process
                up = leftovers()
                assert sorted(up["namespaces"]) == sorted(NAMESPACES)
                sshd = [p for pids in up["namespaces"].values() for p in pids]
                for proc, ns in zip(hosts.sshd, NAMESPACES):   # an sshd in each namespace
                    assert proc.poll() is None and proc.pid in up["namespaces"][ns]
                for address, ns in zip(hosts.addresses, hosts.namespaces):
                    got = hosts.ssh(address, "hostname; ip netns identify; "
                                    "ip -4 -o addr | awk '{print $4}' | sort | tr '\\n' ' '; "
                                    "echo; ip route show default | wc -l; "
                                    "ip route get 1.1.1.1 >/dev/null 2>&1 && echo routed || "
                                    "echo unreachable")
                    assert got.returncode == 0, got.stderr
                    assert got.stdout.split("\n")[:5] == [
                        ns, ns, " ".join(sorted(["127.0.0.1/8", f"{address}/24"])) + " ",
                        "0", "unreachable"]   # its addresses only, no route out (a lookup:
                    # `ip route get` sends nothing)
                workdir = hosts.workdir
                raise RuntimeError("failed inside")
    finally:
        if stale.poll() is None:
            stale.kill()
            stale.wait()
    assert leftovers() == CLEAN
    assert not any(map(_alive, sshd))
    assert not workdir.exists()


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    with two_hosts(base=tmp_path_factory.mktemp("hosts")) as up:
        yield up
    assert leftovers() == CLEAN


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    """Prepared features (no Spark): 225 train records, ids 0..224 in input_ids[0]."""
    from features_fixture import make_features, stamp_record_ids

    root = make_features(tmp_path_factory.mktemp("features") / "f", rows=1200,
                         max_seq_length=16, files=3)
    return root, stamp_record_ids(root)


def train(hosts, features, out, epochs, *extra):
    """`reviewlake train --hosts A:1,B:1` with the trace hook; (metrics, trace per rank)."""
    trace = out.parent / f"{out.name}-trace-{epochs}"
    trace.mkdir(parents=True)
    env = {"PATH": hosts.env["PATH"], "HOME": hosts.env["HOME"],
           "PYTHONPATH": os.pathsep.join([str(TRACE_HOOK), str(ROOT / "lib")]),
           "REVIEWLAKE_TRACE_INPUT": str(trace)}
    proc = run_cli("train", "--input", str(features[0]), "--output", str(out),
                   "--hosts", hosts.hosts_arg(1), "--epochs", str(epochs), *TRAIN_FLAGS, *extra,
                   env=env, timeout=480)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"-H {hosts.hosts_arg(1)} --gloo" in proc.stderr   # the launch line: both hosts
    ranks = {}
    for path in sorted(trace.glob("rank-*.jsonl")):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        where = lines[0]["where"]
        ranks[where["rank"]] = {"where": where, "batches": [r["ids"] for r in lines[1:]]}
    return json.loads((out / "metrics.json").read_text()), ranks


def epochs_read(rank: dict, steps: int, epochs: int) -> dict[int, list[int]]:
    """Epoch -> the record ids a rank trained on in it (batch k is epoch first + k // steps;
    batches drawn past the last epoch by Keras's prefetch are left out)."""
    first = rank["where"]["first_epoch"]
    batches = rank["batches"]
    assert len(batches) >= (epochs - first) * steps
    return {first + e: [i for b in batches[e * steps:(e + 1) * steps] for i in b]
            for e in range(epochs - first)}


@pytest.fixture(scope="module")
def straight(hosts, features, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "model"
    return train(hosts, features, out, 2)


def test_one_rank_on_each_host_and_the_same_weights(hosts, straight):
    metrics, ranks = straight
    assert metrics["world_size"] == 2 and sorted(ranks) == [0, 1]
    where = [ranks[r]["where"] for r in (0, 1)]
    # rank r on host r of -H: its own namespace, host name and address
    assert [w["netns"] for w in where] == hosts.namespaces
    assert [w["hostname"] for w in where] == hosts.namespaces
    assert where[0]["netns_inode"] != where[1]["netns_inode"]
    for w, address in zip(where, hosts.addresses):
        assert w["ipv4"] == sorted([address, "127.0.0.1"])
        assert (w["size"], w["local_size"], w["cross_size"], w["local_rank"]) == (2, 1, 2, 0)
    assert [w["cross_rank"] for w in where] == [0, 1]
    # the all-reduce kept both hosts' models identical, bit for bit
    assert len(metrics["weight_digests"]) == 2 and metrics["ranks_consistent"] is True
    assert len(set(metrics["weight_digests"])) == 1
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]


def test_every_record_once_per_epoch_across_the_hosts(features, straight):
    """Each epoch, the two ranks together read every train record once; each rank its own
    contiguous share (ids r*N//2 .. (r+1)*N//2 - 1), topped up to the epoch's steps x batch
    from its next pass: fewer than one batch per rank over the ranks together, at most one
    batch on a rank (225 records: shares 112 and 113, 8 steps of 16 on each, so 16 and 15)."""
    _, total = features
    metrics, ranks = straight
    steps = metrics["steps_per_epoch"]
    assert steps == -(-total // (2 * BATCH))                     # one pass per epoch
    shares = [set(range(r * total // 2, (r + 1) * total // 2)) for r in (0, 1)]
    read = {r: epochs_read(ranks[r], steps, 2) for r in (0, 1)}
    for epoch in (0, 1):
        across = Counter()
        for r in (0, 1):
            ids = read[r][epoch]
            assert len(ids) == steps * BATCH
            assert set(ids) == shares[r], (r, epoch)               # its share, nothing else
            assert 0 <= len(ids) - len(shares[r]) <= BATCH
            assert max(Counter(ids).values()) <= 2                # a record twice: padding only
            across.update(ids)
        assert set(across) == set(range(total))
        assert sum(across.values()) - total < 2 * BATCH          # < one batch per rank
    assert read[0][0] != read[0][1]                              # a new order each epoch


def test_resume_across_hosts_gives_the_uninterrupted_weights(hosts, features, straight,
                                                             tmp_path):
    """Stopped after epoch 1, then resumed for epoch 2: the same weights as the straight
    run's, on both hosts, and each rank reads in epoch 2 what the straight run's did."""
    metrics, ranks = straight
    steps = metrics["steps_per_epoch"]
    out = tmp_path / "model"
    first, _ = train(hosts, features, out, 1)
    assert [h["epoch"] for h in first["history"]] == [1]
    resumed, resumed_ranks = train(hosts, features, out, 2, "--resume")
    assert resumed["resumed_from_epoch"] == 1
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["weight_digests"] == metrics["weight_digests"]
    assert len(set(resumed["weight_digests"])) == 1
    for r in (0, 1):
        assert resumed_ranks[r]["where"]["first_epoch"] == 1
        assert resumed_ranks[r]["where"]["netns"] == hosts.namespaces[r]
        assert epochs_read(resumed_ranks[r], steps, 2)[1] == epochs_read(ranks[r], steps, 2)[1]
