"""Header normalisation against the many ways real cameras write the same thing."""

import numpy as np
import pytest
from astropy.io import fits

from redux_helpers import headers
from redux_helpers.errors import FrameError


@pytest.mark.parametrize("imagetyp,expected", [
    ("BIAS", "bias"), ("zero", "bias"), ("Bias Frame", "bias"), ("DARK", "dark"),
    ("Dark Frame", "dark"), ("FLAT", "flat"), ("Flat Field", "flat"), ("SKYFLAT", "flat"),
    ("DOME FLAT", "flat"), ("LIGHT", "light"), ("Light Frame", "light"), ("OBJECT", "light"),
    ("object", "light"),
])
def test_frame_types(imagetyp, expected):
    assert headers.frame_type(fits.Header({"IMAGETYP": imagetyp, "OBJECT": "ngc 1"})) == expected


def test_frame_type_from_object_and_standards_and_override():
    assert headers.frame_type(fits.Header({"OBJECT": "ave of 25 bias"})) == "bias"
    assert headers.frame_type(fits.Header({"IMAGETYP": "LIGHT", "OBJECT": "SA 98 std"})) \
        == "standard"
    assert headers.frame_type(fits.Header({"IMAGETYP": "LIGHT", "OBJECT": "m51"})) == "light"
    s = {"frame_types": {"x.fits": "flat"}}
    assert headers.frame_type(fits.Header({"IMAGETYP": "LIGHT"}), settings=s,
                              filename="x.fits") == "flat"
    with pytest.raises(FrameError, match="use one of"):
        headers.frame_type(fits.Header(), settings={"frame_types": {"x.fits": "flta"}},
                           filename="x.fits")


@pytest.mark.parametrize("cards,settings,expected", [
    ({"FILTER": "R "}, {}, "R"),
    ({"FILT": "Ha"}, {}, "Ha"),
    ({"FILTER1": "V"}, {}, "V"),
    ({"FILTERS": "5 0"}, {"filter_codes": {"5 0": "B", "6 0": "V"}}, "B"),
    ({"FILTERS": 48}, {"filter_keyword": "FILTERS", "filter_codes": {48: "V"}}, "V"),
    ({"OBJECT": "M-92 B"}, {"filter_from_object": ["B", "V"]}, "B"),
    ({"OBJECT": "m51"}, {}, None),
])
def test_filter_names(cards, settings, expected):
    assert headers.filter_name(fits.Header(cards), settings=settings) == expected


def test_exposure_binning_gain_saturation():
    h = fits.Header({"EXPOSURE": 90.0, "CCDSUM": "2 2", "EGAIN": 1.3, "BITPIX": 16,
                     "BZERO": 32768})
    assert headers.exptime(h) == 90.0
    assert headers.exptime(fits.Header({"ITIME": 600})) == 600.0
    assert headers.exptime(fits.Header({})) is None
    assert headers.binning(h) == "2x2"
    assert headers.binning(fits.Header({"XBINNING": 3})) == "3x3"
    assert headers.gain(h) == 1.3
    assert headers.gain(fits.Header(), {"gain": 2.0}) == 2.0
    assert headers.saturation(h) == 65535
    assert headers.saturation(fits.Header({"BITPIX": 16})) == 32767
    assert headers.saturation(fits.Header({"BITPIX": -32})) == np.inf


def test_sections():
    assert headers.parse_section("[  17: 528,   1: 520]") == (slice(0, 520), slice(16, 528))
    with pytest.raises(FrameError, match="TRIMSEC"):
        headers.parse_section("[1:10]", key="TRIMSEC")
    with pytest.raises(FrameError, match="backwards"):
        headers.parse_section("[10:1,1:5]")
