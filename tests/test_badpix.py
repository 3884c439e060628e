"""Bad-pixel maps from flats and darks with injected defects, and their repair."""

import numpy as np
import pytest

from redux_helpers import badpix, masks
from redux_helpers.errors import ReduxError

SHAPE = (120, 150)


def _flat(seed=0):
    """A flat with vignetting, 1 % pixel grain and a dust donut: no defects."""
    rng = np.random.default_rng(seed)
    ny, nx = SHAPE
    yy, xx = np.mgrid[0:ny, 0:nx]
    r2 = ((xx - nx / 2) ** 2 + (yy - ny / 2) ** 2) / (nx / 2) ** 2
    flat = (1.0 - 0.15 * r2) * rng.normal(1.0, 0.01, SHAPE)
    rr = np.hypot(xx - 40, yy - 80)
    flat *= 1.0 - 0.03 * np.exp(-((rr - 8.0) / 1.5) ** 2)      # a donut 3 % deep
    return flat


def test_from_flat_finds_dead_column_and_bad_pixels_only():
    flat = _flat()
    flat[:, 77] = 0.02                                        # a dead column
    ys, xs = np.array([10, 50, 90, 33]), np.array([20, 100, 130, 60])
    flat[ys, xs] *= np.array([0.8, 1.2, 0.7, 0.85])          # 15-30 % off their neighbours
    flat[5, 5] = np.nan
    before = flat.copy()
    bad = badpix.from_flat(flat, nsigma=5.0, size=15)
    expected = np.zeros(SHAPE, bool)
    expected[:, 77] = True
    expected[ys, xs] = True
    expected[5, 5] = True
    assert np.array_equal(bad, expected)                      # the donut is not flagged
    assert np.array_equal(before, flat, equal_nan=True)


def test_from_flat_ratio_finds_nonlinear_not_dead_pixels():
    rng = np.random.default_rng(1)
    base = _flat(2) * 30000.0
    bright = rng.normal(base, np.sqrt(base))
    faint = rng.normal(base / 2, np.sqrt(base / 2))
    bright[:, 40] *= 0.02                                    # dead in both: not this test's job
    faint[:, 40] *= 0.02
    ys, xs = np.array([15, 60, 100]), np.array([30, 90, 140])
    bright[ys, xs] *= 0.9                                   # fills up early: 10 % low when bright
    found = badpix.from_flat_ratio(bright, faint, nsigma=6.0)
    assert set(zip(*np.nonzero(found), strict=True)) == set(zip(ys, xs, strict=True))


def test_from_dark_recovers_injected_hot_pixels_exactly():
    rng = np.random.default_rng(4)
    ny, nx = SHAPE
    yy, xx = np.mgrid[0:ny, 0:nx]
    dark = 0.03 + 0.4 * np.exp(-((nx - xx) + yy) / 15.0)      # a glowing corner
    dark = dark + rng.normal(0.0, 0.01, SHAPE)
    hy, hx = rng.integers(2, ny - 2, 40), rng.integers(2, nx - 2, 40)
    dark[hy, hx] += rng.uniform(0.2, 80.0, 40)               # 20 sigma and up
    hot = badpix.from_dark(dark, nsigma=5.0)
    assert set(zip(*np.nonzero(hot), strict=True)) == set(zip(hy, hx, strict=True))


def test_build_badpix_bits_and_one_based_columns():
    flat_bad = np.zeros(SHAPE, bool)
    flat_bad[:, 10] = True                                    # found dead in the flat
    flat_bad[3, 4] = True
    flat_bad[:50, 20] = True                                  # 42 % of a column: not BADCOL
    hot = np.zeros(SHAPE, bool)
    hot[7, 8] = True
    bpm = badpix.build_badpix(SHAPE, flat=flat_bad, dark=hot, bad_columns=[1, 150], bad_rows=[2])
    assert bpm.dtype == np.uint16
    assert np.all(bpm[:, 10] & masks.bit("BADCOL")) and np.all(bpm[:, 10] & masks.bit("BAD"))
    assert bpm[3, 4] == masks.bit("BAD") and bpm[7, 8] == masks.bit("HOT")
    assert not np.any(bpm[60:, 20]) and bpm[0, 20] == masks.bit("BAD")
    assert np.all(bpm[:, 0] & masks.bit("BADCOL")) and np.all(bpm[:, 149] & masks.bit("BADCOL"))
    assert np.all(bpm[1, :] & masks.bit("BADCOL")) and not np.any(bpm[0, 30:140])
    assert int(np.count_nonzero(bpm)) == 3 * 120 + (150 - 3) + 1 + 1 + 49


def test_build_badpix_refuses_columns_off_the_chip():
    with pytest.raises(ReduxError, match="1-based"):
        badpix.build_badpix(SHAPE, bad_columns=[0])
    with pytest.raises(ReduxError, match="off the chip"):
        badpix.build_badpix(SHAPE, bad_columns=[151])


def _plane():
    yy, xx = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    return 100.0 + 0.5 * xx + 0.25 * yy


def test_repair_interpolates_flagged_pixels_and_keeps_their_bits():
    truth = _plane()
    data = truth.copy()
    bits = np.zeros(SHAPE, np.uint16)
    data[:, 60] = np.nan                                     # a dead column (NaN after 04)
    bits[:, 60] = masks.bit("LOWFLAT") | masks.bit("BADCOL")
    data[30, 30] += 5e4                                      # a cosmic ray
    bits[30, 30] = masks.bit("COSMIC")
    data[0, 0] += 500.0                                      # a hot pixel in the corner
    bits[0, 0] = masks.bit("HOT")
    data[80, 100] = 65000.0                                  # saturated: not repaired, not used
    bits[80, 100] = masks.bit("SATURATED")
    data[80, 101] = np.nan                                   # beside it, a hit to repair
    bits[80, 101] = masks.bit("COSMIC")
    data[100, 10] = np.nan
    bits[100, 10] = masks.bit("NODATA") | masks.bit("BAD")   # no data: never repaired
    data_in, bits_in = data.copy(), bits.copy()
    fixed, new = badpix.repair(data, bits, kernel_sigma=1.5)
    assert np.array_equal(data, data_in, equal_nan=True) and np.array_equal(bits, bits_in)
    target = (bits & np.uint16(masks.bit("LOWFLAT") | masks.bit("COSMIC") | masks.bit("HOT"))) > 0
    error = np.abs(fixed - truth)
    inside = target.copy()
    inside[:4], inside[-4:], inside[:, :4], inside[:, -4:] = False, False, False, False
    assert np.max(error[inside]) < 0.1             # a plane is interpolated (nearly) exactly
    assert np.max(error[target]) < 1.0             # at the edges nearly (filling with 0: ~100)
    assert np.all(masks.has(new, "REPAIRED") == target)
    assert np.array_equal(new & ~np.uint16(masks.bit("REPAIRED")), bits)   # other bits kept
    assert fixed[80, 100] == 65000.0 and np.isnan(fixed[100, 10])
    assert abs(fixed[80, 101] - truth[80, 101]) < 0.5        # the saturated value was not used
    untouched = ~target
    untouched[100, 10] = False
    assert np.array_equal(fixed[untouched], data[untouched])


def test_repair_leaves_a_hole_wider_than_the_kernel_unrepaired():
    data = _plane()
    bits = np.zeros(SHAPE, np.uint16)
    data[20:60, 20:60] = np.nan
    bits[20:60, 20:60] = masks.bit("BAD")
    fixed, new = badpix.repair(data, bits, kernel_sigma=1.0)
    assert np.isnan(fixed[40, 40]) and not masks.has(new, "REPAIRED")[40, 40]
    assert np.isfinite(fixed[20, 20]) and masks.has(new, "REPAIRED")[20, 20]


def test_all_nan_input_is_a_clear_error():
    with pytest.raises(ReduxError, match="all NaN"):
        badpix.repair(np.full(SHAPE, np.nan), np.zeros(SHAPE, np.uint16))
    with pytest.raises(ReduxError, match="all NaN"):
        badpix.from_dark(np.full(SHAPE, np.nan))
    with pytest.raises(ReduxError, match="all NaN"):
        badpix.from_flat(np.full(SHAPE, np.nan))


def test_demo_truth_hot_pixels_and_dead_columns(small_demo):
    """The demo's dark current and flat, with the noise of a superdark and a superflat."""
    _, truth = small_demo
    rng = np.random.default_rng(9)
    dark = truth.image("dark_current")
    superdark = dark + rng.normal(0.0, np.sqrt(dark * 300.0 + 81.0) / 300.0 / np.sqrt(10))
    hot = badpix.from_dark(superdark, nsigma=5.0)
    true_hot = truth.table("hot_pixels")
    assert np.all(hot[true_hot["y"], true_hot["x"]])          # all of them (>= 5 e-/s)
    assert int(hot.sum()) == len(true_hot)                    # and nothing else
    flat = truth.image("flat_R") * rng.normal(1.0, 0.002, hot.shape)
    bpm = badpix.build_badpix(hot.shape, flat=badpix.from_flat(flat), dark=hot)
    cols = np.flatnonzero(masks.has(bpm, "BADCOL").all(axis=0))
    assert cols.tolist() == sorted(truth["dead_columns"])


@pytest.mark.parametrize("fraction", [0.002, 0.03])
def test_repair_is_astropys_interpolation_at_few_or_many_pixels(fraction):
    """Few flagged pixels are filled from their own windows (`masked_convolve_at`), many
    by two passes over the frame (`masked_convolve`): both give astropy's
    ``interpolate_replace_nans`` (``boundary='extend'``), corners and NaN neighbours included."""
    from astropy.convolution import Gaussian2DKernel, interpolate_replace_nans

    rng = np.random.default_rng(11)
    data = rng.normal(100.0, 5.0, (120, 150)).astype(np.float32)
    data[rng.random(data.shape) < 0.002] = np.nan          # NaN neighbours: never used
    bits = np.zeros(data.shape, np.uint16)
    bits[rng.random(data.shape) < fraction] = masks.bit("COSMIC")
    bits[0, 0] = bits[-1, -1] = bits[0, -1] = masks.bit("HOT")
    fixed, new = badpix.repair(data, bits, kernel_sigma=1.5)
    target = bits > 0
    work = np.where(target, np.nan, data).astype(float)
    want = interpolate_replace_nans(work, Gaussian2DKernel(1.5), boundary="extend")
    done = masks.has(new, "REPAIRED")
    assert np.array_equal(done, target & np.isfinite(want))
    np.testing.assert_allclose(fixed[done], want[done], rtol=2e-6)
    assert np.array_equal(fixed[~target], data[~target], equal_nan=True)
