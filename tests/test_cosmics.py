"""Cosmic-ray detection on a frame with injected hits; both backends agree."""

import numpy as np
import pytest

from redux_helpers.cosmics import detect_cosmics, detect_many, fill_nearest
from redux_helpers.demo import _gauss_stamps


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(7)
    truth = np.full((200, 200), 3000.0)
    _gauss_stamps(truth, rng.uniform(10, 190, 40), rng.uniform(10, 190, 40),
                  rng.uniform(2e4, 5e5, 40), 1.4)
    data = rng.poisson(truth).astype(float) + rng.normal(0, 9.0, truth.shape)
    cr = np.zeros(truth.shape, bool)
    ys, xs = rng.integers(5, 195, 60), rng.integers(5, 195, 60)
    cr[ys, xs] = True
    cr[ys, xs + 1] = True                  # two-pixel tracks
    data[cr] += rng.uniform(1500, 15000, cr.sum())
    return data.astype(np.float32), cr


@pytest.mark.parametrize("backend", ["lacosmic", "astroscrappy"])
def test_backends_find_injected_hits(frame, backend):
    data, cr = frame
    found = detect_cosmics(data, read_noise=9.0, backend=backend)
    assert (found & cr).sum() / cr.sum() >= 0.95
    assert (found & ~cr).sum() < 0.001 * (~cr).sum()


def test_masked_pixels_are_never_flagged_and_many_frames(frame):
    data, cr = frame
    mask = np.zeros(data.shape, bool)
    mask[:, 100] = True
    data = data.copy()
    data[:, 100] = 0.0                     # a dead column
    (found,) = detect_many([(data, None, mask)], workers=1, read_noise=9.0)
    assert not found[:, 100].any()
    # the dead column's neighbours are not mistaken for hits
    assert (found[:, [99, 101]] & ~cr[:, [99, 101]]).sum() == 0


def test_fill_nearest():
    a = np.arange(9.0).reshape(3, 3)
    bad = np.zeros((3, 3), bool)
    bad[1, 1] = True
    out = fill_nearest(a, bad)
    assert out[1, 1] in (1.0, 3.0, 5.0, 7.0) and out[0, 0] == 0.0
