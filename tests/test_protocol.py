"""The noisy-validation protocol: the held-out split, per-epoch val metrics, model selection."""

import json

import numpy as np
import pytest

import noisyfit
from noisyfit.api import choose_val, prepare_data, select_epoch
from noisyfit.config import TrainConfig

TINY = dict(dataset="synthetic", model="cnn-tiny", progress=False, batch_size=64)


def test_val_split_is_stratified_on_the_noisy_labels_seeded_and_disjoint():
    cfg = TrainConfig(**TINY, noise="symmetric", noise_rate=0.4, val_ratio=0.25, noise_seed=3)
    full = prepare_data(cfg.replace(val_ratio=0.0))
    data = prepare_data(cfg)
    n = len(full.noisy.labels)
    v = len(data.val_labels)
    assert v == round(0.25 * n) and len(data.noisy.labels) == n - v
    # train and val rows partition the dataset's training rows
    rows = np.concatenate([data.source_index, data.val_index])
    assert sorted(rows.tolist()) == sorted(full.source_index.tolist())
    # the split keeps the *given* labels (the noise was injected before it was drawn)
    pos = {int(r): i for i, r in enumerate(full.source_index)}
    back = np.array([pos[int(r)] for r in data.val_index])
    assert np.array_equal(data.val_labels, full.noisy.labels[back])
    assert np.array_equal(data.val_true, full.true[back])
    assert (data.val_labels != data.val_true).any()  # noisy: no clean labels used
    # stratified on the noisy labels: per-class counts within 1 of the proportional share
    share = np.bincount(full.noisy.labels, minlength=4) * v / n
    assert np.all(np.abs(np.bincount(data.val_labels, minlength=4) - share) <= 1)
    # seeded: the same split again, another split for another noise seed
    assert np.array_equal(prepare_data(cfg).val_index, data.val_index)
    assert not np.array_equal(prepare_data(cfg.replace(noise_seed=4)).val_index, data.val_index)
    # the manifest describes the samples left for training
    m = data.noisy.manifest
    assert m.num_samples == n - v
    assert m.realized_rate == pytest.approx(float((data.noisy.labels != data.true).mean()))


def test_select_epoch_on_a_hand_built_history():
    hist = [
        {"epoch": 1, "test_acc": 0.5, "val_acc": 0.40},
        {"epoch": 2, "test_acc": 0.9, "val_acc": 0.60},
        {"epoch": 3, "test_acc": 0.7, "val_acc": 0.60},  # tie: the first is kept
        {"epoch": 4, "test_acc": 0.95, "val_acc": 0.55},
        {"epoch": 5, "test_acc": 0.6, "val_acc": 0.50},
    ]
    s = select_epoch(hist)
    assert s["selected_epoch"] == 2 and s["selected_test_acc"] == 0.9
    assert s["selected_val_acc"] == 0.60
    assert s["last_test_acc"] == 0.6
    assert s["best_test_acc"] == 0.95 and s["best_epoch"] == 4  # the oracle
    no_val = select_epoch([{k: v for k, v in h.items() if k != "val_acc"} for h in hist])
    assert no_val["selected_epoch"] is None and no_val["selected_test_acc"] is None


def test_train_with_val_ratio_records_the_split_and_selects_on_it(tmp_path):
    r = noisyfit.train(**TINY, epochs=3, val_ratio=0.2, out=str(tmp_path), name="v")
    d = r.run_dir
    val_index = np.load(d / "val_index.npy")
    train_index = np.load(d / "train_index.npy")
    assert len(val_index) == round(0.2 * 512) and len(train_index) == 512 - len(val_index)
    assert not set(val_index.tolist()) & set(train_index.tolist())
    assert len(np.load(d / "noisy_labels.npy")) == len(train_index)
    hist = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert all(0 <= h["val_acc"] <= 1 and h["val_loss"] > 0 for h in hist)
    s = json.loads((d / "summary.json").read_text())
    best = max(range(3), key=lambda i: (hist[i]["val_acc"], -i))
    assert s["selected_epoch"] == best + 1
    assert s["selected_test_acc"] == hist[best]["test_acc"]
    assert s["last_test_acc"] == hist[-1]["test_acc"]
    assert s["best_test_acc"] == max(h["test_acc"] for h in hist)
    # the val accuracy is measured on the given labels: recompute it from the saved model
    # of the last epoch and the dataset's noisy labels at the val rows
    full = prepare_data(TrainConfig(**TINY))
    pos = {int(row): i for i, row in enumerate(full.source_index)}
    given = full.noisy.labels[[pos[int(row)] for row in val_index]]
    ds = full.dataset
    from noisyfit.data.loader import DeviceLoader
    from noisyfit.engine.evaluate import predict_probs

    x = ds.x[[pos[int(row)] for row in val_index]]
    dl = DeviceLoader(x, given, batch_size=1000, shuffle=False, mean=ds.mean, std=ds.std)
    pred = predict_probs(r.method.main_model, dl).argmax(1).numpy()
    assert hist[-1]["val_acc"] == pytest.approx(float((pred == given).mean()), abs=1e-6)

    # --val-file with the saved rows gives the same split
    r2 = noisyfit.train(
        **TINY, epochs=1, val_file=str(d / "val_index.npy"), out=str(tmp_path), name="f"
    )
    assert np.array_equal(np.load(r2.run_dir / "val_index.npy"), val_index)
    assert np.array_equal(np.load(r2.run_dir / "train_index.npy"), train_index)


def test_val_file_with_rows_outside_the_training_set_is_one_clear_error(tmp_path):
    bad = tmp_path / "val.txt"
    bad.write_text("0\n1\n99999\n")
    with pytest.raises(ValueError, match=r"val.txt: 1 validation row\(s\).*99999"):
        prepare_data(TrainConfig(**TINY, val_file=str(bad)))
    with pytest.raises(FileNotFoundError, match="no such file"):
        prepare_data(TrainConfig(**TINY, val_file=str(tmp_path / "none.npy")))
    with pytest.raises(ValueError, match="val_ratio"):
        TrainConfig(**TINY, val_ratio=1.0)


def test_choose_val_without_ratio_or_file_is_none():
    cfg = TrainConfig(**TINY)
    assert choose_val(np.zeros(10, dtype=np.int64), np.arange(10), cfg) is None


def test_bench_summary_and_report_headline_selected_and_last(tmp_path, monkeypatch):
    import csv

    import yaml

    from noisyfit.cli import main
    from noisyfit.report import build_report

    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "methods": ["standard"],
                "noise": ["symmetric:0.4"],
                "seeds": [0, 1],
                "report": False,
                "config": {**TINY, "epochs": 2, "val_ratio": 0.25},
            }
        )
    )
    out = tmp_path / "b"
    assert main(["bench", str(sweep), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    sel = [float(r["selected_test_acc"]) for r in rows]
    for r in rows:  # each row's selected accuracy is its run's test accuracy at that epoch
        hist = [json.loads(x) for x in open(f"{r['run_dir']}/metrics.jsonl")]
        assert float(r["selected_test_acc"]) == hist[int(r["selected_epoch"]) - 1]["test_acc"]
    (g,) = list(csv.DictReader(open(out / "summary.csv")))
    assert float(g["selected_test_acc_mean"]) == pytest.approx(np.mean(sel))
    md = (out / "summary.md").read_text()
    assert "| selected acc | last acc | oracle: max test acc |" in md
    row = next(line for line in md.splitlines() if line.startswith("| standard"))
    assert (
        row.split("|")[4].strip() == f"{100 * np.mean(sel):.2f} ± {100 * np.std(sel, ddof=1):.2f}"
    )
    page = build_report(rows[0]["run_dir"], log=None).read_text()
    assert "oracle: max over epochs of test accuracy" in page
    assert "selected: clean test accuracy at the selected epoch" in page


# --------------------------------------------------------------------------------------------
# F-correction's stage 1 on the noisy validation split


def test_f_correction_stage1_keeps_the_epoch_of_the_lowest_noisy_val_loss():
    from noisyfit.api import build_context
    from noisyfit.engine.evaluate import evaluate
    from noisyfit.methods.f_correction import train_best_val_loss
    from noisyfit.methods.standard import Standard

    cfg = TrainConfig(**TINY, epochs=4, val_ratio=0.25, lr=0.05, device="cpu")
    ctx, _ = build_context(cfg, prepare_data(cfg))
    net, epoch, losses = train_best_val_loss(ctx, 0.1, epochs=4)
    assert len(losses) == 4 and epoch == int(np.argmin(losses)) + 1
    holder = Standard(Standard.Config(), ctx)
    holder.models["net"] = net
    again = next(iter(evaluate(holder, ctx.val).values()))["loss"]
    assert again == pytest.approx(min(losses), rel=1e-5)


def test_f_correction_saves_t_hat_and_its_stage1_epoch(tmp_path):
    r = noisyfit.train(
        **TINY,
        epochs=2,
        method="f-correction",
        method_options={"estimate_epochs": "3"},
        val_ratio=0.2,
        out=str(tmp_path),
        name="fc",
    )
    t_hat = np.load(r.run_dir / "t_hat.npy")
    assert t_hat.shape == (4, 4) and np.allclose(t_hat.sum(1), 1, atol=1e-5)
    assert np.allclose(t_hat, r.method.T.numpy())
    assert 1 <= r.history[-1]["t_hat_stage1_epoch"] <= 3
    assert r.history[-1]["t_hat_diag_mean"] == pytest.approx(float(np.diag(t_hat).mean()))
