"""Your own data (issue #10): every row examined, confident-learning flags, the sklearn-style
classifier, predict/export, reports on data without truth, TensorBoard, a wheel install.

Data is made here: an ``arrays`` .npz of separable features with swapped labels and an image
folder of small PNGs with swapped labels, both in tmp_path.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import noisyfit
from noisyfit.cli import main
from noisyfit.issues import (
    LowAccuracyWarning,
    confident_joint,
    confident_learning_mask,
    label_issue_mask,
)

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(noise="none", model="mlp", progress=False, batch_size=64)


def swapped_npz(path: Path, n=240, k=3, d=8, n_swap=24, seed=0):
    """Separable features (N, d), labels with ``n_swap`` rows moved to another class; no
    x_test, so the arrays builder would hold out 20% by default."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    x = (rng.normal(0, 0.6, (n, d)) + 3 * np.eye(k, d)[y]).astype(np.float32)
    swaps = np.sort(rng.choice(n, n_swap, replace=False))
    given = y.copy()
    given[swaps] = (y[swaps] + rng.integers(1, k, n_swap)) % k
    names = np.array([f"kind{c}" for c in range(k)])
    np.savez(path, x=x, y=given, class_names=names)
    return x, given, swaps


def swapped_folder(root: Path, n=60, n_swap=6, seed=0):
    """PNGs 8x8: class 0 dark, class 1 bright, class 2 striped; ``n_swap`` filed wrongly.
    Returns {relative path: (given class index, truly swapped)}."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    names = ["bright", "dark", "stripes"]  # sorted, as the folder's classes are
    truth = np.arange(n) % 3
    swaps = set(rng.choice(n, n_swap, replace=False).tolist())
    out = {}
    for i in range(n):
        t = truth[i]
        base = {0: 220, 1: 30, 2: 128}[t]
        img = np.clip(rng.normal(base, 10, (8, 8)), 0, 255)
        if t == 2:
            img[::2] = 250
        g = (t + 1) % 3 if i in swaps else t
        f = root / names[g] / f"im{i:03d}.png"
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.astype(np.uint8)).save(f)
        out[f"{names[g]}/im{i:03d}.png"] = (g, i in swaps)
    return out


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path, newline="")))


# --------------------------------------------------------------------------------------------
# 2. confident learning: the fallback against a brute-force reference, and against cleanlab


def brute_force_prune_by_noise_rate(labels, probs):
    """Confident learning's prune-by-noise-rate written out with per-sample loops."""
    n, k = probs.shape
    thr = [np.mean([probs[i, j] for i in range(n) if labels[i] == j]) for j in range(k)]
    cj = np.zeros((k, k))
    for i in range(n):
        above = [j for j in range(k) if probs[i, j] >= thr[j] - 1e-6]
        if len(above) == 1:
            cj[labels[i], above[0]] += 1
        elif above:  # several above their thresholds: the top class (cleanlab's rule)
            cj[labels[i], int(np.argmax(probs[i]))] += 1
    for j in range(k):
        cj[j, j] = max(cj[j, j], 1)
    counts = np.bincount(labels, minlength=k)
    cal = np.array([cj[r] / cj[r].sum() * counts[r] for r in range(k)])
    cal = cal / cal.sum() * n
    ints = np.zeros((k, k), dtype=int)
    for r in range(k):  # round each row keeping its total: largest remainders get the rest
        row = cal[r]
        base = np.round(row)
        diff = int(round(row.sum()) - base.sum())
        # largest remainders gain, smallest lose; equal remainders (frequent: equal counts)
        # break as numpy's default argsort does, the call cleanlab makes
        rem = list(np.argsort(row - base))
        rem = rem[::-1] if diff > 0 else rem
        for j in rem[: abs(diff)]:
            base[j] += 1 if diff > 0 else -1
        ints[r] = base
    flags = np.zeros(n, dtype=bool)
    for c in range(k):
        members = [i for i in range(n) if labels[i] == c]
        if len(members) <= 1:
            continue
        for j in range(k):
            m = ints[c, j] if j != c else 0
            if m > 0:
                order = sorted(members, key=lambda i: probs[i, j] - probs[i, c], reverse=True)
                for i in order[:m]:
                    flags[i] = True
    for i in range(n):
        if probs[i, labels[i]] + 1e-6 >= probs[i].max():
            flags[i] = False
    return flags, ints


def test_confident_learning_on_hand_built_probs():
    # 6 samples, 2 classes: samples 2 and 5 are confidently the other class
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array(
        [[0.9, 0.1], [0.8, 0.2], [0.05, 0.95], [0.1, 0.9], [0.2, 0.8], [0.9, 0.1]], dtype=float
    )
    assert confident_learning_mask(labels, probs).tolist() == [0, 0, 1, 0, 0, 1]
    cj = confident_joint(labels, probs)
    assert cj.tolist() == [[2, 1], [1, 2]] and cj.sum() == 6


@pytest.mark.parametrize("seed", range(6))
def test_confident_learning_fallback_equals_a_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    n, k = 60, 4
    labels = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k)) + 2.5 * np.eye(k)[rng.integers(0, k, n)]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ref, ref_cj = brute_force_prune_by_noise_rate(labels, probs)
    assert np.array_equal(confident_joint(labels, probs), ref_cj)
    got = confident_learning_mask(labels, probs)
    assert np.array_equal(got, ref) and got.any()


def test_confident_learning_fallback_equals_cleanlab():
    """Exactly cleanlab's default filter on varied N, K and both float precisions (equal
    counts make x.5 ties in the calibration's rounding: they must break alike too)."""
    cf = pytest.importorskip("cleanlab.filter")
    for seed in range(40):
        rng = np.random.default_rng(seed)
        n, k = int(rng.integers(50, 900)), int(rng.integers(2, 12))
        labels = rng.integers(0, k, n)
        logits = rng.normal(0, 1.5, (n, k)) + rng.uniform(1, 5) * np.eye(k)[labels]
        m = n // 10
        logits[:m] = rng.normal(0, 1.5, (m, k)) + 3 * np.eye(k)[rng.integers(0, k, m)]
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        if seed % 2:
            probs = probs.astype(np.float32)  # as pred_probs.npy holds them
        want = cf.find_label_issues(labels, probs, n_jobs=1)
        got = label_issue_mask(labels, probs, backend="fallback")
        assert np.array_equal(got, want), f"seed {seed}: N={n}, K={k}, {probs.dtype}"
        assert np.array_equal(noisyfit.find_label_issues(labels, probs), want)


def test_find_label_issues_has_cleanlabs_meaning():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.05, 0.95], [0.1, 0.9], [0.2, 0.8], [0.9, 0.1]])
    mask = noisyfit.find_label_issues(labels=labels, pred_probs=probs)
    assert mask.dtype == bool and mask.tolist() == [False, False, True, False, False, True]
    ranked = noisyfit.find_label_issues(
        labels=labels, pred_probs=probs, return_indices_ranked_by="self_confidence"
    )
    assert list(ranked) == [2, 5]  # self-confidence 0.05 < 0.1
    with pytest.raises(ValueError, match="N = len"):
        noisyfit.find_label_issues(labels=labels, pred_probs=probs[:3])


# --------------------------------------------------------------------------------------------
# 1. every row examined, mapped back to the user's rows and files


def test_find_issues_cli_examines_every_row_of_an_npz(tmp_path, capsys):
    x, given, swaps = swapped_npz(tmp_path / "mine.npz")
    rc = main(
        ["find-issues", "--dataset", "arrays", "--data-dir", str(tmp_path / "mine.npz")]
        + ["--noise", "none", "--model", "mlp", "--epochs", "8", "--no-progress", "--lr", "0.05"]
        + ["--out", str(tmp_path), "--name", "iss"]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "240 of 240 rows of the data examined" in printed
    assert "out-of-fold accuracy on your labels" in printed
    out = tmp_path / "iss"
    rows = read_csv(out / "label_issues.csv")
    assert len(rows) == 240  # not the 192 of a 20% hold-out
    assert [int(r["dataset_index"]) for r in rows] == list(range(240))
    assert [int(r["given_label"]) for r in rows] == given.tolist()
    assert rows[0]["given_class"] == f"kind{given[0]}"
    probs = np.load(out / "pred_probs.npy")
    assert probs.shape == (240, 3) and np.allclose(probs.sum(1), 1, atol=1e-4)
    s = json.loads((out / "issues_summary.json").read_text())
    assert s["class_names"] == ["kind0", "kind1", "kind2"]
    assert s["nominal_noise_rate"] is None and s["num_rows_in_data"] == 240
    assert s["oof_accuracy"] == pytest.approx((probs.argmax(1) == given).mean())
    assert 0.03 < s["estimated_noise_rate"] < 0.25  # truth: 0.1
    flag = np.array([r["is_label_issue"] == "True" for r in rows])
    assert np.array_equal(flag, noisyfit.find_label_issues(labels=given, pred_probs=probs))
    hit = np.isin(np.flatnonzero(flag), swaps)
    assert hit.mean() > 0.6 and hit.sum() >= 0.6 * len(swaps)  # precision, recall (chance 0.1)


def test_holdout_rows_are_still_scored(tmp_path):
    x, given, swaps = swapped_npz(tmp_path / "mine.npz")
    res = noisyfit.find_issues(
        dataset="arrays",
        data_dir=str(tmp_path / "mine.npz"),
        **FAST,
        epochs=4,
        holdout=0.25,
        out=tmp_path / "h",
        log=None,
    )
    assert len(res.given_labels) == 240 and res.held_out.sum() == 60
    assert np.array_equal(res.dataset_index, np.arange(240))
    assert np.allclose(res.pred_probs[res.held_out].sum(1), 1, atol=1e-4)
    acc = (res.pred_probs[res.held_out].argmax(1) == given[res.held_out]).mean()
    assert res.summary["held_out_accuracy_on_your_labels"] == pytest.approx(acc)
    rows = read_csv(tmp_path / "h" / "label_issues.csv")
    assert sum(r["held_out"] == "True" for r in rows) == 60


def test_find_issues_on_an_image_folder_names_every_file(tmp_path):
    truth = swapped_folder(tmp_path / "pics")
    res = noisyfit.find_issues(
        dataset="imagefolder",
        data_dir=str(tmp_path / "pics"),
        **{**FAST, "model": "cnn-tiny"},
        epochs=2,
        out=tmp_path / "f",
        log=None,
    )
    rows = read_csv(tmp_path / "f" / "label_issues.csv")
    assert [r["file"] for r in rows] == sorted(truth)  # every file once, in sorted order
    assert all(int(r["given_label"]) == truth[r["file"]][0] for r in rows)
    assert all(r["given_class"] == r["file"].split("/")[0] for r in rows)
    assert res.where(0) == rows[0]["file"]


def test_low_out_of_fold_accuracy_warns_with_the_fix(tmp_path, capsys):
    swapped_npz(tmp_path / "mine.npz")
    with pytest.warns(LowAccuracyWarning, match="--epochs"):
        res = noisyfit.find_issues(
            dataset="arrays",
            data_dir=str(tmp_path / "mine.npz"),
            **FAST,
            epochs=1,
            lr=1e-5,  # a model that learns nothing
            log=None,
        )
    assert res.summary["oof_accuracy"] < 0.5 and "bigger model" in res.summary["warning"]


def test_dataset_form_of_find_label_issues_still_runs(tmp_path):
    swapped_npz(tmp_path / "mine.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LowAccuracyWarning)
        res = noisyfit.find_label_issues(
            dataset="arrays", data_dir=str(tmp_path / "mine.npz"), **FAST, epochs=1, log=None
        )
    assert isinstance(res, noisyfit.LabelIssues) and len(res.given_labels) == 240


# --------------------------------------------------------------------------------------------
# 3. the Python API: RobustClassifier, train(model=factory, dataset=TensorDataset)


def _blobs(n=180, k=3, d=6, seed=1):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    x = (rng.normal(0, 0.6, (n, d)) + 3 * np.eye(k, d)[y]).astype(np.float32)
    noisy = y.copy()
    noisy[:18] = (y[:18] + 1) % k
    return x, y, noisy


@pytest.mark.parametrize("kind", ["numpy", "tensor", "tensordataset"])
def test_robust_classifier_fits_predicts_and_finds_issues(tmp_path, kind):
    x, y, noisy = _blobs()
    clf = noisyfit.RobustClassifier(
        method="coteaching",
        model="mlp",
        epochs=6,
        method_options={"t_k": 2},
        out=tmp_path,
        batch_size=32,
        lr=0.05,
    )
    if kind == "numpy":
        clf.fit(x, noisy)
    elif kind == "tensor":
        clf.fit(torch.from_numpy(x), torch.from_numpy(noisy))
    else:
        clf.fit(torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(noisy)))
    p = clf.predict_proba(x)
    assert p.shape == (180, 3) and np.allclose(p.sum(1), 1, atol=1e-4)
    assert np.array_equal(clf.predict(x), p.argmax(1))
    assert clf.score(x, y) > 0.8  # against the clean labels; chance 1/3
    iss = clf.label_issues()
    assert len(iss.is_label_issue) == 180 and iss.pred_probs.shape == (180, 3)
    assert len(read_csv(clf.run_dir_ / "label_issues.csv")) == 180
    with pytest.raises(ValueError, match="fitted on"):
        clf.predict(x[:, :4])


def test_models_as_factory_module_and_torchvision_with_local_weights(tmp_path):
    x, y, noisy = _blobs()

    def factory(num_classes, input_shape):
        return nn.Sequential(nn.Linear(input_shape[0], 16), nn.ReLU(), nn.Linear(16, num_classes))

    res = noisyfit.train(
        dataset=torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(noisy)),
        **{**FAST, "model": factory},
        epochs=5,
        lr=0.05,
        out=str(tmp_path),
        name="fac",
    )
    assert res.summary["dataset"] == "in-memory" and res.summary["model"] == "custom"
    assert res.history[-1]["train_error"] < 0.35
    lin = nn.Linear(6, 3)
    clf = noisyfit.RobustClassifier(method="standard", model=lin, epochs=2, out=tmp_path)
    assert clf.fit(x, noisy).predict(x).shape == (180,)
    assert clf.model_ is not lin  # a copy is trained, the user's module is left alone
    # a torchvision backbone whose weights come from a local file
    import torchvision

    net = torchvision.models.get_model("mobilenet_v3_small", weights=None)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    from noisyfit.models.external import as_model_factory

    build = as_model_factory("torchvision:mobilenet_v3_small", tmp_path / "w.pt")
    m = build(4, (1, 32, 32))
    assert m.net.classifier[-1].out_features == 4
    first = next(iter(net.state_dict()))
    assert torch.equal(m.net.state_dict()[first], net.state_dict()[first])
    assert m.eval()(torch.rand(2, 1, 32, 32)).shape == (2, 4)
    with pytest.raises(FileNotFoundError, match="weights file"):
        as_model_factory("torchvision:resnet18", tmp_path / "missing.pt")


# --------------------------------------------------------------------------------------------
# 4. predict and export


def test_predict_writes_classes_and_probabilities(tmp_path, capsys):
    x, given, _ = swapped_npz(tmp_path / "mine.npz")
    res = noisyfit.train(
        dataset="arrays",
        data_dir=str(tmp_path / "mine.npz"),
        **FAST,
        epochs=3,
        out=str(tmp_path),
        name="run",
    )
    np.savez(tmp_path / "new.npz", x=x[:17])
    assert main(["predict", str(res.run_dir), "--data", str(tmp_path / "new.npz")]) == 0
    rows = read_csv(res.run_dir / "predictions.csv")
    assert len(rows) == 17 and [int(r["row"]) for r in rows] == list(range(17))
    assert list(rows[0])[3:] == ["p_kind0", "p_kind1", "p_kind2"]
    p = np.array([[float(r[f"p_kind{c}"]) for c in range(3)] for r in rows])
    assert np.allclose(p.sum(1), 1, atol=1e-4)
    assert [r["predicted_class"] for r in rows] == [f"kind{c}" for c in p.argmax(1)]
    # the same network, in Python: the CSV holds its probabilities
    from noisyfit.classifier import predict_inputs

    meta = json.loads((res.run_dir / "data.json").read_text())
    want = predict_inputs(res.method.main_model.cpu(), x[:17], mean=meta["mean"], std=meta["std"])
    assert np.allclose(p, want, atol=1e-5)


def test_predict_on_an_image_folder(tmp_path):
    truth = swapped_folder(tmp_path / "pics")
    res = noisyfit.train(
        dataset="imagefolder",
        data_dir=str(tmp_path / "pics"),
        **{**FAST, "model": "cnn-tiny"},
        epochs=1,
        out=str(tmp_path),
        name="img",
    )
    out = tmp_path / "p.csv"
    cmd = ["predict", str(res.run_dir), "--data", str(tmp_path / "pics"), "--out", str(out)]
    assert main(cmd) == 0
    rows = read_csv(out)
    assert [r["file"] for r in rows] == sorted(truth)
    assert list(rows[0])[3:] == ["p_bright", "p_dark", "p_stripes"]


def test_predict_explains_a_folder_without_a_run(tmp_path, capsys):
    assert main(["predict", str(tmp_path), "--data", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


@pytest.mark.parametrize("action", ["drop", "relabel"])
def test_export_npz_keeps_rows_and_lists_changes(tmp_path, action):
    x, given, swaps = swapped_npz(tmp_path / "mine.npz")
    iss = noisyfit.find_issues(
        dataset="arrays",
        data_dir=str(tmp_path / "mine.npz"),
        **FAST,
        epochs=6,
        lr=0.05,
        out=tmp_path / "iss",
        log=None,
    )
    flag = iss.is_label_issue
    assert flag.any()
    cmd = ["export", str(tmp_path / "iss"), "--out", str(tmp_path / "clean"), "--action", action]
    assert main(cmd) == 0
    z = np.load(tmp_path / "clean" / "cleaned.npz")
    changes = read_csv(tmp_path / "clean" / "changes.csv")
    if action == "drop":
        assert z["rows"].tolist() == np.flatnonzero(~flag).tolist()
        assert np.array_equal(z["x"], x[~flag]) and np.array_equal(z["y"], given[~flag])
        assert [int(c["row"]) for c in changes] == np.flatnonzero(flag).tolist()
        assert {c["action"] for c in changes} == {"dropped"}
    else:
        relab = flag & (iss.suggested_labels != given)
        assert len(z["y"]) == 240 and np.array_equal(z["relabelled"], relab)
        assert np.array_equal(z["y"][relab], iss.suggested_labels[relab])
        assert [int(c["row"]) for c in changes] == np.flatnonzero(relab).tolist()
        assert all(c["new_class"] == f"kind{z['y'][int(c['row'])]}" for c in changes)
    assert z["class_names"].tolist() == ["kind0", "kind1", "kind2"]


def test_export_image_folder_files_kept_images_by_class(tmp_path):
    truth = swapped_folder(tmp_path / "pics")
    noisyfit.find_issues(
        dataset="imagefolder",
        data_dir=str(tmp_path / "pics"),
        **{**FAST, "model": "cnn-tiny"},
        epochs=2,
        out=tmp_path / "iss",
        log=None,
    )
    rows = read_csv(tmp_path / "iss" / "label_issues.csv")
    main(["export", str(tmp_path / "iss"), "--out", str(tmp_path / "clean"), "--action", "relabel"])
    copied = sorted(
        str(p.relative_to(tmp_path / "clean")) for p in (tmp_path / "clean").rglob("*.png")
    )
    want = sorted(
        f"{r['suggested_class'] if r['is_label_issue'] == 'True' else r['given_class']}/"
        f"{r['file'].split('/')[1]}"
        for r in rows
    )
    assert copied == want and len(copied) == len(truth)


# --------------------------------------------------------------------------------------------
# 5. no nominal rate, reports on data without truth, matplotlib


def test_noise_none_has_no_nominal_rate_and_the_report_says_your_labels(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    _, given, _ = swapped_npz(tmp_path / "mine.npz")
    rc = main(
        ["train", "--dataset", "arrays", "--data-dir", str(tmp_path / "mine.npz")]
        + ["--noise", "none", "--model", "mlp", "--epochs", "2", "--no-progress"]
        + ["--out", str(tmp_path), "--name", "r", "--no-report"]
    )
    assert rc == 0
    printed = capsys.readouterr().out.replace(str(tmp_path), "TMP")
    assert "nominal" not in printed and "held-out accuracy on your labels" in printed
    assert "with your own labels (no noise injected)" in printed
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["nominal_noise_rate"] is None
    assert main(["report", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "report" / "index.html").read_text()
    assert "your own labels" in page and "0.4" not in page.split("</h1>")[0]
    assert "held-out (your labels) accuracy" in page and "clean test" not in page
    assert "Label precision and recall" not in page and "Noise transition" not in page
    # the suspects name the user's rows (not rows of the split after the 20% hold-out)
    sus = read_csv(tmp_path / "r" / "report" / "suspected_errors.csv")
    assert len(sus) == 32 and all(
        int(r["given_label"]) == given[int(r["dataset_index"])] for r in sus
    )
    assert all(r["given_class"] == f"kind{r['given_label']}" for r in sus)


def test_report_without_matplotlib_fails_with_one_clear_line(tmp_path, capsys, monkeypatch):
    swapped_npz(tmp_path / "mine.npz")
    noisyfit.train(
        dataset="arrays",
        data_dir=str(tmp_path / "mine.npz"),
        **FAST,
        epochs=1,
        out=str(tmp_path),
        name="r",
        report=False,
    )
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    assert main(["report", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install matplotlib" in err[0]


# --------------------------------------------------------------------------------------------
# 6. TensorBoard


def test_tensorboard_logs_metrics_and_label_precision(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    res = noisyfit.train(
        dataset="synthetic",
        model="cnn-tiny",
        noise="symmetric",
        noise_rate=0.4,
        method="coteaching",
        method_options={"t_k": "1"},
        epochs=2,
        progress=False,
        tensorboard=True,
        out=str(tmp_path),
        name="tb",
    )
    ea = EventAccumulator(str(res.run_dir / "tensorboard")).Reload()
    tags = ea.Tags()["scalars"]
    assert {"accuracy_loss/test_acc", "selection/label_precision", "run/lr"} <= set(tags)
    lp = [e.value for e in ea.Scalars("selection/label_precision")]
    assert [e.step for e in ea.Scalars("selection/label_precision")] == [1, 2]
    assert lp == pytest.approx([h["label_precision"] for h in res.history], abs=1e-6)


# --------------------------------------------------------------------------------------------
# 7. a wheel install with the default extras


@pytest.mark.slow
def test_wheel_install_has_matplotlib_and_runs_report(tmp_path):
    """Build the wheel, check matplotlib is a core requirement, install it into a fresh venv
    (shared site packages for the heavy dependencies, --no-deps) and run the CLI from it."""
    import zipfile

    py = sys.executable
    subprocess.run(
        [py, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w"]
        + [str(tmp_path / "w"), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "w").glob("noisyfit-*.whl")
    meta = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("METADATA"))
    reqs = [
        line
        for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines()
        if line.startswith("Requires-Dist:")
    ]
    assert any(r.startswith("Requires-Dist: matplotlib") and "extra" not in r for r in reqs)
    assert any("cleanlab" in r and 'extra == "cleanlab"' in r for r in reqs)
    env_dir = tmp_path / "venv"
    subprocess.run([py, "-m", "venv", "--system-site-packages", str(env_dir)], check=True)
    vpy = env_dir / "bin" / "python"
    # the heavy dependencies (torch, matplotlib...) come from this interpreter's site packages,
    # after the new venv's own (where the wheel goes)
    import site

    (own,) = [
        Path(p)
        for p in subprocess.run(
            [vpy, "-c", "import site; print(site.getsitepackages()[0])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # not the source tree
    subprocess.run(
        [vpy, "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
        env=env,
    )
    (own / "shared.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    r = subprocess.run(
        [vpy, "-c", "import noisyfit, matplotlib; print(noisyfit.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 0 and str(env_dir) in r.stdout
    r = subprocess.run(
        [env_dir / "bin" / "noisyfit", "report", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 2 and "not a run folder" in r.stderr  # the CLI runs, errors clearly
