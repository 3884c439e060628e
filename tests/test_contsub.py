"""Continuum subtraction with PHOTFLAM/PHOTPLAM: exact cases, bad input, the demo's truth."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS

from redux_helpers import anchoring, contsub, hst_filters, muse
from redux_helpers.errors import ReduxError


def _write(path, data, *, photflam=1e-18, photplam=6563.0, filt="F656N", err=None, ext=True):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [5, 5]
    w.wcs.cd = [[-1e-5 * 2.7778, 0], [0, 1e-5 * 2.7778]]    # 0.1" pixels
    h = w.to_header()
    if photflam is not None:
        h["PHOTFLAM"] = photflam
    if photplam is not None:
        h["PHOTPLAM"] = photplam
    h["FILTER"] = filt
    hdus = [fits.PrimaryHDU()]
    if ext:
        hdus.append(fits.ImageHDU(np.asarray(data, np.float32), h, name="SCI"))
        if err is not None:
            hdus.append(fits.ImageHDU(np.asarray(err, np.float32), h, name="ERR"))
    else:
        hdus = [fits.PrimaryHDU(np.asarray(data, np.float32), h)]
    fits.HDUList(hdus).writeto(path)
    return path


def _power_law_images(tmp_path, beta=-1.3, line=5e-16, width=20.0):
    """Line and two continua of a pixel whose continuum is f = 1e-18 (lam/6563)^beta."""
    pivots = {"F555W": 5300.0, "F656N": 6563.0, "F814W": 8000.0}
    flams = {"F555W": 2e-19, "F656N": 1e-17, "F814W": 1.5e-19}
    paths = {}
    for name, lam in pivots.items():
        f = 1e-18 * (lam / 6563.0) ** beta * np.ones((9, 9))
        if name == "F656N":
            f = f + line / width
        paths[name] = _write(tmp_path / f"{name}.fits", f / flams[name], photflam=flams[name],
                             photplam=lam, filt=name, err=np.full((9, 9), 0.01))
    return {k: contsub.read_flux_image(p) for k, p in paths.items()}, pivots


def test_two_continua_in_log_are_exact_for_a_power_law(tmp_path):
    ims, piv = _power_law_images(tmp_path)
    r = contsub.subtract(ims["F656N"], [ims["F814W"], ims["F555W"]], width_A=20.0, interp="log")
    assert np.allclose(r.flux, 5e-16, rtol=1e-5)
    # linear interpolation in lambda misses the curvature of the power law, by the amount
    # computed here by hand
    w = (piv["F814W"] - 6563.0) / (piv["F814W"] - piv["F555W"])
    lin = w * (piv["F555W"] / 6563.0) ** -1.3 + (1 - w) * (piv["F814W"] / 6563.0) ** -1.3
    r_lin = contsub.subtract(ims["F656N"], [ims["F555W"], ims["F814W"]], width_A=20.0,
                             interp="linear")
    assert np.allclose(r_lin.flux, 5e-16 - (lin - 1) * 1e-18 * 20.0, rtol=1e-5)
    assert r.continuum.weights == pytest.approx((np.log(8000 / 6563) / np.log(8000 / 5300),
                                                 np.log(6563 / 5300) / np.log(8000 / 5300)))


def test_one_continuum_is_flat_in_flambda(tmp_path):
    ims, _ = _power_law_images(tmp_path, beta=0.0)
    r = contsub.subtract(ims["F656N"], [ims["F814W"]], width_A=20.0)
    assert r.continuum.mode == "one"
    assert np.allclose(r.flux, 5e-16, rtol=1e-5)


def test_errors_propagate(tmp_path):
    """The line's error is width x sqrt(err_Ha^2 + w1^2 err_1^2 + w2^2 err_2^2) (linear)."""
    ims, piv = _power_law_images(tmp_path, beta=0.0)
    r = contsub.subtract(ims["F656N"], [ims["F555W"], ims["F814W"]], width_A=20.0,
                         interp="linear")
    w = (piv["F814W"] - 6563.0) / (piv["F814W"] - piv["F555W"])
    expect = 20.0 * np.sqrt((0.01 * 1e-17) ** 2 + (w * 0.01 * 2e-19) ** 2
                            + ((1 - w) * 0.01 * 1.5e-19) ** 2)
    assert np.allclose(r.uncertainty, expect, rtol=1e-5)
    # and a Monte Carlo of the log interpolation agrees with its analytic error
    rng = np.random.default_rng(0)
    f1, f2, e1, e2 = 1.0, 0.6, 0.02, 0.03
    wl = np.log(8000 / 6563) / np.log(8000 / 5300)
    draws = np.exp(wl * np.log(f1 + e1 * rng.normal(size=200000))
                   + (1 - wl) * np.log(f2 + e2 * rng.normal(size=200000)))
    one = contsub.FluxImage(np.array([[f1]]), np.array([[e1]]), None, fits.Header(),
                            tmp_path / "a", "A", 1.0, 5300.0)
    two = contsub.FluxImage(np.array([[f2]]), np.array([[e2]]), None, fits.Header(),
                            tmp_path / "b", "B", 1.0, 8000.0)
    c = contsub.continuum_at(6563.0, [one, two], interp="log")
    assert c.uncertainty[0, 0] == pytest.approx(draws.std(), rel=0.02)


def test_zero_and_negative_pixels(tmp_path):
    ims, _ = _power_law_images(tmp_path)
    c1, c2 = ims["F555W"], ims["F814W"]
    c1.data[2, 3] = -0.5            # sky noise below zero: no power law through it
    r = contsub.subtract(ims["F656N"], [c1, c2], width_A=20.0, interp="log")
    assert r.continuum.n_linear_fallback == 1
    assert np.isfinite(r.flux[2, 3])
    assert any("interpolated linearly" in n for n in r.continuum.notes)
    # an exact zero in a drizzled image is "no data": NaN, never divided by
    data = np.ones((9, 9))
    data[4, 4] = 0.0
    im = contsub.read_flux_image(_write(tmp_path / "z.fits", data))
    assert np.isnan(im.data[4, 4]) and np.isfinite(im.data).sum() == 80


@pytest.mark.parametrize("missing", ["PHOTFLAM", "PHOTPLAM"])
def test_missing_keyword_is_named(tmp_path, missing):
    kw = {"photflam": None} if missing == "PHOTFLAM" else {"photplam": None}
    p = _write(tmp_path / "nokey.fits", np.ones((9, 9)), **kw)
    with pytest.raises(ReduxError, match=f"nokey.fits.*{missing}"):
        contsub.read_flux_image(p, what="Halpha image")
    # given as arguments, they are used
    im = contsub.read_flux_image(p, photflam=2e-18, photplam=6600.0)
    assert (im.photflam, im.photplam) == (pytest.approx(2e-18) if missing == "PHOTFLAM" else 1e-18,
                                          6600.0 if missing == "PHOTPLAM" else 6563.0)


def test_continua_must_bracket_the_line(tmp_path):
    ims, _ = _power_law_images(tmp_path)
    red = contsub.read_flux_image(_write(tmp_path / "red2.fits", np.ones((9, 9)), photplam=9000.0,
                                         filt="F900W"))
    with pytest.raises(ReduxError, match="bracket"):
        contsub.subtract(ims["F656N"], [ims["F814W"], red], width_A=20.0)
    other = contsub.read_flux_image(_write(tmp_path / "small.fits", np.ones((5, 5))))
    with pytest.raises(ReduxError, match="regrid"):
        contsub.subtract(ims["F656N"], [other], width_A=20.0)


# ---- the demo's HST-like images against its truth -------------------------------------------
@pytest.fixture(scope="module")
def demo_space(small_demo):
    root, truth = small_demo
    sp = truth["space"]
    line = contsub.read_flux_image(root / "hst" / "f656n.fits")
    conts = [contsub.read_flux_image(root / "hst" / f"{f}.fits") for f in ("f555w", "f814w")]
    labels, _ = muse.read_nebulae(root / "muse" / "nebula_mask.fits")
    return root, truth, sp, line, conts, labels


def _nebula_ratio(res, line, labels, sp, nt):
    """Per-nebula flux / what the demo's HST image should give, both at MUSE's resolution.

    The demo's narrow band is off on purpose ([NII], its width, a sky level: what
    anchoring takes out), so a right continuum subtraction gives ``flux_hst_expected``
    (HST_LINE_SCALE x the true flux in the mask + the sky over the mask), not the truth.
    """
    bm = anchoring.beam_match(res.flux, np.zeros(labels.data.shape), image_wcs=line.wcs,
                              image_fwhm=sp["hst_fwhm_arcsec"], reference_wcs=labels.wcs,
                              reference_fwhm=sp["muse_fwhm_arcsec"])
    sums = muse.nebula_sums(np.nan_to_num(bm.image), labels.data)
    expected = dict(zip(nt["region_ID"], nt["flux_hst_expected"], strict=True))
    return np.array([f / expected[i] for i, f in zip(sums["id"], sums["flux"], strict=True)])


@pytest.mark.parametrize(("which", "interp"), [("f555w", "log"), ("f814w", "log"),
                                               ("both", "linear"), ("both", "log")])
def test_demo_nebula_fluxes_within_5_percent(demo_space, which, interp):
    root, truth, sp, line, conts, labels = demo_space
    use = conts if which == "both" else [c for c in conts if c.path.stem == which]
    width = sp["hst"]["F656N"]["width_A"]
    res = contsub.subtract(line, use, width_A=width, interp=interp)
    ratio = _nebula_ratio(res, line, labels, sp, truth.table("nebulae_truth"))
    assert abs(np.median(ratio) - 1) < 0.05, (which, interp, np.median(ratio))
    if which == "both" and interp == "log":
        # the demo's continuum is a power law: exact, up to noise
        assert abs(np.median(ratio) - 1) < 0.01
        assert np.all(np.abs(ratio - 1) < 0.05)
    if which == "f555w":
        # a continuum to the blue of a continuum falling with lambda takes too much away
        assert np.median(ratio) < 0.99
    if which == "f814w":
        assert np.median(ratio) > 1.01


def test_demo_continuum_under_the_line(demo_space):
    """The continuum estimate matches the demo's true continuum at Halpha on the disc."""
    root, truth, sp, line, conts, labels = demo_space
    res = contsub.subtract(line, conts, width_A=sp["hst"]["F656N"]["width_A"], interp="log")
    true_c = truth.image("continuum_flam_hst")
    disc = true_c > np.percentile(true_c, 90)
    # the continuum is evaluated at the Ha filter's pivot, the truth at 6562.8 A
    ratio = np.median(res.continuum.flam[disc] / true_c[disc])
    pivot = sp["hst"]["F656N"]["pivot_A"]
    assert ratio == pytest.approx((pivot / 6562.8) ** sp["galaxy_beta"], abs=0.003)


# ---- the filter's width: the table of HST filters, the manifest, PHOTBW ---------------------
@pytest.mark.parametrize(("inst", "det", "filt", "pivot", "width"), [
    # WFC3 Instrument Handbook, Table 6.2 (UVIS chip 1): pivot and rectangular width
    ("WFC3", "UVIS", "F656N", 6561.4, 17.6),
    ("WFC3", "UVIS", "F657N", 6566.6, 121.0),
    ("WFC3", "UVIS", "F658N", 6584.0, 27.6),
    ("WFC3", "UVIS", "F665N", 6655.9, 131.3),
    ("WFC3", "UVIS", "F673N", 6765.9, 117.8),
    ("WFC3", "UVIS", "F502N", 5009.6, 65.3),
    ("WFC3", "UVIS", "F487N", 4871.4, 60.4),
    ("WFC3", "UVIS", "F547M", 5447.5, 650.0),
    # ACS Instrument Handbook, Table 5.1
    ("ACS", "WFC", "F658N", 6584.0, 78.0),
    ("ACS", "WFC", "F660N", 6602.0, 40.0),
    ("ACS", "WFC", "F502N", 5022.0, 57.0),
    ("ACS", "WFC", "F550M", 5580.0, 547.0),
])
def test_filter_table_has_the_handbook_values(inst, det, filt, pivot, width):
    w = hst_filters.lookup(inst.lower() + "  ", det, filt.lower())     # case, padding
    assert (w.width_A, w.pivot_A) == (width, pivot) and not w.estimated
    # the same filter name on another instrument is another filter
    assert hst_filters.lookup("WFPC2", "", filt) is None


def test_an_unknown_filter_falls_back_on_photbw_with_a_warning():
    # a top-hat of width W has an RMS width W / sqrt(12): PHOTBW 6.0 A -> 20.78 A
    with pytest.warns(AstropyUserWarning, match=r"sqrt\(12\) x PHOTBW = 20.8 A"):
        w = hst_filters.filter_width("WFPC2", "", "F656N", photbw=6.0)
    assert w.width_A == pytest.approx(6.0 * np.sqrt(12)) and w.estimated and w.source == "PHOTBW"
    # the factor against a top-hat: its RMS width computed by hand
    lam = np.linspace(6550.0, 6570.0, 20001)
    assert np.sqrt(np.mean((lam - lam.mean()) ** 2)) * hst_filters.PHOTBW_TO_WIDTH \
        == pytest.approx(20.0, rel=1e-3)
    with pytest.raises(KeyError):
        hst_filters.filter_width("WFPC2", "", "F656N")


def test_line_width_order_and_header_keys(tmp_path):
    """Parameter, then manifest, then the table (INSTRUME/DETECTOR/FILTER1-2), then PHOTBW."""
    path = _write(tmp_path / "acs.fits", np.ones((9, 9)), filt="CLEAR1L")
    with fits.open(path, mode="update") as h:
        h[0].header.update({"INSTRUME": "ACS", "DETECTOR": "WFC", "FILTER1": "CLEAR1L",
                            "FILTER2": "F658N"})
        h["SCI"].header["PHOTBW"] = 37.01
        del h["SCI"].header["FILTER"]
    line = contsub.read_flux_image(path)
    assert (line.filter, line.instrument, line.detector, line.photbw) == ("F658N", "ACS", "WFC",
                                                                         37.01)
    assert contsub.line_width(line).width_A == 78.0
    assert contsub.line_width(line, bandpasses={"F658N": {"width_A": 75.0}}).source == "manifest"
    assert contsub.line_width(line, width_A=70.0, bandpasses={"F658N": {"width_A": 75.0}}).width_A == 70.0
    # a filter the table lacks: PHOTBW, with the warning; without PHOTBW a message to act on
    other = contsub.read_flux_image(_write(tmp_path / "x.fits", np.ones((9, 9)), filt="F631N"))
    other.photbw = 8.0
    with pytest.warns(AstropyUserWarning, match="PHOTBW"):
        assert contsub.line_width(other).width_A == pytest.approx(8.0 * np.sqrt(12))
    other.photbw = None
    with pytest.raises(ReduxError, match=r"width of the Halpha filter 'F631N' .*is not "
                                         r"known.*bandpasses: \{F631N.* in m.yaml"):
        contsub.line_width(other, manifest="m.yaml")


def test_muse_resolution_from_header_or_phangs_name():
    assert muse.resolution_arcsec(fits.Header({"FWHM": 0.8}), "x.fits") == (0.8, "header FWHM")
    h = fits.Header()
    h["HIERARCH ESO OCS SGS FWHM MED"] = 0.66
    assert muse.resolution_arcsec(h)[0] == 0.66
    # PHANGS-MUSE DR products carry their "copt" resolution in the file name
    assert muse.resolution_arcsec(fits.Header(), "/d/NGC1385_MAPS_copt_0.77asec.fits")[0] == 0.77
    assert muse.resolution_arcsec(fits.Header(), "NGC1385_MAPS_native.fits") == (None, "")


def test_measure_fwhm_on_the_stars(tmp_path):
    """The synthetic ACS pair (tests/hst_muse_synth.py): PSF FWHM 0.09", 1.8 pixels.

    Stars are found on the continuum image, where the nebulae can't pass for stars, and
    fitted on the Halpha image. Measured: 0.0896" on 7 stars.
    """
    from tests import hst_muse_synth

    s = hst_muse_synth.make(tmp_path)
    line = contsub.read_flux_image(s["hst_halpha"])
    cont = contsub.read_flux_image(s["hst_continuum"])
    fwhm, n = contsub.measure_fwhm(line, [cont])
    assert n >= 5 and fwhm == pytest.approx(s["hst_fwhm_arcsec"], rel=0.05)
    # an image without stars says what to set
    line.data = np.zeros(line.data.shape)
    with pytest.raises(ReduxError, match="set image_fwhm_arcsec"):
        contsub.measure_fwhm(line)


def test_halpha_mode_takes_the_band_then_hst_then_ground_and_names_the_missing_line():
    from redux_helpers.contsub import halpha_mode

    both = {"has_hst": True, "has_line_09": True}
    assert halpha_mode(anchor_band="ACS_F814W", **both) == "band"
    assert halpha_mode(**both) == "hst"
    assert halpha_mode(halpha_source="ground", **both) == "ground"
    assert halpha_mode(has_line_09=True) == "ground"
    assert halpha_mode() is None
    with pytest.raises(ReduxError, match=r"add hst: \{halpha: FILE\} to the target in night.yaml"):
        halpha_mode(halpha_source="hst", has_line_09=True, manifest="night.yaml")
    with pytest.raises(ReduxError, match="halpha_source = 'HST': use one of auto, hst, ground"):
        halpha_mode(halpha_source="HST")


def test_select_continua_keeps_the_named_filters_and_refuses_an_unknown_one():
    from pathlib import Path
    from types import SimpleNamespace

    from redux_helpers.contsub import select_continua

    ims = [SimpleNamespace(filter=f, path=Path(f"{f}.fits")) for f in ("F555W", "F814W")]
    assert select_continua(ims) == ims
    assert select_continua(ims, " f814w ") == [ims[1]]
    with pytest.raises(ReduxError, match="continuum_filters = 'F555W,F606W': the continuum images are F555W, F814W"):
        select_continua(ims, "F555W,F606W")
