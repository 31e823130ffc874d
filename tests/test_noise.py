"""Noise: transition matrices, sampling statistics, exact mode, seeds, files, manifest."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from noisyfit.noise import (
    ASYMMETRIC_MAPS,
    NoiseError,
    expected_noise_rate,
    inject_noise,
    labels_sha256,
    transition_matrix,
)
from noisyfit.registry import UnknownNameError

KINDS = ["none", "symmetric", "uniform", "pair"]


def balanced(n_per_class: int, k: int) -> np.ndarray:
    return np.repeat(np.arange(k), n_per_class)


@pytest.mark.parametrize("kind", KINDS + ["asymmetric"])
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.45, 0.8])
def test_matrices_are_row_stochastic(kind, rate):
    t = transition_matrix(kind, 10, rate, dataset="cifar10")
    assert t.shape == (10, 10)
    assert (t >= 0).all()
    np.testing.assert_allclose(t.sum(1), 1.0)


def test_symmetric_never_keeps_flipped_label_and_uniform_can():
    t = transition_matrix("symmetric", 4, 0.4)
    np.testing.assert_allclose(np.diag(t), 0.6)
    np.testing.assert_allclose(t[0, 1:], 0.4 / 3)
    u = transition_matrix("uniform", 4, 0.4)
    np.testing.assert_allclose(np.diag(u), 0.6 + 0.1)
    assert expected_noise_rate("uniform", 0.8, 10) == pytest.approx(0.8 * 9 / 10)


def test_pair_flips_to_next_class():
    t = transition_matrix("pair", 5, 0.3)
    for i in range(5):
        assert t[i, (i + 1) % 5] == pytest.approx(0.3)
        assert t[i, i] == pytest.approx(0.7)


def test_cifar10_asymmetric_map():
    t = transition_matrix("asymmetric", 10, 0.4, dataset="cifar10")
    # truck→automobile, bird→airplane, deer→horse, cat↔dog
    for src, dst in [(9, 1), (2, 0), (4, 7), (3, 5), (5, 3)]:
        assert t[src, dst] == pytest.approx(0.4)
    for untouched in (0, 1, 6, 7, 8):
        assert t[untouched, untouched] == 1.0


def test_asymmetric_superclass_next_within_superclass():
    sup = np.array([0, 1, 0, 1, 0, 1])  # superclass 0 = {0,2,4}, 1 = {1,3,5}
    t = transition_matrix("asymmetric", 6, 0.3, superclass=sup)
    assert t[0, 2] == pytest.approx(0.3) and t[4, 0] == pytest.approx(0.3)
    assert t[1, 3] == pytest.approx(0.3) and t[5, 1] == pytest.approx(0.3)


def test_fashion_mnist_map_exists_and_is_valid():
    m = ASYMMETRIC_MAPS["fashion-mnist"]
    assert all(s != d for s, d in m.items())
    t = transition_matrix("asymmetric", 10, 0.4, dataset="fashion-mnist")
    assert t[0, 6] == pytest.approx(0.4)


def test_asymmetric_unknown_dataset_explains_fix():
    with pytest.raises(NoiseError, match="noise matrix"):
        transition_matrix("asymmetric", 10, 0.4, dataset="mystery")


@pytest.mark.parametrize("kind", ["symmetric", "pair", "uniform"])
def test_sampled_transition_within_binomial_tolerance(kind):
    k, n = 5, 4000
    y = balanced(n, k)
    res = inject_noise(y, kind, 0.4, num_classes=k, seed=3)
    t = transition_matrix(kind, k, 0.4)
    realized = np.array(res.manifest.realized_T)
    # each entry is a binomial proportion over n samples: 5 standard errors
    tol = 5 * np.sqrt(t * (1 - t) / n) + 1e-12
    assert (np.abs(realized - t) <= tol).all(), np.abs(realized - t).max()
    assert res.manifest.realized_rate == pytest.approx(expected_noise_rate(kind, 0.4, k), abs=0.02)


def test_symmetric_flip_never_returns_true_label_pattern():
    y = balanced(1000, 3)
    res = inject_noise(y, "symmetric", 1.0, num_classes=3, seed=0)
    assert (res.labels != y).all()


@pytest.mark.parametrize("kind", ["symmetric", "pair", "uniform", "asymmetric"])
def test_exact_mode_counts_are_exact(kind):
    k = 10
    y = balanced(101, k)
    res = inject_noise(y, kind, 0.37, num_classes=k, seed=1, mode="exact", dataset="cifar10")
    t = transition_matrix(kind, k, 0.37, dataset="cifar10")
    counts = np.array(res.manifest.realized_T) * 101
    # every count is within one sample of n_i·T_ij, and rows keep their size
    assert (np.abs(counts - t * 101) < 1.0 + 1e-9).all()
    assert np.bincount(y, minlength=k).tolist() == [101] * k
    flips_per_class = [(res.labels[y == c] != c).sum() for c in range(k)]
    want = [round(101 * (1 - t[c, c])) for c in range(k)]
    assert flips_per_class == want


def test_seeds_reproducible_and_distinct():
    y = balanced(200, 10)
    a = inject_noise(y, "symmetric", 0.5, num_classes=10, seed=7)
    b = inject_noise(y, "symmetric", 0.5, num_classes=10, seed=7)
    c = inject_noise(y, "symmetric", 0.5, num_classes=10, seed=8)
    assert np.array_equal(a.labels, b.labels)
    assert a.manifest.sha256 == b.manifest.sha256
    assert not np.array_equal(a.labels, c.labels)
    assert a.manifest.sha256 != c.manifest.sha256


def test_manifest_fields():
    y = balanced(50, 4)
    m = inject_noise(y, "pair", 0.2, num_classes=4, seed=2).manifest
    d = m.to_dict()
    for key in (
        "kind",
        "nominal_rate",
        "realized_rate",
        "realized_T",
        "nominal_T",
        "seed",
        "sha256",
        "mode",
    ):
        assert key in d
    assert d["kind"] == "pair" and d["seed"] == 2 and len(d["sha256"]) == 64


def test_matrix_and_labels_files(tmp_path):
    y = balanced(300, 3)
    t = np.array([[0.8, 0.2, 0.0], [0.0, 1.0, 0.0], [0.1, 0.1, 0.8]])
    np.save(tmp_path / "T.npy", t)
    res = inject_noise(
        y, "matrix", num_classes=3, seed=0, noise_file=tmp_path / "T.npy", mode="exact"
    )
    np.testing.assert_allclose(np.array(res.manifest.realized_T), t, atol=1 / 300)
    np.savetxt(tmp_path / "bad.csv", np.ones((3, 3)), delimiter=",")
    with pytest.raises(NoiseError, match="sums to"):
        inject_noise(y, "matrix", num_classes=3, noise_file=tmp_path / "bad.csv")
    human = (y + (np.arange(len(y)) % 10 == 0)) % 3
    np.savetxt(tmp_path / "human.txt", human, fmt="%d")
    res = inject_noise(y, "labels", num_classes=3, noise_file=tmp_path / "human.txt")
    assert np.array_equal(res.labels, human)
    assert res.manifest.realized_rate == pytest.approx(0.1)
    with pytest.raises(NoiseError, match="labels for"):
        inject_noise(y[:10], "labels", num_classes=3, noise_file=tmp_path / "human.txt")


def test_no_truth_only_allows_given_labels():
    given = np.array([0, 1, 2, 1])
    res = inject_noise(None, "none", num_classes=3, given_labels=given)
    assert np.array_equal(res.labels, given) and res.manifest.realized_rate is None
    with pytest.raises(NoiseError, match="not ground truth"):
        inject_noise(None, "symmetric", 0.2, num_classes=3, given_labels=given)


def test_bad_inputs():
    with pytest.raises(UnknownNameError, match="symmetric"):
        inject_noise(np.zeros(3, int), "symetric", 0.2, num_classes=3)
    with pytest.raises(NoiseError, match=r"\[0, 1\]"):
        inject_noise(np.zeros(3, int), "symmetric", 1.2, num_classes=3)
    with pytest.raises(NoiseError, match="mode"):
        inject_noise(np.zeros(3, int), "symmetric", 0.2, num_classes=3, mode="approx")


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(2, 12),
    n=st.integers(1, 300),
    rate=st.floats(0, 1),
    kind=st.sampled_from(["symmetric", "pair", "uniform", "none"]),
    mode=st.sampled_from(["sample", "exact"]),
    seed=st.integers(0, 2**31),
)
def test_property_labels_valid_and_manifest_consistent(k, n, rate, kind, mode, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    res = inject_noise(y, kind, rate, num_classes=k, seed=seed, mode=mode)
    assert res.labels.shape == (n,) and res.labels.dtype == np.int64
    assert res.labels.min() >= 0 and res.labels.max() < k
    assert res.manifest.realized_rate == pytest.approx((res.labels != y).mean())
    assert res.manifest.sha256 == labels_sha256(res.labels)
    t = transition_matrix(kind, k, rate)
    # labels only move where T allows it
    assert (t[y, res.labels] > 0).all()
    if mode == "exact":
        for c in np.unique(y):
            nc = (y == c).sum()
            assert abs((res.labels[y == c] != c).sum() - nc * (1 - t[c, c])) <= 1.0 + 1e-9
