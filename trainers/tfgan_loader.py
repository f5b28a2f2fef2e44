"""The one documented place that loads parts of TF-GAN on TensorFlow >= 2.16.

Why this module exists: ``import tensorflow_gan`` fails on TF 2.16 and later because the
package's ``__init__`` touches ``tf.estimator``, which is gone. The parts we use are plain
modules that import only TensorFlow (and TensorFlow Probability) and their siblings:
``python/eval/classifier_metrics.py`` (FID, KID, classifier score; used by `evaluators`) and
``python/losses/losses_impl.py`` (the GAN losses; used by `trainers.gan_losses`). Trainers
never import evaluators, so the loader lives here and `evaluators.tfgan_compat` uses it.

How a module is loaded (`load_tfgan_module`): the installed package directory is located with
``importlib.util.find_spec("tensorflow_gan")`` (which finds, but does not execute, the package
``__init__``). Placeholder package modules for ``tensorflow_gan`` and the folders down to the
file (empty modules whose ``__path__`` points at the installed directories) are put in
``sys.modules`` just long enough for the file and the siblings it imports to execute; every
``tensorflow_gan...`` entry is then restored to what it was before, so a later
``import tensorflow_gan`` elsewhere behaves exactly as it would have. The loaded module is
cached per process under a private name.

TF-GAN 2.1.0 calls deprecated TensorFlow APIs that log multi-line notices on first use;
`silenced()` switches TensorFlow's deprecation logging off around our calls.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
import types

_LOCK = threading.Lock()
_CACHE: dict[str, types.ModuleType] = {}
_INSTALL = "`pip install tensorflow-gan==2.1.0` (see requirements/)"


class TFGANUnavailable(ImportError):
    """Raised when the tensorflow-gan package (the module asked for) cannot be found or loaded."""


def package_dir() -> str:
    """The directory of the installed ``tensorflow_gan`` package, found without importing it."""
    try:
        spec = importlib.util.find_spec("tensorflow_gan")
    except (ImportError, ValueError) as exc:  # ValueError: a broken entry in sys.modules.
        raise TFGANUnavailable(f"Cannot locate the tensorflow-gan package ({exc}). Install it with "
                               f"{_INSTALL}.") from exc
    if spec is None or not spec.submodule_search_locations:
        raise TFGANUnavailable(f"tensorflow-gan is not installed; install it with {_INSTALL}.")
    return list(spec.submodule_search_locations)[0]


def load_tfgan_module(relative_path: str) -> types.ModuleType:
    """Load (once per process) one TF-GAN module file without the package's ``__init__``.

    Args:
      relative_path: the file inside the package, e.g. ``"python/losses/losses_impl.py"``.

    Returns:
      The executed module (private name ``_mgebm_tfgan_<path with underscores>``).

    Raises:
      TFGANUnavailable: tensorflow-gan, the file, or a package it imports is missing.
    """
    with _LOCK:
        if relative_path in _CACHE:
            return _CACHE[relative_path]
        root = package_dir()
        path = os.path.join(root, *relative_path.split("/"))
        if not os.path.isfile(path):
            raise TFGANUnavailable(f"tensorflow-gan at {root} has no {relative_path}; reinstall it "
                                   f"with {_INSTALL}.")
        folders = relative_path.split("/")[:-1]
        parents = ["tensorflow_gan"] + ["tensorflow_gan." + ".".join(folders[:i + 1])
                                        for i in range(len(folders))]
        private = "_mgebm_tfgan_" + relative_path[:-3].replace("/", "_")
        saved = {k: v for k, v in sys.modules.items() if k == "tensorflow_gan" or k.startswith("tensorflow_gan.")}
        try:
            for i, name in enumerate(parents):
                existing = sys.modules.get(name)
                if existing is not None and getattr(existing, "__path__", None):
                    continue  # a real (or already working) package is imported: use it
                placeholder = types.ModuleType(name)
                placeholder.__path__ = [os.path.join(root, *folders[:i])]
                placeholder.__package__ = name
                sys.modules[name] = placeholder
            spec = importlib.util.spec_from_file_location(private, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[private] = module
            spec.loader.exec_module(module)
        except ImportError as exc:
            raise TFGANUnavailable(f"Loading TF-GAN's {relative_path} failed: {exc}. It needs "
                                   "tensorflow (and tensorflow-probability for the metrics); install "
                                   "the pinned set from requirements/.") from exc
        finally:
            for name in [k for k in sys.modules if k == "tensorflow_gan" or k.startswith("tensorflow_gan.")]:
                if name not in saved:
                    del sys.modules[name]
            sys.modules.update(saved)
        _CACHE[relative_path] = module
        return module


def silenced():
    """TensorFlow's deprecation logging switched off for the block (a no-op if TF lacks it)."""
    try:
        from tensorflow.python.util import deprecation  # pylint: disable=import-outside-toplevel
    except ImportError:
        return contextlib.nullcontext()
    silence = getattr(deprecation, "silence", None)
    return silence() if silence is not None else contextlib.nullcontext()
