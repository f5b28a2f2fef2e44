"""benchmarks.compare_families counts a run whose training fails and goes on with the others."""

import argparse
import json
import os

import pytest

from benchmarks import compare_families


def _args(workdir, overrides):
    return argparse.Namespace(workdir=str(workdir), minutes=0.1, batch=8, set=overrides)


def test_a_failed_training_is_recorded_and_the_next_runs_still_train(tmp_path):
    # A bad key makes `mgebm train` exit 2 before it reads the (absent) pyramid: a real failure
    # of the real command, for both seeds.
    args = _args(tmp_path, ["train.no_such_key=1"])
    trained = compare_families.train_all(args, ["cfebm"], [0, 1])
    assert sorted(trained) == ["cfebm-s0", "cfebm-s1"]  # the second seed ran after the first failed
    for name, record in trained.items():
        assert record["failed"] is True and record["exit_code"] == 2 and record["steps"] is None
        assert "train.no_such_key" in record["reason"]
        marker = tmp_path / "runs" / name / compare_families.FAILED_MARKER
        assert json.loads(marker.read_text())["exit_code"] == 2
        assert not (tmp_path / "runs" / name / "train_result.json").exists()
    # A rerun reads the markers instead of training again (the folder must be deleted to retry),
    # and the evaluate phase finds them.
    assert compare_families.train_all(args, ["cfebm"], [0, 1]) == trained
    assert compare_families.load_trained(args, ["cfebm"], [0, 1]) == trained


def test_load_trained_names_a_run_that_never_trained(tmp_path):
    os.makedirs(tmp_path / "runs" / "cfebm-s0")
    with pytest.raises(FileNotFoundError, match="cfebm-s0: not trained yet"):
        compare_families.load_trained(_args(tmp_path, []), ["cfebm"], [0])


def test_the_summary_leaves_failed_runs_out_of_the_means():
    flat = {"cfebm-s0": {"fid/domain": 90.0}, "cfebm-s2": {"fid/domain": 100.0}}  # s1 failed
    summary = compare_families.summarize(flat, ["cfebm"], [0, 1, 2])
    assert summary["cfebm"]["fid/domain"]["values"] == [90.0, 100.0]
    assert summary["cfebm"]["fid/domain"]["mean"] == pytest.approx(95.0)
    assert summary["cfebm"]["fid/domain"]["std"] == pytest.approx(7.0710678)
