"""Notebooks 00-08 through papermill on a small demo with a rotated frame, checked against its truth.

The session's one run of the chain (conftest's ``demo_chain``: a 256 x 256 demo whose
last light of each filter is rotated by 2 degrees) is shared by the tests of this
module; each checks one "must hold" of the stacking step against what the demo was made
from. A second run of 07 alone, on a copy of the products spoiled on purpose (a frame of
another field, one that barely overlaps, one whose header names another filter, a frame
half NaN, a frame of another binning), checks that bad frames are left out with their
reason and never stop the run.
"""

import shutil

import numpy as np
import pytest
import yaml
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.wcs import WCS
from photutils.aperture import CircularAperture, aperture_photometry

from redux_helpers import demo, fitsio, provenance
from redux_helpers.register import Transform
from redux_helpers.runner import run_target
from redux_helpers.stack import resample
from tests.conftest import ROTATION  # the chain demo's rotation

pytestmark = pytest.mark.notebooks

SHIFT = 140      # pixels a spoiled frame is moved by (256 - 140 = 116 columns overlap)


@pytest.fixture(scope="module")
def chain(demo_chain):
    """The session's chain on the rotated demo (conftest): (products, truth, manifest)."""
    return demo_chain.products, demo_chain.truth, demo_chain.manifest


def _true_map(truth, name, shape):
    """Frame -> demo grid: q = R(theta) (p - c) + c + offset, c the frame centre."""
    facts = truth["frames"][name]
    t = np.deg2rad(facts["rotation_deg"])
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    c = (np.array(shape[::-1]) - 1) / 2
    return Transform(rot, c + np.asarray(facts["offset"]) - rot @ c)


def _from_row(r):
    t = np.deg2rad(r["rotation_deg"])
    m = r["scale"] * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    if r["flipped"]:
        m = m @ np.diag([-1.0, 1.0])
    return Transform(m, np.array([r["dx"], r["dy"]]), str(r["method"]))


def _grid_error(a, b, shape):
    yy, xx = np.mgrid[0:shape[0]:10j, 0:shape[1]:10j]
    ax, ay = a.apply(xx, yy)
    bx, by = b.apply(xx, yy)
    return float(np.sqrt(np.mean((ax - bx) ** 2 + (ay - by) ** 2)))


@pytest.fixture(scope="module")
def on_grid(chain):
    """Per filter: the stack, the truth scene on its grid, and where the sources are."""
    products, truth, _ = chain
    ref = fitsio.read_product(products / "07_stack" / "stack_R.fits")
    shape = ref.data.shape
    to_demo = _true_map(truth, ref.header["REFFRAME"], shape)
    inv = np.linalg.inv(to_demo.matrix)
    from_demo = Transform(inv, -inv @ to_demo.offset)
    stars, hii = truth.table("stars"), truth.table("hii_regions")
    sx, sy = from_demo.apply(stars["x"], stars["y"])
    hx, hy = from_demo.apply(hii["x"], hii["y"])
    yy, xx = np.indices(shape)
    near = np.zeros(shape, bool)
    for x, y in zip(np.r_[sx, hx], np.r_[sy, hy], strict=True):
        near |= np.hypot(xx - x, yy - y) < 8
    gx, gy = from_demo.apply(truth["galaxy"]["x"], truth["galaxy"]["y"])
    far = np.hypot(xx - gx, yy - gy) > 3 * truth["galaxy"]["scale_length_px"]
    out = {}
    for f in ("R", "Ha"):
        s = fitsio.read_product(products / "07_stack" / f"stack_{f}.fits")
        with fits.open(products / "07_stack" / f"stack_{f}.fits") as h:
            coverage = h["COVERAGE"].data.astype(int)
        scene = resample(truth.image(f"scene_{f}"), np.zeros(shape), None, from_demo, shape).data
        out[f] = {"stack": s, "scene": scene, "coverage": coverage}
    return out, {"sx": sx, "sy": sy, "R": np.asarray(stars["R"]), "near": near, "far": far}


def test_registration_against_truth(chain):
    products, truth, _ = chain
    reg = fitsio.read_table(products / "07_stack" / "registration.ecsv")
    assert len(reg) == 8 and all(reg["used"]) and set(reg["filter"]) == {"R", "Ha"}
    assert {"file", "filter", "used", "reason", "method", "dx", "dy", "rotation_deg",
            "scale", "n_stars", "residual_px"} <= set(reg.colnames)
    shape = tuple(truth["trimmed_shape"])
    ref_name = reg["file"][reg["method"] == "reference"][0]
    to_ref = _true_map(truth, ref_name, shape)
    inv = np.linalg.inv(to_ref.matrix)
    for r in reg:
        t = _true_map(truth, r["file"], shape)
        true = Transform(inv @ t.matrix, inv @ (t.offset - to_ref.offset))
        assert str(r["method"]).startswith(("wcs+stars", "stars", "reference")), r["file"]
        err = _grid_error(_from_row(r), true, shape)
        assert err < 0.05, f"{r['file']}: registration error {err:.3f} px"


def test_rotated_frames_are_recovered(chain):
    products, truth, _ = chain
    reg = fitsio.read_table(products / "07_stack" / "registration.ecsv")
    turned = [r for r in reg if truth["frames"][r["file"]]["rotation_deg"] != 0]
    assert len(turned) == 2               # the last light of each filter
    for r in turned:
        assert "similarity" in r["method"], r["method"]
        assert abs(r["rotation_deg"] - ROTATION) < 0.02, r["rotation_deg"]
        assert abs(r["scale"] - 1) < 1e-3


@pytest.mark.parametrize("filt", ["R", "Ha"])
def test_star_fluxes_against_truth(on_grid, filt):
    """Unsaturated bright stars (16.5 < R < 18.5): aperture r = 8 px, stack vs true scene."""
    grids, src = on_grid
    g = grids[filt]
    ny, nx = g["scene"].shape
    pick = (src["R"] > 16.5) & (src["R"] < 18.5) & (src["sx"] > 10) & (src["sx"] < nx - 11) \
        & (src["sy"] > 10) & (src["sy"] < ny - 11)
    aper = CircularAperture(np.c_[src["sx"][pick], src["sy"][pick]], r=8.0)
    got = np.asarray(aperture_photometry(np.nan_to_num(g["stack"].data), aper)["aperture_sum"])
    want = np.asarray(aperture_photometry(g["scene"], aper)["aperture_sum"])
    holes = np.asarray(aperture_photometry((g["coverage"] == 0).astype(float), aper)["aperture_sum"])
    ratio = (got / want)[holes == 0]
    assert len(ratio) >= 4
    assert abs(np.median(ratio) - 1) < 0.01, f"{filt}: stack/truth {np.median(ratio):.4f}"


@pytest.mark.parametrize("filt", ["R", "Ha"])
def test_no_cosmic_ray_or_bad_column_survives(on_grid, chain, filt):
    grids, src = on_grid
    _, truth, _ = chain
    g = grids[filt]
    s = g["stack"]
    z = (s.data - g["scene"]) / s.uncertainty
    covered = (g["coverage"] > 0) & np.isfinite(z) & ~src["near"]
    high = covered & (z > 5)
    assert high.sum() / covered.sum() < 1e-4, f"{filt}: {int(high.sum())} pixels above 5 sigma"
    # the dead columns of the reference and the manifest's column 30 are filled, and right
    for c in [*truth["dead_columns"], 29]:
        col = covered[:, c]
        assert np.all(np.isfinite(s.data[:, c][g["coverage"][:, c] > 0]))
        assert np.all(np.abs(z[col, c]) < 5)


@pytest.mark.parametrize("filt", ["R", "Ha"])
def test_uncertainty_matches_the_scatter(on_grid, filt):
    grids, src = on_grid
    g = grids[filt]
    s = g["stack"]
    z = (s.data - g["scene"]) / s.uncertainty
    sky = (g["coverage"] > 0) & (s.mask == 0) & ~src["near"] & np.isfinite(z) \
        & (g["scene"] < 0.5 * s.uncertainty)
    assert sky.sum() > 10000
    assert abs(np.std(z[sky]) - 1) < 0.1, f"{filt}: std {np.std(z[sky]):.3f}"
    # the sky of the stack is zero away from the galaxy, to a tenth of its noise
    assert abs(np.mean(z[sky & src["far"]])) < 0.1


def test_background_sky_is_zero_away_from_the_galaxy(chain):
    """05's frames: (frame - sky - objects)/UNCERT averages to within 0.1 of zero."""
    products, truth, _ = chain
    g = truth["galaxy"]
    for path in sorted((products / "05_background").glob("ngc_demo_*.fits")):
        p = fitsio.read_product(path)
        stem = path.name.removesuffix(".fits")
        objects = (truth.frame_rate(stem) - truth["sky_rate"][p.header["FILTER"]]) \
            * p.header["EXPTIME"]
        gx, gy = WCS(p.header).celestial.world_to_pixel_values(g["ra"], g["dec"])
        yy, xx = np.indices(p.data.shape)
        far = np.hypot(xx - gx, yy - gy) > 3 * g["scale_length_px"]
        sky = far & (p.mask == 0) & (objects < 0.5 * p.uncertainty)
        z = ((p.data - objects) / p.uncertainty)[sky]
        assert abs(np.mean(z)) < 0.1, f"{path.name}: {np.mean(z):+.3f}"


def test_stack_products(chain):
    products, truth, _ = chain
    headers = {}
    for f in ("R", "Ha"):
        path = products / "07_stack" / f"stack_{f}.fits"
        ccd = CCDData.read(path)                       # the data contract
        assert ccd.unit == "electron / s" and ccd.uncertainty is not None
        with fits.open(path) as h:
            assert [x.name for x in h] == ["PRIMARY", "UNCERT", "MASK", "EXPOSURE", "COVERAGE"]
            hdr, exposure, coverage = h[0].header, h["EXPOSURE"].data, h["COVERAGE"].data
        assert hdr["REDXSTEP"] == "07_stack" and hdr["NINPUTS"] == 4 and hdr["NLEFTOUT"] == 0
        assert hdr["FILTER"] == f and hdr["EXTCORR"] is True
        assert coverage.max() == 4
        assert exposure.max() == pytest.approx(4 * demo.EXPTIME[f])
        assert len(provenance.history(hdr, "07_stack")) >= 4
        headers[f] = hdr
    # both filters on the reference's grid and WCS
    ref = fits.getheader(products / "06_badpix" / headers["R"]["REFFRAME"])
    for key in ("CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "NAXIS1", "NAXIS2"):
        assert headers["R"][key] == headers["Ha"][key] == ref[key]


# ---- bad input: frames left out, with the reason, and the run goes on --------------------
@pytest.fixture(scope="module")
def spoiled(chain, tmp_path_factory):
    """07 again on a copy of the products with three bad frames."""
    products, truth, manifest = chain
    work = tmp_path_factory.mktemp("spoiled")
    dst = work / "products" / "demo"
    shutil.copytree(products, dst, ignore=shutil.ignore_patterns("07_stack", "notebooks"))
    rng = np.random.default_rng(7)

    def rewrite(name, data, header=None, mask=None, uncertainty=None):
        p = fitsio.read_product(dst / "06_badpix" / name)
        fitsio.write_ccd(dst / "06_badpix" / name, data, p.header if header is None else header,
                         uncertainty=p.uncertainty if uncertainty is None else uncertainty,
                         mask=p.mask if mask is None else mask, unit=p.unit)
        return p

    # another field: blank sky whose WCS points a degree away from the reference
    p = fitsio.read_product(dst / "06_badpix" / "ngc_demo_R_003.fits")
    sky_noise = np.full(p.data.shape, np.median(p.uncertainty), np.float32)
    h = p.header.copy()
    h["CRVAL1"] += 1.0
    rewrite("ngc_demo_R_003.fits", rng.normal(0, sky_noise), header=h,
            mask=np.zeros_like(p.mask), uncertainty=sky_noise)
    # a frame pointed SHIFT px to the right: less than half of it overlaps the reference
    p = fitsio.read_product(dst / "06_badpix" / "ngc_demo_R_002.fits")
    moved, unc, bits = (np.empty_like(a) for a in (p.data, p.uncertainty, p.mask))
    for new_plane, old_plane, fill in ((moved, p.data, 0.0), (unc, p.uncertainty, sky_noise[0, 0]),
                                       (bits, p.mask, 0)):
        new_plane[...] = fill
        new_plane[:, :-SHIFT] = old_plane[:, SHIFT:]
    moved[:, -SHIFT:] = rng.normal(0, sky_noise[:, -SHIFT:])
    h = p.header.copy()
    h["CRPIX1"] -= SHIFT
    rewrite("ngc_demo_R_002.fits", moved, header=h, mask=bits, uncertainty=unc)
    # a frame whose header says another filter than the inventory does
    p = fitsio.read_product(dst / "06_badpix" / "ngc_demo_Ha_003.fits")
    h = p.header.copy()
    h["FILTER"] = "R"
    rewrite("ngc_demo_Ha_003.fits", p.data, header=h)
    # a frame whose left half is NaN and flagged nowhere
    p = fitsio.read_product(dst / "06_badpix" / "ngc_demo_Ha_002.fits")
    half = p.data.copy()
    half[:, : half.shape[1] // 2] = np.nan
    unflagged = p.mask.copy()
    unflagged[:, : half.shape[1] // 2] = 0
    rewrite("ngc_demo_Ha_002.fits", half, mask=unflagged)
    # a 2x2-binned light frame in the inventory (and a product of it)
    p = fitsio.read_product(dst / "06_badpix" / "ngc_demo_R_004.fits")
    binned = p.data.reshape(128, 2, 128, 2).sum(axis=(1, 3))
    h = p.header.copy()
    h["XBINNING"], h["YBINNING"] = 2, 2
    fitsio.write_ccd(dst / "06_badpix" / "ngc_demo_R_005.fits", binned, h,
                     uncertainty=np.sqrt((p.uncertainty ** 2).reshape(128, 2, 128, 2).sum(axis=(1, 3))),
                     mask=np.bitwise_or.reduce(np.bitwise_or.reduce(
                         p.mask.reshape(128, 2, 128, 2), axis=3), axis=1), unit=p.unit)
    inv = fitsio.read_table(dst / "00_inspect" / "inventory.ecsv")
    row = {c: inv[c][list(inv["file"]).index("ngc_demo_R_004.fits")] for c in inv.colnames}
    row.update(file="ngc_demo_R_005.fits", binning="2x2")
    inv.add_row([row[c] for c in inv.colnames])
    fitsio.write_table(inv, dst / "00_inspect" / "inventory.ecsv")

    run_target("demo", manifest=manifest, products=work / "products", only="07", html=False)
    return dst / "07_stack", truth


def test_bad_frames_are_left_out_with_their_reason(spoiled):
    out, _ = spoiled
    reg = fitsio.read_table(out / "registration.ecsv")
    why = {r["file"]: (bool(r["used"]), str(r["reason"])) for r in reg}
    assert why["ngc_demo_R_003.fits"][0] is False
    assert "with no overlap" in why["ngc_demo_R_003.fits"][1]
    assert why["ngc_demo_R_005.fits"][0] is False
    assert "binning 2x2" in why["ngc_demo_R_005.fits"][1]
    assert why["ngc_demo_Ha_003.fits"][0] is False
    assert "header says filter 'R', the inventory 'Ha'" in why["ngc_demo_Ha_003.fits"][1]
    assert why["ngc_demo_Ha_002.fits"][0] is True        # half NaN is no reason to drop it
    h = fits.getheader(out / "stack_R.fits")
    assert h["NLEFTOUT"] == 3 and h["NINPUTS"] == 2
    history = " ".join(provenance.history(h))
    for name in ("ngc_demo_R_002.fits", "ngc_demo_R_003.fits", "ngc_demo_R_005.fits"):
        assert f"left out {name}" in history
    assert "binning 2x2" in history
    h_ha = fits.getheader(out / "stack_Ha.fits")
    assert h_ha["NLEFTOUT"] == 1 and h_ha["NINPUTS"] == 3 and h_ha["FILTER"] == "Ha"


def test_a_frame_that_barely_overlaps_is_registered_then_left_out(spoiled, chain):
    """The moved frame is placed right (SHIFT px further) but covers too little to stack."""
    out, _ = spoiled
    reg = {r["file"]: r for r in fitsio.read_table(out / "registration.ecsv")}
    before = {r["file"]: r for r in fitsio.read_table(chain[0] / "07_stack" / "registration.ecsv")}
    r, r0 = reg["ngc_demo_R_002.fits"], before["ngc_demo_R_002.fits"]
    assert not r["used"]
    first = _from_row(r0)                        # where the frame was before it was moved
    expected = Transform(first.matrix, first.offset + first.matrix @ np.array([SHIFT, 0.0]))
    # under half the stars, over under half the frame: 0.1 px rather than 0.05
    assert _grid_error(_from_row(r), expected, (256, 256)) < 0.1
    assert abs(r["overlap"] - (256 - SHIFT) / 256) < 0.05
    assert f"covers only {100 * r['overlap']:.0f} %" in r["reason"] and "min_overlap" in r["reason"]


def test_an_all_nan_region_is_no_data_not_zero(spoiled):
    """The NaN half of one Ha frame is covered by the other two frames, at the right level."""
    out, truth = spoiled
    with fits.open(out / "stack_Ha.fits") as h:
        data, unc, coverage = h[0].data, h["UNCERT"].data, h["COVERAGE"].data
    ny, nx = data.shape
    left = coverage[20:-20, 20: nx // 2 - 20]
    assert left.max() == 2             # Ha_003 is left out; the NaN frame counts nowhere there
    scene = truth.image("scene_Ha")
    z = ((data - scene) / unc)[20:-20, 20: nx // 2 - 20]
    quiet = scene[20:-20, 20: nx // 2 - 20] < 0.5 * unc[20:-20, 20: nx // 2 - 20]
    assert abs(np.nanmean(z[quiet])) < 0.1


# ---- 08: photometry ------------------------------------------------------------------------
@pytest.mark.parametrize("filt", ["R", "Ha"])
def test_zero_point_and_extinction_against_truth(chain, filt):
    products, truth, _ = chain
    zp = fitsio.read_table(products / "08_photometry" / "zeropoints.ecsv")
    row = zp[list(zp["filter"]).index(filt)]
    assert row["source"] == "standards" and row["k_fitted"] and row["n_used"] >= 10
    assert abs(row["zp"] - truth["zero_point"][filt]) < 0.02, row["zp"]
    assert abs(row["k"] - truth["extinction"][filt]) < 0.02, row["k"]
    assert 0 < row["zp_err"] < 0.05


@pytest.mark.parametrize("filt", ["R", "Ha"])
def test_calibrated_magnitudes_against_truth(chain, filt):
    """Unblended, unflagged stars with S/N > 50: calibrated - true within 0.03 mag rms.

    Unblended: no other true source (star or HII region) within 10 px (two aperture
    radii); no aperture separates a blend, and that is not a calibration error.
    """
    from scipy.spatial import cKDTree

    products, truth, _ = chain
    cat = fitsio.read_table(products / "08_photometry" / "stars.ecsv")
    ref = fits.getheader(products / "07_stack" / "stack_R.fits")["REFFRAME"]
    off = truth["frames"][ref]["offset"]
    stars = truth.table("stars")
    dist, idx = cKDTree(np.c_[stars["x"] - off[0], stars["y"] - off[1]]).query(
        np.c_[cat["x"], cat["y"]])
    hii = truth.table("hii_regions")
    sources = np.r_[np.c_[stars["x"], stars["y"]], np.c_[hii["x"], hii["y"]]] - np.asarray(off)
    alone = np.array([len(v) == 1 for v in cKDTree(sources).query_ball_point(
        np.c_[cat["x"], cat["y"]], 10.0)])
    sel = (dist < 1.0) & alone & (cat[f"snr_{filt}"] > 50) & ~cat["flagged"] \
        & np.isfinite(cat[f"mag_{filt}"])
    assert sel.sum() >= 8
    diff = np.asarray(cat[f"mag_{filt}"][sel]) - np.asarray(stars[filt][idx[sel]])
    assert np.sqrt(np.mean(diff ** 2)) < 0.03, diff


def test_halpha_flux_keywords(chain):
    """08's Ha stack converts a line's e-/s into erg/s/cm^2 as the demo does, within 2 %."""
    products, _, _ = chain
    h = fits.getheader(products / "08_photometry" / "stack_Ha.fits")
    assert h["REDXSTEP"] == "08_photometry" and h["ZPSOURCE"] == "standards"
    assert h["PHOTPLAM"] == demo.BANDPASSES["Ha"]["pivot_A"]
    assert h["PHOTFLAM"] * h["PHOTBW"] == pytest.approx(demo.HALPHA_CGS_PER_RATE, rel=0.02)


def test_no_standards_falls_back_to_the_manifest_zero_point(chain, tmp_path):
    """Without a standards catalogue 08 uses the manifest's zero_point and says so."""
    products, truth, manifest = chain
    dst = tmp_path / "products" / "demo"
    shutil.copytree(products, dst, ignore=shutil.ignore_patterns("08_photometry", "notebooks"))
    doc = yaml.safe_load(manifest.read_text())
    doc["targets"]["demo"].pop("standards")
    doc["targets"]["demo"]["zero_point"] = {"R": 24.9}
    m = tmp_path / "m.yaml"
    m.write_text(yaml.safe_dump(doc))
    run_target("demo", manifest=m, products=tmp_path / "products", only="08", html=False)
    zp = fitsio.read_table(dst / "08_photometry" / "zeropoints.ecsv")
    by = {r["filter"]: r for r in zp}
    assert by["R"]["source"] == "manifest" and by["R"]["zp"] == 24.9
    assert by["Ha"]["source"] == "none" and "instrumental" in by["Ha"]["note"]
    assert not (dst / "08_photometry" / "stack_Ha.fits").exists()
    assert fits.getheader(dst / "08_photometry" / "stack_R.fits")["PHOTZP"] == 24.9


def _rerun_08(chain, tmp_path, *, edit_manifest=None, edit_products=None, params=None):
    """08 alone on a copy of the chain's products, with the manifest or products edited."""
    products, _, manifest = chain
    dst = tmp_path / "products" / "demo"
    shutil.copytree(products, dst, ignore=shutil.ignore_patterns("08_photometry", "notebooks"))
    doc = yaml.safe_load(manifest.read_text())
    if edit_manifest:
        edit_manifest(doc["targets"]["demo"])
    m = tmp_path / "m.yaml"
    m.write_text(yaml.safe_dump(doc))
    if edit_products:
        edit_products(dst)
    run_target("demo", manifest=m, products=tmp_path / "products", only="08", html=False,
               params=params)
    zp = fitsio.read_table(dst / "08_photometry" / "zeropoints.ecsv")
    return {r["filter"]: r for r in zp}


def test_standards_all_at_one_airmass_use_the_manifest_extinction(chain, tmp_path):
    """One airmass can't give k: the manifest's is used, said, and the ZP still comes out."""
    _, truth, _ = chain

    def one_airmass(dst):
        inv = fitsio.read_table(dst / "00_inspect" / "inventory.ecsv")
        inv["airmass"][inv["frametype"] == "standard"] = 1.6
        fitsio.write_table(inv, dst / "00_inspect" / "inventory.ecsv")

    zp = _rerun_08(chain, tmp_path, edit_products=one_airmass)
    for f in ("R", "Ha"):
        assert zp[f]["source"] == "standards" and not zp[f]["k_fitted"]
        assert zp[f]["k"] == truth["extinction"][f] and "not fitted" in zp[f]["note"]
        # the true airmasses average 1.63, so the ZP is off by k x 0.03 at most
        assert abs(zp[f]["zp"] - truth["zero_point"][f]) < 0.02


def test_standards_missing_from_the_field_fall_back(chain, tmp_path):
    """A catalogue whose stars are a degree away pairs with nothing: no fit, the manifest ZP."""
    from astropy.table import Table

    def elsewhere(target):
        cat = Table.read(target["standards"])
        cat["dec"] += 1.0
        path = tmp_path / "far_standards.ecsv"
        cat.write(path)
        target["standards"] = str(path)
        target["zero_point"] = {"Ha": 22.4}

    zp = _rerun_08(chain, tmp_path, edit_manifest=elsewhere)
    assert zp["Ha"]["source"] == "manifest" and zp["Ha"]["zp"] == 22.4
    assert zp["R"]["source"] == "none"


def test_no_stars_found_is_a_clear_error(chain, tmp_path):
    from redux_helpers.errors import ReduxError

    with pytest.raises(ReduxError, match=r"08_photometry: no star found on the R stack above "
                                         r"1000000.0 sigma: lower phot_nsigma"):
        _rerun_08(chain, tmp_path, params={"phot_nsigma": 1e6})
    assert not (tmp_path / "products" / "demo" / "08_photometry" / "stars.ecsv").exists()


def test_colour_term_is_fitted_and_applied(chain, tmp_path):
    """With colour_term, R and Ha get a colour term (the demo has none: ~0) and the same ZP."""
    _, truth, _ = chain
    zp = _rerun_08(chain, tmp_path, params={"colour_term": True})
    for f in ("R", "Ha"):
        assert np.isfinite(zp[f]["colour_term"]) and abs(zp[f]["colour_term"]) < 0.05
        assert abs(zp[f]["zp"] - truth["zero_point"][f]) < 0.02
    cat = fitsio.read_table(tmp_path / "products" / "demo" / "08_photometry" / "stars.ecsv")
    bright = (cat["snr_R"] > 50) & (cat["snr_Ha"] > 50) & ~cat["flagged"]
    assert np.all(np.isfinite(cat["mag_R"][bright])) and np.all(np.isfinite(cat["mag_Ha"][bright]))
