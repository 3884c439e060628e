"""Continuum subtraction with PHOTFLAM/PHOTPLAM: exact cases, bad input, the demo's truth."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from redux_helpers import anchoring, contsub, muse
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
    assert np.allclose(r.error, expect, rtol=1e-5)
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
    assert c.error[0, 0] == pytest.approx(draws.std(), rel=0.02)


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
    """Per-nebula flux / truth, both at MUSE's resolution on its grid."""
    bm = anchoring.beam_match(res.flux, line.wcs, sp["hst_fwhm_arcsec"],
                              np.zeros(labels.data.shape), labels.wcs, sp["muse_fwhm_arcsec"])
    sums = muse.nebula_sums(np.nan_to_num(bm.image), labels.data)
    true = dict(zip(nt["region_ID"], nt["flux_true_in_mask"], strict=True))
    return np.array([f / true[i] for i, f in zip(sums["id"], sums["flux"], strict=True)])


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
    # the continuum is evaluated at the Ha filter's pivot (6561.5 A), the truth at 6562.8 A
    ratio = np.median(res.continuum.flam[disc] / true_c[disc])
    assert ratio == pytest.approx((6561.5 / 6562.8) ** sp["galaxy_beta"], abs=0.003)
