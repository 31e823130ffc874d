"""The ``noisyfit`` command end to end on tiny data, and one real Fashion-MNIST run."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import noisyfit
from noisyfit.cli import main
from noisyfit.data.base import find_files

TINY = ["--dataset", "synthetic", "--model", "cnn-tiny", "--no-progress", "--batch-size", "64"]


def test_train_end_to_end(tmp_path, capsys):
    rc = main(
        [
            "train",
            *TINY,
            "--epochs",
            "2",
            "--noise",
            "pair",
            "--noise-rate",
            "0.2",
            "--out",
            str(tmp_path),
            "--name",
            "r1",
            "--noise-seed",
            "3",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "clean test accuracy" in out and "run folder" in out and "realized" in out
    run = tmp_path / "r1"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["noise"] == "pair" and cfg["noise_seed"] == 3 and cfg["epochs"] == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 2 and 0 <= summary["last_test_acc"] <= 1


def test_config_file_and_flag_override(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "dataset": "synthetic",
                "model": "cnn-tiny",
                "epochs": 1,
                "noise_rate": 0.1,
                "progress": False,
            }
        )
    )
    assert (
        main(
            [
                "train",
                "--config",
                str(cfg),
                "--noise-rate",
                "0.3",
                "--out",
                str(tmp_path),
                "--name",
                "c",
            ]
        )
        == 0
    )
    saved = yaml.safe_load((tmp_path / "c" / "config.yaml").read_text())
    assert saved["noise_rate"] == 0.3 and saved["epochs"] == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    with pytest.raises(ValueError, match="epochz"):
        noisyfit.train(bad)


def test_resume_via_cli_after_interrupt(tmp_path, monkeypatch):
    from noisyfit.methods import METHODS

    args = ["train", *TINY, "--epochs", "3", "--out", str(tmp_path), "--name", "r"]
    orig = METHODS.get("standard").on_epoch_end

    def stop(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return orig(self, epoch)

    monkeypatch.setattr(METHODS.get("standard"), "on_epoch_end", stop)
    assert main(args) == 130
    monkeypatch.setattr(METHODS.get("standard"), "on_epoch_end", orig)
    assert main(args) == 2  # the folder holds a run: refuses to overwrite it
    assert main(["train", "--resume", str(tmp_path / "r"), "--no-progress"]) == 0
    assert len((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--dataset", "cifar11"], "Valid datasets"),
        (["train", *TINY, "--model", "resnet-9000"], "Valid models"),
        (["train", *TINY, "--method", "magic"], "Valid methods"),
        (["train", *TINY, "--noise", "gaussian"], "Valid noise kinds"),
        (["train", *TINY, "--method-options", "foo", "1"], "valid: label_smoothing"),
        (["frobnicate"], "Valid commands"),
    ],
)
def test_unknown_names_fail_with_the_valid_ones(args, message, capsys, tmp_path):
    assert main([*args, "--out", str(tmp_path)] if args[0] == "train" else args) == 2
    assert message in capsys.readouterr().err


def test_bad_flag_type_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--epochs", "many"])


@pytest.mark.parametrize(
    "key, value",
    [
        ("epochs", 0),
        ("batch_size", 0),
        ("noise_rate", 1.5),
        ("lr", 0.0),
        ("momentum", 1.0),
        ("lr_milestones", [0.5, 2.0]),
        ("train_subset", 0),
        ("probe_ratio", 1.0),
        ("tau", 1.2),
        ("lr_cycle_steps", 0),
    ],
)
def test_out_of_range_config_values_name_the_key(key, value, capsys):
    with pytest.raises(ValueError, match=f"'{key}'"):
        noisyfit.TrainConfig(**{key: value})
    with pytest.raises(ValueError, match=f"'{key}'"):
        noisyfit.train(**{key: value})
    flag = "--" + key.replace("_", "-")
    vals = [str(v) for v in (value if isinstance(value, list) else [value])]
    with pytest.raises(SystemExit):
        main(["train", flag, *vals])
    assert key in capsys.readouterr().err


def test_missing_dataset_says_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NOISYFIT_DATA", str(tmp_path))
    monkeypatch.setattr("noisyfit.data.base.candidate_dirs", lambda name, d: [tmp_path / name])
    assert main(["train", "--dataset", "cifar10", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and str(tmp_path) in err


def test_noise_command_writes_labels_and_manifest(tmp_path, capsys):
    assert (
        main(
            [
                "noise",
                "--out",
                str(tmp_path),
                "--dataset",
                "synthetic",
                "--noise",
                "uniform",
                "--noise-rate",
                "0.5",
                "--noise-mode",
                "exact",
            ]
        )
        == 0
    )
    labels = np.load(tmp_path / "noisy_labels.npy")
    manifest = json.loads((tmp_path / "noise.json").read_text())
    assert manifest["kind"] == "uniform" and manifest["mode"] == "exact"
    assert manifest["num_samples"] == len(labels) == 512
    # uniform at 0.5 over 4 classes: 0.5·3/4 = 37.5% wrong, exact up to rounding per class
    assert manifest["realized_rate"] == pytest.approx(0.375, abs=4 / 512)


def test_convert_writes_the_binary_format(tmp_path):
    from noisyfit.data.binary import read_binary_dataset

    assert (
        main(
            [
                "convert",
                "--out",
                str(tmp_path / "bin"),
                "--dataset",
                "synthetic",
                "--n-batches",
                "2",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "test_batch.bin",
    ]
    x, y, tx, ty = read_binary_dataset(tmp_path / "bin", (1, 8, 8))
    from noisyfit.data import load_dataset

    ds = load_dataset("synthetic")
    assert np.array_equal(x, ds.x) and np.array_equal(y, ds.labels)
    assert np.array_equal(tx, ds.test_x) and np.array_equal(ty, ds.test_labels)


def test_list_with_wildcards(capsys):
    assert main(["list", "models", "densenet*"]) == 0
    out = capsys.readouterr().out
    assert "densenet-25-12" in out and "cnn-small" not in out
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for section in ("datasets:", "models:", "methods:", "noise:"):
        assert section in out
    assert noisyfit.list_models("wrn*") == ["wrn10-1", "wrn28-10"]


def test_help_lists_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for c in ("train", "noise", "convert", "list"):
        assert c in out


def _fashion_mnist_available() -> bool:
    try:
        find_files("fashion-mnist", None, ["train-images-idx3-ubyte.gz"], "")
        return True
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _fashion_mnist_available(), reason="Fashion-MNIST not installed")
def test_real_fashion_mnist_standard_far_above_chance(tmp_path):
    """Real data: 4,000 noisy training images (40% symmetric), 3 epochs, 2,000 test images."""
    r = noisyfit.train(
        train_subset=4000, test_subset=2000, epochs=3, out=str(tmp_path), progress=False
    )
    assert r.summary["realized_noise_rate"] == pytest.approx(0.4, abs=0.03)
    assert r.test_acc > 0.6  # chance is 0.1
    assert Path(r.run_dir, "samples.csv").is_file()
