"""Notebook 09 (HII regions) through papermill: the demo against its truth, real images, bad input.

One run of the whole chain on a 256 x 256 demo (conftest's ``demo_chain``, shared with
the tests of 10 and 11) is shared by the demo tests; each checks one "must hold" of the HII-region step
against what the demo was made from, recomputing what it needs from the written
products. Real images: the KPNO 0.9 m Hα and R coadds of a galaxy in Abell 1367 (from
Rose Finn's Hα survey, Siena College) and the IRAF ``dev$pix`` image of M51 (NOAO),
both from the shared real-data folder. Bad input runs 09 alone on a copy of the demo's
stacks with a spoiled manifest.
"""

import shutil

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.stats import sigma_clipped_stats
from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture, aperture_photometry
from photutils.detection import DAOStarFinder
from scipy import ndimage

from redux_helpers import demo, fitsio
from redux_helpers.errors import ReduxError
from redux_helpers.runner import run_target
from tests.conftest import REPO, demo_target, write_manifest

pytestmark = pytest.mark.notebooks

STEP = "09_hii_regions"


@pytest.fixture(scope="module")
def chain(demo_chain):
    """The chain 00-11 on the small demo (conftest's demo_chain): (products, truth)."""
    return demo_chain.products, demo_chain.truth


@pytest.fixture(scope="module")
def matched(chain):
    """The catalogue, the true regions on the stacks' grid, and who matches whom."""
    products, truth = chain
    cat = fitsio.read_table(products / STEP / "hii_regions.ecsv")
    line = fitsio.read_product(products / STEP / "halpha_line.fits")
    ref = line.header.get("REFFRAME")
    offset = truth["frames"][ref]["offset"] if ref else [0.0, 0.0]
    true = truth.table("hii_regions")
    tx, ty = np.asarray(true["x"]) - offset[0], np.asarray(true["y"]) - offset[1]
    d = np.hypot(np.asarray(cat["x"])[:, None] - tx[None], np.asarray(cat["y"])[:, None] - ty[None])
    return {"cat": cat, "line": line, "true": true, "tx": tx, "ty": ty,
            "nearest": d.argmin(axis=1), "close": d.min(axis=1) < 1.0, "dist": d.min(axis=1)}


def _stack(products, filt):
    """The stack 09 read: 08's calibrated copy, else 07's."""
    for step in ("08_photometry", "07_stack"):
        path = products / step / f"stack_{filt}.fits"
        if path.is_file():
            return fitsio.read_product(path)
    raise AssertionError(f"no stack of {filt}")


def test_continuum_scale_against_truth(chain):
    products, truth = chain
    h = fits.getheader(products / STEP / "halpha_line.fits")
    stars = fitsio.read_table(products / STEP / "continuum_scale.ecsv")
    assert h["CONTSRC"] == "stars" and h["LINEINC"] == pytest.approx(demo.LINE_IN_R)
    assert stars.meta["scale_used"] == pytest.approx(h["CONTSCAL"])
    assert abs(h["CONTSCAL"] / truth["cont_scale"] - 1) < 0.03, h["CONTSCAL"]
    assert 0 < h["CONTSERR"] < 0.03 * truth["cont_scale"]
    # the stars used are the stars of the truth, and their ratios are the stars' colours
    used = stars[stars["used"]]
    assert len(used) >= 5
    true_stars = truth.table("stars")
    d = np.hypot(np.asarray(used["x"])[:, None] - np.asarray(true_stars["x"])[None],
                 np.asarray(used["y"])[:, None] - np.asarray(true_stars["y"])[None])
    assert np.all(d.min(axis=1) < 1.0)
    true_ratio = np.asarray(true_stars["rate_Ha"] / true_stars["rate_R"])[d.argmin(axis=1)]
    assert np.median(np.abs(np.asarray(used["ratio"]) / true_ratio - 1)) < 0.02


def test_regions_above_5_sigma_are_found_where_they_are(chain, matched):
    """>= 90 % of the true regions above 5 sigma found within 1 px.

    A true region's sigma is the error of its flux in a circle of 2 FWHM: the line
    image's UNCERT summed in quadrature, and the continuum scale's error times the
    continuum under it (CONTSERR |F_R - q F_Ha| / (1 - s q)^2), recomputed here from
    the stacks.
    """
    products, _ = chain
    m = matched
    h = m["line"].header
    s, ds, q = h["CONTSCAL"], h["CONTSERR"], h["LINEINC"]
    r, ha = _stack(products, "R"), _stack(products, "Ha")
    circles = CircularAperture(np.c_[m["tx"], m["ty"]], r=2 * h["SEEING"])
    var = np.asarray(aperture_photometry(np.nan_to_num(m["line"].uncertainty) ** 2, circles)["aperture_sum"])
    f_r = np.asarray(aperture_photometry(np.nan_to_num(r.data), circles)["aperture_sum"])
    f_ha = np.asarray(aperture_photometry(np.nan_to_num(ha.data), circles)["aperture_sum"])
    err = np.sqrt(var + (ds * np.abs(f_r - q * f_ha) / (1 - s * q) ** 2) ** 2)
    above = np.asarray(m["true"]["halpha_rate"]) / err > 5
    assert above.sum() >= 10
    found = np.zeros(len(m["true"]), bool)
    found[m["nearest"][m["close"]]] = True
    assert found[above].mean() >= 0.9, f"{found[above].sum()} of {above.sum()} found"
    assert np.median(m["dist"][m["close"]]) < 0.1


def test_inner_disc_and_close_pairs_are_found(chain, matched):
    """The demo's hard regions: beside the bulge (r < 0.6 h) and pairs 7-11 px apart.

    Every one that is more than 2 sigma (its blob and the seeing, in quadrature, of both)
    from its neighbour is found within 1 px, and each pair's two regions are two
    entries of the catalogue.
    """
    _, truth = chain
    m, true = matched, matched["true"]
    h_px = truth["galaxy"]["scale_length_px"]
    seeing_sigma = m["line"].header["SEEING"] / 2.3548
    sig = np.hypot(np.asarray(true["sigma"]), seeing_sigma)
    d = np.hypot(m["tx"][:, None] - m["tx"][None], m["ty"][:, None] - m["ty"][None])
    np.fill_diagonal(d, np.inf)
    nearest = d.argmin(axis=1)
    apart = d.min(axis=1) > 2 * np.hypot(sig, sig[nearest])
    inner = np.asarray(true["r_disk"]) < 0.6 * h_px
    paired = d.min(axis=1) < 12
    found = np.zeros(len(true), bool)
    found[m["nearest"][m["close"]]] = True
    assert inner.sum() >= 3 and (paired & apart).sum() >= 4
    for name, group in (("inner-disc", inner & apart), ("paired", paired & apart)):
        assert found[group].mean() >= 0.9, f"{found[group].sum()} of {group.sum()} {name} regions found"


def test_region_fluxes_against_truth(matched):
    m = matched
    cat, close = m["cat"], m["close"]
    # the chain ran 08, so the Halpha stack is calibrated: fluxes in cgs, and in e-/s too
    assert str(cat["flux_cgs"].unit) == "erg / (s cm2)"
    for col, true_col in (("flux_cgs", "halpha_flux"), ("flux", "halpha_rate")):
        ratio = np.asarray(cat[col])[close] / np.asarray(m["true"][true_col])[m["nearest"][close]]
        assert abs(np.median(ratio) - 1) < 0.10, f"{col}: median measured/true {np.median(ratio):.3f}"


def test_few_spurious_regions(matched):
    cat, close = matched["cat"], matched["close"]
    assert len(cat) >= 10
    assert (~close).sum() < 0.05 * len(cat), f"{int((~close).sum())} of {len(cat)} match no true region"


def test_catalogue_columns_against_truth(chain, matched):
    """Radii, RA/Dec and luminosities follow from the positions and fluxes as they should."""
    _, truth = chain
    m = matched
    cat, close = m["cat"], m["close"]
    true = m["true"][m["nearest"][close]]
    # deprojected radius: the demo's own disk radius (r_disk, pixels)
    assert np.allclose(np.asarray(cat["r_gal_px"])[close], true["r_disk"], atol=0.5)
    kpc_per_px = demo.PIXEL_SCALE / 206264.806 * truth["galaxy"]["distance_mpc"] * 1e3
    assert np.allclose(cat["r_gal_kpc"], cat["r_gal_px"] * kpc_per_px, rtol=1e-3)
    sep = np.hypot((np.asarray(cat["ra"])[close] - true["ra"]) * np.cos(np.deg2rad(true["dec"])),
                   np.asarray(cat["dec"])[close] - true["dec"]) * 3600
    assert np.all(sep < 0.4)                             # 1 px = 0.4 arcsec
    d_cm = truth["galaxy"]["distance_mpc"] * 3.0856775814913673e24   # the demo gives a distance
    assert np.allclose(cat["luminosity"], 4 * np.pi * d_cm ** 2 * cat["flux_cgs"], rtol=1e-6)
    assert str(cat["luminosity"].unit) == "erg / s"
    for col in ("x", "y", "ra", "dec", "r_gal_kpc", "area_px", "r_eq_pc", "flux", "flux_err"):
        assert cat[col].unit is not None, col
    assert np.all(cat["flux_err"] >= cat["flux_err_stat"])


def test_products(chain, matched):
    from regions import Regions

    products, _ = chain
    out = products / STEP
    ccd = CCDData.read(out / "halpha_line.fits")             # the data contract
    assert ccd.unit == "electron / s" and ccd.uncertainty is not None
    with fits.open(out / "halpha_line.fits") as h:
        assert [x.name for x in h] == ["PRIMARY", "UNCERT", "MASK", "EXCLUDE"]
        assert h[0].header["REDXSTEP"] == STEP and h[0].header["NREGIONS"] == len(matched["cat"])
    regs = Regions.read(out / "hii_regions.reg", format="ds9")
    assert len(regs) == len(matched["cat"])
    for name in ("hii_bubbles_2d.html", "hii_bubbles_3d.html"):
        text = (out / name).read_text()
        assert "plotly" in text and f"id {matched['cat']['id'][0]}" in text
    assert (products / "notebooks" / f"{STEP}.ipynb").is_file()
    assert not list(products.rglob(".*tmp*"))


# ---- real images --------------------------------------------------------------------------
def test_a1367_scale_from_the_stars(realdata, tmp_path):
    """KPNO 0.9 m Hα and R coadds (SWarp, count rates, no UNCERT): the scale is the stars'.

    Run through 10, whose continuum-subtracted image is 09's (H - s R) with that scale.
    """
    run_target("a1367", manifest=REPO / "data_manifest.yaml", products=tmp_path, only="09,10",
               html=False)
    out = tmp_path / "a1367" / STEP
    stars = fitsio.read_table(out / "continuum_scale.ecsv")
    s, ds = stars.meta["scale_measured"], stars.meta["scale_measured_err"]
    assert np.isfinite(s) and np.isfinite(ds) and ds > 0
    assert stars.meta["n_used"] >= 3 and stars["used"].sum() >= 3
    assert fits.getheader(out / "halpha_line.fits")["CONTSCAL"] == pytest.approx(s)
    # the stars' scale and the image's own, each with an error that covers their difference;
    # the stars' (chosen) error is never below their scatter over sqrt(n)
    est = stars.meta["estimates"]
    assert set(est) >= {"stars", "image"} and stars.meta["scale_from"] == "stars"
    assert stars.meta["scale_used_err"] >= stars.meta["scatter"] / np.sqrt(stars.meta["n_used"])
    diff = abs(est["stars"]["scale"] - est["image"]["scale"])
    assert diff < 2 * np.hypot(est["stars"]["scale_err"], est["image"]["scale_err"])
    assert stars.meta["scale_agree"]
    # independently: the brightest stars away from the galaxy, r = 8 px sums less a ring
    folder = realdata / "kpno09m_halpha_a1367"
    r = fits.getdata(folder / "A1367-140222-R.fits").astype(float)
    ha = fits.getdata(folder / "A1367-140222-Ha.fits").astype(float)
    _, sky, rms = sigma_clipped_stats(r)
    found = DAOStarFinder(threshold=5 * rms, fwhm=5.0)(r - sky)
    found.sort("flux", reverse=True)
    smooth = ndimage.gaussian_filter(r - sky, 10.0)
    gy, gx = np.unravel_index(np.argmax(smooth), smooth.shape)
    x, y = np.asarray(found["x_centroid"]), np.asarray(found["y_centroid"])
    ny, nx = r.shape
    pick = (x > 19) & (x < nx - 20) & (y > 19) & (y < ny - 20) & (np.hypot(x - gx, y - gy) > 30)
    xy = np.c_[x, y][pick][:6]
    assert len(xy) >= 3
    aper, ring = CircularAperture(xy, r=8.0), CircularAnnulus(xy, 12.0, 18.0)

    def fluxes(img):
        return (np.asarray(aperture_photometry(img, aper)["aperture_sum"])
                - np.asarray(ApertureStats(img, ring).median) * aper.area)

    independent = float(np.median(fluxes(ha) / fluxes(r)))
    # the scale it replaced, 0.0341 +- 0.0033, was 0.0043 (1.3 of its sigma) from this one
    assert abs(s - independent) < ds, f"notebook {s:.4f} +- {ds:.4f}, by hand {independent:.4f}"
    assert len(fitsio.read_table(out / "hii_regions.ecsv")) >= 1
    # 10 writes 09's (Halpha - s R) as its continuum-subtracted image; no 08, so no flux
    # calibration, and no MUSE for this target, so no anchoring
    out10 = tmp_path / "a1367" / "10_halpha_muse"
    line = fitsio.read_product(out10 / "halpha_contsub.fits")
    assert line.header["CONTSCAL"] == pytest.approx(s) and line.header["CONTMODE"] == "ground"
    assert np.allclose(line.data, fits.getdata(out / "halpha_line.fits"), equal_nan=True)
    assert not (out10 / "anchor_fit.ecsv").exists()


def test_m51_knots(realdata, tmp_path):
    """The IRAF dev$pix image of M51 (B, no WCS, no Hα): knots in the image less its smooth light."""
    run_target("m51", manifest=REPO / "data_manifest.yaml", products=tmp_path, only="09",
               html=False)
    out = tmp_path / "m51" / STEP
    assert not (out / "halpha_line.fits").exists() and (out / "knots_image.fits").is_file()
    cat = fitsio.read_table(out / "hii_regions.ecsv")
    assert "knots" in cat.meta["kind"] and "not Halpha" in cat.meta["kind"]
    assert len(cat) >= 10
    img = fits.getdata(realdata / "misc_small" / "M51_devpix.fits").astype(float)
    ny, nx = img.shape
    x, y = np.asarray(cat["x"]), np.asarray(cat["y"])
    assert np.all((x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1))
    # on the galaxy: its light smoothed over 10 px well above the darkest corner's sky
    corners = [img[:40, :40], img[:40, -40:], img[-40:, :40], img[-40:, -40:]]
    darkest = min(corners, key=np.median)
    sky, rms = np.median(darkest), np.std(darkest)
    light = ndimage.gaussian_filter(img, 10.0)[np.round(y).astype(int), np.round(x).astype(int)] - sky
    assert np.all(light > 5 * rms / (2 * np.sqrt(np.pi) * 10.0))
    # the brightest knots are local maxima of the image less a running median (21 px); the
    # bulge's sharp core, which no smooth model follows, breaks into pieces and is left aside
    residual = ndimage.gaussian_filter(img - ndimage.median_filter(img, size=21), 1.0)
    peaks = (residual == ndimage.maximum_filter(residual, size=5)) & (residual > 10 * rms)
    py, px = np.nonzero(peaks)
    x0, y0 = cat.meta["galaxy"]["x0"], cat.meta["galaxy"]["y0"]
    cat.sort("flux", reverse=True)
    disc = cat[np.hypot(cat["x"] - x0, cat["y"] - y0) > 30][:5]
    for row in disc:
        d = np.min(np.hypot(px - row["x"], py - row["y"]))
        assert d < 2.0, f"knot {row['id']} at ({row['x']:.1f}, {row['y']:.1f}): nearest peak {d:.1f} px"


# ---- bad input: one clear message, nothing half-written -----------------------------------
@pytest.fixture()
def stacks_only(chain, small_demo, tmp_path):
    """A fresh products folder holding only the demo's stacks (07, 08)."""
    products, _ = chain
    dst = tmp_path / "products" / "demo"
    for step in ("07_stack", "08_photometry"):
        if (products / step).is_dir():
            shutil.copytree(products / step, dst / step)
    return tmp_path


@pytest.mark.parametrize(("galaxy", "message"), [
    ({"dec": -1.2831}, "is outside the image of 256 x 256 pixels"),
    ({"distance_mpc": -1}, "galaxy distance_mpc must be positive; got -1"),
])
def test_bad_galaxy_is_refused_and_nothing_is_written(small_demo, stacks_only, galaxy, message):
    root, truth = small_demo
    m = write_manifest(stacks_only / "bad.yaml", {"demo": demo_target(root, truth, **galaxy)})
    with pytest.raises(ReduxError) as err:
        run_target("demo", manifest=m, products=stacks_only / "products", only="09", html=False)
    text = str(err.value)
    assert text.startswith(f"{STEP}: ") and message in text and "Traceback" not in text
    out = stacks_only / "products" / "demo" / STEP
    assert not out.exists() or not any(out.iterdir())
    assert not list((stacks_only / "products").rglob(".*tmp*"))


def test_nothing_to_do_without_halpha_or_a_single_image(chain, tmp_path):
    """Two images and no Hα/continuum roles: 09 says so, and writes nothing."""
    products, _ = chain
    m = write_manifest(tmp_path / "m.yaml", {"twostacks": {
        "stacks": {"B": str(products / "07_stack" / "stack_R.fits"),
                   "V": str(products / "07_stack" / "stack_Ha.fits")}}})
    run_target("twostacks", manifest=m, products=tmp_path / "products", only="09", html=False)
    nb = (tmp_path / "products" / "twostacks" / "notebooks" / f"{STEP}.ipynb").read_text()
    assert "09 has nothing to do" in nb and "Nothing is written" in nb
    assert not (tmp_path / "products" / "twostacks" / STEP).exists()
