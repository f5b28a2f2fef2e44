"""A numpy client for an exported multigrid-ebm SavedModel (its serving signatures only).

Evaluators never import trainer internals: they load the SavedModel with `tf.saved_model.load`
and call its signatures (contract in contracts.md / trainers/export.py):
- `sample(num_samples int32 [], seed int32 [][, labels int32 [N]]) -> {images: uint8 [N,H,W,C],
  grid_S: uint8 [N,S,S,C]}` (`labels` only where config.json says `conditional`)
- `sample_from_coarse(coarse float32 [N,S0,S0,C], seed int32 [][, labels]) -> same` (S0 =
  config.json `coarse_size`, 1 unless the family says otherwise)
- `energy(images uint8 [N,H,W,C]) -> {energy_S: float32 [N]}` per trained grid S
- `inpaint(images uint8 [N,H,W,C], mask uint8 [N,H,W,1], seed int32 []) -> {images: uint8}`
- `features(images uint8 [N,H,W,C]) -> {features_S: float32 [N, D_S]}` per trained grid S
- `denoise(images uint8 [N,H,W,C], seed int32 []) -> {images: uint8 [N,H,W,C]}`
- `translate(images uint8 [N,H,W,C], seed int32 []) -> {images: uint8 [N,H,W,C]}`
and read `assets/config.json` for `family`, `signatures`, `grids`, `image_size`, `channels`,
`trained_grids`, `config` (and `conditional`, `classes`, `coarse_size` where the family sets
them). A conditional model is sampled with the labels given, or with `sample_labels(N)` (the
trained classes in turn) when none are. A family exports only the signatures it has (`signature_names`,
`has`); calling one it lacks raises ValueError naming it.

Requests larger than the export's cap (`config.export.max_num_samples`, default 1024) are split
into batches; batch b of a seeded call uses seed `(seed + b * 1_000_003) mod 2^31`, so batch 0
matches one direct signature call with `seed`.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import tensorflow as tf

DEFAULT_MAX_NUM_SAMPLES = 1024
_SEED_STRIDE = 1_000_003


def _batch_seed(seed: int, batch: int) -> int:
    return int((int(seed) + batch * _SEED_STRIDE) % (2 ** 31))


def _by_grid(outputs: dict, prefix: str) -> dict[int, np.ndarray]:
    pattern = re.compile(rf"^{prefix}_(\d+)$")
    found = {int(m.group(1)): v for k, v in outputs.items() if (m := pattern.match(k))}
    if not found:
        raise ValueError(f"the {prefix!r} signature returned keys {sorted(outputs)}; expected "
                         f"{prefix}_S for each trained grid S (re-export with trainers.export)")
    return found


class ExportedModel:
    """Numpy-in, numpy-out access to an exported SavedModel.

    Args:
      export_dir: folder with saved_model.pb and assets/config.json (any tf.io.gfile path).
      batch_size: most images per signature call; default the export's max_num_samples.
    """

    def __init__(self, export_dir: str, batch_size: int | None = None):
        config_path = os.path.join(export_dir, "assets", "config.json")
        if not tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb")):
            raise ValueError(f"{export_dir!r} is not a SavedModel folder (no saved_model.pb); pass "
                             "the trainer's export folder, e.g. WORKDIR/export")
        if not tf.io.gfile.exists(config_path):
            raise ValueError(f"{config_path!r} is missing; re-export the model with "
                             "trainers.export.export_saved_model")
        with tf.io.gfile.GFile(config_path) as f:
            self.config: dict = json.load(f)
        for key in ("grids", "image_size", "channels"):
            if key not in self.config:
                raise ValueError(f"{config_path!r} lacks {key!r}; re-export the model")
        self.export_dir = export_dir
        self._loaded = None  # tf.saved_model.load on first use (see `signatures`)
        cap = ((self.config.get("config") or {}).get("export", {}).get("max_num_samples")
               or self.config.get("max_num_samples"))
        self.max_num_samples = int(cap or DEFAULT_MAX_NUM_SAMPLES)
        self.batch_size = int(batch_size or self.max_num_samples)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = min(self.batch_size, self.max_num_samples)

    @property
    def signatures(self):
        """The loaded SavedModel's signatures (the model is loaded on first access)."""
        if self._loaded is None:
            self._loaded = tf.saved_model.load(self.export_dir)
        return self._loaded.signatures

    @property
    def grids(self) -> list[int]:
        return [int(g) for g in self.config["grids"]]

    @property
    def trained_grids(self) -> list[int]:
        return [int(g) for g in self.config.get("trained_grids", self.grids[1:])]

    @property
    def image_size(self) -> int:
        return int(self.config["image_size"])

    @property
    def channels(self) -> int:
        return int(self.config["channels"])

    @property
    def family(self) -> str:
        nested = (self.config.get("config") or {}).get("model", {}).get("family")
        return str(nested or self.config.get("family") or "unknown")

    @property
    def signature_names(self) -> list[str]:
        """The exported signatures: config.json's `signatures`, else those of the SavedModel."""
        names = self.config.get("signatures")
        return [str(n) for n in names] if names is not None else sorted(self.signatures)

    @property
    def conditional(self) -> bool:
        """Whether `sample` / `sample_from_coarse` take `labels` (a class-conditional model)."""
        return bool(self.config.get("conditional", False))

    @property
    def classes(self) -> list[int]:
        """The labels a conditional model accepts ([] for an unconditional one)."""
        return [int(c) for c in self.config.get("classes", [])] if self.conditional else []

    @property
    def coarse_size(self) -> int:
        """The side of `sample_from_coarse`'s coarse input (1: the 1x1 mean colour)."""
        return int(self.config.get("coarse_size", 1))

    def sample_labels(self, n: int) -> np.ndarray:
        """int32 [n]: the trained classes in turn (0, 1, 2, 0, ...), for a conditional model."""
        if not self.conditional or not self.classes:
            raise ValueError(f"the model in {self.export_dir!r} is not class-conditional")
        return np.asarray([self.classes[i % len(self.classes)] for i in range(int(n))], np.int32)

    def _labels(self, labels, n: int):
        """Checked int32 [n] labels for a conditional model (default `sample_labels`); None otherwise."""
        if not self.conditional:
            if labels is not None:
                raise ValueError(f"labels were given but the model in {self.export_dir!r} is not "
                                 "class-conditional")
            return None
        labels = self.sample_labels(n) if labels is None else np.asarray(labels)
        if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be int [{n}], got {labels.dtype} {labels.shape}")
        bad = sorted(set(labels.tolist()) - set(self.classes))
        if bad:
            raise ValueError(f"labels {bad} are not among the trained classes {self.classes}")
        return labels.astype(np.int32)

    def has(self, name: str) -> bool:
        """Whether the model exports the signature `name` (a capability such as `inpaint`)."""
        return name in self.signature_names

    def _signature(self, name: str):
        if name not in self.signatures:
            raise ValueError(f"the SavedModel in {self.export_dir!r} has no {name!r} signature "
                             f"(has {sorted(self.signatures)})")
        return self.signatures[name]

    def _images(self, images, name: str = "images") -> np.ndarray:
        images = np.asarray(images)
        want = (self.image_size, self.image_size, self.channels)
        if images.ndim != 4 or images.shape[1:] != want or images.dtype != np.uint8:
            raise ValueError(f"{name} must be uint8 [N, {want[0]}, {want[1]}, {want[2]}], got "
                             f"{images.dtype} {images.shape}")
        return images

    def _batched(self, name: str, n: int, make_args, progress=None) -> dict[str, np.ndarray]:
        sig = self._signature(name)
        parts: dict[str, list] = {}
        for b, start in enumerate(range(0, n, self.batch_size)):
            out = sig(**make_args(b, start, min(start + self.batch_size, n)))
            for key, value in out.items():
                parts.setdefault(key, []).append(value.numpy())
            if progress is not None:
                progress(min(start + self.batch_size, n), n, f"{name} batch {b + 1}")
        return {k: np.concatenate(v) for k, v in parts.items()}

    def sample(self, num_samples: int, seed: int = 0, progress=None, labels=None) -> dict[str, np.ndarray]:
        """Samples: {"images": uint8 [N,H,W,C], "grid_S": uint8 [N,S,S,C]} (N = num_samples >= 1).

        progress: optional `progress(done, total, note)`, called after each signature call.
        labels: int [N] for a conditional model (default `sample_labels(N)`); must be None otherwise.
        """
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        labels = self._labels(labels, int(num_samples))

        def args(b, lo, hi):
            out = {"num_samples": tf.constant(hi - lo, tf.int32), "seed": tf.constant(_batch_seed(seed, b), tf.int32)}
            if labels is not None:
                out["labels"] = tf.constant(labels[lo:hi])
            return out

        return self._batched("sample", int(num_samples), args, progress)

    def sample_from_coarse(self, coarse, seed: int = 0, labels=None) -> dict[str, np.ndarray]:
        """Samples from given coarse starts: coarse float32 [N,S0,S0,C] in [0, 1] (S0 =
        `coarse_size`) -> as `sample`; labels as in `sample`."""
        coarse = np.asarray(coarse, np.float32)
        s0 = self.coarse_size
        if coarse.ndim != 4 or coarse.shape[1:] != (s0, s0, self.channels) or len(coarse) < 1:
            raise ValueError(f"coarse must be float32 [N>=1, {s0}, {s0}, {self.channels}], got {coarse.shape}")
        labels = self._labels(labels, len(coarse))

        def args(b, lo, hi):
            out = {"coarse": tf.constant(coarse[lo:hi]), "seed": tf.constant(_batch_seed(seed, b), tf.int32)}
            if labels is not None:
                out["labels"] = tf.constant(labels[lo:hi])
            return out

        return self._batched("sample_from_coarse", len(coarse), args)

    def energy(self, images) -> dict[int, np.ndarray]:
        """Energies f(x) per trained grid: {S: float32 [N]} for uint8 [N,H,W,C] images."""
        images = self._images(images)
        out = self._batched("energy", len(images), lambda b, lo, hi: {
            "images": tf.constant(images[lo:hi])})
        return _by_grid(out, "energy")

    def features(self, images) -> dict[int, np.ndarray]:
        """Pooled activations per trained grid: {S: float32 [N, D_S]} for uint8 [N,H,W,C] images."""
        images = self._images(images)
        out = self._batched("features", len(images), lambda b, lo, hi: {
            "images": tf.constant(images[lo:hi])})
        return _by_grid(out, "features")

    def inpaint(self, images, mask, seed: int = 0) -> np.ndarray:
        """Recover the missing pixels: images uint8 [N,H,W,C], mask uint8 [N,H,W,1] (1 = missing)."""
        images = self._images(images)
        mask = np.asarray(mask)
        if mask.shape != images.shape[:3] + (1,) or mask.dtype != np.uint8:
            raise ValueError(f"mask must be uint8 {images.shape[:3] + (1,)} (1 = missing), got "
                             f"{mask.dtype} {mask.shape}")
        out = self._batched("inpaint", len(images), lambda b, lo, hi: {
            "images": tf.constant(images[lo:hi]), "mask": tf.constant(mask[lo:hi]),
            "seed": tf.constant(_batch_seed(seed, b), tf.int32)})
        return out["images"]

    def _images_to_images(self, name: str, images, seed: int) -> np.ndarray:
        images = self._images(images)
        if len(images) < 1:
            raise ValueError("images must hold N >= 1 images")
        out = self._batched(name, len(images), lambda b, lo, hi: {
            "images": tf.constant(images[lo:hi]), "seed": tf.constant(_batch_seed(seed, b), tf.int32)})
        return out["images"]

    def denoise(self, images, seed: int = 0) -> np.ndarray:
        """Langevin from noisy images under the model's energy: uint8 [N,H,W,C] -> the same."""
        return self._images_to_images("denoise", images, seed)

    def translate(self, images, seed: int = 0) -> np.ndarray:
        """Source-domain images -> the model's (target) domain: uint8 [N,H,W,C] -> the same."""
        return self._images_to_images("translate", images, seed)
