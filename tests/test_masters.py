"""Matching superdarks to frames by binning, gain and temperature."""

import numpy as np
from astropy.table import Table

from redux_helpers.masters import match_dark, temperature_groups


def _darks():
    return Table({"file": ["d_m20.fits", "d_m10.fits", "d_bin2.fits"],
                  "binning": ["1x1", "1x1", "2x2"], "gain": [1.6, 1.6, 1.6],
                  "ccd_temp": [-20.0, -10.0, -20.0]})


def _frame(**kw):
    row = {"binning": "1x1", "gain": 1.6, "ccd_temp": -19.4}
    row.update(kw)
    return row


def test_nearest_temperature_within_tolerance():
    f, why = match_dark(_frame(), _darks())
    assert f == "d_m20.fits" and "within 0.6 deg C" in why
    f, _ = match_dark(_frame(ccd_temp=-11.2), _darks())
    assert f == "d_m10.fits"


def test_no_match_says_why():
    f, why = match_dark(_frame(ccd_temp=-15.0), _darks(), temp_tolerance=2.0)
    assert f is None and "5.0 deg C away" in why
    f, why = match_dark(_frame(binning="4x4"), _darks())
    assert f is None and "binning 4x4" in why
    f, why = match_dark(_frame(gain=3.0), _darks())
    assert f is None and "gain 3.0" in why
    f, why = match_dark(_frame(), None)
    assert f is None and "no darks" in why


def test_binning_is_respected_and_missing_temperature():
    f, _ = match_dark(_frame(binning="2x2"), _darks())
    assert f == "d_bin2.fits"
    f, why = match_dark(_frame(ccd_temp=np.nan), _darks())
    assert f == "d_m20.fits" and "no CCD temperature" in why


def test_temperature_groups():
    labels = temperature_groups([-20.1, -19.9, -10.0, -20.3, np.nan, -9.5], 2.0)
    assert labels[0] == labels[1] == labels[3]
    assert labels[2] == labels[5] != labels[0]
    assert len(set(labels.tolist())) == 3


def test_load_masters_reads_each_file_once_until_it_changes(tmp_path, monkeypatch):
    from redux_helpers import fitsio, masks, masters

    masters.clear_cache()
    bias, flat = tmp_path / "superbias.fits", tmp_path / "superflat_R.fits"
    fitsio.write_ccd(bias, np.full((4, 5), 2.0, np.float32), unit="adu",
                     uncertainty=np.ones((4, 5), np.float32))
    low = np.zeros((4, 5), np.uint16)
    low[1, 2] = masks.BITS["LOWFLAT"][0]
    fitsio.write_ccd(flat, np.ones((4, 5), np.float32), unit="", mask=low)
    reads = []
    real = masters.read_product
    monkeypatch.setattr(masters, "read_product", lambda p: reads.append(p) or real(p))
    m1 = masters.load_masters(bias=bias, flat=flat)
    m2 = masters.load_masters(bias=bias, flat=flat)
    assert len(reads) == 2 and m2.bias is m1.bias and m2.names == {"bias": bias.name,
                                                                   "flat": flat.name}
    assert m1.flat_mask[1, 2] and m1.flat_mask.sum() == 1
    assert not m1.bias.flags.writeable           # shared between frames: never changed
    fitsio.write_ccd(bias, np.full((4, 5), 3.0, np.float32), unit="adu")   # 01 run again
    m3 = masters.load_masters(bias=bias, flat=flat)
    assert len(reads) == 3 and m3.bias[0, 0] == 3.0 and m3.bias_unc is None
    masters.clear_cache()


def test_one_bias_uncertainty_is_the_read_noise_given_or_measured():
    from redux_helpers.masters import one_bias_uncertainty

    rng = np.random.default_rng(5)
    bias = 300.0 + rng.normal(0, 4.0, (200, 200))
    assert np.all(one_bias_uncertainty(bias, 3.2) == np.float32(3.2))     # the header's, in ADU
    measured = one_bias_uncertainty(bias, float("nan"))                     # no gain: its scatter
    assert measured.shape == bias.shape and abs(float(measured[0, 0]) / 4.0 - 1) < 0.03
