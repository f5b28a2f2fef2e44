"""Downstream classification (evaluators/downstream.py) on scikit-learn's 8x8 digits."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from evaluators import downstream as ds


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    images = np.round(data.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # [1797, 8, 8, 1]
    labels = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    images, labels = images[order], labels[order]
    return images[:1400], labels[:1400], images[1400:], labels[1400:]


def _projection_extractor(seed):
    """A fixed random 'network': grid 4 = projection of the 4x4 box average, grid 8 = ReLU(W x)."""
    rng = np.random.default_rng(seed)
    w4 = rng.normal(size=(16, 24))
    w8 = rng.normal(size=(64, 128))

    def extract(images):
        x = images.astype(np.float64)[..., 0] / 255.0
        coarse = x.reshape(len(x), 4, 2, 4, 2).mean(axis=(2, 4)).reshape(len(x), 16)
        return {4: (coarse @ w4).astype(np.float32),
                8: np.maximum(x.reshape(len(x), 64) @ w8, 0).astype(np.float32)}

    return extract


def test_errors_fall_with_more_labels_and_beat_chance(digits):
    train_x, train_y, test_x, test_y = digits
    counts = (30, 150, 1000)
    table = ds.downstream_table(train_x, train_y, test_x, test_y,
                                feature_fn=_projection_extractor(0),
                                random_feature_fn=_projection_extractor(1),
                                label_counts=counts, seed=0)
    assert table["columns"] == list(counts)
    assert set(table["rows"]) == {"svm/model_finest_grid", "mlp/model_all_grids",
                                  "svm/random_finest_grid", "mlp/random_all_grids",
                                  "svm/raw_pixels"}
    assert table["num_test"] == len(test_y) and table["notes"] == []
    for method, errs in table["rows"].items():
        values = [errs[str(n)] for n in counts]
        assert all(0.0 <= v < 0.5 for v in values), (method, values)
        assert values[-1] < values[0], (method, values)
    # the raw-pixel SVM on 1000 digits is a well-known ~3-6% error
    assert table["rows"]["svm/raw_pixels"]["1000"] < 0.1


def test_svm_matches_a_direct_sklearn_fit(digits):
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    train_x, train_y, test_x, test_y = digits
    pool = train_x.reshape(len(train_x), -1) / 255.0
    test = test_x.reshape(len(test_x), -1) / 255.0
    got = ds.classification_errors(pool[:200], train_y[:200], test, test_y, [200], "svm", seed=0)
    scaler = StandardScaler().fit(pool[:200])
    ref = LinearSVC(loss="squared_hinge", penalty="l2", C=0.1, max_iter=2000, random_state=0)
    ref.fit(scaler.transform(pool[:200]), train_y[:200])
    expected = (ref.predict(scaler.transform(test)) != test_y).mean()
    assert got[0] == pytest.approx(expected, abs=1.0 / len(test_y))


def test_label_counts_are_capped_with_a_note(digits):
    train_x, train_y, test_x, test_y = digits
    table = ds.downstream_table(train_x[:80], train_y[:80], test_x, test_y,
                                label_counts=(40, 500), include_mlp=False)
    assert table["label_counts_used"] == {"40": 40, "500": 80}
    assert len(table["notes"]) == 1 and "500" in table["notes"][0]
    assert list(table["rows"]) == ["svm/raw_pixels"]


def test_single_class_subset_gives_none_and_bad_inputs_raise(digits):
    train_x, train_y, test_x, test_y = digits
    same = np.zeros_like(train_y[:20])
    assert ds.classification_errors(np.ones((20, 3)), same, np.ones((5, 3)), test_y[:5], [20]) == [None]
    with pytest.raises(ValueError, match="unlabelled"):
        ds.downstream_table(train_x[:20], -np.ones(20, np.int64), test_x, test_y, label_counts=(10,))
    with pytest.raises(ValueError, match="uint8"):
        ds.downstream_table(train_x.astype(np.float32), train_y, test_x, test_y)
    with pytest.raises(ValueError, match="label_counts"):
        ds.downstream_table(train_x, train_y, test_x, test_y, label_counts=())
