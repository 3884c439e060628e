"""Sky models on frames whose sky is known: synthetic arrays and the small demo."""

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from redux_helpers import background
from redux_helpers.demo import gauss_stamps
from redux_helpers.errors import ReduxError

SHAPE = (200, 240)
READ_NOISE = 9.0


def _noisy(expected, seed):
    rng = np.random.default_rng(seed)
    return rng.poisson(expected).astype(float) + rng.normal(0.0, READ_NOISE, expected.shape)


@pytest.fixture(scope="module")
def field():
    """A tilted sky, a compact galaxy and stars, with Poisson and read noise."""
    rng = np.random.default_rng(3)
    ny, nx = SHAPE
    yy, xx = np.mgrid[0:ny, 0:nx]
    sky = 2000.0 + 0.8 * (xx - nx / 2) - 0.5 * (yy - ny / 2)   # e-: a gradient of ~300 e-
    objects = np.zeros(SHAPE)
    gx, gy = 120.0, 100.0
    objects += 3000.0 * np.exp(-np.hypot(xx - gx, yy - gy) / 6.0)   # a small galaxy
    sx, sy = rng.uniform(5, nx - 5, 40), rng.uniform(5, ny - 5, 40)
    gauss_stamps(objects, sx, sy, rng.uniform(2e3, 2e5, 40), 1.5)
    data = _noisy(sky + objects, 4)
    sigma = np.sqrt(sky + READ_NOISE ** 2)
    far = np.hypot(xx - gx, yy - gy) > 60
    quiet = far & (objects < 0.3 * sigma)              # sky pixels: far from every object
    return data, sky, objects, sigma, quiet


def test_box_model_leaves_zero_mean_sky(field):
    data, sky, objects, sigma, quiet = field
    src = background.source_mask(data, nsigma=2.0, npixels=10, dilate=5)
    model, rms = background.sky_model(data, bad=src, method="box", box_size=40)
    z = (data - model - objects) / sigma
    assert abs(np.mean(z[quiet])) < 0.1
    # without the median filter over boxes (which flattens a gradient at the edges) the
    # gradient is followed to a small fraction of sigma half a box from the edges
    model, _ = background.sky_model(data, bad=src, method="box", box_size=40, filter_size=1)
    inner = (slice(20, -20), slice(20, -20))
    assert np.max(np.abs(model - sky)[inner] / sigma[inner]) < 0.3
    assert rms.shape == SHAPE and abs(np.median(rms) / np.median(sigma) - 1) < 0.1


def test_the_source_mask_is_what_makes_the_sky_right(field):
    data, sky, objects, sigma, quiet = field
    model, _ = background.sky_model(data, method="constant", sigma=10.0)   # nothing masked
    masked, _ = background.sky_model(
        data, bad=background.source_mask(data, dilate=5), method="constant", sigma=10.0)
    centre = float(np.median(sky))
    assert (model[0, 0] - centre) / np.median(sigma) > 0.1            # objects pull it up
    assert abs(masked[0, 0] - centre) / np.median(sigma) < 0.05


def test_plane_recovers_the_gradient(field):
    data, sky, objects, sigma, quiet = field
    src = background.source_mask(data, dilate=5)
    model, rms = background.sky_model(data, bad=src, method="plane")
    assert np.max(np.abs(model - sky)) < 0.1 * np.median(sigma)
    assert isinstance(rms, float) and abs(rms / np.median(sigma) - 1) < 0.05


def test_plane_is_the_least_squares_plane_of_the_kept_pixels():
    """The plane summed by rows and columns is the least-squares fit over the pixels kept."""
    rng = np.random.default_rng(3)
    ny, nx = 150, 230
    yy, xx = np.mgrid[0:ny, 0:nx]
    data = 500.0 + 0.3 * xx - 0.7 * yy + rng.normal(0, 4.0, (ny, nx))
    bad = rng.random((ny, nx)) < 0.3
    model, _ = background.sky_model(data, bad=bad, method="plane", sigma=50.0)  # no clipping
    design = np.column_stack([np.ones((~bad).sum()), xx[~bad], yy[~bad]])
    coef = np.linalg.lstsq(design, data[~bad], rcond=None)[0]
    np.testing.assert_allclose(model, coef[0] + coef[1] * xx + coef[2] * yy, rtol=1e-10)


def test_source_mask_covers_stars_and_grows_by_dilate():
    rng = np.random.default_rng(0)
    img = rng.normal(0.0, 1.0, (80, 80))
    img[38:43, 38:43] += 200.0                       # a 5x5 block at 200 sigma
    for dilate in (0, 3, 6):
        m = background.source_mask(img, smooth_fwhm=0, dilate=dilate)
        width = int(m[40].sum())
        assert abs(width - (5 + 2 * dilate)) <= 1, (dilate, width)
        assert m.sum() < (5 + 2 * dilate + 2) ** 2
    # the source that covers except_at is left out; the others stay
    img[10:13, 60:63] += 200.0
    m = background.source_mask(img, smooth_fwhm=0, dilate=0, except_at=(40, 40))
    assert not m[40, 40] and m[11, 61]


def test_no_sources_gives_an_empty_mask():
    img = np.random.default_rng(2).normal(100.0, 1.0, (50, 50))
    empty = background.source_mask(img, nsigma=6.0)
    assert empty.shape == img.shape and empty.dtype == bool and not empty.any()
    img[20:25, 30:35] += 50.0                  # the same noise with one source: it is found
    found = background.source_mask(img, nsigma=6.0, dilate=2)
    assert found[22, 32] and not found[5, 5] and 25 <= found.sum() <= 200  # smoothed, dilated


def test_nan_region_is_filled_and_input_untouched(field):
    data, sky, objects, sigma, quiet = field
    holed = data.copy()
    holed[20:120, 30:110] = np.nan                  # a quarter of the frame without data
    before = holed.copy()
    src = background.source_mask(holed, dilate=5)
    model, _ = background.sky_model(holed, bad=src, method="box", box_size=40)
    assert np.all(np.isfinite(model))
    assert np.max(np.abs(model - sky)[20:120, 30:110]) < 0.5 * np.median(sigma)
    assert np.array_equal(before, holed, equal_nan=True)


def test_all_nan_frame_is_a_clear_error():
    data = np.full((64, 64), np.nan)
    with pytest.raises(ReduxError, match="no usable pixel"):
        background.sky_model(data)
    with pytest.raises(ReduxError, match="no usable pixel"):
        background.source_mask(data)


def test_too_little_sky_names_what_to_change():
    data = np.random.default_rng(1).normal(100.0, 3.0, (64, 64))
    mask = np.ones(data.shape, bool)
    mask[:5, :5] = False                            # 25 sky pixels of 4096
    with pytest.raises(ReduxError, match="nsigma.*dilate"):
        background.sky_model(data, bad=mask, method="box")


def test_every_box_masked_names_box_size():
    data = np.random.default_rng(1).normal(100.0, 3.0, (128, 128))
    mask = np.zeros(data.shape, bool)
    mask[::2, :] = True                             # every box 50 % masked, with a 10 % limit
    with pytest.raises(ReduxError, match="box_size.*method"):
        background.sky_model(data, bad=mask, method="box", box_size=32, exclude_percentile=10)


def test_unknown_method():
    with pytest.raises(ValueError, match="sky method"):
        background.sky_model(np.ones((10, 10)), method="spline")


def _disc_frame(seed=5, sky_level=4500.0):
    """An inclined exponential disc that fills the frame, on a constant sky."""
    ny, nx = 256, 256
    r = background.elliptical_radius((ny, nx), (130.0, 125.0), axis_ratio=0.6, theta_deg=30.0)
    disc = 18000.0 * np.exp(-r / 21.0)
    rng = np.random.default_rng(seed)
    stars = np.zeros((ny, nx))
    gauss_stamps(stars, rng.uniform(5, nx - 5, 30), rng.uniform(5, ny - 5, 30),
                  rng.uniform(5e3, 2e5, 30), 1.4)
    data = _noisy(sky_level + disc + stars, seed)
    return data, disc, sky_level, np.sqrt(sky_level + READ_NOISE ** 2)


def test_radial_sky_sees_under_a_galaxy_that_fills_the_frame():
    data, disc, sky_level, sigma = _disc_frame()
    others = background.source_mask(data, dilate=3, except_at=(130, 125))
    g, info = background.radial_sky(data, (130.0, 125.0), rmax=400, rmin=64, bad=others,
                                    axis_ratio=0.6, theta_deg=30.0)
    assert abs(g - sky_level) < 0.05 * sigma
    assert abs(-info.model.tau_0.value - 21.0) < 1.5       # the disc's scale length
    assert 0.5 < info.chi2 < 2.0 and 0 < info.offset_error < 0.05 * sigma
    assert info.fitted.sum() >= 5 and np.all(info.radius[info.fitted] >= 64)
    # a masked-sky estimate takes the disc's faint outskirts for sky
    masked, _ = background.sky_model(data, bad=background.source_mask(data, dilate=5),
                                     method="constant")
    assert (masked[0, 0] - sky_level) / sigma > 0.1


def test_radial_sky_too_few_rings_is_a_clear_error():
    data, *_ = _disc_frame()
    with pytest.raises(ReduxError, match="rings"):
        background.radial_sky(data, (130.0, 125.0), rmax=20, rmin=12)


def test_galaxy_geometry_from_a_north_up_wcs():
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [245.45, -2.28]
    w.wcs.crpix = [101.0, 51.0]
    w.wcs.cd = np.array([[-0.4, 0.0], [0.0, 0.4]]) / 3600
    geo = background.galaxy_geometry(w, ra=245.45, dec=-2.28, pa_deg=58.0, inclination_deg=55.0)
    assert geo["x"] == pytest.approx(100.0) and geo["y"] == pytest.approx(50.0)
    assert geo["theta_deg"] == pytest.approx(148.0, abs=0.1)   # PA from north, through east
    assert geo["axis_ratio"] == pytest.approx(np.cos(np.deg2rad(55.0)))
    assert background.galaxy_geometry(w, ra=245.45, dec=-2.28)["axis_ratio"] == 1.0


def test_demo_frame_radial_sky_against_truth(small_demo):
    """A demo light frame (sky + objects, noise): G within 0.1 sigma of the true sky."""
    root, truth = small_demo
    stem = "ngc_demo_R_002"                                   # a dithered frame
    t = truth["frames"][f"{stem}.fits"]["exptime"]
    sky_level = truth["sky_rate"]["R"] * t
    data = _noisy(truth.frame_rate(stem) * t, 11)
    sigma = np.sqrt(sky_level + READ_NOISE ** 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(fits.getheader(root / "raw" / f"{stem}.fits")).celestial
    gal = truth["galaxy"]
    geo = background.galaxy_geometry(wcs, ra=gal["ra"], dec=gal["dec"], pa_deg=gal["pa_deg"],
                                     inclination_deg=gal["inclination_deg"])
    centre = (geo["x"], geo["y"])
    others = background.source_mask(data, dilate=5, except_at=centre)
    g, _ = background.radial_sky(data, centre, rmax=500, rmin=64, bad=others,
                                 axis_ratio=geo["axis_ratio"], theta_deg=geo["theta_deg"])
    assert abs(g - sky_level) / sigma < 0.1
    src = background.source_mask(data, dilate=5)
    box, _ = background.sky_model(data, bad=src, method="box", box_size=64)
    assert (np.median(box) - sky_level) / sigma > 0.1        # why 05 fits the profile


def test_find_galaxy_centre_and_not_in_a_star_field(field):
    data, *_ = _disc_frame()
    found = background.find_galaxy(data)
    assert found is not None and found["fraction"] > 0.1
    assert np.hypot(found["x"] - 130.0, found["y"] - 125.0) < 0.5
    stars_only, sky, objects, *_ = field
    far_from_galaxy = stars_only[:, :60]                      # stars on a sky, no galaxy
    assert background.find_galaxy(far_from_galaxy) is None


# ---- the sky a frame supports: checks and the chooser ---------------------------------
SKY_E = 2400.0


def _inclined_disc(shape, centre, h, mu0, q, theta, seed):
    """Sky + an inclined exponential disc (with a small bulge) + stars + noise, in e-."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    t = np.deg2rad(theta)
    dx, dy = xx - centre[0], yy - centre[1]
    r = np.hypot(np.cos(t) * dx + np.sin(t) * dy, (-np.sin(t) * dx + np.cos(t) * dy) / q)
    objects = mu0 * np.exp(-r / h) + 4 * mu0 * np.exp(-r / (0.12 * h))
    n = 50
    gauss_stamps(objects, rng.uniform(10, nx - 10, n), rng.uniform(10, ny - 10, n),
                  rng.uniform(3e3, 3e5, n), 1.5)
    return _noisy(SKY_E + objects, seed + 1)


def _geo(data):
    found = background.find_galaxy(data, min_fraction=0.05)
    assert found is not None
    return {k: found[k] for k in ("x", "y", "axis_ratio", "theta_deg")}


@pytest.fixture(scope="module")
def small_galaxy():
    """A galaxy covering a few per cent of a 640 x 512 frame (h = 22 px)."""
    return _inclined_disc((512, 640), (300.4, 270.7), 22.0, 3000.0, 0.75, 30.0, 31)


@pytest.fixture(scope="module")
def filling_galaxy():
    """A galaxy filling a 512 x 448 frame: its disc is ~2 % of the sky at the corners."""
    return _inclined_disc((448, 512), (250.6, 230.2), 80.0, 3600.0, 0.8, -20.0, 32)


def test_find_galaxy_measures_its_shape(small_galaxy):
    geo = _geo(small_galaxy)
    assert abs(geo["x"] - 300.4) < 1.5 and abs(geo["y"] - 270.7) < 1.5
    assert abs(geo["axis_ratio"] - 0.75) < 0.05
    assert abs(geo["theta_deg"] - 30.0) < 5.0


def test_small_galaxy_on_a_large_frame_gets_a_right_sky(small_galaxy):
    choice = background.sky_for_frame(small_galaxy, geo=_geo(small_galaxy), choice="auto")
    level = float(np.median(choice.model))
    assert abs(level / SKY_E - 1) < 0.005, (choice.method, level, choice.reason)
    if choice.method == "radial":
        # the fit started from the galaxy's own scale length, not a fraction of the frame
        assert abs(choice.scale_length - 22.0) < 3.0 and choice.rmin < 60
    else:
        assert choice.reason.startswith("radial fit not trusted")


def test_galaxy_that_fills_the_frame_gets_the_radial_sky(filling_galaxy):
    choice = background.sky_for_frame(filling_galaxy, geo=_geo(filling_galaxy), choice="auto")
    assert choice.method == "radial", choice.reason
    assert abs(choice.offset / SKY_E - 1) < 0.005
    # the masked sky is far above: it is what a box model would have subtracted
    assert choice.masked_level > SKY_E * 1.03
    box = background.sky_for_frame(filling_galaxy, geo=_geo(filling_galaxy),
                                   choice="sky_method")
    assert box.method == "box" and np.median(box.model) > SKY_E * 1.03


def _fit_reasons(image, geo, *, rmin):
    """check_radial_fit's reasons for a radial fit of ``image`` started at ``rmin`` px."""
    _, info = background.fit_radial_from_galaxy(image, (geo["x"], geo["y"]), rmin=rmin,
                                                axis_ratio=geo["axis_ratio"],
                                                theta_deg=geo["theta_deg"])
    return background.check_radial_fit(info, pixel_noise=np.sqrt(SKY_E))


def test_a_fit_started_where_the_disc_has_faded_is_not_trusted(small_galaxy):
    geo = _geo(small_galaxy)
    # the old default: 0.25 x the frame width = 160 px, 7 scale lengths out
    reasons = _fit_reasons(small_galaxy, geo, rmin=160)
    assert any("faded before the fit starts" in r for r in reasons), reasons
    forced = background.sky_for_frame(small_galaxy, geo=geo, choice="radial", rmin=160)
    assert forced.method == "radial" and "checks failed" in forced.reason
    auto = background.sky_for_frame(small_galaxy, geo=geo, choice="auto", rmin=160)
    assert auto.method == "box" and "faded before the fit starts" in auto.reason


def test_a_short_fitted_range_is_not_trusted(filling_galaxy):
    geo = _geo(filling_galaxy)
    # from 3 scale lengths out the frame's corners are ~1 scale length further
    reasons = _fit_reasons(filling_galaxy, geo, rmin=240)
    assert reasons and any("does not reach the sky" in r or "faded" in r or "uncertain" in r
                           for r in reasons)


def test_check_against_masked_both_ways():
    noise = 50.0
    # G + the modelled galaxy light in the unmasked pixels = the masked level: agree
    assert background.check_against_masked(2400.0, 0.5, 2585.0, 0.3, pixel_noise=noise,
                                            galaxy_light=184.0) == ""
    # a G that took galaxy light for sky (the bug: 2-3 x the sky) is named, and why
    high = background.check_against_masked(4800.0, 5.0, 2585.0, 0.3, pixel_noise=noise,
                                           galaxy_light=2.0)
    assert "above" in high and "took galaxy light for sky" in high
    low = background.check_against_masked(2300.0, 0.5, 2410.0, 0.3, pixel_noise=noise)
    assert "below" in low
    # within the larger of 3 errors and 0.2 pixel sigma: not named
    assert background.check_against_masked(2400.0, 0.5, 2409.0, 0.3, pixel_noise=noise) == ""


def test_rate_outliers_names_the_frame():
    names = [f"r{k}" for k in range(6)]
    rates = [80.1, 79.8, 80.4, 80.0, 185.0, 79.9]
    found = background.rate_outliers(names, rates)
    assert list(found) == ["r4"] and "+131 %" in found["r4"]
    # a difference within 5 errors is not an outlier, however large
    assert background.rate_outliers(names, rates, errors=[1, 1, 1, 1, 30, 1]) == {}
    assert background.rate_outliers(["a"], [3.0]) == {}


def test_box_medians_are_the_unsmoothed_clipped_medians_of_the_sky_pixels():
    """05's box median by hand: the grid before filtering, masked pixels left out."""
    from astropy.stats import sigma_clip

    rng = np.random.default_rng(11)
    img = rng.normal(100.0, 2.0, (64, 96))
    mask = np.zeros(img.shape, bool)
    img[:32, :13] += 5.0                    # 40 % of box [0, 0], a little brighter: masked
    mask[:32, :13] = True
    img[32:, 64:] += 20.0                   # box [1, 2] stands out: a 3x3 filter would drop it
    mask[:32, 32:52] = True                 # 62 % of box [0, 1] masked: left out
    img[40, 40] = 1e5                       # clipped
    before = img.copy()
    grid = background.box_medians(img, bad=mask, box_size=32)
    assert grid.shape == (2, 3) and np.array_equal(img, before)
    assert np.isnan(grid[0, 1])
    for j, i in ((0, 0), (1, 1), (1, 2)):
        rows, cols = slice(32 * j, 32 * j + 32), slice(32 * i, 32 * i + 32)
        want = np.median(sigma_clip(img[rows, cols][~mask[rows, cols]], sigma=3.0,
                                    maxiters=10).compressed())
        assert grid[j, i] == pytest.approx(want, rel=1e-9)
    assert abs(grid[0, 0] - 100.0) < 0.3 and abs(grid[1, 2] - 120.0) < 0.3


def test_mesh_image_is_photutils_background_image():
    """`smoothing.mesh_image` gives Background2D's own images (its cubic zoom, cropped and
    clipped) on a frame that is no multiple of its boxes, with boxes left out by a mask."""
    from photutils.background import Background2D, MedianBackground

    from redux_helpers.smoothing import mesh_image

    rng = np.random.default_rng(4)
    y, x = np.mgrid[:300, :517]
    img = 100 + 0.02 * x + 0.05 * y + 8 * np.sin(x / 60.0) + rng.normal(0, 3, x.shape)
    bad = np.zeros(img.shape, bool)
    bad[100:180, 200:330] = True                  # whole boxes masked: filled by photutils
    bkg = Background2D(img, (32, 40), mask=bad, filter_size=3,
                       bkg_estimator=MedianBackground())
    for which in ("background", "background_rms"):
        ours, theirs = mesh_image(bkg, img.shape, which), getattr(bkg, which)
        assert ours.shape == theirs.shape == img.shape
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)
    assert np.ptp(bkg.background) > 10           # a model with structure to get wrong


def test_segments_are_photutils_detect_sources():
    """`background.segments` gives photutils' own segmentation: 8-connected groups of at
    least npixels above the threshold, outside the mask, numbered alike; None for none."""
    from photutils.segmentation import detect_sources
    from scipy import ndimage

    rng = np.random.default_rng(8)
    for shape, npixels in (((120, 150), 5), ((64, 64), 1), ((200, 90), 12)):
        img = ndimage.gaussian_filter(rng.normal(0.0, 1.0, shape), 1.5)
        mask = rng.random(shape) < 0.02
        threshold = 2.0 * img.std()
        want = detect_sources(img, threshold, npixels, mask=mask)
        got = background.sources.segments((img > threshold) & ~mask, npixels)
        assert want is not None and want.n_labels > 3
        np.testing.assert_array_equal(got.data, want.data)
        assert list(got.labels) == list(want.labels)
        np.testing.assert_array_equal(got.areas, want.areas)
    assert background.sources.segments(np.zeros((20, 20), bool), 3) is None
    lone = np.zeros((20, 20), bool)
    lone[5, 5] = True
    assert background.sources.segments(lone, 2) is None
