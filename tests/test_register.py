"""Registration against known transforms: synthetic star fields and the demo night."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from redux_helpers.calibrate import FrameReader
from redux_helpers.demo import gauss_stamps
from redux_helpers.register import (
    RegistrationError,
    Transform,
    find_stars,
    overlap_fraction,
    register_frame,
    register_stars,
    register_xcorr,
)

SHAPE = (300, 300)


def _field(transform: Transform, seed=11, n=60):
    """A star field seen through ``transform`` (frame pixel -> sky/reference pixel)."""
    rng = np.random.default_rng(seed)
    sx, sy = rng.uniform(-50, 350, n), rng.uniform(-50, 350, n)
    flux = 10 ** rng.uniform(3.5, 5.5, n)
    fx, fy = transform.inverse(sx, sy)
    img = np.full(SHAPE, 200.0)
    gauss_stamps(img, fx, fy, flux, 1.5)
    noise = np.random.default_rng(seed + 1)
    return noise.poisson(img).astype(float)


def _error(found: Transform, true: Transform):
    yy, xx = np.mgrid[0:300:10j, 0:300:10j]
    ax, ay = found.apply(xx, yy)
    bx, by = true.apply(xx, yy)
    return float(np.sqrt(np.mean((ax - bx) ** 2 + (ay - by) ** 2)))


def _rotation(deg, dx, dy, scale=1.0, flip=False):
    t = np.deg2rad(deg)
    m = scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    if flip:
        m = m @ np.diag([-1.0, 1.0])
    return Transform(m, np.array([dx, dy]))


@pytest.fixture(scope="module")
def reference():
    img = _field(Transform())
    return np.c_[find_stars(img)[:2]]


def test_shift_is_recovered_as_a_translation(reference):
    true = _rotation(0.0, 17.31, -9.62)
    found = register_stars(np.c_[find_stars(_field(true))[:2]], reference)
    assert found.method == "stars: translation"
    assert _error(found, true) < 0.05
    assert found.residual < 0.05 and found.n_stars >= 15


@pytest.mark.parametrize("deg", [1.0, 2.0, 3.0])
def test_rotation_is_recovered(reference, deg):
    true = _rotation(deg, -12.4, 6.8)
    found = register_stars(np.c_[find_stars(_field(true))[:2]], reference)
    assert found.method == "stars: similarity"
    assert abs(found.rotation_deg - deg) < 0.02
    assert _error(found, true) < 0.05


def test_flipped_frame(reference):
    true = _rotation(0.5, 300.0, 3.0, flip=True)
    found = register_stars(np.c_[find_stars(_field(true))[:2]], reference)
    assert found.flipped and _error(found, true) < 0.05


def test_too_few_stars_is_a_clear_error(reference):
    empty = np.random.default_rng(0).normal(100, 5, SHAPE)
    x, y, _ = find_stars(empty)
    with pytest.raises(RegistrationError, match="too few stars"):
        register_stars(np.c_[x, y][:2], reference)


def test_no_overlap():
    far = _rotation(0.0, 5000.0, 0.0)
    assert overlap_fraction(far, SHAPE, SHAPE) == 0.0
    assert overlap_fraction(_rotation(0.0, 150.0, 0.0), SHAPE, SHAPE) == pytest.approx(0.5, abs=0.05)


def test_a_frame_whose_wcs_is_elsewhere_says_no_overlap():
    """Another field: the WCS puts it a degree away, and nothing else can place it."""
    ref_wcs = WCS(naxis=2)
    ref_wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    ref_wcs.wcs.crval = [150.0, 2.0]
    ref_wcs.wcs.crpix = [150.5, 150.5]
    ref_wcs.wcs.cdelt = [-0.4 / 3600, 0.4 / 3600]
    far = ref_wcs.deepcopy()
    far.wcs.crval = [151.0, 2.0]
    other = _field(Transform(), seed=99)              # a different star field
    x, y, _ = find_stars(other)
    ref_img = _field(Transform())
    with pytest.raises(RegistrationError, match=r"its WCS puts it \d+ px from the reference, "
                                                r"with no overlap"):
        register_frame(np.c_[x, y], reference_xy(ref_img), wcs=far, ref_wcs=ref_wcs,
                       shape=SHAPE, image=other, ref_image=ref_img)


def reference_xy(img):
    return np.c_[find_stars(img)[:2]]


def test_cross_correlation_measures_a_pure_shift():
    true = _rotation(0.0, 7.25, -3.5)
    a, b = _field(Transform()), _field(true)
    found = register_xcorr(b, a)
    assert found.method == "cross-correlation" and _error(found, true) < 0.1


def test_demo_frames_register_to_truth(small_demo):
    """Every dithered demo light lands within 0.05 px of the truth.

    Frames of the reference's filter are matched by their star pattern alone; Hα frames,
    whose brightest sources are HII regions the R frame barely shows, by their WCS
    refined with the stars they share.
    """
    root, truth = small_demo
    raw = root / "raw"
    ref = FrameReader(raw / "ngc_demo_R_001.fits").read()
    rx, ry, _ = find_stars(ref, saturate=60000)
    ref_wcs = WCS(fits.getheader(raw / "ngc_demo_R_001.fits"))
    for name, facts in truth["frames"].items():
        if facts["kind"] != "light" or name == "ngc_demo_R_001.fits":
            continue
        img = FrameReader(raw / name).read()
        x, y, _ = find_stars(img, saturate=60000)
        offset = np.array(facts["offset"])
        true = _rotation(facts["rotation_deg"], 0, 0)
        c = (np.array(img.shape[::-1]) - 1) / 2
        true.offset = c + offset - true.matrix @ c
        wcs = WCS(fits.getheader(raw / name))
        if facts["filter"] == "R":
            found = register_stars(np.c_[x, y], np.c_[rx, ry])
            assert found.method.startswith("stars"), name
            assert _error(found, true) < 0.05, name
        found = register_frame(np.c_[x, y], np.c_[rx, ry], wcs=wcs, ref_wcs=ref_wcs,
                               shape=img.shape)
        assert found.method.startswith("wcs+stars"), name
        assert _error(found, true) < 0.05, name
