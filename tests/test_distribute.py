"""One train step under MirroredStrategy (2 logical CPUs) equals one device on the same global batch
(also with Langevin noise on, and for the GANs: generator noise, gradient-penalty weights and
batch norm over the global batch).

Logical devices must be configured before TensorFlow initialises, so the check runs in a fresh
Python subprocess that prints its results as JSON.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

CODE = r"""
import json
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from trainers.families import lapgan
from trainers.families.multigrid import build_model

rng = np.random.default_rng(0)
x = rng.uniform(size=(8, 8, 8, 1)).astype(np.float32)
batch = {"grid_1": x.mean(axis=(1, 2), keepdims=True), "grid_4": x.reshape(8, 4, 2, 4, 2, 1).mean(axis=(2, 4)),
         "grid_8": x, "label": np.arange(8)}


def run(strategy, family, noise=False):
    with strategy.scope():
        model = build_model((1, 4, 8), 1, variant=family, width=0.1, steps=2, step_size=0.3,
                            pcd_buffer_size=16, seed=0, noise=noise, noise_scale=0.05)
        model.compile(learning_rate=1e-3, beta_1=0.5)
    ds = tf.data.Dataset.from_tensor_slices(batch).batch(8, drop_remainder=True)  # global batch 8
    history = model.fit(ds, epochs=1, verbose=0, shuffle=False).history
    state = [v.numpy() for v in model.trainable_variables]
    if family == "pcd":
        state.append(model.pcd_buffer.numpy())
    return model, state, history


results = {}
# One strategy object for the whole process: a second MirroredStrategy over the same devices
# restarts the collective instance keys and collides with the first one's cached instances.
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
for name, family, noise in (("multigrid", "multigrid", False), ("pcd", "pcd", False),
                            ("multigrid-noise", "multigrid", True)):
    one, a, ha = run(tf.distribute.get_strategy(), family, noise)
    two, b, hb = run(mirrored, family, noise)
    results[name] = {
        "replicas": mirrored.num_replicas_in_sync,
        "local_batch_one": int(one.last_samples[8].shape[0]),
        "local_batch_two": int(two.last_samples[8].shape[0]),
        "max_weight_diff": max(float(np.abs(p - q).max()) for p, q in zip(a, b)),
        "max_weight_change": max(float(np.abs(p - q).max()) for p, q in
                                 zip(a, [v.numpy() for v in build_model(
                                     (1, 4, 8), 1, variant=family, width=0.1, pcd_buffer_size=16,
                                     seed=0).trainable_variables])),
        "loss_one": ha["loss/8"][-1], "loss_two": hb["loss/8"][-1],
    }


def run_gan(strategy, gan_loss, sizes):
    with strategy.scope():
        model = lapgan.build_model(sizes, 1, width=4, noise_dim=8, gan_loss=gan_loss, spectral=True,
                                   num_classes=10, classes=tuple(range(10)), seed=0)
        # A small rate: the conv biases before batch norm have a zero gradient up to float noise,
        # which Adam would blow up to +-learning_rate steps on either side alike.
        model.compile(learning_rate=1e-4)
    ds = tf.data.Dataset.from_tensor_slices(batch).batch(8, drop_remainder=True).repeat(2)
    model.fit(ds, epochs=1, verbose=0, shuffle=False)  # two steps: the second sees moved weights
    return model, [v.numpy() for v in model.variables]  # incl. batch-norm and spectral-norm state


for name, gan_loss, sizes in (("lapgan-wgan-gp", "wasserstein_gp", (4, 8)),
                              ("dcgan-non-saturating", "non_saturating", (8,))):
    _, a = run_gan(tf.distribute.get_strategy(), gan_loss, sizes)
    _, b = run_gan(mirrored, gan_loss, sizes)
    init = [v.numpy() for v in lapgan.build_model(sizes, 1, width=4, noise_dim=8, gan_loss=gan_loss, spectral=True,
                                                  num_classes=10, classes=tuple(range(10)), seed=0).variables]
    results[name] = {"max_weight_diff": max(float(np.abs(p - q).max()) for p, q in zip(a, b)),
                     "max_weight_change": max(float(np.abs(p - q).max()) for p, q in zip(a, init))}
print("RESULTS " + json.dumps(results))
"""


@pytest.fixture(scope="module")
def results():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")][-1]
    return json.loads(line[len("RESULTS "):])


# multigrid-noise: Langevin noise on; the sampler draws the global batch's noise and splits it,
# so the chains do not depend on how the batch is split over replicas (or workers).
@pytest.mark.parametrize("family", ["multigrid", "pcd", "multigrid-noise"])
def test_mirrored_step_matches_one_device(results, family):
    r = results[family]
    assert r["replicas"] == 2
    assert r["local_batch_one"] == 8 and r["local_batch_two"] == 4  # the global batch was split
    assert r["max_weight_change"] > 1e-4  # the step did move the weights ...
    assert r["max_weight_diff"] < 1e-5  # ... identically on 2 replicas and on one device
    assert abs(r["loss_one"] - r["loss_two"]) < 1e-5


# The GANs (conditional, spectral norm, batch norm in the generators): noise and gradient-penalty
# weights drawn for the global batch, batch norm synchronized, so 2 replicas = one device.
@pytest.mark.parametrize("name", ["lapgan-wgan-gp", "dcgan-non-saturating"])
def test_mirrored_gan_steps_match_one_device(results, name):
    r = results[name]
    assert r["max_weight_change"] > 1.5e-4  # two Adam steps of 1e-4 moved the weights ...
    assert r["max_weight_diff"] < 1e-5  # ... alike (per-replica noise: 0.04-0.06)
