"""imaging.wide_blur / masked_blur: a wide Gaussian on a shrunk copy, as the direct one."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facefuse.imaging import SHRUNK_SIGMA, masked_blur, wide_blur


@pytest.fixture
def photo_luma(target_path):
    return cv2.imread(str(target_path), cv2.IMREAD_GRAYSCALE).astype(np.float32)


@pytest.mark.parametrize("sigma", [5.0, 11.3, 24.0])
def test_wide_blur_is_the_direct_gaussian_within_a_level(photo_luma, sigma):
    direct = cv2.GaussianBlur(photo_luma, (0, 0), sigma)
    shrunk = wide_blur(photo_luma, sigma)
    assert shrunk.shape == direct.shape
    # away from the border (reflected differently at the two scales) within a level
    inner = (slice(int(3 * sigma), -int(3 * sigma)),) * 2
    diff = np.abs(shrunk - direct)[inner]
    assert diff.mean() < 0.25 and np.percentile(diff, 99) < 1.0
    # and a box blur of the same size is not (the test can tell kernels apart)
    box = cv2.blur(photo_luma, (int(2 * sigma) | 1,) * 2)
    assert np.abs(box - direct)[inner].mean() > 2 * diff.mean()


def test_a_narrow_blur_is_the_direct_one(photo_luma):
    sigma = 1.9 * SHRUNK_SIGMA
    assert np.array_equal(wide_blur(photo_luma, sigma), cv2.GaussianBlur(photo_luma, (0, 0), sigma))


def test_masked_blur_takes_nothing_from_outside_the_mask():
    img = np.zeros((120, 160, 3), np.float32)
    img[:, 80:] = 200.0  # bright outside the mask
    img[:, :80] = (50.0, 60.0, 70.0)
    mask = np.zeros((120, 160), np.float32)
    mask[:, :80] = 1.0
    out = masked_blur(img, mask, 12.0)
    assert np.abs(out[:, :78] - np.float32([50, 60, 70])).max() < 0.5
    assert np.abs(masked_blur(img[:, :, 0], mask, 12.0)[:, :78] - 50.0).max() < 0.5
