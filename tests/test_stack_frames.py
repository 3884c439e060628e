"""Which frames go into a stack: the reference's choice, the refusals, the e-/s factor, the header."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from redux_helpers import fitsio, provenance, stack
from redux_helpers.errors import ReduxError
from redux_helpers.stack_frames import choose_reference, rate_factor, read_checked

LIGHTS = Table(rows=[("a_R.fits", "R", "1x1"), ("b_Ha.fits", "Ha", "1x1"), ("c_Ha.fits", "Ha", "1x1")],
               names=("file", "filter", "binning"))


def test_reference_is_the_named_frame_else_the_first_continuum_frame_with_a_product():
    made = {"b_Ha.fits", "c_Ha.fits", "a_R.fits"}
    latest = lambda f: f"/p/{f}" if f in made else None  # noqa: E731
    assert choose_reference(LIGHTS, latest, reference="c_Ha")["file"] == "c_Ha.fits"
    assert choose_reference(LIGHTS, latest, continuum="Ha")["file"] == "b_Ha.fits"
    assert choose_reference(LIGHTS, latest, continuum="R")["file"] == "a_R.fits"
    made.discard("b_Ha.fits")                 # no product: the next Ha frame, not R's
    assert choose_reference(LIGHTS, latest, continuum="Ha")["file"] == "c_Ha.fits"
    made.clear()
    made.add("c_Ha.fits")                     # the continuum filter has none: any frame
    assert choose_reference(LIGHTS, latest, continuum="R")["file"] == "c_Ha.fits"
    with pytest.raises(ReduxError, match="'zz' is not a light frame.*a_R.fits"):
        choose_reference(LIGHTS, latest, reference="zz")
    with pytest.raises(ReduxError, match="the reference a_R.fits has no product"):
        choose_reference(LIGHTS, latest, reference="a_R.fits")
    made.clear()
    with pytest.raises(ReduxError, match="no light frame has a product"):
        choose_reference(LIGHTS, latest)


def _product(tmp_path, name, *, shape=(20, 30), filt="R", uncertainty=True, nan=False):
    data = np.full(shape, 10.0)
    if nan:
        data[:] = np.nan
    h = fits.Header({"FILTER": filt, "EXPTIME": 50.0})
    path = tmp_path / name
    fitsio.write_ccd(path, data, h, uncertainty=np.ones(shape) if uncertainty else None,
                     mask=np.zeros(shape, np.uint16))
    return path


@pytest.mark.parametrize(("kw", "row", "said"), [
    ({}, {"binning": "2x2"}, "binning 2x2 differs from the reference's 1x1"),
    ({"shape": (20, 31)}, {}, "31 x 20 pixels, the reference 30 x 20"),
    ({"uncertainty": False}, {}, "no UNCERT plane"),
    ({"filt": "V"}, {}, "header says filter 'V', the inventory 'R'"),
    ({"nan": True}, {}, "no usable pixel"),
])
def test_a_frame_a_stack_cant_use_is_refused_with_the_reason(tmp_path, kw, row, said):
    ref_row = {"file": "ref.fits", "filter": "R", "binning": "1x1"}
    path = _product(tmp_path, "f.fits", **kw)
    with pytest.raises(ReduxError, match=said):
        read_checked(path, {**ref_row, "file": "f.fits", **row}, ref_row=ref_row, ref_shape=(20, 30))


def test_a_usable_frame_comes_back_with_its_bad_pixels(tmp_path):
    ref_row = {"file": "ref.fits", "filter": "R", "binning": "1x1"}
    with pytest.raises(ReduxError, match="no product from 06_badpix or 05_background"):
        read_checked(None, ref_row, ref_row=ref_row, ref_shape=(20, 30))
    p, bad = read_checked(_product(tmp_path, "f.fits"), ref_row, ref_row=ref_row, ref_shape=(20, 30))
    assert p.data.shape == (20, 30) and bad.shape == (20, 30) and not bad.any()


def test_rate_factor_turns_electrons_into_rates_above_the_atmosphere():
    h = fits.Header({"EXPTIME": 200.0, "BUNIT": "electron"})
    assert rate_factor(h) == (0.005, "not corrected for extinction")
    factor, note = rate_factor(h, k=0.2, airmass=2.0)
    assert factor == pytest.approx(0.005 * 10 ** 0.16, rel=1e-12) and "X = 2.000" in note
    per_second = fits.Header({"EXPTIME": 200.0, "BUNIT": "electron/s"})
    assert rate_factor(per_second)[0] == 1.0            # 04 made it e-/s already
    done = provenance.stamp(h, step="04_calibrate", params={"extinction_correct": True})
    assert rate_factor(done, k=0.2, airmass=2.0) == (0.005, "corrected for extinction in 04")
    with pytest.raises(ReduxError, match="no AIRMASS.*header_overrides"):
        rate_factor(h, k=0.2, airmass=np.nan)


def test_stack_header_names_the_stacks_own_frames_and_those_left_out():
    shape = (4, 5)
    s = stack.Stack(np.ones(shape), np.ones(shape), np.zeros(shape, np.uint16),
                    np.full(shape, 300.0), np.full(shape, 3), np.zeros(shape), np.ones(3))
    ref = fits.Header({"FILTER": "R", "SKYLEVEL": 12.0, "BIASFILE": "superbias.fits"})
    frames = [fits.Header({"FLATFILE": "superflat_Ha.fits"}) for _ in range(3)]
    h = stack.stack_header(ref, s, filt="Ha", files=["x", "y", "z"], frame_headers=frames,
                           left_out=[("w.fits", "covers only 3 %")], corrected=True,
                           params={"reference": "r.fits", "stack_method": "median",
                                   "stack_sigma": 4.0, "snoise": 0.1})
    assert h["FILTER"] == "Ha" and h["NCOMBINE"] == 3 and h["NLEFTOUT"] == 1
    assert h["REFFRAME"] == "r.fits" and h["STKMETH"] == "median" and h["STKSIGMA"] == 4.0
    assert h["EXPTIME"] == 300.0 and h["EXTCORR"] and h["AIRMASS"] == 0.0
    assert "SKYLEVEL" not in h                         # one frame's, not the stack's
    assert "superflat_Ha.fits" in h["FLATFILE"]        # the stack's frames', not the reference's
    assert any("left out w.fits: covers only 3 %" in str(c) for c in h["HISTORY"])
    hdul = stack.stack_hdulist(s, h)
    assert [x.name for x in hdul] == ["PRIMARY", "UNCERT", "MASK", "EXPOSURE", "COVERAGE"]
    assert hdul["COVERAGE"].data.dtype == np.int16 and hdul["EXPOSURE"].data.max() == 300.0
