"""QA metrics on a fake products tree with known values, the nebula comparison, the report.

Every product below is written with the package's own writers (`fitsio.write_ccd`,
`write_table`, `write_mask`), so the files look like what the steps write.
"""

import base64
import math
import struct
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from astropy.table import Table

from redux_helpers import fitsio, masks, provenance, qa, report
from redux_helpers.errors import ReduxError
from redux_helpers.manifest import Target
from redux_helpers.targets import Paths

matplotlib.use("Agg")

RN, GAIN = 9.0, 1.6


@pytest.fixture
def night(tmp_path):
    """(paths, target) of an empty products tree for a target that is not the demo."""
    target = Target(name="night", manifest=tmp_path / "m.yaml",
                    settings={"read_noise": RN, "gain": GAIN})
    return Paths(tmp_path / "products", "night"), target


def rows(table, step=None):
    """metric -> row of the QA table (of one step)."""
    return {r["metric"]: r for r in table if step is None or r["step"] == step}


def write_inventory(paths, entries):
    """entries: (file, frametype, filter, exptime)."""
    inv = Table(rows=[(f, t, filt, exp, GAIN, RN) for f, t, filt, exp in entries],
                names=("file", "frametype", "filter", "exptime", "gain", "read_noise"))
    fitsio.write_table(inv, paths.inventory)


# ---- collect ----------------------------------------------------------------------
def test_missing_products_give_no_rows(night):
    paths, target = night
    table = qa.collect(paths, target)
    assert len(table) == 0
    assert table.colnames == list(qa.COLUMNS)
    # a target that starts at 08: only 08's rows
    z = Table(rows=[("R", "manifest", 24.9, np.nan, 0.1, np.nan, False, np.nan, 0, 0, np.nan, "")],
              names=("filter", "source", "zp", "zp_err", "k", "k_err", "k_fitted",
                     "colour_term", "n_used", "n_total", "rms", "note"))
    fitsio.write_table(z, paths.step("08_photometry") / "zeropoints.ecsv")
    table = qa.collect(paths, target)
    assert set(table["step"]) == {"08_photometry"}
    r = rows(table)["zero_point_R"]
    assert r["value"] == pytest.approx(24.9) and r["flag"] == "info"
    assert "manifest" in r["reason"]


def test_inventory_counts_and_problems(night):
    paths, target = night
    write_inventory(paths, [("b1.fits", "bias", "", 0.0), ("b2.fits", "bias", "", 0.0),
                            ("b3.fits", "bias", "", 0.0), ("f1.fits", "flat", "R", 5.0),
                            ("f2.fits", "flat", "Ha", 5.0), ("l1.fits", "light", "R", 300.0)])
    problems = Table(rows=[("warning", "", "filter Ha has lights but no flats", "add flats")],
                     names=("severity", "file", "problem", "what_to_do"))
    fitsio.write_table(problems, paths.step("00_inspect") / "problems.ecsv")
    r = rows(qa.collect(paths, target), "00_inspect")
    assert r["n_bias"]["value"] == 3 and r["n_flat"]["value"] == 2
    assert "Ha 1, R 1" in r["n_flat"]["reason"]
    assert r["n_problems"]["value"] == 1 and r["n_problems"]["flag"] == "warn"
    assert "no flats" in r["n_problems"]["reason"]
    problems.add_row(("error", "x.fits", "no exposure time keyword", "add it"))
    fitsio.write_table(problems, paths.step("00_inspect") / "problems.ecsv")
    assert rows(qa.collect(paths, target))["n_problems"]["flag"] == "fail"


def write_superbias(paths, noise, n=11):
    rng = np.random.default_rng(1)
    shape = (200, 300)
    pattern = rng.normal(0, 3.0, shape[1])[None, :] + np.linspace(-2, 2, shape[1])[None, :]
    data = pattern + rng.normal(0, noise, shape)
    header = provenance.stamp(None, step="01_superbias",
                              inputs=[f"b{i}.fits" for i in range(n)],
                              params={"method": "median", "sigma": 3.0})
    fitsio.write_ccd(paths.step("01_superbias") / "superbias.fits", data, header,
                     uncertainty=np.full(shape, noise), unit="adu")


def test_superbias_noise_against_read_noise_over_sqrt_n(night):
    paths, target = night
    expected = 1.2533 * RN / GAIN / math.sqrt(11)          # 2.126 ADU
    write_superbias(paths, expected)
    r = rows(qa.collect(paths, target))["superbias_noise"]
    # the column pattern (3 ADU rms, far above the noise) cancels in row differences
    assert r["value"] == pytest.approx(expected, rel=0.03)
    assert r["flag"] == "pass" and "N = 11" in r["reason"]
    write_superbias(paths, 2 * expected)                  # e.g. correlated noise
    r = rows(qa.collect(paths, target))["superbias_noise"]
    assert r["value"] == pytest.approx(2 * expected, rel=0.03)
    assert r["flag"] == "warn"


def write_flat(paths, filt, *, p2p=0.01, bad_rows=0, seed=2):
    rng = np.random.default_rng(seed)
    shape = (100, 200)                                     # 20 000 pixels, 200 per row
    flat = rng.normal(1.0, p2p, shape)
    flat[:bad_rows] = 0.3                                  # e.g. a vignetted edge
    mask = masks.flag(np.zeros(shape, np.uint16), flat < 0.5, "LOWFLAT")
    fitsio.write_ccd(paths.step("02_superflat") / f"superflat_{filt}.fits", flat,
                     uncertainty=np.full(shape, 0.002), mask=mask, unit="",
                     mask_header=masks.header())


def test_flat_metrics(night):
    paths, target = night
    write_flat(paths, "R", p2p=0.01)
    write_flat(paths, "Ha", p2p=0.01, bad_rows=5)          # 1000 of 20 000 pixels: 5 %
    r = rows(qa.collect(paths, target))
    assert r["flat_outliers_R"]["value"] == 0 and r["flat_outliers_R"]["flag"] == "pass"
    assert r["flat_outliers_Ha"]["value"] == pytest.approx(5.0)
    assert r["flat_outliers_Ha"]["flag"] == "warn" and "2 %" in r["flat_outliers_Ha"]["reason"]
    # 1 % white pixel noise; the 5x5 median it is divided by adds ~3 %
    assert r["flat_p2p_R"]["value"] == pytest.approx(1.0, abs=0.06)
    assert r["flat_p2p_Ha"]["value"] == pytest.approx(1.0, abs=0.06)
    assert r["flat_norm_R"]["value"] == pytest.approx(1.0, abs=0.002)
    assert r["flat_noise_R"]["value"] == pytest.approx(0.2) and r["flat_noise_R"]["flag"] == "pass"
    write_flat(paths, "R", p2p=0.05)
    r = rows(qa.collect(paths, target))
    assert r["flat_p2p_R"]["value"] == pytest.approx(5.0, abs=0.3)
    assert r["flat_p2p_R"]["flag"] == "warn"


def test_flat_p2p_of_a_large_flat_from_its_central_half(night):
    """From 2^20 pixels on, the p2p is measured on the central half: the value the whole
    vignetted flat gives (its 5x5 median takes the vignetting out), to 2 %."""
    from astropy.stats import mad_std
    from scipy import ndimage

    paths, target = night
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:1024, :1024]
    flat = (1.0 - 0.2 * np.hypot(xx - 511.5, yy - 511.5) ** 2 / 724.0 ** 2) \
        * rng.normal(1.0, 0.02, (1024, 1024))
    fitsio.write_ccd(paths.step("02_superflat") / "superflat_R.fits", flat,
                     uncertainty=np.full(flat.shape, 0.002), mask=np.zeros(flat.shape, np.uint16),
                     unit="", mask_header=masks.header())
    whole = 100 * mad_std(flat / ndimage.median_filter(flat, size=5))
    r = rows(qa.collect(paths, target))["flat_p2p_R"]
    assert r["value"] == pytest.approx(whole, rel=0.02) and "central half" in r["reason"]


def test_cosmic_ray_outlier_frame(night):
    paths, target = night
    files = ["a.fits", "b.fits", "c.fits", "d.fits"]
    write_inventory(paths, [(f, "light", "R", 300.0) for f in files])
    cr = Table({"file": files, "n_pixels": [10, 11, 9, 200],
                "fraction": [0.0010, 0.0011, 0.0009, 0.0200]})
    fitsio.write_table(cr, paths.step("03_cosmics") / "cosmics.ecsv")
    r = rows(qa.collect(paths, target))
    assert r["cr_fraction_median"]["value"] == pytest.approx(0.105)       # percent
    assert r["cr_fraction_max"]["value"] == pytest.approx(2.0)
    assert r["cr_fraction_max"]["flag"] == "warn" and "d.fits" in r["cr_fraction_max"]["reason"]
    # a short frame with a few hits is not an outlier: its limit scales with exptime
    cr["fraction"][3] = 0.0012
    fitsio.write_table(cr, paths.step("03_cosmics") / "cosmics.ecsv")
    assert rows(qa.collect(paths, target))["cr_fraction_max"]["flag"] == "pass"


def test_masked_fraction_of_calibrated_frames(night):
    paths, target = night
    for name, n_bad in (("a.fits", 100), ("b.fits", 600)):            # 1 % and 6 %
        mask = np.zeros((100, 100), np.uint16)
        mask.flat[:n_bad] = masks.bit("COSMIC")
        fitsio.write_ccd(paths.step("04_calibrate") / name, np.zeros((100, 100)),
                         uncertainty=np.ones((100, 100)), mask=mask, mask_header=masks.header())
    r = rows(qa.collect(paths, target))
    assert r["masked_median"]["value"] == pytest.approx(3.5)
    assert r["masked_max"]["value"] == pytest.approx(6.0)
    assert r["masked_max"]["flag"] == "warn" and "COSMIC 6.00 %" in r["masked_max"]["reason"]


def test_sky_noise_against_uncertainty_and_poisson(night):
    paths, target = night
    poisson = math.sqrt(900.0 + RN ** 2)                   # 31.32 e-
    entries, summary = [], []
    for name, filt, unc in (("r1.fits", "R", poisson), ("h1.fits", "Ha", poisson / 2)):
        sky_rms = 1.1 * poisson
        fitsio.write_ccd(paths.step("05_background") / name, np.zeros((50, 50)),
                         fitsio_header(EXPTIME=300.0), uncertainty=np.full((50, 50), unc),
                         mask=np.zeros((50, 50), np.uint16), unit="electron")
        entries.append((name, "light", filt, 300.0))
        summary.append((name, filt, "light", "box", "-", 900.0, sky_rms, 3.0))
    write_inventory(paths, entries)
    bg = Table(rows=summary, names=("file", "filter", "frametype", "method", "galaxy", "sky",
                                    "sky_rms", "sky_rate"))
    bg["sky"].unit = bg["sky_rms"].unit = "electron"
    fitsio.write_table(bg, paths.step("05_background") / "background.ecsv")
    r = rows(qa.collect(paths, target))
    assert r["sky_rate_R"]["value"] == pytest.approx(3.0)
    assert r["sky_rms_R"]["value"] == pytest.approx(1.1 * poisson)
    assert r["sky_noise_vs_poisson_R"]["value"] == pytest.approx(1.1)
    assert r["sky_noise_vs_poisson_R"]["flag"] == "pass"
    assert r["sky_noise_vs_uncert_R"]["value"] == pytest.approx(1.1, rel=1e-5)
    assert r["sky_noise_vs_uncert_R"]["flag"] == "pass"
    # UNCERT half the real scatter: the uncertainty plane is not honest
    assert r["sky_noise_vs_uncert_Ha"]["value"] == pytest.approx(2.2, rel=1e-5)
    assert r["sky_noise_vs_uncert_Ha"]["flag"] == "warn"


def fitsio_header(**cards):
    from astropy.io import fits
    h = fits.Header()
    for k, v in cards.items():
        h[k] = v
    return h


def test_bad_pixel_fraction(night):
    paths, target = night
    bpm = np.zeros((100, 100), np.uint16)
    bpm[:, 7] = masks.bit("BADCOL")                        # 100 pixels
    bpm.flat[1000:1200] |= np.uint16(masks.bit("HOT"))     # 200 more (2 rows, col 7 overlaps)
    fitsio.write_mask(paths.step("06_badpix") / "badpix.fits", bpm)
    r = rows(qa.collect(paths, target))["bad_pixel_fraction"]
    assert r["value"] == pytest.approx(100 * np.mean(bpm > 0)) == pytest.approx(2.98)
    assert r["flag"] == "warn" and "HOT 200" in r["reason"]


def write_registration(paths, residuals, used):
    n = len(residuals)
    reg = Table({"file": [f"f{i}.fits" for i in range(n)], "filter": ["R"] * n, "used": used,
                 "reason": ["" if u else "covers only 40 % of the reference grid" for u in used],
                 "method": ["reference"] + ["stars: translation"] * (n - 1),
                 "dx": np.zeros(n), "dy": np.zeros(n), "residual_px": residuals})
    fitsio.write_table(reg, paths.step("07_stack") / "registration.ecsv")


def test_registration_residual_and_left_out_frames(night):
    paths, target = night
    write_registration(paths, [0.0, 0.05, 0.5, np.nan], [True, True, True, False])
    h = fitsio_header(NCOMBINE=2, NLEFTOUT=1)
    fitsio.write_ccd(paths.step("07_stack") / "stack_R.fits", np.zeros((20, 20)), h,
                     unit="electron/s")
    r = rows(qa.collect(paths, target), "07_stack")
    assert r["registration_residual_max"]["value"] == pytest.approx(0.5)
    assert r["registration_residual_max"]["flag"] == "warn"
    assert "f2.fits" in r["registration_residual_max"]["reason"]
    # the reference's residual of 0 is not a measurement
    assert r["registration_residual_median"]["value"] == pytest.approx(0.275)
    assert r["frames_left_out"]["value"] == 1 and r["frames_left_out"]["flag"] == "warn"
    assert "40 %" in r["frames_left_out"]["reason"]
    assert r["stack_depth_R"]["value"] == 2 and r["stack_depth_R"]["flag"] == "warn"
    write_registration(paths, [0.0, 0.05, 0.08], [True, True, True])
    r = rows(qa.collect(paths, target), "07_stack")
    assert r["registration_residual_max"]["flag"] == "pass"
    assert r["frames_left_out"]["flag"] == "pass"


def test_zero_points_and_extinction(night):
    paths, target = night
    z = Table(rows=[
        ("R", "standards", 25.01, 0.01, 0.11, 0.02, True, np.nan, 17, 18, 0.02, ""),
        ("Ha", "standards", 22.4, 0.08, 0.08, np.nan, False, np.nan, 2, 4, 0.07, ""),
        ("B", "none", 0.0, np.nan, np.nan, np.nan, False, np.nan, 0, 0, np.nan, ""),
    ], names=("filter", "source", "zp", "zp_err", "k", "k_err", "k_fitted", "colour_term",
              "n_used", "n_total", "rms", "note"))
    fitsio.write_table(z, paths.step("08_photometry") / "zeropoints.ecsv")
    r = rows(qa.collect(paths, target))
    assert r["zero_point_R"]["value"] == pytest.approx(25.01)
    assert r["zero_point_R"]["error"] == pytest.approx(0.01)
    assert r["zero_point_R"]["flag"] == "pass"
    assert r["extinction_R"]["flag"] == "pass" and r["extinction_R"]["error"] == pytest.approx(0.02)
    assert r["n_standards_R"]["flag"] == "pass" and r["zp_fit_rms_R"]["flag"] == "pass"
    # Ha: k taken as given, a poor zero point, half the standards rejected, a poor fit
    assert r["extinction_Ha"]["flag"] == "warn" and "k" in r["extinction_Ha"]["reason"]
    assert "not fitted" in r["extinction_Ha"]["reason"]
    assert r["zero_point_Ha"]["flag"] == "warn" and "0.05" in r["zero_point_Ha"]["reason"]
    assert r["n_standards_Ha"]["value"] == 2 and r["n_standards_Ha"]["flag"] == "warn"
    assert r["zp_fit_rms_Ha"]["flag"] == "warn"
    assert r["zero_point_B"]["flag"] == "warn" and "instrumental" in r["zero_point_B"]["reason"]
    assert "extinction_B" not in r


def test_hii_regions_and_continuum_scale(night):
    paths, target = night
    cat = Table({"id": [1, 2, 3], "flux": [1.0, 2.0, 3.0]})
    cat.meta.update(kind="HII regions: Halpha line fluxes", continuum_scale=0.08,
                    continuum_scale_err=0.008)
    fitsio.write_table(cat, paths.step("09_hii_regions") / "hii_regions.ecsv")
    r = rows(qa.collect(paths, target))
    assert r["n_hii_regions"]["value"] == 3 and r["n_hii_regions"]["flag"] == "pass"
    assert r["continuum_scale"]["value"] == pytest.approx(0.08)
    assert r["continuum_scale"]["error"] == pytest.approx(0.008)
    assert r["continuum_scale"]["flag"] == "warn"                   # 10 % > 5 %
    stars = Table({"ratio": [0.08]})
    stars.meta.update(scale_used=0.08, scale_used_err=0.002, scale_from="stars", n_used=3,
                      scatter=0.004)
    fitsio.write_table(stars, paths.step("09_hii_regions") / "continuum_scale.ecsv")
    r = rows(qa.collect(paths, target))
    assert r["continuum_scale"]["flag"] == "pass"                   # 2.5 %
    assert r["continuum_scale_stars"]["value"] == 3
    assert r["continuum_scale_stars"]["flag"] == "warn"


def test_anchoring_and_nebulae(night):
    paths, target = night
    fit = Table({"x": [1.0], "y": [1.0]})
    fit.meta.update(offset=2e-18, offset_err=1e-19, slope=1.3, slope_err=0.02, n_bins=4,
                    n_pixels=4000)
    fitsio.write_table(fit, paths.step("10_halpha_muse") / "anchor_fit.ecsv")
    muse = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    factor = np.array([1.0, 1.1, 0.9, 1.2, 1.08])
    neb = Table({"id": np.arange(1, 6), "flux_ours": muse * factor,
                 "flux_ours_err": 0.01 * muse, "flux_muse": muse,
                 "flux_muse_err": 0.01 * muse, "flux_before": 0.5 * muse,
                 "flux_true": 0.9 * muse})
    fitsio.write_table(neb, paths.step("10_halpha_muse") / "nebulae.ecsv")
    r = rows(qa.collect(paths, target), "10_halpha_muse")
    assert r["anchor_slope"]["value"] == pytest.approx(1.3)
    assert r["anchor_slope"]["flag"] == "warn" and "0.2" in r["anchor_slope"]["reason"]
    assert r["anchor_bins"]["value"] == 4 and r["anchor_bins"]["flag"] == "warn"
    assert r["anchor_offset"]["value"] == pytest.approx(2e-18)
    assert r["n_nebulae"]["value"] == 5
    assert r["nebula_ratio_median"]["value"] == pytest.approx(1.08)
    assert r["nebula_ratio_median"]["flag"] == "warn"
    # |ratio - 1.08| = 0.08, 0.02, 0.18, 0.12, 0: MAD 0.08
    assert r["nebula_ratio_scatter"]["value"] == pytest.approx(1.4826 * 0.08)
    # 1 % errors on each explain a scatter of ~0.015: 0.119 is far more
    assert r["nebula_ratio_scatter"]["flag"] == "warn"
    assert r["nebula_ratio_before"]["value"] == pytest.approx(0.5)
    assert r["nebula_ratio_vs_truth"]["value"] == pytest.approx(1.08 / 0.9)
    assert r["nebula_ratio_vs_truth"]["flag"] == "info"
    # and what the anchoring changed, against the truth: 0.5 / 0.9 before
    assert r["nebula_ratio_vs_truth_before"]["value"] == pytest.approx(0.5 / 0.9)
    assert "before anchoring" in r["nebula_ratio_vs_truth_before"]["reason"]


def test_an_unreadable_product_is_a_fail_row_not_a_crash(night):
    paths, target = night
    p = paths.step("08_photometry") / "zeropoints.ecsv"
    p.parent.mkdir(parents=True)
    p.write_text("# %ECSV 1.0\n# ---\n# datatype:\n# - {name: zp, datatype: float64}\nzp\nnot a number\n")
    r = rows(qa.collect(paths, target))["products_readable"]
    assert r["flag"] == "fail" and "08_photometry" in r["reason"]


def test_flags_summary_counts_and_worst():
    t = Table({"flag": ["pass", "warn", "info", "pass", "fail"]})
    s = qa.flags_summary(t)
    assert (s["pass"], s["warn"], s["fail"], s["info"], s["n"]) == (2, 1, 1, 1, 5)
    assert s["worst"] == "fail"
    assert qa.flags_summary(Table({"flag": ["info", "pass"]}))["worst"] == "pass"
    assert qa.flags_summary(Table({"flag": np.array([], str)}))["worst"] == "info"
    with pytest.raises(ValueError, match="unknown flag"):
        qa.flags_summary(Table({"flag": ["ok"]}))


# ---- nebula comparison ------------------------------------------------------------
def test_nebula_comparison_sums_per_label():
    labels = np.full((6, 6), -1)           # PHANGS: -1 is background, ids from 0
    labels[0:2, 0:2] = 1                   # 4 pixels
    labels[3:6, 3:6] = 2                   # 9 pixels
    labels[5, 0] = 7                       # 1 pixel, ids need not be consecutive
    ours = np.arange(36, dtype=float).reshape(6, 6)
    muse = 2 * ours
    muse[4, 4] = np.nan                    # one pixel of nebula 2 MUSE did not see
    t = qa.nebula_comparison(ours, muse, labels, ours_err=np.full((6, 6), 0.5),
                             before=ours - 1)
    assert list(t["id"]) == [1, 2, 7]
    assert list(t["n_pixels"]) == [4, 8, 1] and list(t["n_invalid"]) == [0, 1, 0]
    assert t["flux_ours"][0] == 0 + 1 + 6 + 7
    n2 = ours[3:6, 3:6].sum() - ours[4, 4]  # the NaN pixel is left out of both sums
    assert t["flux_ours"][1] == pytest.approx(n2)
    assert t["flux_muse"][1] == pytest.approx(2 * n2)
    assert t["flux_ours"][2] == 30
    assert t["flux_ours_err"][0] == pytest.approx(1.0)             # 0.5 * sqrt(4)
    assert t["flux_ours_err"][1] == pytest.approx(0.5 * math.sqrt(8))
    assert np.all(np.isnan(t["flux_muse_err"]))
    assert t["flux_before"][0] == pytest.approx(14 - 4)
    s = qa.comparison_stats(t)
    assert s["median"] == pytest.approx(0.5) and s["scatter"] == pytest.approx(0.0)
    with pytest.raises(ReduxError, match="labels"):
        qa.nebula_comparison(ours, muse, labels[:5])


def test_comparison_stats_on_constructed_ratios():
    ref = np.array([1.0, 2.0, 4.0, 5.0, 10.0, 20.0, 8.0, 3.0, 0.0, np.nan])
    offsets = np.array([-0.2, -0.1, 0.0, 0.1, 0.2, 0.05, -0.05, 0.0, 0.3, 0.1])
    t = Table({"flux_ours": ref * (1 + offsets) + np.where(ref == 0, 1.0, 0.0),
               "flux_muse": ref})
    s = qa.comparison_stats(t)
    ratios = 1 + offsets[:8]               # a zero and a NaN reference are left out
    assert s["n"] == 8
    assert s["median"] == pytest.approx(1.0)
    assert s["scatter"] == pytest.approx(1.4826 * 0.075)     # |dev| median of 8 values
    assert s["p16"] == pytest.approx(np.percentile(ratios, 16))
    assert s["p84"] == pytest.approx(np.percentile(ratios, 84))
    assert s["scatter_dex"] == pytest.approx(
        1.4826 * np.median(np.abs(np.log10(ratios) - np.median(np.log10(ratios)))))
    assert math.isnan(s["expected_scatter"])                  # no error columns


# ---- the report -------------------------------------------------------------------
class _Page(HTMLParser):
    """What the tests look at in a report: images, scripts, links, table rows, divs."""

    def __init__(self):
        super().__init__()
        self.imgs, self.links, self.scripts, self.divs, self.rows = [], [], [], [], []
        self.tags, self._in_tbody = [], False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(a)
        elif tag == "a":
            self.links.append(a.get("href", ""))
        elif tag == "script":
            self.scripts.append(a)
        elif tag == "div":
            self.divs.append(a)
        elif tag == "tbody":
            self._in_tbody = True
        elif tag == "tr" and self._in_tbody:
            self.rows.append(a.get("class", ""))

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_tbody = False


def _png_size(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])               # IHDR width, height


@pytest.fixture
def written_report(tmp_path):
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    qa_table = Table(rows=[("00_inspect", "n_problems", 0.0, np.nan, "", "pass", "none"),
                           ("07_stack", "registration_residual_max", 0.5, np.nan, "px", "warn",
                            "worst 0.5 px > 0.25 px"),
                           ("08_photometry", "zero_point_R", 25.0, 0.01, "mag", "info",
                            "a <u>strong</u> claim & more")],
                     names=qa.COLUMNS)
    root = tmp_path / "products" / "night"
    nb = root / "notebooks" / "07_stack.ipynb"
    nb.parent.mkdir(parents=True)
    nb.write_text("{}")
    nb.with_suffix(".html").write_text("<html></html>")
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 2, 3], [1, 4, 9])
    chart = go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2], mode="markers"))
    chart2 = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
    path = report.write_report(root / "11_qa" / "report.html", target_name="night <1>",
                               qa_table=qa_table, figures=[("a parabola", fig)],
                               charts=[("three points", chart), ("two bars", chart2)],
                               notebooks=[nb], notes=["no MUSE map: step 10 did not run"])
    plt.close(fig)
    return path, nb, qa_table


def test_report_is_one_self_contained_page(written_report):
    path, nb, qa_table = written_report
    text = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    # one figure, a PNG of 4 x 3 inches at 90 dpi
    assert len(page.imgs) == 1
    src = page.imgs[0]["src"]
    assert src.startswith("data:image/png;base64,")
    assert _png_size(base64.b64decode(src.split(",", 1)[1])) == (360, 270)
    # two plotly charts, plotly.js written once, inline, nothing fetched from elsewhere
    assert sum("plotly-graph-div" in d.get("class", "") for d in page.divs) == 2
    assert text.count("* plotly.js v") == 1
    assert not any("src" in s for s in page.scripts)
    assert "cdn" not in text.lower().split("plotly.js v", 1)[0]
    # the notebook link is relative and lands on the notebook's html rendering
    nb_links = [h for h in page.links if not h.startswith("#")]
    assert nb_links == ["../notebooks/07_stack.html"]
    assert (path.parent / nb_links[0]).resolve() == nb.with_suffix(".html").resolve()
    # one table row per metric, coloured by flag
    assert page.rows == ["pass", "warn", "info"]
    # text is escaped: the reason's <u> and the target's <1> are text, not tags
    assert "u" not in page.tags and "a &lt;u&gt;strong&lt;/u&gt; claim &amp; more" in text
    assert "QA report: night &lt;1&gt;" in text
    assert 'class="badge worst warn"' in text and "overall: WARN" in text
    assert "no MUSE map" in text
    assert not list(path.parent.glob(".*tmp*"))            # written whole, nothing left


def test_report_embeds_a_png_file_and_refuses_other_things(tmp_path):
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2, 1))
    png = tmp_path / "f.png"
    fig.savefig(png, dpi=50)
    plt.close(fig)
    table = Table(rows=[("01_superbias", "superbias_noise", 2.1, np.nan, "ADU", "pass", "ok")],
                  names=qa.COLUMNS)
    path = report.write_report(tmp_path / "r.html", target_name="t", qa_table=table,
                               figures=[("from a file", str(png))], charts=[], notebooks=[])
    page = _Page()
    page.feed(path.read_text())
    data = base64.b64decode(page.imgs[0]["src"].split(",", 1)[1])
    assert data == png.read_bytes() and _png_size(data) == (100, 50)
    assert "plotly" not in path.read_text()                 # no chart, no plotly.js
    (tmp_path / "x.png").write_text("not a png")
    with pytest.raises(ValueError, match="not a PNG"):
        report.write_report(tmp_path / "r2.html", target_name="t", qa_table=table,
                            figures=[("bad", str(tmp_path / "x.png"))], charts=[],
                            notebooks=[])
    assert not (tmp_path / "r2.html").exists()


def test_report_links_to_the_notebook_when_there_is_no_html(tmp_path):
    nb = tmp_path / "notebooks" / "08_photometry.ipynb"
    nb.parent.mkdir()
    nb.write_text("{}")
    table = Table(rows=[("08_photometry", "n_stars", 3.0, np.nan, "", "info", "3 stars")],
                  names=qa.COLUMNS)
    path = report.write_report(tmp_path / "qa" / "report.html", target_name="t",
                               qa_table=table, figures=[], charts=[], notebooks=[nb])
    page = _Page()
    page.feed(path.read_text())
    assert [h for h in page.links if not h.startswith("#")] == ["../notebooks/08_photometry.ipynb"]
    assert Path(path.parent / "../notebooks/08_photometry.ipynb").resolve() == nb.resolve()


def test_report_links_its_own_step_before_it_is_written(tmp_path):
    """11's notebook is written after 11 ends: linked, not "not found" nor last run's."""
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    (nb_dir / "10_halpha_muse.ipynb").write_text("{}")
    (nb_dir / "10_halpha_muse.html").write_text("<html></html>")
    table = Table(rows=[("11_qa", "n", 1.0, np.nan, "", "info", "x")], names=qa.COLUMNS)
    path = report.write_report(tmp_path / "11_qa" / "report.html", target_name="t",
                               qa_table=table, notebooks=[nb_dir / "10_halpha_muse.ipynb",
                                                          nb_dir / "11_qa.ipynb"],
                               running=nb_dir / "11_qa.ipynb")
    page = _Page()
    page.feed(path.read_text())
    assert [h for h in page.links if not h.startswith("#")] == [
        "../notebooks/10_halpha_muse.html", "../notebooks/11_qa.html"]
    assert "not found" not in path.read_text()
    assert "written when `redux run` ends the step" in path.read_text()


def test_stack_that_rejects_too_much_fails_naming_the_frames(night):
    paths, target = night
    write_registration(paths, [0.0, 0.05, 0.08], [True, True, True])
    reg = fitsio.read_table(paths.step("07_stack") / "registration.ecsv")
    reg["rejected_percent"] = [0.02, 0.03, 31.0]           # f2's sky was wrong
    fitsio.write_table(reg, paths.step("07_stack") / "registration.ecsv")
    fitsio.write_ccd(paths.step("07_stack") / "stack_R.fits", np.zeros((20, 20)),
                     fitsio_header(NCOMBINE=3, NLEFTOUT=0, FILTER="R", REJFRAC=0.1035),
                     unit="electron/s")
    r = rows(qa.collect(paths, target), "07_stack")["stack_rejected_R"]
    assert r["flag"] == "fail" and r["value"] == pytest.approx(10.35)
    assert r["reason"].index("f2.fits") < r["reason"].index("f1.fits")   # the worst first
    fitsio.write_ccd(paths.step("07_stack") / "stack_R.fits", np.zeros((20, 20)),
                     fitsio_header(NCOMBINE=3, NLEFTOUT=0, FILTER="R", REJFRAC=0.0004),
                     unit="electron/s")
    assert rows(qa.collect(paths, target), "07_stack")["stack_rejected_R"]["flag"] == "pass"


def test_sky_rates_that_scatter_fail_naming_the_frames(night):
    paths, target = night
    summary = [(f"r{k}.fits", "R", "light", m, "-", 900.0 * s, 31.0, 3.0 * s)
               for k, (m, s) in enumerate([("radial", 1.0), ("radial", 1.02), ("radial", 2.6),
                                           ("box", 0.99)])]
    summary.append(("std1.fits", "R", "standard", "box", "-", 300.0, 30.0, 5.0))   # not a light
    bg = Table(rows=summary, names=("file", "filter", "frametype", "method", "galaxy", "sky",
                                    "sky_rms", "sky_rate"))
    bg["sky"].unit = bg["sky_rms"].unit = "electron"
    fitsio.write_table(bg, paths.step("05_background") / "background.ecsv")
    r = rows(qa.collect(paths, target))["sky_rate_scatter_R"]
    assert r["flag"] == "fail" and "r2.fits (radial)" in r["reason"]
    assert "r0.fits" not in r["reason"] and "std1" not in r["reason"]
    bg["sky_rate"][2] = 3.1
    fitsio.write_table(bg, paths.step("05_background") / "background.ecsv")
    r = rows(qa.collect(paths, target))["sky_rate_scatter_R"]
    assert r["flag"] == "pass" and r["value"] == pytest.approx(100 * (3.1 / 3.03 - 1), rel=0.05)


def test_n_stars_counts_stars_not_the_nucleus_or_knots(night):
    """08's catalogue keeps every source with its kind: QA counts kind == 'star' only."""
    paths, target = night
    cat = Table({"id": [1, 2, 3, 4], "x": [1.0, 2, 3, 4], "y": [1.0, 2, 3, 4],
                 "kind": ["nucleus", "star", "extended", "star"]})
    fitsio.write_table(cat, paths.step("08_photometry") / "stars.ecsv")
    r = rows(qa.collect(paths, target))["n_stars"]
    assert r["value"] == 2 and "2 other sources" in r["reason"]
