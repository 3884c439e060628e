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


def test_maximdl_pedestal_is_removed_on_reading(tmp_path):
    """MaxIm DL stores its calibrated frames with 500 ADU added and ``PEDESTAL = -500``
    (the M13 frames): redux reads them as the camera's ADU, so a sky of 13 ADU is not
    uncertain by sqrt(513). The saturation level moves with the data, and products do
    not carry the keyword on (read again, they would lose another 500)."""
    from redux_helpers import fitsio, headers
    from redux_helpers.calibrate import trimmed_header

    rng = np.random.default_rng(5)
    true = rng.normal(13.0, 4.0, (40, 30)).round()
    true[3, 4] = 65535 - 500                       # the top of the integers, in camera ADU
    stored = (true + 500).astype(np.uint16)
    hdu = fits.PrimaryHDU(stored)                  # BZERO 32768, BITPIX 16
    hdu.header["PEDESTAL"] = (-500, "Correction to add for zero-based ADU")
    path = tmp_path / "m13_like.fits"
    hdu.writeto(path)

    data, hdr = fitsio.read_frame(path)
    assert np.array_equal(data, true)
    assert headers.saturation(hdr) == 65535 - 500
    assert np.argwhere(data >= headers.saturation(hdr)).tolist() == [[3, 4]]
    with FrameReader(path) as reader:
        assert np.array_equal(reader.read(), true)
        assert np.array_equal(reader.band(10, 20), true[10:20])
    assert "PEDESTAL" not in trimmed_header(hdr)
    # without the keyword nothing moves
    fits.PrimaryHDU(stored).writeto(tmp_path / "plain.fits")
    plain, hdr0 = fitsio.read_frame(tmp_path / "plain.fits")
    assert np.array_equal(plain, true + 500) and headers.saturation(hdr0) == 65535


def test_noise_check_measures_the_model_against_the_frame():
    """Neighbouring pixels' differences scatter by their predicted sigma when gain and read
    noise are right; a read noise of 10 e- for a camera of 23 e- (the M13 frames as a
    manifest first had them) is 2.2 x off and the fit gives the read noise back; a bias
    level of 500 ADU counted as light makes the frame look too quiet."""
    from redux_helpers.calibrate import noise_advice, noise_check

    rng = np.random.default_rng(8)
    ny, nx = 300, 400
    y, x = np.mgrid[:ny, :nx]
    light = 13.0 + 0.02 * x + 400 * np.exp(-((x - 200) ** 2 + (y - 150) ** 2) / 8.0)  # sky + a star
    light[::37, ::41] += 3000.0                                                       # hits
    rn = 23.0
    frame = rng.poisson(light) + rng.normal(0, rn, light.shape)
    row = {"file": "m13_1.fits", "gain": 1.0, "read_noise": 10.0, "gain_key": "manifest",
           "read_noise_key": "manifest"}

    def unc(read_noise, level=0.0):
        return np.sqrt(np.clip(frame + level, 0, None) + read_noise ** 2)

    right = noise_check(frame, unc(rn), read_noise=rn)
    assert abs(right["ratio"] - 1) < 0.02, right
    wrong = noise_check(frame, unc(10.0), read_noise=10.0)
    assert abs(wrong["ratio"] - np.sqrt(13 + rn ** 2) / np.sqrt(13 + 100)) < 0.05, wrong
    assert abs(wrong["read_noise_fit"] - rn) < 0.03 * rn, wrong
    text = noise_advice(wrong, row, "under `m13:` in night.yaml", 1.5)
    assert "m13_1.fits" in text and f"read_noise: {wrong['read_noise_fit']:.1f}" in text
    assert "under `m13:` in night.yaml" in text and "noise_tolerance" in text
    offset = noise_check(frame, unc(rn, level=500.0), read_noise=rn)
    assert offset["ratio"] < 0.85, offset
    assert "quieter" in noise_advice(offset, {**row, "read_noise": rn}, "here", 1.5)
    masked = np.zeros(frame.shape, np.uint16)
    masked[:, 200:] = 1                                   # the masked half is not used
    assert noise_check(frame, unc(rn), masked)["n_pixels"] < 0.51 * right["n_pixels"]
    masked[:] = 1                                         # nothing clean: no verdict (03 goes on)
    assert np.isnan(noise_check(frame, unc(rn), masked)["ratio"])
