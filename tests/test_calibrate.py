"""The calibration arithmetic on arrays with known answers."""

import numpy as np
import pytest
from astropy.io import fits

from redux_helpers import masks
from redux_helpers.calibrate import (
    FrameReader,
    Masters,
    calibrate_frame,
    subtract_overscan_and_trim,
)
from redux_helpers.errors import FrameError
from redux_helpers.headers import parse_section


def _raw(rows=30, cols=20, over=6):
    """A raw frame: image (cols) + overscan (over); each row its own level."""
    level = 1000.0 + np.arange(rows)[:, None] * 2.0
    raw = np.zeros((rows, cols + over)) + level
    raw[:, :cols] += 500.0
    h = fits.Header({"BIASSEC": f"[{cols + 1}:{cols + over},1:{rows}]",
                     "TRIMSEC": f"[1:{cols},1:{rows}]", "EXPTIME": 10.0})
    return raw, h


def test_overscan_per_row_and_trim():
    raw, h = _raw()
    raw[3, 22] = 60000.0                   # a hot pixel in the overscan: the median ignores it
    out = subtract_overscan_and_trim(raw, parse_section(h["BIASSEC"]), parse_section(h["TRIMSEC"]))
    assert out.shape == (30, 20)
    np.testing.assert_allclose(out, 500.0)


def test_calibrate_frame_known_values():
    raw, h = _raw()
    flat = np.ones((30, 20), np.float32) * 0.5
    flat[:, 4] = 0.0                      # a dead column: never divided by
    bias = np.full((30, 20), 100.0, np.float32)
    dark = np.full((30, 20), 2.0, np.float32)   # e-/s
    m = Masters(bias=bias, dark=dark, flat=flat)
    data, unc, mask = calibrate_frame(raw, h, m, gain=2.0, read_noise=5.0)
    # ((500 - 100) * 2 - 2 * 10) / 0.5 = 1560 e-
    good = np.ones((30, 20), bool)
    good[:, 4] = False
    np.testing.assert_allclose(data[good], 1560.0, rtol=1e-6)
    # Poisson on every electron collected (light and dark: 800 e-) plus read noise
    np.testing.assert_allclose(unc[good], np.sqrt(800.0 + 25.0) / 0.5, rtol=1e-5)
    assert np.all(np.isnan(data[:, 4])) and np.all(masks.has(mask[:, 4], "LOWFLAT"))
    assert not np.any(np.isinf(data))
    per_s, unc_s, _ = calibrate_frame(raw, h, m, gain=2.0, read_noise=5.0, per_second=True,
                                      extinction=0.1, airmass=2.0)
    np.testing.assert_allclose(per_s[good], 156.0 * 10 ** 0.08, rtol=1e-5)


def test_saturation_and_cosmics_are_flagged():
    raw, h = _raw()
    raw[5, 5] = 65535
    cr = np.zeros((30, 20), bool)
    cr[7, 7] = True
    _, _, mask = calibrate_frame(raw, h, Masters(), gain=1.0, read_noise=3.0, saturate=65535,
                                 crmask=cr, bad_columns=[3])
    assert masks.names(int(mask[5, 5])) == ["SATURATED"]
    assert masks.names(int(mask[7, 7])) == ["COSMIC"]
    assert masks.names(int(mask[0, 2])) == ["BADCOL"]      # column 3 counted from 1
    assert (mask > 0).sum() == 2 + 30
    with pytest.raises(FrameError, match=r"bad_columns \[500\] are off the chip"):
        calibrate_frame(raw, h, Masters(), gain=1.0, read_noise=3.0, bad_columns=[3, 500])


def test_missing_exposure_and_gain_are_clear():
    raw, h = _raw()
    del h["EXPTIME"]
    with pytest.raises(FrameError, match="no exposure time"):
        calibrate_frame(raw, h, Masters(), gain=1.0, read_noise=3.0)
    raw, h = _raw()
    with pytest.raises(FrameError, match="gain and read noise"):
        calibrate_frame(raw, h, Masters(), gain=None, read_noise=3.0)


def test_reader_band_equals_whole_frame_arithmetic(tmp_path):
    raw, h = _raw()
    fits.PrimaryHDU(raw.astype(np.uint16), header=h).writeto(tmp_path / "r.fits")
    bias = np.full((30, 20), 100.0, np.float32)
    r = FrameReader(tmp_path / "r.fits", bias=bias, gain=2.0, scale=4.0)
    np.testing.assert_allclose(r.band(10, 17), (500.0 - 100.0) * 2.0 / 4.0)
    assert r.shape == (30, 20)
