"""Warm starts: a fresh run begins from an export's weights (`trainers.warm_start`)."""

import os
import shutil

import numpy as np
import pytest

from tests.test_train import tiny_config, write_pyramid
from trainers import train as train_lib
from trainers.config import ConfigError
from trainers.train import train
from trainers.warm_start import WEIGHTS_ASSET, load_export_weights

META = {"grids": [1, 4, 8], "image_size": 8, "channels": 1, "coarse_mean": [0.3], "coarse_std": [0.1]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A pyramid and a model trained 3 steps on it, exported."""
    root = tmp_path_factory.mktemp("warm")
    write_pyramid(root / "pyramid")
    result = train(tiny_config(max_steps=3), str(root / "pyramid"), str(root / "run"))
    return str(root / "pyramid"), result.export_dir


def _values(model):
    return {w.path: w.numpy() for w in model.weights}


def test_export_carries_weights_that_a_new_model_loads_exactly(trained, tmp_path):
    _, export_dir = trained
    assert os.path.isfile(os.path.join(export_dir, "assets", WEIGHTS_ASSET))
    cfg = tiny_config(seed=11)
    fresh = train_lib.build_model(cfg, META)
    before = _values(fresh)
    load_export_weights(fresh, export_dir, cfg)
    again = train_lib.build_model(cfg, META)
    load_export_weights(again, export_dir, cfg)
    after = _values(fresh)
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    assert any("conv1" in k and "kernel" in k for k in changed)  # trained weights replaced the init
    for key, value in _values(again).items():
        np.testing.assert_array_equal(value, after[key], err_msg=key)
    assert float(after["multigrid_ebm/train_counter"]) == 3.0  # the model's own step counter came too


def test_warm_started_run_starts_at_the_exports_weights(trained, tmp_path, capsys):
    pyramid, export_dir = trained
    cfg = tiny_config(max_steps=1, seed=11, warm_start=export_dir)
    result = train(cfg, pyramid, str(tmp_path / "warm"))
    assert f"[train] warm start from the weights of {export_dir}" in capsys.readouterr().out
    assert result.steps == 1
    start = train_lib.build_model(cfg, META)
    load_export_weights(start, result.export_dir, cfg)  # after 1 more step: close to, not equal to
    reference = train_lib.build_model(cfg, META)
    load_export_weights(reference, export_dir, cfg)
    a, b = _values(start), _values(reference)
    kernel = next(k for k in a if "energy_8" in k and "kernel" in k)
    assert not np.array_equal(a[kernel], b[kernel])
    assert np.abs(a[kernel] - b[kernel]).max() < 0.05  # one Adam step of 1e-4 per weight, not a new init


def test_warm_start_refuses_other_nets_and_non_exports(trained, tmp_path):
    _, export_dir = trained
    other = tiny_config(seed=11)
    wider = other.with_overrides(["model.width=0.5"])
    with pytest.raises(ConfigError, match=r"model.width=0.25, this run has 0.5"):
        load_export_weights(train_lib.build_model(wider, META), export_dir, wider)
    with pytest.raises(ConfigError, match="not an export folder"):
        load_export_weights(train_lib.build_model(other, META), str(tmp_path), other)
    old = tmp_path / "old_export"
    shutil.copytree(export_dir, old)
    os.remove(old / "assets" / WEIGHTS_ASSET)
    with pytest.raises(ConfigError, match=f"has no assets/{WEIGHTS_ASSET}"):
        load_export_weights(train_lib.build_model(other, META), str(old), other)
