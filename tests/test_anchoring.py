"""Anchoring to MUSE: regridding, beam matching, the binned fit, repair; the demo's truth."""

from __future__ import annotations

import numpy as np
import pytest

from redux_helpers import anchoring, contsub, muse
from redux_helpers.demo import space
from redux_helpers.errors import ReduxError


def _wcs(n, scale_arcsec, rot_deg=0.0, ra=150.0, dec=2.0):
    w = space._tan_wcs(ra, dec, (n, n), scale_arcsec, rot_deg)
    w.pixel_shape = (n, n)
    return w


def _blob(n, x, y, sigma, flux=1.0):
    yy, xx = np.mgrid[0:n, 0:n]
    return flux / (2 * np.pi * sigma ** 2) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))


def test_regrid_conserves_flux_and_survives_holes():
    fine, coarse = _wcs(200, 0.1, 15.0), _wcs(60, 0.25, -8.0)
    img = _blob(200, 97.3, 104.1, 8.0, 1000.0)
    out = anchoring.regrid(img, fine, coarse, (60, 60))
    assert np.nansum(out) == pytest.approx(1000.0, rel=2e-3)
    # one NaN pixel must not blank the whole output (a spline through a NaN is NaN)
    img[50, 60] = np.nan
    out = anchoring.regrid(img, fine, coarse, (60, 60))
    assert np.isfinite(out).sum() > 0.9 * np.isfinite(anchoring.regrid(
        np.ones((200, 200)), fine, coarse, (60, 60))).sum()
    assert np.nansum(out) == pytest.approx(1000.0, rel=5e-3)


def test_no_overlap_is_an_error_naming_both():
    a, b = _wcs(50, 0.1), _wcs(50, 0.1, ra=151.0)
    with pytest.raises(ReduxError, match="hst.fits and muse.fits share no sky"):
        anchoring.regrid(np.ones((50, 50)), a, b, (50, 50), names=("hst.fits", "muse.fits"))


def test_beam_match_smooths_the_sharper_one():
    fine, coarse = _wcs(300, 0.1), _wcs(80, 0.2)
    # a point-like source at 0.2" FWHM in the image, the same at 1.0" in the reference
    img = _blob(300, 149.5, 149.5, 0.2 / 2.3548 / 0.1, 100.0)
    ref = _blob(80, 39.5, 39.5, 1.0 / 2.3548 / 0.2, 100.0)
    bm = anchoring.beam_match(img, ref, image_wcs=fine, image_fwhm=0.2, reference_wcs=coarse,
                              reference_fwhm=1.0)
    assert bm.smoothed == "image"
    assert bm.kernel_arcsec == pytest.approx(np.sqrt(1.0 - 0.04))
    assert np.nanmax(bm.image) == pytest.approx(ref.max(), rel=0.01)   # same peak: same beam
    # the other way round: the reference is smoothed to the image's 1.3"
    img2 = _blob(300, 149.5, 149.5, 1.3 / 2.3548 / 0.1, 100.0)
    bm2 = anchoring.beam_match(img2, ref, image_wcs=fine, image_fwhm=1.3, reference_wcs=coarse,
                               reference_fwhm=1.0)
    ref13 = _blob(80, 39.5, 39.5, 1.3 / 2.3548 / 0.2, 100.0)
    assert bm2.smoothed == "reference"
    assert bm2.reference.max() == pytest.approx(ref13.max(), rel=0.01)
    with pytest.raises(ReduxError, match="sharpen"):
        anchoring.kernel_fwhm(1.0, 0.5)


def test_binned_fit_recovers_a_line_and_resists_outliers():
    rng = np.random.default_rng(2)
    x = rng.exponential(5.0, 40000)
    y = 3.0 + 1.2 * x + rng.normal(0, 0.5, x.size)
    y[:400] += 50.0                    # 1 % of pixels wildly off (a star, a bad spaxel)
    fit = anchoring.binned_fit(x + rng.normal(0, 0.05, x.size), y, image_noise=0.05, min_snr=3)
    assert fit.slope == pytest.approx(1.2, rel=0.01)
    assert fit.offset == pytest.approx(3.0, abs=0.06)
    assert fit.x.size == 20
    with pytest.raises(ReduxError, match="too few"):
        anchoring.binned_fit(x[:10], y[:10])


def test_repair_and_white_noise():
    rng = np.random.default_rng(4)
    img = 5.0 + rng.normal(0, 1.0, (100, 100))
    img[40:43, 40:43] = -3.0
    rep, filled = anchoring.repair_negatives(img, kernel_fwhm_px=3.0)
    assert filled[40:43, 40:43].all()
    assert np.all(rep[filled] > 0)
    assert rep[41, 41] == pytest.approx(5.0, abs=0.5)
    assert np.array_equal(rep[~filled], img[~filled])
    noisy = anchoring.add_white_noise(rep, filled, 1.0, seed=1)
    assert np.array_equal(noisy[~filled], rep[~filled])
    assert anchoring.noise_level(img) == pytest.approx(1.0, rel=0.05)


def test_align_recovers_a_wcs_offset():
    coarse = _wcs(60, 0.2)
    ref = sum(_blob(60, x, y, 2.0, f) for x, y, f in ((20, 25, 50), (40, 33, 80), (31, 45, 30)))
    moved = sum(_blob(60, x - 1.3, y + 0.6, 2.0, f)
                for x, y, f in ((20, 25, 50), (40, 33, 80), (31, 45, 30)))
    dx, dy = anchoring.align(moved, ref)
    assert (dx, dy) == (pytest.approx(1.3, abs=0.05), pytest.approx(-0.6, abs=0.05))
    with pytest.raises(ReduxError, match="same field"):
        anchoring.align(moved, ref, max_shift_px=1.0)
    # the corrected WCS puts the image's features on the reference's
    w2 = anchoring.shift_wcs(coarse, coarse, dx, dy)
    x_ref, y_ref = coarse.world_to_pixel_values(*w2.pixel_to_world_values(40 - 1.3, 33 + 0.6))
    assert (float(x_ref), float(y_ref)) == (pytest.approx(40, abs=0.02), pytest.approx(33, abs=0.02))


# ---- the demo: the fit recovers the injected slope and offset --------------------------------
# The demo's MUSE map is the truth (plus a small background); its HST narrow band is off by
# HST_LINE_SCALE ([NII], width) and a sky level, so the fit's right answer is the demo's
# anchor_slope = 1 / HST_LINE_SCALE and anchor_offset = MUSE_OFFSET - slope x sky.
@pytest.fixture(scope="module")
def demo_fit(small_demo):
    root, truth = small_demo
    sp = truth["space"]
    line = contsub.read_flux_image(root / "hst" / "f656n.fits")
    conts = [contsub.read_flux_image(root / "hst" / f"{f}.fits") for f in ("f555w", "f814w")]
    res = contsub.subtract(line, conts, width_A=sp["hst"]["F656N"]["width_A"], interp="log")
    ref = muse.read_image(root / "muse" / "halpha_map.fits")
    bm = anchoring.beam_match(res.flux, ref.data, image_wcs=line.wcs,
                              image_fwhm=sp["hst_fwhm_arcsec"], reference_wcs=ref.wcs,
                              reference_fwhm=float(ref.header["FWHM"]))
    stars = anchoring.star_mask(res.continuum.flam * sp["hst"]["F656N"]["width_A"], res.flux,
                                fwhm_px=sp["hst_fwhm_arcsec"] / sp["hst_pixel_arcsec"])
    stars_m = anchoring.regrid(stars.astype(float), line.wcs, ref.wcs, ref.data.shape,
                               conserve_flux=False) > 0.01
    # level=None: the demo's HST line image sits on the sky its drizzle left in
    fit = anchoring.binned_fit(bm.image, bm.reference, bad=stars_m, level=None)
    return root, truth, sp, line, res, ref, bm, stars, fit


def test_demo_fit_recovers_slope_and_offset(demo_fit):
    *_, sp, line, res, ref, bm, stars, fit = demo_fit
    assert fit.slope == pytest.approx(sp["anchor_slope"], rel=0.02)
    # abs=0: pytest.approx's default abs=1e-12 would accept any offset of ~1e-17 erg/s/cm2.
    # The Eddington bias of the faint bins (binned_fit) makes it ~2 % too negative here
    assert fit.offset == pytest.approx(sp["anchor_offset"], rel=0.03, abs=0)
    # and its errors are honest: the truth within 3 sigma
    assert abs(fit.slope - sp["anchor_slope"]) < 3 * fit.slope_err + 0.005


def test_demo_anchored_nebulae_agree_with_muse(demo_fit):
    root, truth, sp, line, res, ref, bm, stars, fit = demo_fit
    anchored = anchoring.anchor(res.flux, fit, image_pixel_area=line.pixel_arcsec ** 2,
                                reference_pixel_area=ref.pixel_area_arcsec2)
    on_muse = anchoring.beam_match(anchored, ref.data, image_wcs=line.wcs,
                                   image_fwhm=sp["hst_fwhm_arcsec"], reference_wcs=ref.wcs,
                                   reference_fwhm=float(ref.header["FWHM"])).image
    labels, _ = muse.read_nebulae(root / "muse" / "nebula_mask.fits")
    ours = muse.nebula_sums(np.nan_to_num(on_muse), labels.data)["flux"]
    theirs = muse.nebula_sums(ref.data, labels.data)["flux"]
    ratio = np.asarray(ours) / np.asarray(theirs)
    assert abs(np.median(ratio) - 1) < 0.05
    before = np.asarray(muse.nebula_sums(np.nan_to_num(bm.image), labels.data)["flux"]) / theirs
    # the HST image's [NII], width and sky were really there: before anchoring it is high
    expected = truth.table("nebulae_truth")
    assert np.median(before) > 1.1
    assert np.median(before) == pytest.approx(
        np.median(expected["flux_hst_expected"] / expected["flux_muse_expected"]), rel=0.03)


def test_demo_stars_are_masked(demo_fit):
    root, truth, sp, line, res, ref, bm, stars, fit = demo_fit
    t = truth.table("stars")
    x, y = line.wcs.world_to_pixel_values(t["ra"], t["dec"])
    n = line.data.shape[0]
    inside = (x > 5) & (x < n - 5) & (y > 5) & (y < n - 5)
    # bright enough to stand out of the galaxy: the demo's stars of R < 20.5
    bright = inside & (np.asarray(t["R"]) < 20.5)
    hit = stars[np.round(y[bright]).astype(int), np.round(x[bright]).astype(int)]
    assert bright.sum() >= 2 and hit.all()
    # and no HII region is taken for a star
    h = truth.table("hii_regions")
    hx, hy = line.wcs.world_to_pixel_values(h["ra"], h["dec"])
    ok = (hx > 0) & (hx < n) & (hy > 0) & (hy < n)
    assert not stars[np.round(hy[ok]).astype(int), np.round(hx[ok]).astype(int)].any()


def test_demo_beam_is_found(demo_fit):
    root, truth, sp, line, res, ref, *_ = demo_fit
    best, scan = anchoring.fit_beam(res.flux, ref.data, image_wcs=line.wcs,
                                    image_fwhm=sp["hst_fwhm_arcsec"], reference_wcs=ref.wcs,
                                    fwhms=np.arange(0.6, 1.45, 0.1))
    assert best == pytest.approx(sp["muse_fwhm_arcsec"], abs=0.1)


def test_fit_beam_refines_between_its_trials():
    """A reference at 0.83" is found to ~0.01", not to the 0.1" trial grid."""
    fine, coarse = _wcs(240, 0.05), _wcs(60, 0.2, -10.0)
    rng = np.random.default_rng(4)
    xy = rng.uniform(40, 200, (12, 2))
    flux = rng.uniform(1, 5, 12)
    img = sum(_blob(240, x, y, 0.1 / 2.3548 / 0.05 + 3.0, f) for (x, y), f in zip(xy, flux, strict=True))
    # the same sources on the coarse grid at 0.83": the image's own blur convolved to it
    bm = anchoring.beam_match(img, np.zeros((60, 60)), image_wcs=fine, image_fwhm=0.1,
                              reference_wcs=coarse, reference_fwhm=0.83)
    ref = bm.image + rng.normal(0, 1e-4, bm.image.shape)
    best, scan = anchoring.fit_beam(img, ref, image_wcs=fine, image_fwhm=0.1, reference_wcs=coarse)
    assert min(scan, key=lambda s: s[1])[0] == pytest.approx(0.8)   # the grid's best
    assert best == pytest.approx(0.83, abs=0.015)
