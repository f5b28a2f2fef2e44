"""Tests of the SavedModel export (signatures, validation, determinism, fresh-process loading,
the TF1-session path that `saved_model_cli run` and TF Serving use) and of the sample pictures.

Tiny model: grids 1-4-8, 1 channel, width 0.25, 2 Langevin steps with noise (so one 1x1 start
gives different samples), initial (untrained) weights.

Where errors surface: a bad rank, size, count or value range raises `InvalidArgumentError` from
the graph's assertions with a message naming the argument; a wrong dtype is rejected by the
signature wrapper before the graph runs (`InvalidArgumentError` from `loaded.signatures[...]` on
TF 2.16 and 2.21, `TypeError` from the `loaded.sample` attribute), so the dtype test accepts
InvalidArgumentError, TypeError or ValueError.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.test_train import tiny_config, write_pyramid
from trainers.export import ExportError, _replace_dir, load_exported
from trainers.sample_grid import sample_grid_array, save_chain_gif, save_sample_grid
from trainers.train import export_untrained

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAP = 16


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    write_pyramid(root / "pyramid")
    cfg = tiny_config(sampler=dict(noise=True, step_size=0.05)).with_overrides(
        [f"export.max_num_samples={CAP}"])
    path = export_untrained(cfg, str(root / "pyramid"), str(root / "model"))
    return path


@pytest.fixture(scope="module")
def loaded(export_dir):
    return load_exported(export_dir)[0]


_FRESH = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    # Plain TensorFlow only: serving the export needs none of this package's code.
    model = tf.saved_model.load({path!r})
    with open({path!r} + "/assets/config.json") as f:
        info = json.load(f)
    sig = model.signatures
    out = {{"signatures": sorted(sig), "info": info}}
    def desc(d):
        return {{k: [list(v.shape), v.dtype.name] for k, v in d.items()}}
    s1 = sig["sample"](num_samples=tf.constant(3), seed=tf.constant(1))
    s1b = sig["sample"](num_samples=tf.constant(3), seed=tf.constant(1))
    s2 = sig["sample"](num_samples=tf.constant(3), seed=tf.constant(2))
    out["sample"] = desc(s1)
    out["same_seed_same"] = all(np.array_equal(s1[k], s1b[k]) for k in s1)
    out["other_seed_differs"] = not np.array_equal(s1["images"], s2["images"])
    coarse = tf.fill([4, 1, 1, 1], 0.4)
    c = sig["sample_from_coarse"](coarse=coarse, seed=tf.constant(5))
    out["sample_from_coarse"] = desc(c)
    out["coarse_kept"] = bool(np.all(c["grid_1"].numpy() == np.round(0.4 * 255)))
    out["distinct_from_one_start"] = len({{c["images"][i].numpy().tobytes() for i in range(4)}})
    images = s1["images"]
    out["energy"] = desc(sig["energy"](images=images))
    out["features"] = desc(sig["features"](images=images))
    mask = np.zeros([3, 8, 8, 1], np.uint8); mask[:, 2:6, 1:5] = 1
    r = sig["inpaint"](images=images, mask=tf.constant(mask), seed=tf.constant(3))
    r2 = sig["inpaint"](images=images, mask=tf.constant(mask), seed=tf.constant(3))
    out["inpaint"] = desc(r)
    keep = mask[..., 0] == 0
    out["observed_exact"] = bool(np.array_equal(r["images"].numpy()[keep], images.numpy()[keep]))
    out["inpaint_same_seed"] = bool(np.array_equal(r["images"], r2["images"]))
    # The TF1 session path (what saved_model_cli run and TF Serving do): variables must resolve.
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        meta = tf.compat.v1.saved_model.load(sess, ["serve"], {path!r})
        sd = meta.signature_def["sample"]
        feeds = {{sd.inputs["num_samples"].name: 3, sd.inputs["seed"].name: 1}}
        got = sess.run(sd.outputs["images"].name, feed_dict=feeds)
    out["session_equals_eager"] = bool(np.array_equal(got, s1["images"].numpy()))
    print("JSON" + json.dumps(out))
""")


@pytest.fixture(scope="module")
def fresh(export_dir):
    """Results of loading and calling the export in a new Python process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", _FRESH.format(path=export_dir)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("JSON")][-1]
    return json.loads(line[4:])


def test_layout_and_config_asset(export_dir, fresh):
    assert os.path.exists(os.path.join(export_dir, "saved_model.pb"))
    assert not [p for p in os.listdir(os.path.dirname(export_dir)) if ".tmp-" in p or ".old-" in p]
    info = fresh["info"]
    assert info["grids"] == [1, 4, 8] and info["image_size"] == 8 and info["channels"] == 1
    assert info["trained_grids"] == [4, 8] and info["max_num_samples"] == CAP
    assert info["seed"] == 3 and info["fingerprint"] == "test-0"
    assert info["sampler"]["steps"] == 2 and info["sampler"]["noise"] is True
    assert info["config"]["pyramid"]["grids"] == [1, 4, 8]
    assert info["metadata"]["counts"]["train"] == 24
    assert set(info["versions"]) == {"tensorflow", "keras", "numpy", "multigrid-ebm"}
    assert fresh["signatures"] == sorted(["sample", "sample_from_coarse", "energy", "inpaint", "features"])


def test_signature_outputs_in_fresh_process(fresh):
    expected = {"images": [[3, 8, 8, 1], "uint8"], "grid_1": [[3, 1, 1, 1], "uint8"],
                "grid_4": [[3, 4, 4, 1], "uint8"], "grid_8": [[3, 8, 8, 1], "uint8"]}
    assert fresh["sample"] == expected
    assert fresh["sample_from_coarse"]["images"] == [[4, 8, 8, 1], "uint8"]
    assert fresh["sample_from_coarse"]["grid_4"] == [[4, 4, 4, 1], "uint8"]
    assert fresh["energy"] == {"energy_4": [[3], "float32"], "energy_8": [[3], "float32"]}
    # D_S = sum of conv widths at width 0.25: 24+32+64 (4x4 net), 24+32+64+128 (8x8 net).
    assert fresh["features"] == {"features_4": [[3, 120], "float32"],
                                 "features_8": [[3, 248], "float32"]}
    assert fresh["inpaint"] == {"images": [[3, 8, 8, 1], "uint8"]}


def test_determinism_diversity_and_inpainting_in_fresh_process(fresh):
    assert fresh["same_seed_same"] and fresh["other_seed_differs"]
    assert fresh["coarse_kept"]
    assert fresh["distinct_from_one_start"] == 4
    assert fresh["observed_exact"] and fresh["inpaint_same_seed"]
    assert fresh["session_equals_eager"]


def _sig(loaded, name):
    return loaded.signatures[name]


@pytest.mark.parametrize("num, message", [(0, "num_samples must be in"), (-1, "num_samples must be in"),
                                          (CAP + 1, "num_samples must be in"),
                                          ([2], "num_samples must be a scalar")])
def test_sample_rejects_bad_num_samples(loaded, num, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message.replace("[", r"\[")):
        _sig(loaded, "sample")(num_samples=tf.constant(num, tf.int32), seed=tf.constant(1))


def test_bad_inputs_raise_invalid_argument_naming_the_argument(loaded):
    good = tf.zeros([2, 8, 8, 1], tf.uint8)
    cases = [
        ("energy", dict(images=tf.zeros([8, 8, 1], tf.uint8)), "images must have rank 4"),
        ("energy", dict(images=tf.zeros([2, 4, 4, 1], tf.uint8)), r"images must have shape \[N, 8, 8, 1\]"),
        ("features", dict(images=tf.zeros([2, 8, 8, 3], tf.uint8)), r"images must have shape"),
        ("energy", dict(images=tf.zeros([0, 8, 8, 1], tf.uint8)), "images must hold N >= 1"),
        ("sample", dict(num_samples=tf.constant(2), seed=tf.constant([1, 2])), "seed must be a scalar"),
        ("sample_from_coarse", dict(coarse=tf.fill([2, 1, 1, 1], 1.5), seed=tf.constant(1)),
         r"coarse must be in \[0, 1\]"),
        ("sample_from_coarse", dict(coarse=tf.zeros([2, 2, 2, 1]), seed=tf.constant(1)),
         r"coarse must have shape \[N, 1, 1, 1\]"),
        ("sample_from_coarse", dict(coarse=tf.zeros([CAP + 1, 1, 1, 1]), seed=tf.constant(1)),
         "the number of coarse starts N must be in"),
        ("inpaint", dict(images=good, mask=tf.fill([2, 8, 8, 1], tf.constant(2, tf.uint8)),
                         seed=tf.constant(1)), "mask must hold 0"),
        ("inpaint", dict(images=good, mask=tf.zeros([3, 8, 8, 1], tf.uint8), seed=tf.constant(1)),
         "mask must have the same N"),
        ("inpaint", dict(images=good, mask=tf.zeros([2, 8, 8, 3], tf.uint8), seed=tf.constant(1)),
         r"mask must have shape \[N, 8, 8, 1\]"),
    ]
    for name, kwargs, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            _sig(loaded, name)(**kwargs)


def test_wrong_dtype_is_rejected_at_the_signature_boundary(loaded):
    errors = (tf.errors.InvalidArgumentError, TypeError, ValueError)
    with pytest.raises(errors):
        _sig(loaded, "sample")(num_samples=tf.constant(2.0), seed=tf.constant(1))
    with pytest.raises(errors):
        _sig(loaded, "energy")(images=tf.zeros([2, 8, 8, 1], tf.float32))
    with pytest.raises(errors):
        _sig(loaded, "inpaint")(images=tf.zeros([2, 8, 8, 1], tf.uint8),
                                mask=tf.zeros([2, 8, 8, 1], tf.float32), seed=tf.constant(1))
    # After all the errors the model still answers.
    out = _sig(loaded, "sample")(num_samples=tf.constant(2), seed=tf.constant(1))
    assert out["images"].shape == (2, 8, 8, 1)


def test_load_exported_errors(tmp_path):
    with pytest.raises(ExportError, match="saved_model.pb"):
        load_exported(str(tmp_path))
    (tmp_path / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ExportError, match="config.json"):
        load_exported(str(tmp_path))


def test_finished_export_replaces_the_previous_one(tmp_path):
    old, new = tmp_path / "export", tmp_path / "export.tmp-1"
    old.mkdir()
    (old / "saved_model.pb").write_text("old")
    new.mkdir()
    (new / "saved_model.pb").write_text("new")
    _replace_dir(str(new), str(old))
    assert (old / "saved_model.pb").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["export"]


@pytest.mark.slow
def test_saved_model_cli_show_and_run(export_dir):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    show = subprocess.run([cli, "show", "--all", "--dir", export_dir], env=env,
                          capture_output=True, text=True, timeout=300)
    assert show.returncode == 0, show.stderr[-3000:]
    for name in ("sample", "sample_from_coarse", "energy", "inpaint", "features"):
        assert f"signature_def['{name}']" in show.stdout
    assert "outputs['grid_4']" in show.stdout and "DT_UINT8" in show.stdout
    # saved_model_cli (TF >= 2.16) takes Python literals only, so `np.int32(2)` is refused; an int
    # literal is fed to the int32 placeholder by the session.
    run = subprocess.run([cli, "run", "--dir", export_dir, "--tag_set", "serve", "--signature_def",
                          "sample", "--input_exprs", "num_samples=2;seed=1"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Result for output key images" in run.stdout and "Could not find variable" not in run.stderr


# ---------------------------------------------------------------------------------------------
# Sample pictures.

def test_sample_grid_rows_are_nearest_upsampled_grids(tmp_path):
    rng = np.random.default_rng(0)
    outputs = {f"grid_{s}": rng.integers(0, 256, (3, s, s, 1), dtype=np.uint8) for s in (1, 4, 8)}
    outputs["images"] = outputs["grid_8"]
    path = str(tmp_path / "grid.png")
    canvas = save_sample_grid(outputs, path)
    pad = 2
    assert canvas.shape == (3 * (8 + pad) + pad, 3 * (8 + pad) + pad, 1)
    # Row r, column i holds grid (1, 4, 8)[r] sample i, repeated 8/S times each way.
    for r, s in enumerate((1, 4, 8)):
        for i in range(3):
            y, x = pad + r * (8 + pad), pad + i * (8 + pad)
            tile = canvas[y:y + 8, x:x + 8, 0]
            expected = np.kron(outputs[f"grid_{s}"][i, :, :, 0], np.ones((8 // s, 8 // s), np.uint8))
            np.testing.assert_array_equal(tile, expected)
    written = np.asarray(Image.open(path))
    np.testing.assert_array_equal(written, canvas[..., 0])
    assert sample_grid_array(outputs, max_columns=2).shape[1] == 2 * (8 + pad) + pad


def test_sample_grid_rgb_scale_and_errors(tmp_path):
    outputs = {"grid_1": np.zeros((2, 1, 1, 3), np.uint8), "grid_4": np.full((2, 4, 4, 3), 200, np.uint8)}
    canvas = save_sample_grid(outputs, str(tmp_path / "rgb.png"), scale=2)
    assert canvas.shape == (2 * (2 * (4 + 2) + 2), 2 * (2 * (4 + 2) + 2), 3)
    assert Image.open(tmp_path / "rgb.png").mode == "RGB"
    with pytest.raises(ValueError, match="uint8"):
        save_sample_grid({"grid_4": np.zeros((2, 4, 4, 1), np.float32)}, str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match="same N"):
        save_sample_grid({"grid_1": np.zeros((3, 1, 1, 1), np.uint8),
                          "grid_4": np.zeros((2, 4, 4, 1), np.uint8)}, str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match="grid_S or images"):
        save_sample_grid({"energy_4": np.zeros(2)}, str(tmp_path / "x.png"))


def test_chain_gif_from_outputs_and_frames(tmp_path):
    outputs = {f"grid_{s}": np.full((2, s, s, 1), 40 * i, np.uint8) for i, s in enumerate((1, 4, 8))}
    path = str(tmp_path / "chain.gif")
    assert save_chain_gif(outputs, path) == 3
    gif = Image.open(path)
    assert gif.n_frames == 3 and gif.size == (2 * (8 + 2) + 2, 8 + 2 + 2)
    frames = [np.full((8, 8, 3), v, np.uint8) for v in (0, 128, 255)]
    assert save_chain_gif(frames, str(tmp_path / "frames.gif")) == 3
    with pytest.raises(ValueError, match="empty"):
        save_chain_gif([], str(tmp_path / "none.gif"))
