"""Out-of-distribution detection by energy: AUROC against scikit-learn, the synthetic sets."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from evaluators import ood


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_equals_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    pos = rng.integers(0, 12, size=37).astype(np.float64)  # many ties, inside and across sets
    neg = rng.integers(-3, 9, size=53).astype(np.float64)
    labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    assert ood.auroc(pos, neg) == pytest.approx(roc_auc_score(labels, np.r_[pos, neg]), abs=1e-12)


def test_auroc_closed_forms_and_bad_input():
    assert ood.auroc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert ood.auroc([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert ood.auroc([1.0, 1.0], [1.0]) == 0.5
    with pytest.raises(ValueError, match="at least one score"):
        ood.auroc([], [1.0])
    with pytest.raises(ValueError, match="finite"):
        ood.auroc([np.nan], [1.0])


def test_synthetic_sets_shapes_ranges_and_determinism():
    rng = np.random.default_rng(0)
    test = rng.integers(0, 256, size=(10, 6, 5, 3), dtype=np.uint8)
    sets = ood.synthetic_sets(test, 7, seed=3)
    assert sorted(sets) == sorted(ood.SYNTHETIC_SETS)
    for images in sets.values():
        assert images.shape == (7, 6, 5, 3) and images.dtype == np.uint8
    const = sets["constant"].astype(int)
    assert np.all(const == const[:, :1, :1, :])  # one colour per image
    mixed = sets["interpolation"].astype(np.float64)
    means = (test[:, None].astype(np.float64) + test[None, :]) / 2.0  # every pair's midpoint
    for image in mixed:
        assert np.min(np.abs(means - image).max(axis=(2, 3, 4))) <= 0.5
    again = ood.synthetic_sets(test, 7, seed=3)
    assert all(np.array_equal(sets[k], again[k]) for k in sets)
    with pytest.raises(ValueError, match="uint8"):
        ood.synthetic_sets(test.astype(np.float32), 3)


def test_ood_table_with_a_known_energy():
    # f(x) = -mean |x/255 - 0.1| at grid 8 and its negative at grid 4: dark test images are the
    # most probable at grid 8 (AUROC 1 against noise) and the least at grid 4 (AUROC 0).
    def energy_fn(images):
        e = -np.abs(images.astype(np.float64) / 255.0 - 0.1).mean(axis=(1, 2, 3))
        return {8: e, 4: -e}

    rng = np.random.default_rng(0)
    test = rng.integers(15, 35, size=(20, 8, 8, 1), dtype=np.uint8)
    noise = rng.integers(128, 256, size=(9, 8, 8, 1), dtype=np.uint8)
    table = ood.ood_table(energy_fn, test, {"bright_noise": noise})
    assert table["grid"] == 8 and table["auroc"] == {"bright_noise": 1.0}
    assert table["auroc_by_grid"][4]["bright_noise"] == 0.0
    assert table["num_test"] == 20 and table["num_ood"] == {"bright_noise": 9}
    assert table["mean_energy"]["test"] > table["mean_energy"]["bright_noise"]
    picture = ood.energy_histogram(table["energies"], table["grid"])
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
