"""evaluators.image_statistics against scipy / brute-force references and closed forms."""

import numpy as np
import pytest
from scipy import ndimage

from evaluators import image_statistics as st


def test_mean_abs_laplacian_matches_scipy_and_closed_forms():
    rng = np.random.default_rng(0)
    x = rng.random((2, 9, 11, 3))
    want = [np.mean([np.abs(ndimage.laplace(x[n, ..., c])[1:-1, 1:-1]).mean() for c in range(3)]) for n in range(2)]
    np.testing.assert_allclose(st.mean_abs_laplacian(x), want, rtol=1e-12)
    yy, xx = np.mgrid[:8, :10]
    ramp = (0.02 * xx + 0.03 * yy)[None, ..., None]
    checker = ((yy + xx) % 2).astype(float)[None, ..., None]
    assert st.mean_abs_laplacian(ramp)[0] == pytest.approx(0, abs=1e-12)
    assert st.mean_abs_laplacian(checker)[0] == 4.0  # every interior pixel: |4 - 8 x| = 4
    noise = 0.01 * rng.standard_normal((1, 300, 300, 1))
    assert st.mean_abs_laplacian(noise)[0] == pytest.approx(np.sqrt(40 / np.pi) * 0.01, rel=0.02)


def test_hf_energy_ratio_is_one_for_the_image_above_for_grain_below_for_blur():
    rng = np.random.default_rng(1)
    image = ndimage.gaussian_filter(rng.random((40, 40, 3)), (1, 1, 0))
    assert st.hf_energy_ratio(image, image[None]) == pytest.approx(1.0)
    grain = np.clip(image + 0.05 * rng.standard_normal(image.shape), 0, 1)
    blur = ndimage.gaussian_filter(image, (1.5, 1.5, 0))
    assert st.hf_energy_ratio(image, grain[None]) > 1.5 and st.hf_energy_ratio(image, blur[None]) < 0.5
    assert st.hf_energy_ratio(image, np.stack([grain, blur])) == pytest.approx(
        (st.hf_energy_ratio(image, grain[None]) + st.hf_energy_ratio(image, blur[None])) / 2)
    with pytest.raises(ValueError, match="no high-frequency energy"):
        st.hf_energy_ratio(np.full((5, 5, 3), 0.5), image[None])


def _brute_ring(mask, ring):
    h, w = mask.shape
    inside = np.argwhere(mask)
    out = np.zeros_like(mask, bool)
    for i in range(h):
        for j in range(w):
            if not mask[i, j]:
                out[i, j] = np.min(np.maximum(np.abs(inside[:, 0] - i), np.abs(inside[:, 1] - j))) <= ring
    return out


def test_colour_distance_matches_a_brute_force_ring():
    rng = np.random.default_rng(2)
    image = rng.random((14, 17, 3))
    yy, xx = np.mgrid[:14, :17]
    mask = (yy - 6) ** 2 + (xx - 8) ** 2 <= 9
    for ring in (1, 3):
        around = _brute_ring(mask, ring)
        np.testing.assert_array_equal(st.ring_mask(mask, ring), around)
        want = np.linalg.norm(image[mask].mean(0) - image[around].mean(0))
        assert st.colour_distance(image, mask[..., None].astype(np.uint8), ring) == pytest.approx(want, rel=1e-12)
    # A red square on a blue ground: distance sqrt(2); painted blue: 0.
    flat = np.zeros((10, 10, 3))
    flat[..., 2] = 1
    flat[3:6, 3:6] = [1, 0, 0]
    square = np.zeros((10, 10), bool)
    square[3:6, 3:6] = True
    assert st.colour_distance(flat, square, 2) == pytest.approx(np.sqrt(2))
    flat[3:6, 3:6] = [0, 0, 1]
    assert st.colour_distance(flat, square, 2) == 0


@pytest.mark.parametrize("call, match", [
    (lambda: st.colour_distance(np.zeros((5, 5, 3)), np.zeros((5, 5)), 1), "non-empty"),
    (lambda: st.colour_distance(np.zeros((5, 5, 3)), np.ones((5, 5)), 1), "no pixels around"),
    (lambda: st.colour_distance(np.zeros((5, 5, 3)), np.ones((4, 5)), 1), r"mask must have the image's"),
    (lambda: st.ring_mask(np.ones((3, 3)), 0), "ring=0"),
    (lambda: st.mean_abs_laplacian(np.zeros((4, 2, 3))), "images must be float"),
])
def test_bad_input_raises_one_line_value_error(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
