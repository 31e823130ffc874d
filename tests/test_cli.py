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
        (["train", *TINY, "--method-options", "foo", "1"], "valid: ema_decay, label_smoothing"),
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


# --------------------------------------------------------------------------------------------
# one way to read options: tyro for every command, one converter for every plain value


def test_no_command_parses_with_argparse():
    src = Path(noisyfit.__file__).parent
    users = [str(p.relative_to(src)) for p in src.rglob("*.py") if "argparse" in p.read_text()]
    assert users == []


def test_unknown_yaml_key_names_the_key_and_the_valid_ones(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("dataset: synthetic\nepoch: 3\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "unknown config key 'epoch'" in err
    assert "valid:" in err and "epochs" in err and "Traceback" not in err
    bad.write_text("dataset: synthetic\nepochs: many\n")
    assert main(["find-issues", "--config", str(bad), "--out", str(tmp_path)]) == 2
    assert "config key 'epochs': 'many' is not an integer" in capsys.readouterr().err


def test_method_options_are_typed_by_the_methods_config(tmp_path, capsys):
    from noisyfit.config import from_dict
    from noisyfit.methods import METHODS
    from noisyfit.methods.base import method_config

    run = ["train", *TINY, "--out", str(tmp_path), "--method", "coteaching"]
    assert main([*run, "--method-options", "t_k=soon"]) == 2
    err = capsys.readouterr().err
    assert "option 't_k' of method 'coteaching': 'soon' is not an integer" in err
    assert main([*run, "--method-options", "schedule=weekly"]) == 2
    assert "'weekly' is not one of 'selfie', 'official'" in capsys.readouterr().err
    assert main([*run, "--method-options", "tk", "3"]) == 2
    err = capsys.readouterr().err
    assert "unknown option 'tk' of method 'coteaching'" in err and "valid: exponent" in err
    # the CLI's strings, YAML's values and k v pairs give one typed Config
    cls = METHODS.get("coteaching")
    from_yaml = from_dict({"method": "coteaching", "method_options": {"t_k": 3, "exponent": 1}})
    c = method_config(cls, from_yaml.method_options)
    assert (c.t_k, c.exponent) == (3, 1.0) and isinstance(c.t_k, int)
    from noisyfit.config import key_values

    assert key_values(["t_k=3", "exponent", "1"]) == {"t_k": "3", "exponent": "1"}
    assert method_config(cls, key_values(["t_k=3", "exponent", "1"])) == c


def test_converter_reads_cli_strings_and_yaml_values_alike():
    from noisyfit.config import convert, from_dict
    from noisyfit.errors import ConfigError

    text = {"epochs": "3", "lr": "1e-3", "tau": "auto", "lr_milestones": "0.5,0.75"}
    plain = {"epochs": 3, "lr": 0.001, "tau": "auto", "lr_milestones": [0.5, 0.75]}
    assert from_dict(text) == from_dict(plain)
    assert from_dict({"train_subset": "null", "augment": "true"}).train_subset is None
    assert convert("none", int | None) is None and convert("2", float) == 2.0
    for key, value, says in [
        ("epochs", 2.5, "is not an integer"),
        ("augment", 1, "is not true or false"),
        ("noise_mode", "exactly", "is not one of 'sample', 'exact'"),
        ("tau", "most", "is not a number, one of 'auto' or none"),
        ("name", 7, "is not a string or none"),
    ]:
        with pytest.raises(ConfigError, match=f"config key '{key}': .*{says}"):
            from_dict({key: value})


def test_sweep_file_method_options_are_checked_when_loaded(tmp_path):
    from noisyfit.bench import load_sweep
    from noisyfit.errors import ConfigError

    sweep = tmp_path / "s.yaml"
    body = {"methods": ["standard", "coteaching"], "config": {"dataset": "synthetic"}}
    sweep.write_text(yaml.safe_dump({**body, "method_options": {"coteaching": {"t_kk": 2}}}))
    with pytest.raises(ConfigError, match="unknown option 't_kk' of method 'coteaching'") as e:
        load_sweep(sweep)
    assert str(sweep) in str(e.value) and "valid: exponent, forward, schedule, t_k" in str(e.value)
    sweep.write_text(yaml.safe_dump({**body, "methods": {"coteaching": {"t_k": "x"}}}))
    with pytest.raises(ConfigError, match="option 't_k' of method 'coteaching': 'x' is not an"):
        load_sweep(sweep)
    sweep.write_text(yaml.safe_dump({**body, "method_options": {"coteaching": {"t_k": 2}}}))
    ((_, cfg), *_) = [r for r in load_sweep(sweep).runs() if r[1].method == "coteaching"]
    assert cfg.method_options == {"t_k": "2"}


def test_resume_refuses_other_flags_by_name(tmp_path, capsys):
    d = tmp_path / "r"
    assert main(["train", "--resume", str(d), "--epochs", "4", "--lr", "0.5"]) == 2
    assert "drop the other flags (--epochs --lr)" in capsys.readouterr().err


def test_reproduce_override_is_typed_and_checked(capsys):
    assert main(["reproduce", "incv-cifar10-sym-0.5", "--override", "epochz=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'epochz'" in err and "valid:" in err
    assert main(["reproduce", "incv-cifar10-sym-0.5", "--override", "epochs=two"]) == 2
    assert "config key 'epochs': 'two' is not an integer" in capsys.readouterr().err


def test_a_missing_file_the_user_named_is_one_line_but_an_os_error_from_a_bug_is_not(
    tmp_path, capsys, monkeypatch
):
    """MissingFileError (the user's path) → one line, exit 2; a bare FileNotFoundError raised
    inside the code is a bug → its traceback (the CLI catches noisyfit's own types only)."""
    assert main(["report", str(tmp_path / "no-such-run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no-such-run" in err and "not a run folder" in err

    import noisyfit.cli

    def bug(*a, **k):
        raise FileNotFoundError("/internal/cache.bin")

    monkeypatch.setattr(noisyfit.cli, "train", bug)  # the name cmd_train calls
    with pytest.raises(FileNotFoundError, match="internal"):
        main(["train", "--epochs", "1"])
