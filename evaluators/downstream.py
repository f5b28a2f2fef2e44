"""Downstream classification with learned features (experiment 2 of Gao et al., CVPR 2018).

The energy networks serve as feature extractors (the export's `features` signature): an L2-SVM
(squared hinge loss, L2 penalty: scikit-learn's `LinearSVC`) on the finest grid's features (the
paper uses grid 3, its finest) and a two-layer classifier (an MLP with one hidden layer:
`MLPClassifier`, L-BFGS) on the concatenated features of all grids, each trained on the first n of a
seeded permutation of the labelled pool (nested subsets) for every n in `label_counts`, and
scored by the error rate on the held-out split. Baselines in the same table: raw pixels with the
same SVM, and the same networks with random weights (an untrained export of the architecture).

Features are standardised (mean 0, std 1 per dimension; statistics from the labelled pool's
features, which use no labels) before every classifier.

Rows (methods): `svm/model_finest_grid`, `mlp/model_all_grids`, `svm/raw_pixels`,
`svm/random_finest_grid`, `mlp/random_all_grids` (those whose extractor is given).
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

FeatureFn = Callable[[np.ndarray], dict]  # uint8 [N,H,W,C] -> {grid S: float32 [N, D_S]}


def _check(images, labels, name: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"{name}_images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
    if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}_labels must be integers of shape ({images.shape[0]},), "
                         f"got {labels.dtype} {labels.shape}")
    if (labels < 0).any():
        raise ValueError(f"{name}_labels contain negative values (unlabelled data); downstream "
                         "classification needs a labelled set")
    return images, labels


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean = train.mean(0)
    std = train.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    return [((x - mean) / std).astype(np.float32) for x in (train,) + others]


def _classifier(kind: str, seed: int, svm_c: float, mlp_hidden: int):
    if kind == "svm":
        from sklearn.svm import LinearSVC

        return LinearSVC(loss="squared_hinge", penalty="l2", C=svm_c, max_iter=2000,
                         random_state=seed)
    if kind == "mlp":
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(hidden_layer_sizes=(mlp_hidden,), alpha=1e-3, solver="lbfgs",
                             max_iter=200, random_state=seed)
    raise ValueError(f"unknown classifier {kind!r}; allowed: svm, mlp")


def classification_errors(pool_feats, pool_labels, test_feats, test_labels, counts,
                          classifier: str = "svm", seed: int = 0, svm_c: float = 0.1,
                          mlp_hidden: int = 256, on_fit=None) -> list[float | None]:
    """Test error rates of a classifier trained on the first n pool rows, for each n in counts.

    Args:
      pool_feats: float [P, D] features of the (already shuffled) labelled pool.
      pool_labels: int [P]. test_feats: float [T, D]. test_labels: int [T].
      counts: numbers of training rows, each <= P.
      classifier: `svm` (L2-SVM) or `mlp` (two-layer perceptron).
      on_fit: optional `on_fit(n)`, called after the classifier for count n is scored.

    Returns:
      One error rate in [0, 1] per count, or None where the first n rows hold a single class.
    """
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    pool_feats = np.asarray(pool_feats, np.float64).reshape(len(pool_labels), -1)
    test_feats = np.asarray(test_feats, np.float64).reshape(len(test_labels), -1)
    pool_x, test_x = _standardise(pool_feats, test_feats)
    errors = []
    for n in counts:
        if n > len(pool_labels):
            raise ValueError(f"count {n} exceeds the labelled pool of {len(pool_labels)}")
        y = pool_labels[:n]
        if len(np.unique(y)) < 2:
            errors.append(None)
            if on_fit is not None:
                on_fit(n)
            continue
        model = _classifier(classifier, seed, svm_c, mlp_hidden)
        # One BLAS thread: these are small dense problems, and multi-threaded OpenBLAS spin-waits
        # on a busy machine (measured 25x slower on a shared 2-core host).
        with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(pool_x[:n], y)
            errors.append(float((model.predict(test_x) != test_labels).mean()))
        if on_fit is not None:
            on_fit(n)
    return errors


def _grids(feats: dict, name: str) -> dict[int, np.ndarray]:
    if not isinstance(feats, dict) or not feats:
        raise ValueError(f"{name} must return a non-empty dict {{grid size: [N, D] features}}")
    return {int(k): np.asarray(v, np.float64).reshape(len(v), -1) for k, v in feats.items()}


def downstream_table(train_images, train_labels, test_images, test_labels,
                     feature_fn: FeatureFn | None = None, random_feature_fn: FeatureFn | None = None,
                     label_counts=(1000, 2000, 4000), seed: int = 0, svm_c: float = 0.1,
                     mlp_hidden: int = 256, include_mlp: bool = True, progress=None) -> dict:
    """The experiment-2 table: error rates by method and number of labels.

    Args:
      train_images: uint8 [N,H,W,C] labelled pool; train_labels: int [N] (>= 0).
      test_images: uint8 [T,H,W,C] held-out split; test_labels: int [T].
      feature_fn: trained model's features `(uint8 images) -> {S: [N, D_S]}`, or None.
      random_feature_fn: the same architecture with random weights, or None.
      label_counts: labelled-set sizes; each is capped at N (with a note).
      seed: shuffles the pool and seeds the classifiers.
      svm_c: the SVM's C. mlp_hidden: hidden units of the two-layer classifier.
      include_mlp: also train the two-layer classifiers on all grids' features.
      progress: optional `progress(done, total, note)`, called after each feature pass (pool or
        test split through one extractor) and each classifier fit.

    Returns:
      {"columns": [counts as given], "rows": {method: {str(count): error or None}},
       "label_counts_used": {str(count): n used}, "num_test": T, "num_pool": N,
       "methods": {method: description}, "notes": [...]}.
    """
    train_images, train_labels = _check(train_images, train_labels, "train")
    test_images, test_labels = _check(test_images, test_labels, "test")
    if train_images.shape[1:] != test_images.shape[1:]:
        raise ValueError(f"train images {train_images.shape[1:]} and test images "
                         f"{test_images.shape[1:]} must have the same shape")
    counts = [int(n) for n in label_counts]
    if not counts or min(counts) < 2:
        raise ValueError(f"label_counts must be a non-empty list of counts >= 2, got {label_counts}")
    notes = []
    used = {}
    for n in counts:
        used[str(n)] = min(n, len(train_labels))
        if n > len(train_labels):
            notes.append(f"{n} labels requested but only {len(train_labels)} labelled images are "
                         f"available: that column uses {len(train_labels)}")
    order = np.random.default_rng(seed).permutation(len(train_labels))[:max(used.values())]
    pool_images, pool_labels = train_images[order], train_labels[order]
    n_used = [used[str(n)] for n in counts]
    rows, methods = {}, {}
    extractors = [fn for fn in (feature_fn, random_feature_fn) if fn is not None]
    fits = len(counts) * (1 + len(extractors) * (2 if include_mlp else 1))
    done, total = 0, 2 * len(extractors) + fits

    def step(note: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, note)

    def add(method: str, description: str, pool_x, test_x, kind: str) -> None:
        errs = classification_errors(pool_x, pool_labels, test_x, test_labels, n_used, kind,
                                     seed, svm_c, mlp_hidden,
                                     on_fit=lambda n: step(f"{method}, {n} labels"))
        rows[method] = {str(n): e for n, e in zip(counts, errs)}
        methods[method] = description

    for prefix, fn, what in (("model", feature_fn, "trained"), ("random", random_feature_fn,
                                                                 "random-weight")):
        if fn is None:
            continue
        pool_f = _grids(fn(pool_images), f"{prefix} feature_fn")
        step(f"{prefix} features of {len(pool_images)} pool images")
        test_f = _grids(fn(test_images), f"{prefix} feature_fn")
        step(f"{prefix} features of {len(test_images)} test images")
        finest = max(pool_f)
        add(f"svm/{prefix}_finest_grid", f"L2-SVM on the {what} grid-{finest} net's features "
            f"({pool_f[finest].shape[1]}-d)", pool_f[finest], test_f[finest], "svm")
        if include_mlp:
            keys = sorted(pool_f)
            add(f"mlp/{prefix}_all_grids", f"two-layer MLP ({mlp_hidden} hidden) on the {what} "
                f"nets' features of grids {keys} concatenated",
                np.concatenate([pool_f[k] for k in keys], 1),
                np.concatenate([test_f[k] for k in keys], 1), "mlp")
    add("svm/raw_pixels", "L2-SVM on raw pixels in [0, 1]",
        pool_images.reshape(len(pool_images), -1) / 255.0,
        test_images.reshape(len(test_images), -1) / 255.0, "svm")
    return {"columns": counts, "rows": rows, "label_counts_used": used,
            "num_test": int(len(test_labels)), "num_pool": int(len(train_labels)),
            "methods": methods, "notes": notes}
