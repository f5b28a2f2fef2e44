"""The model-family registry: a toy family defined here trains, exports and evaluates through the
family-neutral loop, export and evaluator; unknown families are refused by name; the shared
modules never test a family's name."""

import ast
import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from evaluators import evaluate
from tests.test_train import write_pyramid
from trainers import families, signature_ops
from trainers.config import Config, ConfigError
from trainers.langevin import LangevinSampler
from trainers.train import train

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOY = "toy_gauss"


class ToyEBM(keras.Model):
    """One conv + mean pooling energy at the finest grid, chains from uniform noise; it exports
    only `sample` and `energy`."""

    def __init__(self, size: int, channels: int, steps: int, step_size: float, seed: int):
        super().__init__(name="toy_ebm")
        self.size, self.channels, self.seed = size, channels, seed
        keras.utils.set_random_seed(seed)
        self.net = keras.Sequential([keras.layers.Conv2D(4, 3, padding="same", name="conv"),
                                     keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(1)],
                                    name="toy_net")
        self.net(tf.zeros([1, size, size, channels]))
        self.sampler = LangevinSampler(steps, step_size)
        self.energy_fn = lambda x: tf.squeeze(self.net(x), -1)
        self.counter = self.add_weight(shape=(), dtype="int64", initializer="zeros",
                                       trainable=False, name="counter")
        self.opt = None

    @property
    def metrics(self):
        return []

    def compile(self, learning_rate=1e-3, beta_1=0.5):
        self.opt = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1, name="adam")
        self.opt.build(self.net.trainable_variables)
        super().compile(optimizer=self.opt)

    def _chains(self, n, seed):
        x0 = tf.random.stateless_uniform([n, self.size, self.size, self.channels], seed)
        return self.sampler.run(self.energy_fn, x0, seed)[0]

    def train_step(self, data):
        obs = tf.cast(data[f"grid_{self.size}"], tf.float32)
        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.convert_to_tensor(self.counter)])
        synth = tf.stop_gradient(self._chains(tf.shape(obs)[0], seed))
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(self.energy_fn(synth)) - tf.reduce_mean(self.energy_fn(obs))
        grads = tape.gradient(loss, self.net.trainable_variables)
        self.opt.apply_gradients(zip(grads, self.net.trainable_variables))
        self.counter.assign_add(1)
        return {"loss": loss, "sample_abs_max": tf.reduce_max(tf.abs(synth))}

    def optimizers_by_name(self):
        return {"net": self.opt}

    def tensorboard_previews(self, batch, max_outputs=8):
        x = self._chains(max_outputs, tf.constant([0, 0], tf.int64))
        return {"synthesized/toy": x}, {"energy/toy": self.energy_fn(x)}

    def use_averaged_weights(self):
        return False

    def export_signatures(self, max_num_samples):
        size, c = self.size, self.channels

        @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.int32, name="num_samples"),
                                                       tf.TensorSpec(None, tf.int32, name="seed")])
        def sample(num_samples, seed):
            checks = (signature_ops.check_scalar(num_samples, "num_samples")
                      + signature_ops.check_count(num_samples, "num_samples", max_num_samples))
            with tf.control_dependencies(checks):
                num = tf.identity(tf.reshape(num_samples, []))
            x = self._chains(num, tf.cast(signature_ops.seed_pair(tf.reshape(seed, []), 1), tf.int64))
            return {"images": signature_ops.to_uint8(x)}

        @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.uint8, name="images")])
        def energy(images):
            with tf.control_dependencies(signature_ops.check_images(images, "images", size, c)):
                x = tf.ensure_shape(signature_ops.to_float(images), [None, size, size, c])
            return {f"energy_{size}": self.energy_fn(x)}

        return {"sample": sample, "energy": energy}

    def export_info(self):
        return {"grids": [1, self.size], "image_size": self.size, "channels": self.channels,
                "trained_grids": [self.size]}


def _validate(config):
    if config.sampler.steps > 50:
        raise ConfigError(f"sampler.steps={config.sampler.steps} must be <= 50 for {TOY}")


def _build(config, metadata):
    return ToyEBM(int(metadata["image_size"]), int(metadata["channels"]), config.sampler.steps,
                  config.sampler.step_size, config.train.seed)


@pytest.fixture
def toy_family():
    family = families.register(families.Family(TOY, ("sample", "energy"), _build, _validate,
                                               description="a test family"))
    yield family
    families.unregister(TOY)


def _config(**model):
    return Config.build("toy", data=dict(image_size=8, channels=1), pyramid=dict(grids=[1, 4, 8]),
                        model=dict(model), sampler=dict(steps=3, step_size=0.05),
                        train=dict(batch_size=4, max_steps=3, checkpoint_every=2, log_every=1,
                                   image_log_every=2, shuffle_buffer=16, seed=1),
                        export=dict(max_num_samples=16))


def test_registry_lists_the_multigrid_variants_without_tensorflow_state():
    names = families.family_names()
    assert names[:4] == ["multigrid", "single_grid", "cd1", "pcd"]
    assert families.get_family("pcd").variant_of == "multigrid"
    assert families.get_family("multigrid").signatures == (
        "sample", "sample_from_coarse", "energy", "inpaint", "features")


def test_unknown_family_names_the_field_and_the_allowed_values():
    with pytest.raises(ConfigError, match=r"model.family='gan' is not allowed; allowed values: "
                                          r"\['multigrid', 'single_grid', 'cd1', 'pcd'"):
        Config().with_overrides(["model.family=gan"])
    with pytest.raises(ConfigError, match="model.family"):
        families.get_family("gan")
    with pytest.raises(ValueError, match="already registered"):
        families.register(families.Family("cd1", ("sample",), _build))


def test_the_family_validates_its_own_fields(toy_family):
    assert _config(family=TOY).model.family == TOY
    with pytest.raises(ConfigError, match="sampler.steps=60 must be <= 50"):
        _config(family=TOY).with_overrides(["sampler.steps=60"])
    with pytest.raises(ConfigError, match="train.pcd_buffer_size=2 must be >= train.batch_size"):
        Config().with_overrides(["model.family=pcd", "train.pcd_buffer_size=2"])
    Config().with_overrides(["model.family=cd1", "train.pcd_buffer_size=2"])  # not read by cd1


def test_toy_family_trains_exports_and_is_evaluated_with_skips(toy_family, tmp_path):
    pyramid = tmp_path / "pyramid"
    images = write_pyramid(pyramid)[0]
    result = train(_config(family=TOY), str(pyramid), str(tmp_path / "run"))
    assert result.steps == 3 and result.export_dir
    info = json.loads((pathlib.Path(result.export_dir) / "assets" / "config.json").read_text())
    assert info["family"] == TOY and info["signatures"] == ["sample", "energy"]
    resumed = train(_config(family=TOY).with_overrides(["train.max_steps=4"]), str(pyramid),
                    str(tmp_path / "run"), resume=True)
    assert resumed.steps == 4

    real = np.round(images * 255).astype(np.uint8)
    labels = np.arange(len(real)) % 3
    metrics = evaluate.evaluate_model(
        result.export_dir, evaluate.EvalData(real, labels), str(tmp_path / "eval"), {},
        evaluate.EvalOptions(num_samples=8, masks=("square",), num_inpaint=2, num_diversity=4, seed=0))
    assert metrics["model"]["family"] == TOY and metrics["signatures"] == ["sample", "energy"]
    assert metrics["skipped"] == {
        "downstream": "the model has no 'features' signature",
        "inpainting": "the model has no 'inpaint' signature",
        "diversity": "the model has no 'sample_from_coarse' signature",
        "denoising": "the model has no 'denoise' signature",
        "translation": "the model has no 'translate' signature",
        "memorization": "no training images given",
        "conditional": "the model is not class-conditional"}
    assert metrics["downstream"] is None and metrics["inpainting"] is None
    assert metrics["diversity"] is None
    assert sorted(metrics["ood"]["auroc"]) == ["constant", "interpolation", "uniform_noise"]  # has energy
    report = (tmp_path / "eval" / "report.html").read_text()
    assert "Skipped experiments" in report and "no &#x27;inpaint&#x27; signature" in report
    on_disk = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert on_disk["skipped"] == metrics["skipped"]


SHARED = ["trainers/train.py", "trainers/export.py", "trainers/chain.py", "trainers/config.py"]
SHARED += [str(p.relative_to(ROOT)) for folder in ("evaluators", "components", "pipeline")
           for p in sorted((ROOT / folder).glob("*.py")) if p.name != "presets.py"]


@pytest.mark.parametrize("path", SHARED)
def test_shared_modules_never_test_a_family_name(path):
    """No string literal equal to a registered family name outside the family modules/presets
    (config.py may name the default family as a field default, not in a test)."""
    tree = ast.parse((ROOT / path).read_text())
    names = set(families.family_names())
    allowed = set()
    if path == "trainers/config.py":  # `family: str = "multigrid"`: the default, never compared
        allowed = {id(node.value) for node in ast.walk(tree)
                   if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "family"}
    found = [(node.lineno, node.value) for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and node.value in names and id(node) not in allowed]
    assert not found, f"{path} names model families {found}; dispatch through trainers.families"


def test_config_and_registry_load_without_tensorflow():
    """The CLI validates model.family before TensorFlow loads: the registry imports no TF."""
    import os
    import subprocess
    import sys

    code = ("import sys\nfrom trainers.config import Config\nfrom trainers import families\n"
            "Config().with_overrides(['model.family=pcd'])\nfamilies.get_family('single_grid')\n"
            "assert 'tensorflow' not in sys.modules, 'the registry imported TensorFlow'\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
