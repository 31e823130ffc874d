"""torch.distributed helpers and the sharded loader, with 2 gloo ranks on CPU.

Every multi-rank check runs through ``run_ranks`` (spawned processes, a free TCP port and a
timeout), so a desync fails the test instead of hanging CI. Each worker raises on a wrong
result; the test fails when any rank raises.
"""

from __future__ import annotations

import pytest
import torch

from noisyfit import distributed as dist

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


# -- 2-rank training equals 1-rank training --------------------------------------------------

#: (method, options, τ): options that make the rule act within the first epochs
EXACT = [
    ("standard", {}, None),
    ("coteaching", {"t_k": 1}, 0.3),
    ("coteaching", {"t_k": 1, "forward": "two"}, 0.3),
    ("active-bias", {"warm_up": 1}, None),
    ("selfie", {"warm_up": 1, "q": 2, "restart": 0, "round_epochs": 3}, 0.3),
    ("jocor", {"t_k": 1}, 0.3),
    ("coteaching-plus", {"t_k": 1}, 0.3),
    ("f-correction", {"estimate_epochs": 2}, None),
    ("gce", {}, None),
    ("sce", {}, None),
    ("elr", {}, None),
    ("decoupling", {}, None),
    ("sop", {}, None),
    ("sop-plus", {}, None),
    ("mentornet", {}, None),
    ("dividemix", {"warm_up": 1, "lambda_u": 1, "rampup_epochs": 1, "conf_penalty": True}, None),
    ("l2r", {}, None),
    ("l2r", {"init_weight": 0.1, "meta_momentum": 0.9}, None),
    ("ieg", {}, None),
    ("ieg", {"threshold": 1.0, "rampup_steps": 3, "aug_type": "default"}, None),
    ("elr-plus", {}, None),
    ("elr-plus", {"alpha": 0, "weight_labels": True}, None),
    ("incv", {"iterations": 1, "cv_epochs": 3, "e_warm": 0, "t_k": 1, "eps": 0.3}, None),
    (
        "incv",
        {
            "iterations": 2,
            "cv_epochs": 2,
            "e_warm": 0,
            "t_k": 1,
            "eps": 0.3,
            "batches": "all",
            "rank": "train",
        },
        None,
    ),
    ("d2l", {"init_epoch": 1, "epoch_win": 1, "k": 5, "lid_batch": 20, "lid_samples": 40}, None),
]
N, D, K, BATCH, EPOCHS = 45, 6, 3, 10, 3  # 45 % 10 = 5: a last global batch split 3/2


def _tiny_data():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(N) % K
    x = torch.randn(N, D, generator=g) + 1.5 * torch.nn.functional.one_hot(y, D).float()
    noisy = torch.where(torch.rand(N, generator=g) < 0.3, (y + 1) % K, y)
    return x, y, noisy


def _make_model(bn: bool):
    from torch import nn

    from noisyfit.models.small import MLP

    if not bn:
        return MLP(K, D, hidden=(16,))
    return nn.Sequential(nn.Linear(D, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, K))


def _train(method: str, options: dict, tau, bn: bool = False) -> dict:
    """One fit on the tiny data (1 process or this rank of W); what the test compares."""
    from noisyfit.api import Loaders, build_run
    from noisyfit.config import TrainConfig
    from noisyfit.data.loader import DeviceLoader
    from noisyfit.engine.loop import fit

    x, y, noisy = _tiny_data()
    kw = dict(normalize="none", device="cpu")
    train = DeviceLoader(x, noisy, batch_size=BATCH, shuffle=True, seed=3, **kw)
    test = DeviceLoader(x[:31], y[:31], batch_size=8, shuffle=False, **kw)
    cfg = TrainConfig(
        method=method,
        epochs=EPOCHS,
        batch_size=BATCH,
        lr=0.05,
        progress=False,
        checkpoint=False,
        device="cpu",
        tau=tau,
        method_options={k: str(v) for k, v in options.items()},
    )
    from noisyfit.methods import METHODS, _builtin  # noqa: F401

    probe = None  # a clean probe batch of 7 (split 4/3 over 2 ranks), for L2R/IEG
    if METHODS.get(method).needs_probe:
        probe = DeviceLoader(x[31:], y[31:], batch_size=7, shuffle=True, seed=4, **kw)
    torch.manual_seed(0)  # the same initial networks in every process
    run = build_run(  # the one run builder, on the tiny loaders and model
        cfg,
        loaders=Loaders(train, K, (D,), test=test, probe=probe),
        model=lambda k, shape: _make_model(bn),
        device=torch.device("cpu"),
    )
    m = run.method
    res = fit(m, train, test, cfg, true_labels=y)
    state = {k: v.clone() for k, v in m.state_dict().items() if torch.is_tensor(v)}
    return {
        "params": {  # parameters and buffers (BatchNorm statistics) of every network
            f"{k}.{name}": v.detach().clone().float()
            for k, net in m.models.items()
            for name, v in net.state_dict().items()
        },
        "state": state,
        "verdicts": {k: v.clone() for k, v in res.verdicts.state_dict().items()},
        "history": res.history,
    }


def _train_ranks(rank: int, out: str, cases: list) -> None:
    results = [_train(*c) for c in cases]
    torch.save(results, f"{out}/rank{rank}.pt")


def _same(a, b, what, atol=0.0):
    if a.dtype.is_floating_point:
        ok = torch.allclose(a, b, atol=atol, rtol=0, equal_nan=True)
    else:
        ok = torch.equal(a, b)
    assert ok, f"{what}: max diff {(a.double() - b.double()).abs().max()}"


def test_two_ranks_train_like_one_process(tmp_path):
    """Every supported method (no BatchNorm): 2 gloo ranks and 1 process agree — per-sample
    state and verdicts identical across ranks and equal to 1 process, parameters, losses
    and test accuracy to float tolerance; a BatchNorm model completes with identical state."""
    cases = [(*c, False) for c in EXACT] + [("coteaching", {"t_k": 1}, 0.3, True)]
    dist.run_ranks(_train_ranks, 2, str(tmp_path), cases, timeout_s=150)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    for (method, opts, tau, bn), a, b in zip(cases, r0, r1):
        name = f"{method}{opts}{' bn' if bn else ''}"
        for k in a["state"]:  # identical across ranks, bit for bit
            _same(a["state"][k], b["state"][k], f"{name} state {k} rank 0 vs 1")
        for k in a["verdicts"]:
            _same(a["verdicts"][k], b["verdicts"][k], f"{name} verdicts {k} rank 0 vs 1")
        for k in a["params"]:
            _same(a["params"][k], b["params"][k], f"{name} params {k} rank 0 vs 1")
        timing = ("images_per_s", "epoch_time_s", "epoch_cpu_s")
        assert [{k: v for k, v in h.items() if k not in timing} for h in a["history"]] == [
            {k: v for k, v in h.items() if k not in timing} for h in b["history"]
        ]
        if bn:  # per-rank batch statistics: no equality with 1 process claimed
            continue
        one = _train(method, opts, tau)
        for k in one["state"]:
            _same(a["state"][k], one["state"][k], f"{name} state {k} vs 1 process", atol=1e-5)
        for k in ("verdict", "label"):
            _same(a["verdicts"][k], one["verdicts"][k], f"{name} verdicts {k} vs 1 process")
        for k in ("score", "weight"):
            _same(a["verdicts"][k], one["verdicts"][k], f"{name} {k} vs 1 process", atol=1e-5)
        for k in one["params"]:
            _same(a["params"][k], one["params"][k], f"{name} params {k} vs 1 process", atol=1e-5)
        for h2, h1 in zip(a["history"], one["history"]):
            for key in ("train_loss", "train_error", "test_acc", "test_loss", "label_precision"):
                v2, v1 = h2.get(key), h1.get(key)
                assert v1 is not None and abs(v2 - v1) < 1e-5, (name, key, v2, v1)


# -- the command line under 2 ranks: rank 0 writes, a stopped run resumes ----------------------

RUN = ["--dataset", "synthetic", "--model", "mlp", "--no-progress", "--batch-size", "48"]
RUN += ["--method", "coteaching", "--tau", "0.3", "--epochs", "3", "--lr", "0.02"]
RUN += ["--noise-rate", "0.3", "--device", "cpu", "--no-report"]


def _stop_then_resume(rank: int, out: str, resume_ranks: int = 2) -> None:
    from noisyfit.cli import main
    from noisyfit.methods.coteaching import CoTeaching

    original = CoTeaching.on_epoch_end

    def stop(self, e):
        if e == 1:  # the checkpoint on disk holds epoch 0 only, as after a kill in epoch 2
            raise KeyboardInterrupt
        return original(self, e)

    CoTeaching.on_epoch_end = stop
    try:
        assert main(["train", *RUN, "--out", out, "--name", "d2"]) == 130
    finally:
        CoTeaching.on_epoch_end = original
    if resume_ranks != 2:  # the test resumes it with another world size
        return
    from noisyfit import distributed as d

    d.init_process(rank, 2, f"file://{out}/pg2", timeout_s=60)  # main() left the group
    assert main(["train", "--resume", f"{out}/d2", "--no-progress", "--no-report"]) == 0


@pytest.mark.parametrize("resume_ranks", [2, 1])
def test_a_stopped_two_rank_run_resumes_like_one_uninterrupted_process(tmp_path, resume_ranks):
    """Stopped with 2 processes, resumed with 2 (or with 1: the checkpoint holds no
    world size), it equals an uninterrupted 1-process run."""
    import json

    from noisyfit.cli import main

    dist.run_ranks(_stop_then_resume, 2, str(tmp_path), resume_ranks, timeout_s=150)
    if resume_ranks == 1:
        assert main(["train", "--resume", str(tmp_path / "d2"), "--no-progress"]) == 0
    assert main(["train", *RUN, "--out", str(tmp_path), "--name", "d1"]) == 0
    read = lambda name: [  # noqa: E731
        json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()
    ]
    two, one = read("d2"), read("d1")
    assert [h["epoch"] for h in two] == [1, 2, 3]
    for h2, h1 in zip(two, one):
        for key in ("train_loss", "test_acc", "label_precision", "train_loss_net2"):
            assert abs(h2[key] - h1[key]) < 1e-5, (key, h2[key], h1[key])
    import csv

    rows = [list(csv.reader(open(tmp_path / r / "samples.csv"))) for r in ("d2", "d1")]
    assert len(rows[0]) == len(rows[1]) > 500
    for a, b in zip(*rows):  # verdicts equal, scores to the csv's 6 digits
        for u, v in zip(a, b):
            try:
                assert abs(float(u) - float(v)) <= 1e-4 * max(1.0, abs(float(v))), (a, b)
            except ValueError:
                assert u == v, (a, b)
    assert not list(tmp_path.glob("d2-*"))  # one run folder: the other rank wrote nothing


def test_methods_not_exact_across_ranks_are_refused(monkeypatch, capsys):
    from noisyfit.cli import main
    from noisyfit.config import TrainConfig
    from noisyfit.engine.loop import check_addons
    from noisyfit.errors import ConfigError
    from noisyfit.methods import METHODS, _builtin  # noqa: F401

    check_addons(METHODS.get("l2r"), TrainConfig(method="l2r"))  # one process: fine
    check_addons(METHODS.get("standard"), TrainConfig(sync_bn=True))  # one process: ignored
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun --nproc-per-node 2 sets it
    supported = [n for n in METHODS.names() if vars(METHODS.get(n)).get("distributed")]
    assert {"standard", "coteaching", "selfie", "active-bias"} <= set(supported)
    for name in METHODS.names():
        cfg = TrainConfig(method=name)
        if name in supported:
            check_addons(METHODS.get(name), cfg)
            continue
        with pytest.raises(ConfigError, match=f"method '{name}' does not run with 2 processes"):
            check_addons(METHODS.get(name), cfg)
    assert {"l2r", "ieg", "dividemix"} <= set(supported)

    class Variant(METHODS.get("ieg")):  # a subclass is refused until it declares it again
        pass

    with pytest.raises(ConfigError, match="method 'my-ieg' does not run with 2 processes"):
        check_addons(Variant, TrainConfig(method="my-ieg"))
    with pytest.raises(ConfigError, match="--mixup does not run with 2 processes"):
        check_addons(METHODS.get("standard"), TrainConfig(mixup=0.2))
    with pytest.raises(ConfigError, match="--sync-bn with 2 processes needs CUDA"):
        check_addons(METHODS.get("standard"), TrainConfig(sync_bn=True, device="cpu"))
    assert main(["demo"]) == 2  # only `train` runs under torchrun
    assert "only `noisyfit train`" in capsys.readouterr().err


def test_nproc_shortcut_runs_torchrun_standalone(monkeypatch):
    import subprocess
    import sys

    from noisyfit.cli import main

    seen = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: seen.append(cmd) or 0)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["train", "--nproc", "2", "--epochs", "2", "--nproc=2"]) == 0
    assert seen == [
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
        + ["-m", "noisyfit", "train", "--epochs", "2"]
    ]


def _meta_step(rank: int | None, out: str) -> None:
    """L2R's meta step on a fixed global batch of 9 (5/4 over 2 ranks) and probe of 7, both
    paths (forward-mode and double backward): this rank's weights (all of them in 1 process)."""
    from types import SimpleNamespace

    from noisyfit.methods.l2r import meta_gradients, normalized_weights

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(D, 8), torch.nn.Tanh(), torch.nn.Linear(8, K))
    x, y = torch.randn(9, D), torch.arange(9) % K
    px, py = torch.randn(7, D), torch.arange(7) % K
    one = rank is None
    sizes = (9,) if one else (5, 4)
    part = slice(0, 9) if one else (slice(0, 5), slice(5, 9))[rank]
    shard = SimpleNamespace(global_size=9, offset=part.start, sizes=sizes)
    got = []
    with dist.step_context(shard):
        for path in ("jvp", "double"):
            logits = net(x[part])
            ce = torch.nn.functional.cross_entropy(logits, y[part], reduction="none")
            eps = torch.full_like(ce, 0.1).requires_grad_(True)
            (g,), meta, _ = meta_gradients(
                net, lambda e, ce=ce: (e * ce).sum(), (eps,), px, py, step_size=0.1,
                weight_decay=0.01, train_x=x[part] if path == "jvp" else None,
                train_logits=logits if path == "jvp" else None,
            )  # fmt: skip
            got.append((normalized_weights(g).detach(), meta))
    torch.save(got, f"{out}/meta{'' if one else rank}.pt")


def test_l2r_meta_step_is_exact_across_ranks(tmp_path):
    """The spec's exact mode: both meta-gradient paths give 2 ranks the 1-process weights."""
    dist.run_ranks(_meta_step, 2, str(tmp_path), timeout_s=90)
    _meta_step(None, str(tmp_path))
    one = torch.load(tmp_path / "meta.pt")
    r0, r1 = (torch.load(tmp_path / f"meta{r}.pt") for r in (0, 1))
    for (w, m), (w0, m0), (w1, m1) in zip(one, r0, r1):
        _same(torch.cat([w0, w1]), w, "weights", atol=1e-6)
        _same(m0, m, "probe loss", atol=1e-6)
        assert torch.equal(m0, m1)
    assert not torch.allclose(one[0][0], torch.full((9,), 1 / 9), atol=1e-3)  # not uniform


def test_bench_runs_each_cell_under_torchrun_when_asked(tmp_path, monkeypatch):
    """``nproc: 2`` in a sweep file: each cell runs under torchrun --standalone with two
    processes (env.json records them) and equals the 1-process cell on a model without
    BatchNorm; a method that is not exact across processes is refused when the file loads."""
    import json

    import yaml

    from noisyfit.bench import load_sweep
    from noisyfit.cli import main
    from noisyfit.errors import ConfigError

    monkeypatch.setenv("NOISYFIT_REPORT", "0")
    cfg = {
        "dataset": "synthetic",
        "model": "mlp",
        "epochs": 2,
        "batch_size": 64,
        "train_subset": 256,
        "test_subset": 64,
        "augment": False,
        "device": "cpu",
    }
    acc = {}
    for n in (1, 2):
        sweep = tmp_path / f"s{n}.yaml"
        body = {"methods": ["coteaching"], "method_options": {"coteaching": {"t_k": 1}}}
        body.update(noise=["symmetric:0.4"], seeds=[0], report=False, config=cfg, nproc=n)
        sweep.write_text(yaml.safe_dump(body))
        assert main(["bench", str(sweep), "--out", str(tmp_path / f"b{n}")]) == 0
        (run,) = (tmp_path / f"b{n}" / "runs").iterdir()
        assert json.loads((run / "env.json").read_text())["processes"] == n
        hist = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        acc[n] = [(h["train_loss"], h["test_acc"]) for h in hist]
    for (l1, a1), (l2, a2) in zip(acc[1], acc[2]):
        assert l2 == pytest.approx(l1, rel=1e-4) and a2 == pytest.approx(a1, abs=1e-6)
    from noisyfit.methods import METHODS

    monkeypatch.setattr(METHODS.get("ieg"), "distributed", False)  # a method not (yet) exact
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"methods": ["ieg"], "nproc": 2, "config": cfg}))
    with pytest.raises(ConfigError, match="'ieg' does not run with nproc 2"):
        load_sweep(bad)


def _ieg_images(rank: int | None, out: str) -> None:
    """IEG on tiny uint8 images with crop/flip (its strong view: AutoAugment of the weak
    view, crop/flip, Cutout), 2 epochs on a model without BatchNorm: the final weights."""
    from torch import nn

    from noisyfit.api import Loaders, build_run
    from noisyfit.config import TrainConfig
    from noisyfit.data.loader import DeviceLoader
    from noisyfit.engine.loop import fit

    g = torch.Generator().manual_seed(0)
    y = torch.arange(40) % K
    x = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=g)
    train = DeviceLoader(x, y, batch_size=BATCH, shuffle=True, seed=3, augment=True, device="cpu")
    test = DeviceLoader(x[:20], y[:20], batch_size=8, shuffle=False, device="cpu")
    probe = DeviceLoader(x[30:], y[30:], batch_size=7, shuffle=True, seed=4, device="cpu")
    cfg = TrainConfig(method="ieg", epochs=2, batch_size=BATCH, lr=0.05, progress=False)
    cfg.checkpoint, cfg.device = False, "cpu"
    torch.manual_seed(0)
    run = build_run(
        cfg,
        loaders=Loaders(train, K, (3, 8, 8), test=test, probe=probe),
        model=lambda k, shape: nn.Sequential(
            nn.Flatten(), nn.Linear(192, 16), nn.ReLU(), nn.Linear(16, K)
        ),
        device=torch.device("cpu"),
    )
    fit(run.method, train, test, cfg, true_labels=y)
    params = {k: v.detach().clone() for k, v in run.method.models["net"].state_dict().items()}
    torch.save(params, f"{out}/img{'' if rank is None else rank}.pt")


def test_ieg_on_images_is_exact_across_ranks(tmp_path):
    """The strong view, probe draws and MixUp are drawn for the global batch: 2 ranks train
    the 1-process weights on augmented images too (the tiny vectors of EXACT have no
    strong view)."""
    dist.run_ranks(_ieg_images, 2, str(tmp_path), timeout_s=120)
    _ieg_images(None, str(tmp_path))
    one, r0, r1 = (torch.load(tmp_path / f"img{r}.pt") for r in ("", 0, 1))
    for k in one:
        _same(r0[k], r1[k], f"{k} rank 0 vs 1")
        _same(r0[k], one[k], f"{k} vs 1 process", atol=1e-5)


FIND = ["find-issues", "--dataset", "synthetic", "--model", "mlp", "--no-progress"]
FIND += ["--batch-size", "48", "--epochs", "2", "--train-subset", "240", "--test-subset", "48"]
FIND += ["--noise", "symmetric", "--noise-rate", "0.3", "--device", "cpu", "--folds", "2"]


def _find_issues_rank(rank: int, out: str) -> None:
    from noisyfit.cli import main

    assert main([*FIND, "--out", out, "--name", "fi2"]) == 0


def test_find_issues_runs_its_folds_distributed_like_one_process(tmp_path):
    """``find-issues`` under torchrun: the K fold networks train with 2 processes (the one
    loop), the predictions are replicated, rank 0 alone writes the folder; every row's flag
    and label quality equal the 1-process run's."""
    import csv

    from noisyfit.cli import main

    dist.run_ranks(_find_issues_rank, 2, str(tmp_path), timeout_s=150)
    assert main([*FIND, "--out", str(tmp_path), "--name", "fi1"]) == 0
    two, one = (
        list(csv.DictReader(open(tmp_path / n / "label_issues.csv"))) for n in ("fi2", "fi1")
    )
    assert len(two) == len(one) == 240
    assert [r["is_label_issue"] for r in two] == [r["is_label_issue"] for r in one]
    for a, b in zip(two, one):
        assert abs(float(a["label_quality"]) - float(b["label_quality"])) < 1e-4, (a, b)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("fi")) == ["fi1", "fi2"]


# -- L2R/IEG meta_sync="per-replica": the official MirroredStrategy rule --------------------

PER_REPLICA = [("l2r", {}), ("ieg", {"aug_type": "default"})]


def _per_replica(rank: int | None, out: str) -> None:
    """Each PER_REPLICA method in both modes on the tiny data, recording this rank's example
    weights of every step; saves [(mode, weights per step, parameters)]."""
    from noisyfit.methods import METHODS

    got = []
    for method, opts in PER_REPLICA:
        cls = METHODS.get(method)
        orig = cls.training_step
        for mode in ("exact", "per-replica"):
            steps = []

            def record(self, batch, epoch, orig=orig, steps=steps):
                res = orig(self, batch, epoch)
                steps.append((res.weights.detach().clone(), res.score.detach().clone()))
                return res

            cls.training_step = record
            try:
                res = _train(method, {**opts, "meta_sync": mode}, None)
            finally:
                cls.training_step = orig
            got.append((method, mode, steps, res["params"]))
    torch.save(got, f"{out}/replica{'' if rank is None else rank}.pt")


def test_per_replica_meta_sync_normalises_each_rank(tmp_path):
    """meta_sync="per-replica" on 2 ranks: each rank's weights are ≥ 0 and sum to 1 on every
    step (exact mode: the ranks' shares of one global normaliser), DDP keeps the parameters
    identical across ranks, and the result differs from the exact mode; with one process
    both modes give the same numbers."""
    dist.run_ranks(_per_replica, 2, str(tmp_path), timeout_s=150)
    _per_replica(None, str(tmp_path))
    one = torch.load(tmp_path / "replica.pt", weights_only=False)
    r0, r1 = (torch.load(tmp_path / f"replica{r}.pt", weights_only=False) for r in (0, 1))
    for i in range(0, len(one), 2):  # (exact, per-replica) of each method
        (method, _, w_ex1, p_ex1), (_, _, w_pr1, p_pr1) = one[i], one[i + 1]
        for k in p_ex1:  # one process: the option changes nothing
            assert torch.equal(p_ex1[k], p_pr1[k]), (method, k)
        assert all(torch.equal(a[0], b[0]) for a, b in zip(w_ex1, w_pr1))
        ex = [r[i] for r in (r0, r1)]
        pr = [r[i + 1] for r in (r0, r1)]

        def local_norm(w, score):  # w = max(−g, 0) / (Σ_rank max(−g, 0) + 1e-5), score = −g
            c = score.clamp_min(0)
            return torch.allclose(w, c / (c.sum() + 1e-5), atol=1e-7, rtol=1e-5)

        for _, _, steps, _ in pr:  # per rank: w ≥ 0, normalised over this rank's rows
            assert len(steps) == len(w_ex1)
            assert all((w >= 0).all() and local_norm(w, sc) for w, sc in steps), method
            assert sum(abs(float(w.sum()) - 1) < 1e-3 for w, _ in steps) > len(steps) / 2
        for _, _, steps, _ in ex:  # exact: a rank's weights are its share of the global sum
            assert not all(local_norm(w, sc) for w, sc in steps), method
        for (_, _, _, pa), (_, _, _, pb) in (ex, pr):  # DDP: the ranks stay identical
            for k in pa:
                _same(pa[k], pb[k], f"{method} params {k} rank 0 vs 1")
        diff = max((pr[0][3][k] - ex[0][3][k]).abs().max().item() for k in p_ex1)
        assert diff > 1e-4, (method, "per-replica trains like exact", diff)
        for k in p_ex1:  # exact: the 1-process parameters
            _same(ex[0][3][k], p_ex1[k], f"{method} exact params {k} vs 1 process", atol=1e-5)


def _tiny_probe(rank: int) -> None:
    from types import SimpleNamespace

    from noisyfit.data.loader import Batch
    from noisyfit.errors import ConfigError
    from noisyfit.methods.l2r import replica_probe

    method = SimpleNamespace(config=SimpleNamespace(meta_sync="per-replica"))
    shard = SimpleNamespace(global_size=4, offset=2 * rank, sizes=(2, 2))
    probe = Batch(torch.arange(3), torch.randn(3, D), torch.arange(3) % K)
    with dist.step_context(shard):
        got, local = replica_probe(method, probe)
        assert local and got.index.tolist() == ([0, 1], [2])[rank]  # this rank's share
        one = Batch(probe.index[:1], probe.x[:1], probe.labels[:1])
        try:
            replica_probe(method, one)
        except ConfigError as e:
            assert "larger probe batch" in str(e)
        else:
            raise AssertionError("a probe batch of 1 for 2 processes was not refused")
        method.config.meta_sync = "exact"
        assert replica_probe(method, one) == (one, False)


def test_per_replica_refuses_a_probe_batch_smaller_than_the_processes():
    dist.run_ranks(_tiny_probe, 2, timeout_s=60)
