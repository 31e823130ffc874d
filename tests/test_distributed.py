"""torch.distributed helpers and the sharded loader, with 2 gloo ranks on CPU.

Every multi-rank check runs through ``run_ranks`` (spawned processes, a free TCP port and a
timeout), so a desync fails the test instead of hanging CI. Each worker raises on a wrong
result; the test fails when any rank raises.
"""

from __future__ import annotations

import pytest
import torch

from noisyfit.engine import distributed as dist

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is not available"
)


def test_single_process_fallback_is_the_identity():
    assert (dist.rank(), dist.world(), dist.is_main(), dist.is_distributed()) == (0, 1, True, False)
    t = torch.arange(6.0).view(3, 2)
    assert dist.all_reduce_sum(t) is t
    assert dist.all_gather_rows(t) is t
    assert dist.broadcast_object({"a": 1}) == {"a": 1}
    assert dist.init("cpu") == torch.device("cpu")  # no WORLD_SIZE: nothing to join
    dist.barrier()
    dist.shutdown()


def _collectives(rank: int) -> None:
    w = dist.world()
    assert (dist.rank(), w, dist.is_main()) == (rank, 2, rank == 0)
    # all_reduce of sums
    s = dist.all_reduce_sum(torch.tensor([1.0 + rank, 10.0], dtype=torch.float64))
    assert s.tolist() == [3.0, 20.0], s
    # rows of unequal counts (rank 0: 3 rows, rank 1: 1 row), int64 and uint8, known sizes
    rows = torch.arange(3 - 2 * rank).repeat_interleave(2).view(-1, 2) + 100 * rank
    got = dist.all_gather_rows(rows, sizes=[3, 1])
    assert got.tolist() == [[0, 0], [1, 1], [2, 2], [100, 100]], got
    got8 = dist.all_gather_rows(rows.to(torch.uint8))  # sizes gathered first
    assert got8.dtype == torch.uint8 and got8.tolist() == got.tolist()
    empty = dist.all_gather_rows(torch.zeros(0, 4), sizes=[0, 0])
    assert empty.shape == (0, 4)
    # broadcast of a tensor and of an object
    b = dist.broadcast(torch.full((2,), float(rank)))
    assert b.tolist() == [0.0, 0.0]
    assert dist.broadcast_object(f"run-{rank}") == "run-0"
    dist.barrier()


def test_collectives_two_gloo_ranks():
    dist.run_ranks(_collectives, 2, timeout_s=90)


def _desync(rank: int) -> None:
    import time

    if rank == 0:  # rank 1 never joins this collective
        dist.all_reduce_sum(torch.ones(1))
    else:
        time.sleep(60)


def test_a_skipped_collective_fails_instead_of_hanging():
    with pytest.raises(Exception):  # noqa: B017  (the rank's error or the timeout)
        dist.run_ranks(_desync, 2, timeout_s=8)


# -- global batches --------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "world", "bs"), [(23, 2, 6), (20, 2, 4), (11, 3, 4), (7, 4, 5)])
@pytest.mark.parametrize("augment", [False, True])
def test_shards_of_every_global_batch_are_the_one_process_batches(n, world, bs, augment):
    from noisyfit.data.loader import DeviceLoader
    from noisyfit.data.sharded import ShardedLoader, eval_shard

    g = torch.Generator().manual_seed(n)
    x = torch.randint(0, 256, (n, 1, 6, 6), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % 3
    one = DeviceLoader(x, y, batch_size=bs, augment=augment, seed=5)
    shards = [ShardedLoader(one, r, world) for r in range(world)]
    orders = []
    for epoch in (0, 1):
        full = list(one.epoch(epoch))
        parts = [list(s.epoch(epoch)) for s in shards]
        assert all(len(p) == len(full) == len(s) for p, s in zip(parts, shards))  # same steps
        for k, b in enumerate(full):
            cat = [parts[r][k] for r in range(world)]
            assert torch.equal(torch.cat([c.index for c in cat]), b.index)
            assert torch.equal(torch.cat([c.x for c in cat]), b.x)  # augmented alike
            assert torch.equal(torch.cat([c.labels for c in cat]), b.labels)
            assert all(c.global_size == len(b) for c in cat)
            assert [c.offset for c in cat] == [sum(cat[0].sizes[:r]) for r in range(world)]
        seen = torch.cat([c.index for p in parts for c in p])
        assert sorted(seen.tolist()) == list(range(n))  # each sample once: no duplicates
        orders.append(seen.tolist())
    assert orders[0] != orders[1]  # a fresh permutation each epoch
    ev = [eval_shard(one, r, world).indices.tolist() for r in range(world)]
    assert sorted(sum(ev, [])) == list(range(n))
