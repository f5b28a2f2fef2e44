"""The class filter `data.classes` at the trainer's input (every family), labels in batches for
models with `uses_labels`, and the divergence guard's `collapse` signal."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_train import write_pyramid
from trainers import data as data_lib
from trainers.config import Config, ConfigError
from trainers.train import _is_bad


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory):
    root = tmp_path_factory.mktemp("classes")
    write_pyramid(root, n=24)  # labels i % 3
    return str(root)


def _labels(ds):
    return np.concatenate([b["label"].numpy() for b in ds])


def test_filter_keeps_only_the_classes_and_their_label_values(pyramid):
    ds = data_lib.make_train_dataset(pyramid, 4, 0, 16, (1, 4, 8), 1, repeat=False, classes=(0, 2),
                                     with_labels=True)
    labels = _labels(ds)
    assert sorted(labels.tolist()) == [0] * 8 + [2] * 8
    batch = next(iter(ds))
    assert batch["label"].dtype.name == "int32" and batch["grid_8"].shape == (4, 8, 8, 1)
    assert data_lib.steps_per_epoch({"counts": {"train": 24}}, 4, pyramid, classes=(0, 2)) == 4
    assert data_lib.steps_per_epoch({"counts": {"train": 24}}, 4, pyramid) == 6
    with pytest.raises(data_lib.PyramidDataError, match="data.classes=7"):
        data_lib.steps_per_epoch({"counts": {"train": 24}}, 4, pyramid, classes=(7,))


def test_no_filter_and_no_labels_by_default(pyramid):
    ds = data_lib.make_train_dataset(pyramid, 4, 0, 16, (1, 4, 8), 1, repeat=False)
    batch = next(iter(ds))
    assert sorted(batch) == ["grid_1", "grid_4", "grid_8"]
    all_labels = _labels(data_lib.make_train_dataset(pyramid, 4, 0, 16, (1, 4, 8), 1, repeat=False,
                                                     with_labels=True))
    assert sorted(all_labels.tolist()) == [0] * 8 + [1] * 8 + [2] * 8


def test_config_field_is_parsed_and_validated():
    assert Config().with_overrides(["data.classes=3,5"]).data.classes == (3, 5)
    assert Config().data.classes == ()
    with pytest.raises(ConfigError, match="data.classes"):
        Config().with_overrides(["data.classes=3,3"])
    with pytest.raises(ConfigError, match="data.classes"):
        Config().with_overrides(["data.classes=-1"])


def test_divergence_guard_stops_on_collapse():
    assert _is_bad({"collapse": 0.0, "loss": 1.0}, 1e3) is None
    assert "collapse/8=1" in _is_bad({"collapse/8": 1.0}, 1e3)
