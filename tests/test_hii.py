"""HII-region chain: continuum scale and subtraction, galaxy geometry, regions, outputs.

Every test checks numbers against a known answer: injected scales, line fluxes and
regions, the demo's own galaxy formula and HII-region radii, hand-computed
luminosities.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from redux_helpers import demo, fitsio, hii
from redux_helpers.errors import ReduxError

SEEING = 3.2
SIG_SEEING = SEEING / (2 * math.sqrt(2 * math.log(2)))
NOISE = 0.02                      # e-/s per pixel, about a 4 x 600 s Hα stack
CM_PER_MPC = 3.0856775814913673e24
ARCSEC_PER_RAD = 206264.80624709636
XC, YC = 511.8, 510.1             # the 1024-pixel demo's galaxy centre (0-based)


def demo_wcs(rotation_deg=0.0, centre=(XC, YC)):
    return demo.make_wcs(demo.GALAXY["ra"], demo.GALAXY["dec"],
                          (centre[0] + 1, centre[1] + 1), rotation_deg)


def mirrored_wcs(centre=(XC, YC), rotation_deg=0.0):
    """North down, east left: the demo's WCS flipped top to bottom (parity reversed)."""
    w = demo_wcs(centre=centre)
    s = demo.PIXEL_SCALE / 3600.0
    t = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    w.wcs.cd = np.array([[-s, 0.0], [0.0, -s]]) @ rot
    return w


def demo_formula(x, y, x0, y0, pa_deg, inc_deg):
    """The demo's own galaxy frame (demo.Night.galaxy_rate)."""
    pa, inc = np.deg2rad(pa_deg), np.deg2rad(inc_deg)
    dx, dy = x - x0, y - y0
    u_ = -np.sin(pa) * dx + np.cos(pa) * dy
    v_ = (np.cos(pa) * dx + np.sin(pa) * dy) / np.cos(inc)
    return u_, v_, np.hypot(u_, v_)


def region_field(seed=0, n=25, size=200, noise=NOISE, min_sep=9.0):
    """Demo-like HII regions: Gaussians of sigma 1.0-2.2 px in the seeing, 20-400 e-/s."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    while len(xs) < n:
        x, y = rng.uniform(12, size - 12, 2)
        if xs and np.min(np.hypot(np.array(xs) - x, np.array(ys) - y)) < min_sep:
            continue
        xs.append(x)
        ys.append(y)
    xs, ys = np.array(xs), np.array(ys)
    sig = np.hypot(rng.uniform(1.0, 2.2, n), SIG_SEEING)
    rate = np.exp(rng.uniform(np.log(20.0), np.log(400.0), n))
    clean = demo.gauss_stamps(np.zeros((size, size)), xs, ys, rate, sig)
    image = clean + rng.normal(0.0, noise, clean.shape)
    return image, np.full(clean.shape, noise), {"x": xs, "y": ys, "rate": rate, "sigma": sig}


def expected_significance(rate, sigma, noise=NOISE):
    """Peak of the seeing-smoothed S/N image of a Gaussian region, in its white-noise sigma."""
    return rate * SIG_SEEING / (noise * math.sqrt(math.pi) * (sigma ** 2 + SIG_SEEING ** 2))


def match(table, truth, radius=1.0):
    """Index of the nearest true region per detection, and whether it is within radius."""
    d = np.hypot(np.asarray(table["x"])[:, None] - truth["x"][None],
                 np.asarray(table["y"])[:, None] - truth["y"][None])
    return d.argmin(axis=1), d.min(axis=1) < radius


# ---- continuum subtraction ---------------------------------------------------------------
def line_scene(rng, s=0.08, q=0.9):
    """Continuum disk + two line regions through the Hα and R filters, with noise."""
    yy, xx = np.mgrid[0:128, 0:128].astype(float)
    cont = 40.0 * np.exp(-np.hypot(xx - 64.3, yy - 63.6) / 12.0)
    line = demo.gauss_stamps(np.zeros((128, 128)), [50.2, 80.7], [70.1, 52.4],
                              [400.0, 150.0], [2.0, 1.6])
    ha_true, r_true = s * cont + line, cont + q * line
    ha_unc = np.sqrt((ha_true + 1.5) / 2400.0 + 4 * 81 / 2400.0 ** 2)
    r_unc = np.sqrt((r_true + 15.0) / 1200.0 + 4 * 81 / 1200.0 ** 2)
    ha = ha_true + rng.normal(0, 1, ha_true.shape) * ha_unc
    r = r_true + rng.normal(0, 1, r_true.shape) * r_unc
    return line, (ha_true, r_true), (ha, ha_unc, r, r_unc)


def test_subtract_continuum_puts_back_the_line_in_the_broad_band():
    line_true, (ha0, r0), (ha, ha_unc, r, r_unc) = line_scene(np.random.default_rng(2))
    zero = np.zeros_like(ha0)
    exact, _ = hii.subtract_continuum(ha0, zero, r0, zero, 0.08, line_in_continuum=0.9)
    np.testing.assert_allclose(exact, line_true, rtol=0, atol=1e-10)
    line, line_unc = hii.subtract_continuum(ha, ha_unc, r, r_unc, 0.08, line_in_continuum=0.9)
    yy, xx = np.mgrid[0:128, 0:128]
    inside = np.hypot(xx - 50.2, yy - 70.1) < 12
    assert line[inside].sum() / line_true[inside].sum() == pytest.approx(1.0, abs=0.01)
    pull = (line - line_true) / line_unc
    assert np.std(pull) == pytest.approx(1.0, abs=0.03)


def test_subtract_continuum_scale_error_is_the_derivative_and_nan_propagates():
    _, (ha0, r0), _ = line_scene(np.random.default_rng(0))
    zero = np.zeros_like(ha0)
    s, ds, q = 0.08, 0.002, 0.9
    _, unc = hii.subtract_continuum(ha0, zero, r0, zero, s, scale_err=ds, line_in_continuum=q)
    hi, _ = hii.subtract_continuum(ha0, zero, r0, zero, s + 1e-6, line_in_continuum=q)
    lo, _ = hii.subtract_continuum(ha0, zero, r0, zero, s - 1e-6, line_in_continuum=q)
    np.testing.assert_allclose(unc, np.abs(hi - lo) / 2e-6 * ds, rtol=1e-5, atol=1e-12)
    ha0[5, 5] = np.nan
    zero_r = zero.copy()
    zero_r[6, 7] = np.nan
    line, unc = hii.subtract_continuum(ha0, zero, r0, zero_r, s, line_in_continuum=q)
    assert np.isnan(line[5, 5]) and np.isnan(unc[5, 5])
    assert np.isnan(line[6, 7]) and np.isnan(unc[6, 7])
    assert np.isfinite(line).sum() == line.size - 2
    with pytest.raises(ReduxError, match="s q < 1"):
        hii.subtract_continuum(ha0, zero, r0, zero, 0.8, line_in_continuum=1.3)


# ---- galaxy geometry ---------------------------------------------------------------------
def test_north_angle_and_parity():
    assert hii.north_angle(None, 3.0, 4.0) == (0.0, True)
    angle, east_left = hii.north_angle(demo_wcs(), XC, YC)
    assert angle == pytest.approx(0.0, abs=1e-8) and east_left
    angle, east_left = hii.north_angle(demo_wcs(30.0), XC, YC)
    assert angle == pytest.approx(-30.0, abs=1e-6) and east_left
    angle, east_left = hii.north_angle(demo_wcs(180.0), XC, YC)
    assert abs(angle) == pytest.approx(180.0, abs=1e-6) and east_left
    angle, east_left = hii.north_angle(mirrored_wcs(), XC, YC)
    assert abs(angle) == pytest.approx(180.0, abs=1e-6) and not east_left
    angle, east_left = hii.north_angle(mirrored_wcs(rotation_deg=30.0), XC, YC)
    assert angle == pytest.approx(150.0, abs=1e-6) and not east_left
    # away from the reference pixel, against points 20" north and east found by astropy
    for w in (demo_wcs(30.0), mirrored_wcs(rotation_deg=30.0)):
        c = w.pixel_to_world(100.0, 900.0)
        xn, yn = w.world_to_pixel(c.directional_offset_by(0 * u.deg, 20 * u.arcsec))
        xe, ye = w.world_to_pixel(c.directional_offset_by(90 * u.deg, 20 * u.arcsec))
        expected = math.degrees(math.atan2(-(xn - 100.0), yn - 900.0))
        cross = (xn - 100.0) * (ye - 900.0) - (yn - 900.0) * (xe - 100.0)
        assert hii.north_angle(w, 100.0, 900.0) == (pytest.approx(expected, abs=1e-4),
                                                    cross > 0)


def test_galaxy_frame_is_the_demo_formula():
    rng = np.random.default_rng(4)
    x, y = rng.uniform(0, 1023, 2000), rng.uniform(0, 1023, 2000)
    want = demo_formula(x, y, XC, YC, 58.0, 55.0)
    for got in (hii.galaxy_frame(x, y, x0=XC, y0=YC, pa_deg=58.0, inc_deg=55.0),
                hii.galaxy_frame(x, y, x0=XC, y0=YC, pa_deg=58.0, inc_deg=55.0, wcs=demo_wcs())):
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9)


def test_galaxy_frame_gives_the_demo_regions_their_disk_radius():
    night = demo.Night(demo.DemoConfig(size=256))
    g = demo.GALAXY
    _, _, r = hii.galaxy_frame(night.hii["x"], night.hii["y"], x0=night.xc, y0=night.yc,
                               pa_deg=g["pa_deg"], inc_deg=g["inclination_deg"], wcs=night.ref_wcs)
    np.testing.assert_allclose(r, night.hii["r_disk"], rtol=1e-9)


@pytest.mark.parametrize("wcs", [demo_wcs(30.0), demo_wcs(180.0), mirrored_wcs(),
                                 mirrored_wcs(rotation_deg=30.0)],
                         ids=["rotated30", "north_down", "mirrored", "mirrored_rotated30"])
def test_galaxy_frame_follows_the_sky_not_the_pixels(wcs):
    pa, inc = 58.0, 55.0
    centre = SkyCoord(demo.GALAXY["ra"], demo.GALAXY["dec"], unit="deg")
    x0, y0 = (float(c) for c in wcs.world_to_pixel(centre))
    sep = np.array([10.0, 25.0, 40.0]) * u.arcsec
    along = centre.directional_offset_by(pa * u.deg, sep)
    across = centre.directional_offset_by((pa + 90) * u.deg, sep)
    n_px = sep.to_value(u.arcsec) / demo.PIXEL_SCALE
    u_, v_, _ = hii.galaxy_frame(*wcs.world_to_pixel(along), x0=x0, y0=y0, pa_deg=pa, inc_deg=inc,
                                 wcs=wcs)
    np.testing.assert_allclose(v_, 0.0, atol=1e-6)
    np.testing.assert_allclose(u_, n_px, rtol=1e-6)
    u_, v_, r = hii.galaxy_frame(*wcs.world_to_pixel(across), x0=x0, y0=y0, pa_deg=pa, inc_deg=inc,
                                 wcs=wcs)
    np.testing.assert_allclose(u_, 0.0, atol=1e-6)
    np.testing.assert_allclose(v_, -n_px / np.cos(np.deg2rad(inc)), rtol=1e-6)
    # the same sky points have the same radius whatever the pixel grid
    ref = demo_wcs()
    _, _, r_ref = hii.galaxy_frame(*ref.world_to_pixel(across), x0=XC, y0=YC, pa_deg=pa,
                                   inc_deg=inc, wcs=ref)
    np.testing.assert_allclose(r, r_ref, rtol=1e-6)


def exp_disk(shape, x0, y0, pa, inc, h, wcs=None, core=0.0):
    """An exponential disk of scale length h (pixels), softened inside ``core``."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    _, _, r = hii.galaxy_frame(xx, yy, x0=x0, y0=y0, pa_deg=pa, inc_deg=inc, wcs=wcs)
    return np.exp(-np.hypot(r, core) / h)


def axis_ratio_and_centroid(image):
    img = np.nan_to_num(image)
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]].astype(float)
    tot = img.sum()
    xm, ym = (img * xx).sum() / tot, (img * yy).sum() / tot
    cxx = (img * (xx - xm) ** 2).sum() / tot
    cyy = (img * (yy - ym) ** 2).sum() / tot
    cxy = (img * (xx - xm) * (yy - ym)).sum() / tot
    lo, hi = np.linalg.eigvalsh([[cxx, cxy], [cxy, cyy]])
    return math.sqrt(lo / hi), xm, ym


def test_deproject_image_makes_an_inclined_disk_round():
    pa, inc, x0, y0 = 58.0, 55.0, 80.3, 79.6
    disk = exp_disk((161, 161), x0, y0, pa, inc, 5.0)
    q_in, _, _ = axis_ratio_and_centroid(disk)
    assert q_in == pytest.approx(math.cos(math.radians(inc)), rel=0.05)
    out, tr = hii.deproject_image(disk, x0=x0, y0=y0, pa_deg=pa, inc_deg=inc)
    q_out, xm, ym = axis_ratio_and_centroid(out)
    assert q_out == pytest.approx(1.0, abs=0.05)
    assert (xm, ym) == pytest.approx(tr.centre, abs=0.05)
    # surface brightness is kept, so the sum grows by 1 / cos(i)
    ratio = np.nansum(out) * math.cos(math.radians(inc)) / disk.sum()
    assert ratio == pytest.approx(1.0, abs=0.01)
    # the major axis is vertical: a point on it lands straight above the centre
    sp, cp = math.sin(math.radians(pa)), math.cos(math.radians(pa))
    X, Y = tr.to_output(x0 - 30 * sp, y0 + 30 * cp)
    assert (X, Y) == pytest.approx((tr.centre[0], tr.centre[1] + 30), abs=1e-9)
    assert tr.to_input(X, Y) == pytest.approx((x0 - 30 * sp, y0 + 30 * cp), abs=1e-9)


def test_deproject_image_gives_the_face_on_disk_whatever_the_pixel_grid():
    pa, inc, centre = 58.0, 55.0, (80.3, 79.6)
    for wcs in (None, demo_wcs(30.0, centre=centre), mirrored_wcs(centre, 30.0)):
        disk = exp_disk((161, 161), *centre, pa, inc, 5.0, wcs=wcs, core=3.0)
        out, tr = hii.deproject_image(disk, x0=centre[0], y0=centre[1], pa_deg=pa, inc_deg=inc,
                                      wcs=wcs, order=3)
        yy, xx = np.mgrid[0:out.shape[0], 0:out.shape[1]]
        face_on = np.exp(-np.hypot(np.hypot(xx - tr.centre[0], yy - tr.centre[1]), 3.0) / 5.0)
        inside = np.isfinite(out)
        assert inside.sum() > 0.5 * out.size
        assert np.max(np.abs(out - face_on)[inside]) < 0.003


def test_deproject_image_refuses_an_edge_on_disk():
    with pytest.raises(ReduxError, match="edge on"):
        hii.deproject_image(np.ones((20, 20)), x0=10, y0=10, pa_deg=30.0, inc_deg=89.0)


def test_check_galaxy_finds_the_centre_and_refuses_bad_values():
    w = demo_wcs()
    g = dict(demo.GALAXY)
    assert hii.check_galaxy(g, (1024, 1024), w) == pytest.approx((XC, YC), abs=1e-6)
    assert hii.check_galaxy({**g, "x": 12.0, "y": 30.0}, (64, 64), w) == (12.0, 30.0)
    with pytest.raises(ReduxError, match=r"outside the image of 1024 x 1024"):
        hii.check_galaxy({**g, "ra": g["ra"] + 0.2}, (1024, 1024), w)
    with pytest.raises(ReduxError, match=r"distance_mpc must be positive; got 0"):
        hii.check_galaxy({**g, "distance_mpc": 0}, (1024, 1024), w)
    no_distance = {k: v for k, v in g.items() if k != "distance_mpc"}
    assert hii.check_galaxy(no_distance, (1024, 1024), w) == pytest.approx((XC, YC))
    with pytest.raises(ReduxError, match="distance_mpc"):
        hii.check_galaxy(no_distance, (1024, 1024), w, need_distance=True)
    with pytest.raises(ReduxError, match=r"inclination_deg must be in \[0, 90\)"):
        hii.check_galaxy({**g, "inclination_deg": 90}, (1024, 1024), w)


# ---- finding and measuring regions --------------------------------------------------------
def test_find_regions_recovers_demo_like_regions_with_their_fluxes():
    image, unc, truth = region_field(seed=0)
    above = expected_significance(truth["rate"], truth["sigma"]) > 5.0
    segm, t = hii.find_regions(image, unc)
    j, ok = match(t, truth)
    recovered = set(j[ok]) & set(np.flatnonzero(above))
    assert len(recovered) >= 0.9 * above.sum()
    assert (~ok).sum() < 0.05 * len(t)                   # spurious detections
    ratio = np.asarray(t["flux"])[ok] / truth["rate"][j[ok]]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.03)
    assert segm.n_labels == len(t)
    np.testing.assert_allclose(t["r_eq_px"], np.sqrt(t["area_px"] / np.pi))
    assert t["x"].unit == u.pix and t["flux"].unit == u.electron / u.s


def test_find_regions_fluxes_do_not_depend_on_the_isophote():
    """A high threshold cuts the segments short: Kron fluxes keep the wings, segments don't."""
    image, unc, truth = region_field(seed=2, noise=0.05)
    _, t = hii.find_regions(image, unc, nsigma=25.0)
    j, ok = match(t, truth)
    assert ok.sum() >= 23
    kron = np.asarray(t["flux"])[ok] / truth["rate"][j[ok]]
    iso = np.asarray(t["flux_iso"])[ok] / truth["rate"][j[ok]]
    assert np.median(kron) == pytest.approx(1.0, abs=0.03)
    assert np.median(iso) < 0.97                         # why the Kron flux is the flux


def test_find_regions_threshold_is_a_significance_in_the_smoothed_image():
    rng = np.random.default_rng(7)
    image = rng.normal(0.0, NOISE, (120, 120))
    sigma = math.hypot(1.5, SIG_SEEING)
    per_sigma = expected_significance(1.0, sigma)        # significance of 1 e-/s
    demo.gauss_stamps(image, [30.4, 90.2], [60.3, 60.7],
                       [12.0 / per_sigma, 2.0 / per_sigma], sigma)
    _, t = hii.find_regions(image, np.full(image.shape, NOISE))
    assert len(t) == 1
    assert (t["x"][0], t["y"][0]) == pytest.approx((30.4, 60.3), abs=1.0)
    assert t["det_sigma"][0] == pytest.approx(12.0, rel=0.25)


def test_find_regions_on_noise_or_excluded_pixels_finds_nothing():
    rng = np.random.default_rng(8)
    noise = rng.normal(0.0, NOISE, (300, 300))
    segm, t = hii.find_regions(noise, np.full(noise.shape, NOISE))
    assert segm is None and len(t) == 0
    assert t.colnames == list(hii.REGION_COLUMNS)
    image, unc, truth = region_field(seed=1, n=5, size=80)
    exclude = np.zeros(image.shape, bool)
    yy, xx = np.mgrid[0:80, 0:80]
    exclude[np.hypot(xx - truth["x"][0], yy - truth["y"][0]) < 5] = True
    for kw in ({"exclude": exclude}, {"mask": exclude.astype(np.uint16) * 16}):
        _, t = hii.find_regions(image, unc, **kw)
        j, ok = match(t, truth)
        assert 0 not in j[ok] and len(set(j[ok])) == 4


def test_demo_scene_regions_after_continuum_subtraction():
    """The demo's own scene: galaxy, stars and HII regions, through both filters."""
    night = demo.Night(demo.DemoConfig(size=256))
    rng = np.random.default_rng(5)
    stacks = []
    for filt, n in (("Ha", 4), ("R", 4)):
        rate, t_tot = night.scene(filt), demo.EXPTIME[filt] * n
        var = (rate + demo.SKY_RATE[filt]) / t_tot + n * demo.READ_NOISE ** 2 / t_tot ** 2
        stacks += [rate + rng.normal(0.0, 1.0, rate.shape) * np.sqrt(var), np.sqrt(var)]
    line, line_unc = hii.subtract_continuum(*stacks, demo.CONT_SCALE,
                                            line_in_continuum=demo.LINE_IN_R)
    # stars differ in colour by 3 %: their residuals must be excluded, not detected
    yy, xx = np.mgrid[0:256, 0:256]
    stars = np.zeros(line.shape, bool)
    for x, y, f in zip(night.stars["x"], night.stars["y"], night.stars["rate_Ha"], strict=True):
        peak = 0.03 * f / (2 * np.pi * SIG_SEEING ** 2)
        rad = SIG_SEEING * math.sqrt(2 * math.log(max(peak / 0.015, 1.0))) + 3
        stars |= np.hypot(xx - x, yy - y) < rad
    _, t = hii.find_regions(line, line_unc, exclude=stars)
    truth = {"x": np.asarray(night.hii["x"]), "y": np.asarray(night.hii["y"])}
    j, ok = match(t, truth)
    assert len(set(j[ok])) == len(night.hii) and ok.all()
    ratio = np.asarray(t["flux"]) / np.asarray(night.hii["halpha_rate"])[j]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.03)
    cat = hii.catalogue(t, wcs=night.ref_wcs, galaxy=demo.GALAXY)
    np.testing.assert_allclose(cat["r_gal_px"], night.hii["r_disk"][j], atol=0.5)


# ---- catalogue and outputs ----------------------------------------------------------------
@pytest.fixture(scope="module")
def axis_regions():
    """Two regions on the demo galaxy: 60 px along the major axis, 30 px along the minor."""
    pa = math.radians(demo.GALAXY["pa_deg"])
    sp, cp = math.sin(pa), math.cos(pa)
    x0, y0 = 100.3, 99.6
    xs = [x0 - 60 * sp, x0 + 30 * cp]
    ys = [y0 + 60 * cp, y0 + 30 * sp]
    rng = np.random.default_rng(9)
    image = demo.gauss_stamps(np.zeros((200, 200)), xs, ys, [300.0, 120.0], [2.0, 1.8])
    image += rng.normal(0.0, NOISE, image.shape)
    _, t = hii.find_regions(image, np.full(image.shape, NOISE))
    assert len(t) == 2
    order = np.argsort(-np.asarray(t["flux"]))
    return t[order], demo_wcs(centre=(x0, y0))


def test_catalogue_by_hand(axis_regions):
    t, wcs = axis_regions
    per_rate, d = demo.HALPHA_CGS_PER_RATE, demo.GALAXY["distance_mpc"]
    cat = hii.catalogue(t, wcs=wcs, galaxy=demo.GALAXY, flux_per_rate=per_rate)
    flux = float(t["flux"][0])
    lum = 4 * math.pi * (22.5 * CM_PER_MPC) ** 2 * flux * per_rate
    assert cat["luminosity"][0] == pytest.approx(lum, rel=1e-9)
    assert cat["log_luminosity"][0] == pytest.approx(math.log10(lum), rel=1e-12)
    assert cat["flux_cgs"][0] == pytest.approx(flux * per_rate, rel=1e-12)
    kpc_per_px = 0.4 / ARCSEC_PER_RAD * d * 1e3
    assert cat["r_gal_px"][0] == pytest.approx(60.0, abs=0.1)
    assert cat["r_gal_px"][1] == pytest.approx(30.0 / math.cos(math.radians(55.0)), abs=0.1)
    np.testing.assert_allclose(cat["r_gal_kpc"], cat["r_gal_px"] * kpc_per_px, rtol=1e-9)
    np.testing.assert_allclose(cat["r_eq_pc"], t["r_eq_px"] * kpc_per_px * 1e3, rtol=1e-9)
    sb = t["flux_iso"][1] * per_rate / (t["area_px"][1] * 0.16)
    assert cat["surface_brightness"][1] == pytest.approx(sb, rel=1e-9)
    ra, dec = wcs.pixel_to_world_values(t["x"], t["y"])
    np.testing.assert_allclose(cat["ra"], ra, rtol=1e-12)
    assert cat["luminosity"].unit == u.erg / u.s
    assert cat["flux_cgs"].unit == u.erg / u.s / u.cm ** 2
    assert cat["surface_brightness"].unit == u.erg / u.s / u.cm ** 2 / u.arcsec ** 2
    assert cat["r_gal_kpc"].unit == u.kpc and cat["r_eq_pc"].unit == u.pc
    assert set(cat.colnames) <= set(cat.meta["columns"])
    plain = hii.catalogue(t)
    assert plain.colnames == t.colnames
    no_distance = {k: v for k, v in demo.GALAXY.items() if k != "distance_mpc"}
    fluxes_only = hii.catalogue(t, wcs=wcs, galaxy=no_distance, flux_per_rate=per_rate)
    assert "luminosity" not in fluxes_only.colnames        # no distance, no luminosity
    np.testing.assert_allclose(fluxes_only["flux_cgs"], cat["flux_cgs"], rtol=1e-12)
    with pytest.raises(ReduxError, match="distance_mpc must be positive"):
        hii.catalogue(t, wcs=wcs, galaxy={**demo.GALAXY, "distance_mpc": 0}, flux_per_rate=per_rate)


def test_ds9_regions_round_trip(axis_regions, tmp_path):
    from regions import Regions

    t, wcs = axis_regions
    pix = fitsio.write_text(tmp_path / "pix.reg", hii.ds9_regions(t))
    back = Regions.read(pix, format="ds9")
    assert [str(r.meta["text"]) for r in back] == [str(i) for i in t["id"]]
    np.testing.assert_allclose([r.center.x for r in back], t["x"], atol=1e-6)
    np.testing.assert_allclose([r.center.y for r in back], t["y"], atol=1e-6)
    np.testing.assert_allclose([r.radius for r in back], t["r_eq_px"], atol=1e-6)
    cat = hii.catalogue(t, wcs=wcs)
    back = Regions.read(fitsio.write_text(tmp_path / "sky.reg", hii.ds9_regions(cat, wcs=wcs)),
                        format="ds9")
    centres = SkyCoord([r.center for r in back])
    sep = centres.separation(SkyCoord(cat["ra"], cat["dec"], unit="deg"))
    assert np.all(sep < 1e-3 * u.arcsec)
    np.testing.assert_allclose([r.radius.to_value(u.arcsec) for r in back],
                               t["r_eq_px"] * 0.4, atol=1e-3)
    text = hii.ds9_regions(t[1:])
    assert "global" not in text and f"# text={{{t['id'][1]}}}" in text.splitlines()[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pix.reg", "sky.reg"]  # no temporary left


def test_bubble_charts(axis_regions, tmp_path):
    t, wcs = axis_regions
    cat = hii.catalogue(t, wcs=wcs, galaxy=demo.GALAXY,
                        flux_per_rate=demo.HALPHA_CGS_PER_RATE)
    fig2, fig3 = hii.bubble_charts(cat, title="demo")
    assert list(tmp_path.iterdir()) == []                     # nothing written
    fitsio.write_html_figure(fig2, tmp_path / "map.html")
    fitsio.write_html_figure(fig3, tmp_path / "map3d.html")
    for name in ("map.html", "map3d.html"):
        html = (tmp_path / name).read_text()
        assert "plotly" in html and "id 1" in html
    assert len(fig2.data[0].x) == len(fig3.data[0].z) == len(cat) == 2
    np.testing.assert_allclose(fig2.data[0].x, cat["ra"])
    sizes, lum = np.asarray(fig2.data[0].marker.size), np.asarray(cat["luminosity"])
    assert sizes[0] / sizes[1] == pytest.approx(math.sqrt(lum[0] / lum[1]), rel=1e-9)
    np.testing.assert_allclose(fig3.data[0].z, np.log10(lum), rtol=1e-12)
    np.testing.assert_allclose(fig2.data[0].marker.color, cat["r_gal_kpc"])
    assert fig2.data[0].marker.colorbar.exponentformat == "power"   # 1e-14 as 10^-14, not "10f"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.html", "map3d.html"]


# ---- helpers added for notebook 09 ----------------------------------------------------------
SEEING = 3.2
SIG = SEEING / (2 * math.sqrt(2 * math.log(2)))


def test_saturated_cores_are_holes_ringed_by_light():
    image = demo.gauss_stamps(np.zeros((100, 100)), [40.3], [60.7], [1e5], SIG)
    bad = image > 2000.0                        # the saturated core
    bad[:, :3] = True                           # a no-data border: not a star
    bad[10:12, 80:82] = True                    # a hole on empty sky: not a star
    x, y, area, edge = hii.saturated_cores(bad, image, min_level=10.0)
    assert len(x) == 1 and (x[0], y[0]) == pytest.approx((40.3, 60.7), abs=0.3)
    assert area[0] == (image > 2000).sum() and edge[0] > 300


def test_star_radii_is_where_a_gaussian_falls_below_the_noise():
    r = hii.star_radii([100.0, 0.5, -3.0, np.nan], 1.0, fwhm=SEEING, pad=3.0)
    assert r[0] == pytest.approx(SIG * math.sqrt(2 * math.log(100.0)) + 3.0)
    assert r[1] == r[2] == 3.0 and np.isnan(r[3])
    assert hii.star_radii(10.0, 1.0, fwhm=SEEING, core=4.0, pad=0.0)[0] == pytest.approx(
        math.sqrt(16 + 2 * SIG ** 2 * math.log(10.0)))
    image = demo.gauss_stamps(np.zeros((60, 60)), [30.0], [30.0], [2 * math.pi * SIG ** 2 * 100],
                               SIG)
    mask = hii.discs(image.shape, [30.0], [30.0], hii.star_radii(100.0, 1.0, fwhm=SEEING, pad=0))
    assert image[~mask].max() <= 1.05 and image[mask].min() >= 0.9


def test_residual_radius_and_light_centre():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:120, 0:120]
    bump = 5.0 * np.exp(-np.hypot(xx - 61.2, yy - 58.6) ** 2 / (2 * 6.0 ** 2))
    line = bump + rng.normal(0.0, 1.0, bump.shape)
    r = hii.residual_radius(line, np.ones_like(line), 61.2, 58.6, r_max=40)
    # |bump + noise| has a median below the noise where bump < ~0.6 sigma: r ~ 6 sqrt(2 ln(5/0.6))
    assert 9 <= r <= 15
    assert hii.residual_radius(rng.normal(0, 1, bump.shape), np.ones_like(line), 60, 60,
                               r_max=40) <= 2
    assert hii.light_centre(bump * 100 + rng.normal(0, 1, bump.shape)) == pytest.approx((61, 59), abs=1)


def test_galaxy_extent_is_the_galaxy_not_the_star():
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:200, 0:200]
    image = 50.0 * np.exp(-np.hypot(xx - 70, yy - 70) / 12.0)
    demo.gauss_stamps(image, [170.0], [170.0], [5e4], SIG)
    image += rng.normal(0.0, 1.0, image.shape)
    ext = hii.galaxy_extent(image, 70, 70, sky_rms=1.0, smooth=5.0, nsigma=3.0)
    assert ext[70, 70] and ext[70, 110] and not ext[170, 170] and not ext[10, 190]
    assert hii.galaxy_extent(image, 10, 190, sky_rms=1.0, smooth=5.0) is None


def test_region_sums_are_the_kron_sums_of_find_regions():
    rng = np.random.default_rng(5)
    image = demo.gauss_stamps(np.zeros((150, 150)), [40.2, 100.7], [50.3, 90.1], [200.0, 80.0],
                               [2.0, 1.6])
    image += rng.normal(0.0, 0.02, image.shape)
    unc = np.full(image.shape, 0.02)
    segm, t = hii.find_regions(image, unc)
    assert np.allclose(hii.region_sums(image, segm, image, unc), t["flux"], rtol=1e-6)
    assert np.allclose(hii.region_sums(2 * image, segm, image, unc), 2 * t["flux"], rtol=1e-6)


# ---- the inner disc and close pairs (tests/hii_fields.py, not the demo) ---------------------
def _found_in_fields(seeds, **field):
    from tests.hii_fields import FWHM, make_field

    kinds, found_all, spurious, n_det, ratios, kind_of = [], [], 0, 0, [], []
    for seed in seeds:
        line, unc, truth, geo = make_field(seed, **field)
        model = hii.radial_residual(line, unc, x0=geo["x"], y0=geo["y"], pa_deg=geo["pa_deg"],
                                    inc_deg=geo["inclination_deg"], fwhm=FWHM)
        _, cat = hii.find_regions(line - model, unc, fwhm=FWHM, nsigma=5.0)
        d = np.hypot(np.asarray(cat["x"])[:, None] - truth["x"][None],
                     np.asarray(cat["y"])[:, None] - truth["y"][None])
        found = d.min(axis=0) < 2.0
        spurious += int(np.sum(d.min(axis=1) >= 2.0))
        n_det += len(cat)
        j = d.argmin(axis=0)
        ratios += list(np.asarray(cat["flux"])[j][found] / truth["flux"][found])
        kind_of += list(truth["kind"][found])
        found_all += list(found)
        kinds += list(truth["kind"])
    return (np.array(kinds), np.array(found_all), spurious, n_det, np.array(ratios),
            np.array(kind_of))


@pytest.mark.parametrize("geometry", [{"pa_deg": 35.0, "inc_deg": 50.0},
                                      {"pa_deg": 120.0, "inc_deg": 20.0, "bulge_scale": 14.0,
                                       "shape": (220, 220), "centre": (108.7, 112.2)}])
def test_inner_disc_and_close_pairs_are_found(geometry):
    """Fields with 6 regions 12-30 px from a bulge residual as bright as they are (peak
    6 e-/s per pixel) and 5 pairs 2-3.2 FWHM apart, in two geometries: >= 90 % of the
    inner regions, of the pairs and of the rest are found (the finder without the
    radial residual and deblending at the full seeing found 50 % and 12 % of the inner
    regions, 80 % and 72 % of the pairs), < 5 % of the detections are spurious, and
    the fluxes are right (median within 3 %, 85 % of them within 10 %)."""
    kinds, found, spurious, n_det, ratios, kind_of = _found_in_fields(range(4), **geometry)
    assert found.mean() >= 0.95
    for kind in ("inner", "pair", "disc"):
        assert found[kinds == kind].mean() >= 0.9, kind
    assert spurious / n_det < 0.05
    assert abs(np.median(ratios) - 1) < 0.03
    assert np.mean(np.abs(ratios - 1) < 0.10) >= 0.85
    assert abs(np.median(ratios[kind_of == "inner"]) - 1) < 0.05


def test_lf_slope_recovers_the_slope_of_a_truncated_power_law():
    """Regions drawn (by their quantiles, no noise) from dN/dlogL ~ L^-1 over 2 dex give b = -1."""
    b_true, a, c = -1.0, 38.0, 40.0
    q = (np.arange(400) + 0.5) / 400
    k = b_true * math.log(10)
    x = a + np.log1p(q * np.expm1(k * (c - a))) / k        # the inverse of the truncated CDF
    b, err, n = hii.lf_slope(10 ** x, lo=10 ** a, hi=10 ** c)
    assert n == 400 and b == pytest.approx(-1.0, abs=0.01)
    # the Fisher error of an exponential density in x: 1 / (ln 10 * std(x) * sqrt(n))
    assert err == pytest.approx(1 / (math.log(10) * np.std(x) * math.sqrt(n)), rel=0.15)
    # flat per dex (the demo's regions) is b = 0, told apart from -1 by many errors
    flat = a + q * (c - a)
    b0, err0, _ = hii.lf_slope(10 ** flat, lo=10 ** a, hi=10 ** c)
    assert b0 == pytest.approx(0.0, abs=0.01) and (b0 - b) / err0 > 8
    with pytest.raises(ReduxError):
        hii.lf_slope([1e38, 2e38], lo=1e38)


def test_choose_mode_says_what_09_can_do_and_why_not():
    assert hii.choose_mode({"Ha": 1, "R": 2}, halpha="Ha", continuum="R") == ("line", "Ha", "")
    assert hii.choose_mode({"Ha": 1, "R": 2}, halpha="Ha", continuum="R",
                           image_filter="R") == ("knots", "R", "")      # asked for: wins
    assert hii.choose_mode({"V": 1}, galaxy=True) == ("knots", "V", "")
    mode, filt, why = hii.choose_mode({"V": 1})                        # a field, not asked
    assert (mode, filt) == ("", None) and "set hii_image_filter" in why
    assert "no image at all" in hii.choose_mode({}, halpha="Ha")[2]
    with pytest.raises(ReduxError, match="hii_image_filter = 'B'.*it has: V"):
        hii.choose_mode({"V": 1}, image_filter="B")


def test_read_image_makes_an_uncertainty_from_the_sky_and_flags_nan(tmp_path):
    from astropy.io import fits

    rng = np.random.default_rng(4)
    data = 50.0 + rng.normal(0, 2.0, (80, 80))
    data[3, 4] = np.nan
    path = tmp_path / "elsewhere.fits"
    fits.PrimaryHDU(data.astype(np.float32)).writeto(path)
    im = hii.read_image(path)
    assert abs(np.nanmedian(im.data)) < 0.2                # its sky subtracted
    assert abs(im.sky_rms / 2.0 - 1) < 0.05 and "no UNCERT plane" in im.note and "no GAIN" in im.note
    assert im.mask[3, 4] > 0 and (im.mask > 0).sum() == 1
    fitsio.write_ccd(tmp_path / "ours.fits", data, uncertainty=np.full(data.shape, 3.0),
                     mask=np.zeros(data.shape, np.uint16))
    ours = hii.read_image(tmp_path / "ours.fits")
    assert ours.note == "its UNCERT plane" and ours.sky_rms == pytest.approx(3.0)
    assert np.nanmedian(ours.data) == pytest.approx(np.nanmedian(data))  # not sky subtracted again


def test_check_same_grid_refuses_another_size_or_a_shifted_wcs(axis_regions):
    _, wcs = axis_regions
    a = hii.Image(np.zeros((50, 60)), None, None, None, "", 1.0, "")
    with pytest.raises(ReduxError, match="Ha image is 60 x 50 px and the R image 61 x 50"):
        hii.check_same_grid(a, hii.Image(np.zeros((50, 61)), None, None, None, "", 1.0, ""),
                            names=("Ha", "R"))
    shifted = wcs.deepcopy()
    shifted.wcs.crpix = shifted.wcs.crpix + [0.8, 0.0]
    assert hii.check_same_grid(a, a, wcs=(wcs, wcs)) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ReduxError, match="differ by up to 0.8 px"):
        hii.check_same_grid(a, a, wcs=(wcs, shifted))
