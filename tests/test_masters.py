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
