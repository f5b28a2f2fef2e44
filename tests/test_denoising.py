"""Denoising evaluation: noise statistics, PSNR/SSIM against closed forms, the baselines, the table."""

import numpy as np
import pytest

from evaluators import denoising


def _smooth_images(n=6, size=28, channels=1):
    """Smooth gradients and blobs in [40, 215] (no clipping under sigma 0.1 noise)."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    out = []
    for i in range(n):
        img = 0.5 + 0.3 * np.sin(2 * np.pi * (x * (1 + i % 3) + y * 0.5 + i / n))
        out.append(np.repeat(img[..., None], channels, axis=-1))
    return np.round(np.stack(out) * 255).astype(np.uint8)


def test_add_noise_has_the_requested_spread_and_is_seeded():
    images = np.full((20, 32, 32, 1), 128, np.uint8)
    noisy = denoising.add_noise(images, 0.1, seed=3)
    assert noisy.dtype == np.uint8 and noisy.shape == images.shape
    diff = (noisy.astype(np.float64) - 128) / 255.0
    assert abs(diff.std() - 0.1) < 0.003 and abs(diff.mean()) < 0.003
    assert np.array_equal(noisy, denoising.add_noise(images, 0.1, seed=3))
    assert not np.array_equal(noisy, denoising.add_noise(images, 0.1, seed=4))
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="sigma must be in"):
            denoising.add_noise(images, bad)
    with pytest.raises(ValueError, match="images must be uint8"):
        denoising.add_noise(images.astype(np.float32), 0.1)


def test_psnr_matches_the_closed_form_and_ssim_of_constant_images():
    clean = np.full((2, 16, 16, 3), 100, np.uint8)
    shifted = clean + np.uint8(10)
    out = denoising.denoising_metrics(clean, shifted)
    assert out["psnr"] == pytest.approx(10 * np.log10(1 / (10 / 255) ** 2))
    # constant images: SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1), C1 = (0.01 * 1)^2
    a, b, c1 = 100 / 255, 110 / 255, 1e-4
    assert out["ssim"] == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)
    same = denoising.denoising_metrics(clean, clean)
    assert same["psnr"] == denoising.PSNR_CAP_DB and same["ssim"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="recovered images have shape"):
        denoising.denoising_metrics(clean, clean[:1])


def test_small_images_use_a_uniform_ssim_window_that_fits():
    assert denoising.ssim_window(32, 32) == "gaussian" and denoising.ssim_window(11, 40) == "gaussian"
    assert denoising.ssim_window(8, 8) == "7x7 uniform" and denoising.ssim_window(10, 9) == "9x9 uniform"
    images = _smooth_images(2, size=8)
    assert denoising.denoising_metrics(images, images)["ssim"] == pytest.approx(1.0)


def test_non_local_means_beats_the_noisy_input_on_smooth_images():
    images = _smooth_images(4, size=28, channels=3)
    noisy = denoising.add_noise(images, 0.1, seed=0)
    before = denoising.denoising_metrics(images, noisy)
    after = denoising.denoising_metrics(images, denoising.nl_means(noisy, 0.1))
    assert after["psnr"] > before["psnr"] + 3 and after["ssim"] > before["ssim"]


def test_table_rows_examples_and_progress():
    images = _smooth_images(5)
    calls, seen_seeds = [], []

    def identity(noisy, seed):  # a denoiser that changes nothing scores exactly like the input
        seen_seeds.append(seed)
        return noisy

    table, examples = denoising.evaluate_denoising(images, identity, levels=(0.05, 0.2), seed=7,
                                                   num_examples=3, progress=lambda *a: calls.append(a))
    assert list(table["levels"]) == ["0.05", "0.2"] and seen_seeds == [7, 7]
    for level in table["levels"].values():
        assert set(level) == {"noisy", "nl_means", "model"} and level["model"] == level["noisy"]
    assert table["levels"]["0.2"]["noisy"]["psnr"] < table["levels"]["0.05"]["noisy"]["psnr"]
    assert list(examples["0.2"]) == ["clean", "noisy", "nl_means", "model"]
    assert all(v.shape == (3, 28, 28, 1) for v in examples["0.2"].values())
    assert [c[:2] for c in calls] == [(i, 6) for i in range(1, 7)]
    baselines, _ = denoising.evaluate_denoising(images, None, levels=(0.1,))
    assert set(baselines["levels"]["0.1"]) == {"noisy", "nl_means"}
    with pytest.raises(ValueError, match="denoise output must be uint8"):
        denoising.evaluate_denoising(images, lambda x, s: x.astype(np.float32), levels=(0.1,))
