"""Blessing rules (evaluators/blessing.py) and the atomic push (evaluators/push.py)."""

import os

import numpy as np
import pytest
import tensorflow as tf

from evaluators import blessing, push
from trainers.config import ConfigError
from trainers.thresholds import BaselineBound, parse_threshold

METRICS = {
    "schema_version": 1,
    "model": {"dir": "/x", "grids": [1, 4, 8]},
    "feature_spaces": {
        "domain": {"fid": 120.0, "kid": 0.05, "kid_std": 0.01, "precision": 0.4, "recall": 0.3,
                   "inception_score": 5.0, "info": {"accuracy": 0.98}, "reference": {"fid": 2.0}},
        "efficientnet_lite0": {"fid": 80.5, "kid": float("nan"), "precision": 0.2},
    },
    "downstream": {"columns": [1000], "rows": {"svm/model_finest_grid": {"1000": 0.2}}},
    "inpainting": {"masks": {"square": {"model": {"error": 0.05, "psnr": 17.0}}}},
    "diversity": {"within_start_mean": 0.1, "fraction_pairs_differ": 1.0},
    "blessing": {"blessed": True},
}


def test_flatten_names_every_number_by_its_space_or_path():
    flat = blessing.flatten_metrics(METRICS)
    assert flat["fid/domain"] == 120.0 and flat["fid/efficientnet_lite0"] == 80.5
    assert flat["precision/efficientnet_lite0"] == 0.2 and flat["inception_score/domain"] == 5.0
    assert flat["downstream/svm/model_finest_grid/1000"] == 0.2
    assert flat["inpainting/square/model/psnr"] == 17.0
    assert flat["diversity/within_start_mean"] == 0.1
    assert not any(k.startswith(("model/", "blessing", "schema")) for k in flat)
    assert "info/domain" not in flat and "reference/domain" not in flat


def test_rules_pass_fail_and_report_values():
    result = blessing.evaluate_thresholds(
        ["fid/domain<=150", "precision/domain>=0.5", "inpainting/square/model/psnr>=16"], METRICS)
    assert result["blessed"] is False
    passed = {c["rule"]: c["passed"] for c in result["checks"]}
    assert passed == {"fid/domain<=150": True, "precision/domain>=0.5": False,
                      "inpainting/square/model/psnr>=16": True}
    failing = result["checks"][1]
    assert failing["value"] == 0.4 and failing["threshold"] == 0.5 and "violates" in failing["reason"]
    assert blessing.evaluate_thresholds(["fid/domain<=150", "fid/domain>=120"], METRICS)["blessed"]
    assert not blessing.evaluate_thresholds(["fid/domain<=119.9"], METRICS)["blessed"]


def test_missing_or_nonfinite_metric_fails_with_reason():
    result = blessing.evaluate_thresholds(["fid/inception_v3<=10", "kid/efficientnet_lite0<=1"], METRICS)
    assert not result["blessed"]
    missing, nan = result["checks"]
    assert not missing["passed"] and "not computed" in missing["reason"] and missing["value"] is None
    assert not nan["passed"] and "not a finite number" in nan["reason"]


def test_flat_input_empty_rules_and_malformed_rule():
    assert blessing.evaluate_thresholds(["fid/domain<=1"], {"fid/domain": 0.5})["blessed"]
    empty = blessing.evaluate_thresholds([], METRICS)
    assert empty["blessed"] and empty["checks"] == [] and "no thresholds" in empty["note"]
    with pytest.raises(ConfigError, match="metric<=value"):
        blessing.evaluate_thresholds(["fid/domain<150"], METRICS)


def _served(fid: float, precision: float = 0.5, version: int = 3) -> dict:
    return dict(METRICS, baseline_model={
        "dir": f"/serving/m/{version}", "version": version,
        "feature_spaces": {"domain": {"fid": fid, "precision": precision}}})


def test_baseline_rules_parse_and_reject_metrics_the_served_model_lacks():
    assert parse_threshold("fid/domain<=baseline*1.05") == ("fid/domain", "<=", BaselineBound(1.05, 0.0))
    assert parse_threshold("precision/domain >= baseline-0.02")[2] == BaselineBound(1.0, -0.02)
    assert parse_threshold("fid/domain<=baseline")[2].of(7.0) == 7.0
    assert str(BaselineBound(1.05)) == "baseline*1.05" and str(BaselineBound(offset=-2)) == "baseline-2"
    with pytest.raises(ConfigError, match="compared with the served model"):
        parse_threshold("ood/auroc/uniform_noise>=baseline")
    for bad in ("fid/domain<=baseline*", "fid/domain<=baseline/2", "fid/domain<=served"):
        with pytest.raises(ConfigError, match="baseline"):
            parse_threshold(bad)


def test_baseline_rule_compares_with_the_served_models_value():
    # candidate fid/domain = 120, precision 0.4
    worse = blessing.evaluate_thresholds(["fid/domain<=baseline*1.05"], _served(fid=100.0))
    check = worse["checks"][0]
    assert not worse["blessed"] and check["baseline"] == 100.0 and check["threshold"] == pytest.approx(105.0)
    assert "served version 3" in check["reason"] and "violates" in check["reason"]
    assert worse["baseline_version"] == 3
    assert blessing.summary(worse).startswith("not blessed: fid/domain=120 violates <= 105")
    better = blessing.evaluate_thresholds(["fid/domain<=baseline*1.05", "fid/domain<=150"],
                                          _served(fid=115.0))
    assert better["blessed"] and better["checks"][0]["threshold"] == pytest.approx(120.75)
    assert blessing.summary(better) == "blessed (compared with served version 3)"
    offset = blessing.evaluate_thresholds(["precision/domain>=baseline-0.02"], _served(100.0, 0.43))
    assert not offset["blessed"] and offset["checks"][0]["threshold"] == pytest.approx(0.41)
    # the served model's own figures never stand in for the candidate's
    assert "fid/domain" in blessing.flatten_metrics(_served(1.0)) and \
        blessing.flatten_metrics(_served(1.0))["fid/domain"] == 120.0


def test_baseline_rule_without_served_model_passes_and_absolute_rules_decide():
    first = blessing.evaluate_thresholds(["fid/domain<=baseline*1.05", "fid/domain<=150"], METRICS)
    assert first["blessed"] and first["baseline_version"] is None
    assert "no served model yet" in first["checks"][0]["reason"] and first["checks"][0]["threshold"] is None
    assert not blessing.evaluate_thresholds(["fid/domain<=baseline", "fid/domain<=100"], METRICS)["blessed"]
    missing = blessing.evaluate_thresholds(["fid/efficientnet_lite0<=baseline"], _served(100.0))
    assert not missing["blessed"] and "has no finite" in missing["checks"][0]["reason"]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A real (tiny) SavedModel with one signature."""
    module = tf.Module()
    module.w = tf.Variable([2.0, 3.0])

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
    def scale(x):
        return {"y": x * module.w}

    module.scale = scale
    path = str(tmp_path_factory.mktemp("export") / "model")
    tf.saved_model.save(module, path, signatures={"scale": scale})
    return path


def _entries(folder):
    return sorted(os.listdir(folder))


def test_push_versions_increase_and_pushed_model_loads(saved_model, tmp_path):
    root = str(tmp_path / "serving")
    got = [push.push_model(saved_model, root, "mg") for _ in range(3)]
    assert [g["version"] for g in got] == [1, 2, 3]
    assert got[2]["pushed_dir"] == os.path.join(root, "mg", "3")
    assert _entries(os.path.join(root, "mg")) == ["1", "2", "3"]  # no temporary folders left
    loaded = tf.saved_model.load(got[1]["pushed_dir"])
    out = loaded.signatures["scale"](x=tf.constant([[1.0, 1.0]]))["y"].numpy()
    np.testing.assert_allclose(out, [[2.0, 3.0]])
    for rel in ("saved_model.pb", "variables"):
        assert os.path.exists(os.path.join(got[0]["pushed_dir"], rel))


def test_served_model_dir_is_the_largest_version(saved_model, tmp_path):
    serving = str(tmp_path / "serving")
    assert push.served_model_dir(serving, "m") is None
    for _ in range(2):
        push.push_model(saved_model, serving, "m")
    os.makedirs(os.path.join(serving, "m", ".tmp-9-abc"))
    assert push.served_model_dir(serving, "m") == os.path.join(serving, "m", "2")


def test_push_ignores_non_integer_entries(saved_model, tmp_path):
    model_root = tmp_path / "serving" / "mg"
    for name in ("7", "notes", ".tmp-8-abc", "007x"):
        (model_root / name).mkdir(parents=True)
    got = push.push_model(saved_model, str(tmp_path / "serving"), "mg")
    assert got["version"] == 8
    assert push.existing_versions(str(model_root)) == [7, 8]


def test_failed_copy_leaves_no_version(saved_model, tmp_path):
    # A copy of the export with a dangling link in a sub-folder: the copy fails part-way.
    broken = tmp_path / "broken"
    push.copy_tree(saved_model, str(broken))
    os.symlink(str(tmp_path / "does-not-exist"), str(broken / "variables" / "zz-missing"))
    root = tmp_path / "serving"
    push.push_model(saved_model, str(root), "mg")
    with pytest.raises(tf.errors.NotFoundError):
        push.push_model(str(broken), str(root), "mg")
    assert _entries(root / "mg") == ["1"]  # no "2", no hidden temporary folder
    assert push.push_model(saved_model, str(root), "mg")["version"] == 2


def test_push_rejects_bad_inputs(saved_model, tmp_path):
    with pytest.raises(push.PushError, match="saved_model.pb"):
        push.push_model(str(tmp_path), str(tmp_path / "serving"), "mg")
    with pytest.raises(push.PushError, match="model_name"):
        push.push_model(saved_model, str(tmp_path / "serving"), "bad/name")
    assert not os.path.exists(tmp_path / "serving")
