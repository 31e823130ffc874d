"""Nothing lost, nothing mixed (issue 16): one writer per run folder, bench processes that end
with their sweep, no silent wrong input, one clear line for errors a user can fix, truthful
interruption messages, INCV's selection checkpoints, a restricted CIFAR unpickler, and a
mentor that is the same on every machine. Tiny data (synthetic, mlp, 1-2 epochs) throughout.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import noisyfit
from noisyfit.cli import main

SRC = str(Path(noisyfit.__file__).resolve().parents[1])
TINY = dict(
    dataset="synthetic", model="mlp", progress=False, batch_size=128, epochs=1, eval_batch_size=256
)
FLAGS = ["--dataset", "synthetic", "--model", "mlp", "--no-progress", "--batch-size", "128"]


def cli(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.Popen:
    """``python -m noisyfit ARGS`` in a new process (1 thread, this checkout's package)."""
    e = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "NOISYFIT_REPORT": "0"}
    e.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "noisyfit", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=e,
    )


def one_clear_line(capsys, rc: int, *must: str) -> str:
    """The CLI failed with exit 2 and one line on stderr naming ``must``, no traceback."""
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("noisyfit: error: "), err
    assert "Traceback" not in err and "weights_only=False" not in err
    for m in must:
        assert m in lines[0], (m, lines[0])
    return lines[0]


def stopped_run(tmp_path: Path, name: str = "r", **kw) -> Path:
    """A run folder with a checkpoint and no summary (as if stopped after its last epoch)."""
    r = noisyfit.train(**{**TINY, **kw}, out=str(tmp_path), name=name)
    (r.run_dir / "summary.json").unlink()
    return r.run_dir


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ 1. one writer per folder


def test_a_locked_run_folder_refuses_a_second_process_naming_the_holder(tmp_path):
    from noisyfit.engine.run import RunLock

    d = tmp_path / "r"
    d.mkdir()
    with RunLock(d):
        p = cli("train", *FLAGS, "--epochs", "1", "--out", str(tmp_path), "--name", "r")
        out, err = p.communicate(timeout=120)
    assert p.returncode == 2, err
    assert f"pid {os.getpid()}" in err and str(d) in err and "Traceback" not in err
    assert not (d / "config.yaml").exists()  # the second process wrote nothing


def test_two_processes_racing_for_one_run_folder(tmp_path):
    """Two `train` processes with different seeds and the same --name: one trains, the other
    exits 2 with a clear message; the folder's config is the winner's."""
    procs = [
        cli(
            "train",
            *FLAGS,
            "--epochs",
            "2",
            "--seed",
            str(s),
            "--out",
            str(tmp_path),
            "--name",
            "r",
        )
        for s in (1, 2)
    ]
    res = [(p.wait(timeout=180), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in res) == [0, 2], res
    loser = next(err for rc, err in res if rc == 2)
    # depending on when it looked: the winner's lock, its first checkpoint, or its summary
    assert any(
        m in loser for m in ("in use by another noisyfit process", "already holds a run",
                             "holds a finished run")
    ), loser  # fmt: skip
    assert "Traceback" not in loser
    winner_seed = (1, 2)[[rc for rc, _ in res].index(0)]
    d = tmp_path / "r"
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    summary = json.loads((d / "summary.json").read_text())
    ck = torch.load(d / "checkpoint.pt", weights_only=True)
    assert cfg["seed"] == ck["config"]["seed"] == winner_seed and summary["epochs"] == 2


def test_temporary_files_are_unique_per_writer(tmp_path, monkeypatch):
    from noisyfit.engine import checkpoint, run

    seen = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (seen.append(Path(a).name), real(a, b)))
    for _ in range(2):
        checkpoint.save_checkpoint({"epoch": 0, "models": {}}, tmp_path / "checkpoint.pt")
        row = dict(epoch=1, lr=0.1, train_loss=1.0, train_error=0.5, test_loss=None)
        run.RunLog(tmp_path).write([{**row, "test_error": None}])
    assert len(seen) == 6 and len(set(seen)) == 6  # never one fixed name such as log.csv.tmp
    assert all(str(os.getpid()) in n for n in seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint.pt",
        "log.csv",
        "metrics.jsonl",
    ]


def test_default_run_names_never_collide(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20260101-000000")  # same second
    a = noisyfit.train(**TINY, out=str(tmp_path))
    b = noisyfit.train(**TINY, out=str(tmp_path))
    assert a.run_dir != b.run_dir
    assert (a.run_dir / "summary.json").is_file() and (b.run_dir / "summary.json").is_file()
    assert json.loads((a.run_dir / "summary.json").read_text())["run_dir"] == str(a.run_dir)


def test_a_finished_no_checkpoint_run_is_not_overwritten(tmp_path):
    first = noisyfit.train(**TINY, checkpoint=False, out=str(tmp_path), name="r")
    before = snapshot(first.run_dir)
    with pytest.raises(FileExistsError, match="finished run"):
        noisyfit.train(**TINY, checkpoint=False, seed=3, out=str(tmp_path), name="r")
    assert snapshot(first.run_dir) == before


def test_resume_of_a_finished_run_leaves_it_untouched_and_says_so(tmp_path, capsys):
    first = noisyfit.train(**TINY, out=str(tmp_path), name="r")
    before = snapshot(first.run_dir)
    assert main(["train", "--resume", str(first.run_dir)]) == 0
    assert "finished before" in capsys.readouterr().out
    assert snapshot(first.run_dir) == before  # wall_time_s included


# ---------------------------------------------------------------- 2. bench processes


def _sweep(tmp_path: Path, epochs: int, **extra) -> Path:
    f = tmp_path / "sweep.yaml"
    d = {
        "name": "s",
        "out": str(tmp_path / "bench"),
        "methods": ["standard"],
        "noise": ["symmetric:0.2"],
        "seeds": [0],
        "report": False,
        "config": {"dataset": "synthetic", "model": "mlp", "batch_size": 128, "epochs": epochs,
                   **extra},
    }  # fmt: skip
    f.write_text(yaml.safe_dump(d))
    return f


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _children(pid: int) -> list[int]:
    out = []
    for t in Path(f"/proc/{pid}/task").glob("*/children"):
        out += [int(x) for x in t.read_text().split()]
    return out


def test_kill_9_of_bench_ends_its_training_child(tmp_path):
    f = _sweep(tmp_path, 100000, train_subset=16, test_subset=16)  # trains for hours
    bench = cli("bench", str(f))
    lock = tmp_path / "bench" / "runs" / "standard-symmetric0.2-s0" / ".lock"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (lock.is_file() and lock.read_text().strip()):
        time.sleep(0.2)
    holder = lock.read_text().split() if lock.is_file() else []
    kids = _children(bench.pid)
    try:
        assert holder[:1] == ["pid"], "the cell never took its run folder's lock"
        child = int(holder[1])
        assert _alive(child)
        os.kill(bench.pid, signal.SIGKILL)
        bench.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _alive(child):
            time.sleep(0.2)
        assert not _alive(child), "the cell outlived its killed sweep"
    finally:
        if bench.poll() is None:
            bench.kill()
        for pid in {*kids, *map(int, holder[1:2])}:  # never leave a training orphan behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_bench_leaves_a_folder_in_use_alone(tmp_path, capsys):
    from noisyfit.bench import load_sweep
    from noisyfit.engine.run import RunLock

    f = _sweep(tmp_path, 1)
    d = load_sweep(f).out / "runs" / "standard-symmetric0.2-s0"
    d.mkdir(parents=True)
    with RunLock(d):
        assert main(["bench", str(f)]) == 1
    out = capsys.readouterr().out
    assert f"in use by pid {os.getpid()}" in out and "busy" in out
    assert not (d / "config.yaml").exists()


def test_bench_never_reuses_a_cell_whose_config_changed(tmp_path, capsys):
    from noisyfit.bench import load_sweep

    f = _sweep(tmp_path, 1)
    (name, cfg), = load_sweep(f).runs()  # fmt: skip
    noisyfit.train(cfg)  # the cell, trained as bench would (in-process: faster)
    assert main(["bench", str(f)]) == 0  # unchanged: skipped, aggregated
    assert "skipped" in capsys.readouterr().out
    rows = (tmp_path / "bench" / "results.csv").read_text().splitlines()
    assert len(rows) == 2 and name in rows[1]
    _sweep(tmp_path, 2)  # the sweep file edited: epochs 1 → 2
    assert main(["bench", str(f)]) == 1
    out = capsys.readouterr().out
    assert "refused" in out and "epochs 1 → 2" in out
    rows = (tmp_path / "bench" / "results.csv").read_text().splitlines()
    assert len(rows) == 1  # the header only: the old result is not aggregated as the new cell


# --------------------------------------------------------------- 3. silent wrong inputs


def _noise_cli(tmp_path, *args) -> int:
    return main(["noise", "--dataset", "synthetic", "--out", str(tmp_path / "o"), *args])


def test_float_labels_in_a_labels_file_are_refused(tmp_path, capsys):
    y = (np.arange(512) % 4).astype(float)
    y[7] = 1.63
    f = tmp_path / "labels.txt"
    np.savetxt(f, y)
    one_clear_line(capsys, _noise_cli(tmp_path, "--noise", "labels", "--noise-file", str(f)),
                   "labels.txt", "1.63", "entry 7")  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_a_2d_labels_array_is_refused_not_flattened(tmp_path, capsys):
    f = tmp_path / "labels.npy"
    np.save(f, (np.arange(512) % 4).reshape(256, 2))
    one_clear_line(capsys, _noise_cli(tmp_path, "--noise", "labels", "--noise-file", str(f)),
                   "labels.npy", "(256, 2)")  # fmt: skip


def test_a_probe_taking_every_sample_is_an_error(tmp_path, capsys):
    rc = main(["train", *FLAGS, "--epochs", "1", "--probe-per-class", "128", "--out",
               str(tmp_path), "--name", "r"])  # fmt: skip
    one_clear_line(capsys, rc, "probe", "all 512")
    assert not (tmp_path / "r").exists()


def test_resume_refuses_an_edited_config_naming_the_keys(tmp_path, capsys):
    d = stopped_run(tmp_path)
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    before = snapshot(d)
    cfg.update(lr=0.5, weight_decay=0.0)
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    line = one_clear_line(capsys, main(["train", "--resume", str(d)]), "config.yaml", "lr")
    assert "weight_decay" in line and "0.5" in line
    assert {k: v for k, v in snapshot(d).items() if k != "config.yaml"} == {
        k: v for k, v in before.items() if k != "config.yaml"
    }


def test_a_missing_data_dir_never_falls_back_to_another_copy(tmp_path):
    from noisyfit.data.base import DatasetNotFoundError, candidate_dirs, load_dataset

    assert candidate_dirs("fashion-mnist", tmp_path) == [tmp_path / "fashion-mnist", tmp_path]
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("fashion-mnist", tmp_path / "nowhere", download=False)
    looked = str(e.value).split("Looked in:")[1].split("To get it")[0]
    assert "nowhere" in looked and "/usr/share/datasets" not in looked


def test_every_run_records_its_data_source(tmp_path):
    rng = np.random.default_rng(0)
    f = tmp_path / "d.npz"
    np.savez(f, x=rng.normal(size=(80, 6)).astype(np.float32), y=np.arange(80) % 2)
    r = noisyfit.train(**{**TINY, "dataset": "arrays"}, data_dir=str(f), noise="none",
                       out=str(tmp_path), name="r")  # fmt: skip
    src = json.loads((r.run_dir / "data_source.json").read_text())
    assert src["data_dir"] == str(f) and [x["path"] for x in src["files"]] == [str(f.resolve())]
    assert src["files"][0]["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    syn = json.loads(
        (
            noisyfit.train(**TINY, out=str(tmp_path), name="s").run_dir / "data_source.json"
        ).read_text()
    )
    assert syn["dataset"] == "synthetic" and syn["files"] == [] and syn["sha256"] is None


def test_an_empty_class_folder_is_a_recorded_warning(tmp_path):
    from PIL import Image

    from noisyfit.data.base import load_dataset
    from noisyfit.errors import DataWarning

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.fromarray(np.full((4, 4), 40 * i, np.uint8)).save(tmp_path / c / f"{i}.png")
    (tmp_path / "c").mkdir()
    with pytest.warns(DataWarning, match="holds no image"):
        ds = load_dataset("imagefolder", tmp_path)
    assert ds.class_names == ["a", "b"] and len(ds.extra["warnings"]) == 1
    assert str(tmp_path / "c") in ds.extra["warnings"][0]


def test_a_binary_file_cut_at_a_record_boundary_is_noticed(tmp_path, monkeypatch):
    from noisyfit.data import cifar
    from noisyfit.data.base import load_dataset
    from noisyfit.data.binary import write_binary_dataset
    from noisyfit.errors import DataWarning

    ds = load_dataset("synthetic", n_train=20, n_test=10, channels=3, image_size=32)
    write_binary_dataset(ds, tmp_path / "cifar10", n_batches=2)
    monkeypatch.setitem(cifar.RELEASE_COUNTS, "cifar10", (20, 10))  # this copy's "release"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        assert len(load_dataset("cifar10", tmp_path, download=False).test_x) == 10
    f = tmp_path / "cifar10" / "test_batch.bin"
    f.write_bytes(f.read_bytes()[: -(8 + 3 * 32 * 32)])  # one record fewer, size still a multiple
    with pytest.warns(DataWarning, match="9 test records; the release has 20 and 10"):
        cut = load_dataset("cifar10", tmp_path, download=False)
    assert len(cut.extra["warnings"]) == 1


def test_symmetric_noise_1_is_a_recorded_warning(tmp_path):
    from noisyfit.noise import NoiseWarning

    with pytest.warns(NoiseWarning, match="every label wrong"):
        r = noisyfit.train(**TINY, noise_rate=1.0, out=str(tmp_path), name="r")
    assert "every label wrong" in json.loads((r.run_dir / "noise.json").read_text())["warnings"][0]


# ------------------------------------------------- 4. one clear line, traceback on --debug


@pytest.mark.parametrize("kind", ["empty", "random", "truncated", "pickle"])
def test_a_corrupt_checkpoint_is_one_clear_line(tmp_path, capsys, kind):
    d = stopped_run(tmp_path)
    ck = d / "checkpoint.pt"
    data = ck.read_bytes()
    ck.write_bytes(
        {
            "empty": b"",
            "random": np.random.default_rng(0).bytes(4000),
            "truncated": data[: len(data) // 2],
            "pickle": pickle.dumps(print),  # code, refused by weights_only
        }[kind]
    )
    one_clear_line(capsys, main(["train", "--resume", str(d)]), "checkpoint.pt", "delete")


def test_malformed_yaml_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 3\nlr: [0.1\n")
    one_clear_line(capsys, main(["train", "--config", str(bad)]), "bad.yaml", "not valid YAML")
    one_clear_line(capsys, main(["bench", str(bad)]), "bad.yaml", "not valid YAML")


def test_a_truncated_npz_is_one_clear_line(tmp_path, capsys):
    f = tmp_path / "d.npz"
    np.savez(f, x=np.zeros((50, 4), np.float32), y=np.arange(50) % 2)
    f.write_bytes(f.read_bytes()[:300])
    rc = main(
        ["train", *FLAGS, "--dataset", "arrays", "--data-dir", str(f), "--out", str(tmp_path)]
    )
    one_clear_line(capsys, rc, "d.npz", "truncated")


def test_changed_noisy_labels_on_resume_are_one_clear_line(tmp_path, capsys):
    d = stopped_run(tmp_path)
    y = np.load(d / "noisy_labels.npy")
    np.save(d / "noisy_labels.npy", (y + 1) % 4)
    one_clear_line(capsys, main(["train", "--resume", str(d)]), "noisy_labels.npy", "differ")


def test_a_model_changed_in_config_yaml_is_one_clear_line(tmp_path, capsys):
    d = stopped_run(tmp_path)
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    (d / "config.yaml").write_text(yaml.safe_dump({**cfg, "model": "cnn-tiny"}))
    one_clear_line(capsys, main(["train", "--resume", str(d)]), "model", "'mlp' → 'cnn-tiny'")


def test_ctrl_c_during_start_up_is_one_line(capsys, monkeypatch):
    import noisyfit.cli as c

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(c, "_load_commands", interrupted)
    try:
        rc = main(["train"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C during start-up escaped main() (a traceback)")
    assert rc == 130
    err = capsys.readouterr().err
    assert err.strip() == "noisyfit: interrupted" and "Traceback" not in err


def test_debug_shows_tracebacks_and_bugs_are_never_swallowed(tmp_path, monkeypatch, capsys):
    from noisyfit.errors import ConfigError, NoisyfitError

    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [\n")
    with pytest.raises(ConfigError):
        main(["--debug", "train", "--config", str(bad)])
    monkeypatch.setenv("NOISYFIT_DEBUG", "1")
    with pytest.raises(ConfigError):
        main(["train", "--config", str(bad)])
    monkeypatch.delenv("NOISYFIT_DEBUG")

    def bug(*a, **k):
        raise ValueError("a bug inside noisyfit")

    monkeypatch.setattr(noisyfit.cli, "train", bug)  # the name cmd_train calls
    with pytest.raises(ValueError, match="a bug inside"):  # not turned into "exit 2"
        main(["train", *FLAGS])
    assert issubclass(ConfigError, NoisyfitError) and issubclass(ConfigError, ValueError)


# ------------------------------------------------------- 5. truthful interruption messages


def test_ctrl_c_during_a_checkpoint_write_counts_only_saved_epochs(tmp_path, monkeypatch, capsys):
    from noisyfit.engine import loop

    real, calls = loop.save_checkpoint, []

    def save(state, path):
        calls.append(1)
        if len(calls) == 2:  # the write of epoch 2
            raise KeyboardInterrupt
        real(state, path)

    monkeypatch.setattr(loop, "save_checkpoint", save)
    with pytest.raises(KeyboardInterrupt):
        noisyfit.train(**{**TINY, "epochs": 3}, out=str(tmp_path), name="r")
    out = capsys.readouterr()
    said = out.err + out.out
    assert "1 epoch(s) are saved" in said and "--resume" in said
    assert torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)["epoch"] == 0


def test_ctrl_c_before_any_checkpoint_offers_no_resume(tmp_path, monkeypatch, capsys):
    from noisyfit.methods import METHODS, _builtin  # noqa: F401

    def stop(self, epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(METHODS.get("standard"), "on_epoch_end", stop)
    with pytest.raises(KeyboardInterrupt):
        noisyfit.train(**TINY, out=str(tmp_path), name="r")
    out = capsys.readouterr()
    said = out.err + out.out
    assert "nothing to resume" in said and "Resume with" not in said
    assert not (tmp_path / "r" / "checkpoint.pt").exists()
    monkeypatch.undo()
    r = noisyfit.train(**TINY, out=str(tmp_path), name="r")  # the stopped start does not block
    assert (r.run_dir / "summary.json").is_file()


def _fake_cv(calls: list, stop_at: int | None = None):
    """A hand-built train/predict pair: the 'model' predicts the label i % 3 for sample i."""

    def train_fn(train_mask, val_mask, keep_best):
        calls.append(int(train_mask.sum()))
        if stop_at is not None and len(calls) == stop_at:
            raise KeyboardInterrupt
        return None

    def predict_fn(model, mask):
        idx = torch.nonzero(mask).flatten()
        return torch.nn.functional.one_hot(idx % 3, 3).float() * 0.9 + 0.1 / 3

    return train_fn, predict_fn


def test_incv_selection_checkpoints_each_iteration_and_resumes(tmp_path):
    from noisyfit.analysis.incv import incv_select
    from noisyfit.engine.checkpoint import state_store

    labels = torch.arange(60) % 3
    labels[::7] = (labels[::7] + 1) % 3  # some wrong labels
    kw = dict(iterations=3, seed=0, log=None)
    full_calls: list = []
    full = incv_select(labels, 3, *_fake_cv(full_calls), **kw)
    f = tmp_path / "incv_stage1.pt"
    cut_calls: list = []
    with pytest.raises(KeyboardInterrupt):
        incv_select(labels, 3, *_fake_cv(cut_calls, stop_at=4), **kw, **state_store(f))
    assert torch.load(f, weights_only=True)["epoch"] == 1  # iteration 1 is saved
    rest: list = []
    resumed = incv_select(labels, 3, *_fake_cv(rest), **kw, **state_store(f))
    assert len(rest) == len(full_calls) - 2  # iteration 1 was not trained again
    assert torch.equal(resumed.select, full.select) and torch.equal(resumed.removed, full.removed)
    assert resumed.iterations == full.iterations and resumed.eps_hat == full.eps_hat


# ------------------------------------------------------ 6. the restricted CIFAR unpickler


class _Evil:
    def __reduce__(self):
        return (exec, (f"open({str(_Evil.target)!r}, 'w').write('pwned')",))


def test_the_cifar_reader_refuses_pickled_code(tmp_path):
    from noisyfit.data.base import MalformedDataError, load_dataset

    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    _Evil.target = tmp_path / "pwned"
    for f in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
              "test_batch", "batches.meta"):  # fmt: skip
        (d / f).write_bytes(pickle.dumps({"data": _Evil()}, protocol=2))
    with pytest.raises(MalformedDataError, match="exec is not part of the CIFAR python format"):
        load_dataset("cifar10", tmp_path, download=False)
    assert not _Evil.target.exists()


# -------------------------------------------------------------- 7. the same mentor everywhere


def test_the_default_mentor_is_shipped_not_trained(monkeypatch):
    from noisyfit.methods import mentornet

    mentornet._trained_mentor_state.cache_clear()
    monkeypatch.setattr(mentornet, "_train_mentor", lambda *a, **k: pytest.fail("trained"))
    net, mse = mentornet.pretrained_mentor()
    from noisyfit.methods import _mentor_pd_weights as w

    assert mse == w.TEST_MSE and mse < 0.01
    for k, t in net.state_dict().items():
        assert torch.equal(t, torch.tensor(w.STATE[k], dtype=torch.float64).float()), k
    mentornet._trained_mentor_state.cache_clear()


def test_other_mentors_train_in_float64_deterministically():
    from noisyfit.methods.mentornet import _train_mentor

    a, mse_a = _train_mentor(1.0, 30, 1)
    b, mse_b = _train_mentor(1.0, 30, 1)
    assert all(t.dtype == torch.float64 for t in a.values())
    assert mse_a == mse_b and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------ 8. random malformed inputs (property test)

_numbers = st.one_of(
    st.integers(-3, 6),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.5, 1.63, -0.0, 3.0]),
)


@st.composite
def _label_file(draw):
    kind = draw(st.sampled_from(["txt", "csv", "npy", "bytes"]))
    if kind == "bytes":
        return draw(st.sampled_from([".txt", ".csv", ".npy"])), draw(st.binary(max_size=300))
    n = draw(st.sampled_from([0, 1, 511, 512, 513, 256]))
    shape = draw(st.sampled_from([(n,), (n, 1), (n // 2, 2), (2, 2, 2)]))
    base = draw(st.sampled_from(["int", "float", "mixed"]))
    size = int(np.prod(shape))
    if base == "int":
        a = np.arange(size) % 4
    elif base == "float":
        a = (np.arange(size) % 4).astype(float)
    else:
        vals = draw(st.lists(_numbers, min_size=1, max_size=5))
        a = np.resize(np.array(vals, dtype=float), size)
    a = a.reshape(shape)
    if kind == "npy":
        import io

        buf = io.BytesIO()
        np.save(buf, a)
        raw = buf.getvalue()
        if draw(st.booleans()):
            raw = raw[: draw(st.integers(0, len(raw)))]
        return ".npy", raw
    sep = "," if kind == "csv" else " "
    rows = a.reshape(a.shape[0], -1) if a.ndim > 1 and a.size else a.reshape(-1, 1)
    text = "\n".join(sep.join(str(v) for v in row) for row in rows)
    return f".{kind}", text.encode()


def _clean_or_clear(rc: int, err: str) -> None:
    assert "Traceback" not in err, err
    assert rc == 0 or (rc == 2 and err.startswith("noisyfit: error: ")), (rc, err)
    assert len([x for x in err.splitlines() if x.startswith("noisyfit: error")]) <= 1


_FAST = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


_FLOATS = "\n".join(["1.63"] + [str(i % 4) for i in range(511)]).encode()


@_FAST
@given(f=_label_file(), noise=st.sampled_from(["labels", "matrix"]))
@example(f=(".txt", _FLOATS), noise="labels")  # 1.63 was read as 1
@example(f=(".npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<i8'"), noise="labels")  # cut .npy
def test_random_label_files_and_matrices_give_a_clean_run_or_a_clear_error(
    tmp_path_factory, capsys, f, noise
):
    tmp = tmp_path_factory.mktemp("p")
    path = tmp / f"in{f[0]}"
    path.write_bytes(f[1])
    rc = main(["noise", "--dataset", "synthetic", "--noise", noise, "--noise-file", str(path),
               "--out", str(tmp / "o")])  # fmt: skip
    _clean_or_clear(rc, capsys.readouterr().err)
    if rc == 0:
        y = np.load(tmp / "o" / "noisy_labels.npy")
        assert y.shape == (512,) and y.dtype == np.int64 and 0 <= y.min() and y.max() < 4
        if noise == "labels":  # exactly the file's values: nothing truncated or flattened
            sep = "," if path.suffix == ".csv" else None
            a = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter=sep, ndmin=1)
            assert a.size == 512 and a.shape in ((512,), (512, 1))
            assert np.array_equal(a.reshape(-1), y)
    else:
        assert not (tmp / "o").exists()


@st.composite
def _npz(draw):
    import io

    n = draw(st.integers(0, 12))
    arrays = {}
    for key in draw(st.sets(st.sampled_from(["x", "y", "x_test", "y_test", "class_names"]))):
        arrays[key] = draw(
            st.sampled_from(
                [
                    np.zeros((n, 3), np.float32),
                    np.arange(n) % 2,
                    np.arange(n) * 0.5,
                    np.zeros((n, 2, 2), np.int64) - 1,
                    np.array(["a", "b"]),
                    np.zeros((n, 5, 5, 7), np.uint8),
                ]
            )
        )
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    raw = buf.getvalue()
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]
    return raw


@_FAST
@given(raw=_npz())
def test_random_npz_files_give_a_clean_run_or_a_clear_error(tmp_path_factory, capsys, raw):
    tmp = tmp_path_factory.mktemp("z")
    (tmp / "d.npz").write_bytes(raw)
    rc = main(["noise", "--dataset", "arrays", "--data-dir", str(tmp / "d.npz"), "--noise",
               "none", "--out", str(tmp / "o")])  # fmt: skip
    _clean_or_clear(rc, capsys.readouterr().err)


_config_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.integers(-1, 2), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_config_keys = st.sampled_from(
    ["epochs", "lr", "noise", "noise_rate", "batch_size", "lr_milestones", "probe_per_class",
     "method", "tau", "model", "nonsense", "method_options", "train_subset", "noise_mode"]
)  # fmt: skip


@_FAST
@given(
    body=st.one_of(
        st.dictionaries(_config_keys, _config_values, max_size=3).map(yaml.safe_dump),
        st.text(max_size=40),
    )
)
def test_random_configs_give_a_clean_run_or_a_clear_error(tmp_path_factory, capsys, body):
    """Random YAML over the config keys: a 1-epoch run or one clear line; either way the
    folder never blocks the next run of the same name."""
    from noisyfit.api import check_new_run_dir

    tmp = tmp_path_factory.mktemp("c")
    (tmp / "c.yaml").write_text(body)
    rc = main(["train", "--config", str(tmp / "c.yaml"), "--dataset", "synthetic", "--epochs",
               "1", "--model", "mlp", "--train-subset", "64", "--test-subset", "32",
               "--no-progress", "--out", str(tmp), "--name", "r"])  # fmt: skip
    _clean_or_clear(rc, capsys.readouterr().err)
    if rc == 0:
        assert (tmp / "r" / "summary.json").is_file()
    else:
        check_new_run_dir(tmp / "r")  # a failed start leaves nothing that blocks a new run


def test_incv_run_stopped_in_its_selection_resumes_there(tmp_path, monkeypatch, capsys):
    from noisyfit.methods import incv

    real, calls = incv.make_cv_trainer, []

    def counting(*a, stop_at=None, **k):
        train_fn, predict_fn = real(*a, **k)

        def train(*args):
            calls.append(1)
            if len(calls) == stop_at:
                raise KeyboardInterrupt
            return train_fn(*args)

        return train, predict_fn

    kw = dict(**TINY, method="incv", method_options={"iterations": "2", "cv_epochs": "1"})
    monkeypatch.setattr(incv, "make_cv_trainer", lambda *a, **k: counting(*a, stop_at=3, **k))
    with pytest.raises(KeyboardInterrupt):  # in iteration 2 of 2
        noisyfit.train(**kw, out=str(tmp_path), name="r")
    said = "".join(capsys.readouterr())
    assert "INCV's selection resumes" in said and "--resume" in said
    assert torch.load(tmp_path / "r" / "incv_stage1.pt", weights_only=True)["epoch"] == 1
    calls.clear()
    monkeypatch.setattr(incv, "make_cv_trainer", lambda *a, **k: counting(*a, **k))
    r = noisyfit.train(resume=tmp_path / "r")
    assert len(calls) == 2 and len(r.method.selection_log) == 2  # only iteration 2 trained
    assert (r.run_dir / "summary.json").is_file()
