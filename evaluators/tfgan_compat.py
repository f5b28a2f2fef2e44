"""The one documented place that loads TF-GAN's metric math on TensorFlow >= 2.16.

Why this module exists: ``import tensorflow_gan`` fails on TF 2.16 and later because the
package's ``__init__`` touches ``tf.estimator``, which is gone. The metric math we need lives in
``tensorflow_gan/python/eval/classifier_metrics.py``, which itself only imports TensorFlow,
TensorFlow Probability and its sibling ``tensorflow_gan/python/eval/eval_utils.py``.

How it is loaded: the installed package directory is located with
``importlib.util.find_spec("tensorflow_gan")`` (which finds, but does not execute, the package
``__init__``). Lightweight placeholder package modules for ``tensorflow_gan``,
``tensorflow_gan.python`` and ``tensorflow_gan.python.eval`` (empty modules whose ``__path__``
points at the installed directories) are put in ``sys.modules`` just long enough for
``classifier_metrics.py`` and its sibling ``eval_utils.py`` to be executed from their files; the
previous ``sys.modules`` entries are then restored, so a later ``import tensorflow_gan`` elsewhere
behaves exactly as it would have. The loaded module is cached per process under a private name.

TF-GAN 2.1.0 calls ``tf.map_fn(..., back_prop=False)``, which makes TensorFlow log a multi-line
deprecation notice on every first call; the exposed functions run TF-GAN's code under
TensorFlow's ``deprecation.silence()`` (advice for TF-GAN's authors, not for our users).

Exposed functions (TF-GAN's own, unchanged):
    frechet_classifier_distance_from_activations(activations1, activations2) -> scalar Tensor
    kernel_classifier_distance_and_std_from_activations(activations1, activations2,
        max_block_size=1024, dtype=None) -> (kid Tensor, std Tensor)
    classifier_score_from_logits(logits) -> scalar Tensor
"""

import contextlib
import importlib.util
import os
import sys
import threading
import types

__all__ = [
    "TFGANUnavailable",
    "load_classifier_metrics",
    "frechet_classifier_distance_from_activations",
    "kernel_classifier_distance_and_std_from_activations",
    "classifier_score_from_logits",
]

_PRIVATE_NAME = "_mgebm_tfgan_classifier_metrics"
_PARENTS = ("tensorflow_gan", "tensorflow_gan.python", "tensorflow_gan.python.eval")
_LOCK = threading.Lock()
_CACHE = {}


class TFGANUnavailable(ImportError):
    """Raised when the tensorflow-gan package (its eval module) cannot be found or loaded."""


def _package_dir():
    """Returns the directory of the installed ``tensorflow_gan`` package without importing it."""
    try:
        spec = importlib.util.find_spec("tensorflow_gan")
    except (ImportError, ValueError) as exc:  # ValueError: a broken entry in sys.modules.
        raise TFGANUnavailable(
            f"Cannot locate the tensorflow-gan package ({exc}). Install it with "
            "`pip install tensorflow-gan==2.1.0` (see requirements/)."
        ) from exc
    if spec is None or not spec.submodule_search_locations:
        raise TFGANUnavailable(
            "tensorflow-gan is not installed, but its metric math (FID, KID, classifier score) "
            "is needed. Install it with `pip install tensorflow-gan==2.1.0` (see requirements/)."
        )
    return list(spec.submodule_search_locations)[0]


def _exec_file(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_classifier_metrics():
    """Loads (once per process) TF-GAN's ``classifier_metrics`` module without its package init.

    Returns:
        The module object of ``tensorflow_gan/python/eval/classifier_metrics.py``.

    Raises:
        TFGANUnavailable: tensorflow-gan (or tensorflow-probability, which it imports) is missing.
    """
    with _LOCK:
        if "module" in _CACHE:
            return _CACHE["module"]
        root = _package_dir()
        eval_dir = os.path.join(root, "python", "eval")
        metrics_path = os.path.join(eval_dir, "classifier_metrics.py")
        if not os.path.isfile(metrics_path):
            raise TFGANUnavailable(
                f"tensorflow-gan at {root} has no python/eval/classifier_metrics.py; "
                "reinstall it with `pip install tensorflow-gan==2.1.0`."
            )
        names = _PARENTS + ("tensorflow_gan.python.eval.eval_utils", _PRIVATE_NAME)
        saved = {name: sys.modules.get(name) for name in names}
        try:
            dirs = (root, os.path.join(root, "python"), eval_dir)
            for name, directory in zip(_PARENTS, dirs):
                existing = sys.modules.get(name)
                if existing is not None and getattr(existing, "__path__", None):
                    continue  # A real (or already working) package is imported: use it.
                placeholder = types.ModuleType(name)
                placeholder.__path__ = [directory]
                placeholder.__package__ = name
                sys.modules[name] = placeholder
            module = _exec_file(_PRIVATE_NAME, metrics_path)
        except ImportError as exc:
            raise TFGANUnavailable(
                f"Loading TF-GAN's classifier_metrics.py failed: {exc}. It needs tensorflow and "
                "tensorflow-probability; install the pinned set from requirements/."
            ) from exc
        finally:
            for name, previous in saved.items():
                if name == _PRIVATE_NAME:
                    continue
                if previous is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = previous
        _CACHE["module"] = module
        return module


def _silenced():
    """TensorFlow's deprecation logging switched off for the block (a no-op if TF lacks it)."""
    try:
        from tensorflow.python.util import deprecation
    except ImportError:
        return contextlib.nullcontext()
    silence = getattr(deprecation, "silence", None)
    return silence() if silence is not None else contextlib.nullcontext()


def frechet_classifier_distance_from_activations(activations1, activations2):
    """TF-GAN's FID from activations ([N, D] and [M, D] float Tensors) -> scalar Tensor."""
    with _silenced():
        return load_classifier_metrics().frechet_classifier_distance_from_activations(
            activations1, activations2
        )


def kernel_classifier_distance_and_std_from_activations(
    activations1, activations2, max_block_size=1024, dtype=None
):
    """TF-GAN's KID (cubic polynomial kernel, unbiased MMD^2) and its block std, as Tensors."""
    with _silenced():
        return load_classifier_metrics().kernel_classifier_distance_and_std_from_activations(
            activations1, activations2, max_block_size=max_block_size, dtype=dtype
        )


def classifier_score_from_logits(logits):
    """TF-GAN's classifier (Inception) score exp(E[KL(p(y|x) || p(y))]) from [N, K] logits."""
    with _silenced():
        return load_classifier_metrics().classifier_score_from_logits(logits)
