"""The mask growths and window minima of `redux_helpers.morphology` against scipy's own."""

import numpy as np
from scipy import ndimage

from redux_helpers import morphology
from redux_helpers.demo import gauss_stamps

SHAPES = [(1, 1), (3, 5), (7, 2), (57, 61)]


def test_grow_square_is_scipys_maximum_filter():
    rng = np.random.default_rng(2)
    for shape in SHAPES:
        for frac in (0.0, 0.01, 0.3):
            m = rng.random(shape) < frac
            for r in range(0, 8):
                want = ndimage.maximum_filter(m.view(np.uint8), size=2 * r + 1,
                                              mode="constant").view(bool)
                np.testing.assert_array_equal(morphology.grow_square(m, r), want)


def test_within_is_the_distance_transforms_threshold():
    """Sprinkles, blobs of sources as 05 masks them, and masks so full that the distance
    transform takes over; an empty mask gives nothing (scipy's transform of it does not)."""
    rng = np.random.default_rng(3)
    for shape in SHAPES:
        for frac in (0.01, 0.3, 0.9):
            m = rng.random(shape) < frac
            m.flat[0] = True                 # not empty (see below)
            for radius in (0.5, 1, 2.5, 3, 5):
                np.testing.assert_array_equal(morphology.within(m, radius),
                                              ndimage.distance_transform_edt(~m) <= radius)
    assert not morphology.within(np.zeros((9, 9), bool), 3).any()
    few = np.zeros((400, 300), bool)         # few pixels: the disc's offsets at its edge
    few[[0, 5, 200, 399, 150], [0, 299, 100, 7, 101]] = True
    few[300:304, 50:53] = True
    for radius in (1, 3, 5, 7.5):
        np.testing.assert_array_equal(morphology.within(few, radius),
                                      ndimage.distance_transform_edt(~few) <= radius)
    img = np.zeros((300, 280))
    gauss_stamps(img, rng.uniform(0, 280, 60), rng.uniform(0, 300, 60),
                 rng.uniform(50, 5000, 60), 2.0)
    blobs = img > 3.0                        # sources of many sizes, some on the edges
    assert 2000 < blobs.sum() < 30000
    for radius in (1, 4, 5, 7.5):
        yy, xx = np.mgrid[-8:9, -8:9]
        disc = xx ** 2 + yy ** 2 <= radius ** 2
        np.testing.assert_array_equal(morphology.within(blobs, radius),
                                      ndimage.binary_dilation(blobs, structure=disc))


def test_window_min_and_pixels():
    rng = np.random.default_rng(4)
    for shape in SHAPES:
        img = rng.normal(size=shape).astype(np.float32)
        for r in (1, 2, 3):   # the window cut at the edge: scipy's "nearest" for a minimum
            np.testing.assert_array_equal(morphology.window_min(img, r),
                                          ndimage.minimum_filter(img, 2 * r + 1, mode="nearest"))
        m = rng.random(shape) < 0.2
        ys, xs = morphology.pixels(m)
        np.testing.assert_array_equal(np.c_[ys, xs], np.argwhere(m))


def test_window_max_is_scipys_for_every_size_and_edge_rule():
    """Odd and even windows (scipy puts size // 2 before the pixel), cut at the edge or
    padded with a constant; integer-valued images, so that ties are everywhere."""
    rng = np.random.default_rng(5)
    for shape in SHAPES + [(1, 9), (40, 33)]:
        img = rng.integers(-4, 4, shape).astype(np.float32)
        for size in range(1, 20):
            np.testing.assert_array_equal(morphology.window_max(img, size),
                                          ndimage.maximum_filter(img, size, mode="nearest"))
            for cval in (0.0, 2.5):
                np.testing.assert_array_equal(
                    morphology.window_max(img, size, cval=cval),
                    ndimage.maximum_filter(img, size, mode="constant", cval=cval))


def test_photutils_peaks_with_window_max_are_photutils_own(monkeypatch):
    """`stars.daofind` hands photutils' peak finder `window_max` for scipy's filter: the
    table of stars must be the one photutils finds with scipy's (stars, plateaus of
    equal values at a saturated core, noise peaks)."""
    from photutils.detection import peakfinder

    from redux_helpers import stars

    rng = np.random.default_rng(6)
    img = rng.normal(0.0, 5.0, (300, 260)).astype(np.float32)
    n = 80
    gauss_stamps(img, rng.uniform(5, 255, n), rng.uniform(5, 295, n), rng.uniform(500, 2e4, n),
                 1.4)
    img[150:153, 100:103] = 400.0        # a flat top: tied maxima
    monkeypatch.setattr(stars, "_fast_peak_filter", lambda: None)   # photutils as it is
    monkeypatch.setattr(peakfinder, "maximum_filter", ndimage.maximum_filter)
    want = stars.daofind(img.copy(), 25.0, 3.3)
    monkeypatch.undo()
    got = stars.daofind(img.copy(), 25.0, 3.3)            # puts the stand-in in, then runs
    assert getattr(peakfinder.maximum_filter, "redux_window_max", False)
    assert len(want) > 50
    assert got.colnames == want.colnames
    for col in want.colnames:
        np.testing.assert_array_equal(np.asarray(got[col]), np.asarray(want[col]))
