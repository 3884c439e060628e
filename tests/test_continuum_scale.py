"""The continuum scale from the stars, from the image and from the calibration."""

import math

import numpy as np
import pytest
from astropy.io import fits

from redux_helpers import continuum_scale as cs
from redux_helpers.errors import ReduxError
from tests.test_hii import line_scene


def star_fluxes(rng, n=30, scale=0.08, colour=0.03, outlier=True, n_faint=5):
    """R and Hα fluxes (e-/s) of stars with colour scatter, an Hα emitter first, faint last."""
    f_r = np.exp(rng.uniform(np.log(3e3), np.log(3e5), n))
    f_r = np.r_[2e4, f_r, np.full(n_faint, 150.0)] if outlier else f_r
    ratio = scale * (1 + rng.normal(0.0, colour, f_r.size))
    if outlier:
        ratio[0] = 0.2
    e_r = np.sqrt(f_r * 0.1 + 60.0 ** 2 * 0.01)       # Poisson + sky, 1200 s R stack
    f_ha = ratio * f_r
    e_ha = np.sqrt(f_ha * 0.05 + 30.0 ** 2 * 0.002)   # 2400 s Hα stack
    return (f_ha + rng.normal(0, e_ha), e_ha, f_r + rng.normal(0, e_r), e_r)


# ---- from the stars ----------------------------------------------------------------
def test_recovers_injected_scale_and_rejects_the_emitter():
    res = cs.from_stars(*star_fluxes(np.random.default_rng(3)))
    assert res["scale"] == pytest.approx(0.08, rel=0.02)
    assert not res["used"][0]                            # the Hα emitter is clipped
    assert not res["used"][-5:].any()                    # S/N < 20: never used
    assert res["n_total"] == 36 and 27 <= res["n_used"] <= 30
    assert res["ratios"][0] == pytest.approx(0.2, rel=0.05)
    assert res["tau"] == pytest.approx(0.03 * 0.08, rel=0.5)   # the colour scatter


def test_error_matches_the_spread_of_repeated_nights():
    rng = np.random.default_rng(11)
    runs = [cs.from_stars(*star_fluxes(rng), n_boot=200) for _ in range(200)]
    scales = np.array([r["scale"] for r in runs])
    errs = np.array([r["scale_err"] for r in runs])
    assert abs(np.mean(scales) / 0.08 - 1) < 0.003       # unbiased despite the emitter
    assert 0.9 < np.median(errs) / np.std(scales) < 1.4  # honest, not inflated


@pytest.mark.parametrize("n", [3, 4, 5])
def test_few_stars_error_covers_the_truth(n):
    """With 3-5 stars whose colours scatter by 15 % and whose errors differ tenfold, the
    quoted error covers the true scale as an honest 1-sigma error of so few stars does
    (a Student-t interval: ~68 % within 1 sigma, 88-92 % within 2) and is never below
    the scatter over sqrt(n). The weighted median it replaced, which let the star of
    smallest error decide, covered 2 sigma in 71, 83 and 79 % of these trials."""
    rng = np.random.default_rng(100 + n)
    within1 = within2 = 0
    trials = 300
    for _ in range(trials):
        f_r = np.exp(rng.uniform(np.log(2e4), np.log(2e6), n))
        ratio = 0.04 * (1 + rng.normal(0, 0.15, n))
        e_r = np.sqrt(f_r)
        e_ha = np.sqrt(ratio * f_r + 30.0 ** 2)
        f_ha = ratio * f_r + rng.normal(0, e_ha)
        res = cs.from_stars(f_ha, e_ha, f_r + rng.normal(0, e_r), e_r, n_boot=200, min_snr=5)
        assert res["scale_err"] >= res["scatter"] / math.sqrt(res["n_used"]) * (1 - 1e-9)
        off = abs(res["scale"] - 0.04) / res["scale_err"]
        within1 += off < 1
        within2 += off < 2
    assert within1 / trials > 0.65 and within2 / trials > 0.86, (within1, within2)


def test_one_precise_star_does_not_decide_alone():
    """A1367-like: three stars 0.034 (error 0.0015), 0.050, 0.048 (error 0.009): the
    scale is near their mean, not at the precise star, and its error covers both."""
    f_r = np.array([3000.0, 1000.0, 1000.0])
    ratio = np.array([0.034, 0.050, 0.048])
    e_ha = np.array([0.0015, 0.009, 0.009]) * f_r * 0.7
    e_r = np.array([0.0015, 0.009, 0.009]) / ratio * f_r * 0.7
    res = cs.from_stars(ratio * f_r, e_ha, f_r, e_r, min_snr=3)
    assert 0.040 < res["scale"] < 0.047
    assert res["scale_err"] >= np.std(ratio, ddof=1) / math.sqrt(3)


def test_needs_three_stars_and_says_the_scale_can_be_given():
    f = np.array([1e4, 2e4, 50.0])
    with pytest.raises(ReduxError, match=r"contsub: \{scale"):
        cs.from_stars(0.08 * f, np.full(3, 20.0), f, np.full(3, 30.0))


# ---- from the image ----------------------------------------------------------------
def test_image_scale_nulls_the_continuum_and_ignores_the_line():
    line, _, (ha, ha_unc, r, r_unc) = line_scene(np.random.default_rng(5), s=0.08, q=0.9)
    res = cs.from_image(ha, ha_unc, r, r_unc)
    # the line's share of R (q) pulls H = sR + c by a little where the line is faint;
    # the clipped fit stays within 2 % of 0.08 and its jackknife error is realistic
    assert res["scale"] == pytest.approx(0.08, rel=0.02)
    assert 0 < res["scale_err"] < 0.004
    assert abs(res["scale"] - 0.08) < 3 * res["scale_err"]
    assert cs.from_image(ha, ha_unc, r, r_unc, min_snr=1e6) is None   # nothing bright


# ---- from the calibration, and the choice --------------------------------------------
def test_calibration_scale_from_photflam_or_widths():
    h_ha = fits.Header({"PHOTFLAM": 2.0e-17, "PHOTZPER": 0.02})
    h_r = fits.Header({"PHOTFLAM": 1.0e-18, "PHOTZPER": 0.01})
    res = cs.from_calibration(h_ha, h_r, ha_filter="Ha", cont_filter="R")
    assert res["scale"] == pytest.approx(0.05) and res["scale_err"] / 0.05 == pytest.approx(
        math.hypot(0.4 * math.log(10) * math.hypot(0.02, 0.01), cs.CALIBRATION_REL_ERR))
    bands = {"Ha": {"width_A": 75}, "R": {"width_A": 1500}}
    res = cs.from_calibration(fits.Header(), fits.Header(), bands=bands, ha_filter="Ha",
                              cont_filter="R")
    assert res["scale"] == pytest.approx(0.05) and "widths" in res["method"]
    assert cs.from_calibration(fits.Header(), fits.Header(), ha_filter="Ha") is None


def test_choose_prefers_stars_and_widens_the_error_on_disagreement():
    stars = {"scale": 0.040, "scale_err": 0.001, "n_used": 4, "method": "stars"}
    image = {"scale": 0.048, "scale_err": 0.001, "method": "image"}
    res = cs.choose({"stars": stars, "image": image, "calibration": None})
    assert res["source"] == "stars" and res["scale"] == 0.040
    assert not res["agree"] and "differ by 5.7 sigma" in res["disagreements"][0]
    assert res["scale_err"] == pytest.approx(0.004)            # covers the image's scale
    res = cs.choose({"stars": stars, "image": {**image, "scale": 0.0415}})
    assert res["agree"] and res["scale_err"] == 0.001
    res = cs.choose({"stars": None, "image": image})
    assert res["source"] == "image" and "too few stars" in res["reason"]
    calib = {"scale": 0.05, "scale_err": 0.002, "method": "PHOTFLAM"}
    res = cs.choose({"stars": stars, "calibration": calib})
    assert not res["agree"] and res["scale_err"] == 0.001      # flagged, not widened
    assert cs.choose({"stars": stars}, given=0.05)["source"] == "manifest"
    with pytest.raises(ReduxError, match="contsub"):
        cs.choose({"stars": None, "image": None, "calibration": None})
