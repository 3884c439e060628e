"""The product contract the README promises, checked on every product of the demo run.

"Products open with `astropy.nddata.CCDData.read`: data in the primary HDU, `UNCERT` (one
standard deviation) and `MASK` (a `uint16` bitmask; bit meanings in the mask's header as
`MASKB0 = 'BAD'`, ...) extensions, units in `BUNIT`. Each header names the step, its
inputs, the masters used (`BIASFILE`, `DARKFILE`, `FLATFILE`) and the package version";
tables are ECSV with units. The chain is `demo_chain` (00-11 on the small demo, once per
session); each test walks every product of it, so a product added later is held to the
same contract (an ECSV table not listed in `PHYSICAL` below fails until it is).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.table import Table
from astropy.utils.exceptions import AstropyWarning

from redux_helpers import masks
from redux_helpers.products import filter_part

FLUX = u.erg / u.s / u.cm**2            # 10's fluxes per pixel
RATE = u.electron / u.s
FILTERS = ("R", "Ha")                   # the demo's filters (08's columns carry them)

#: Every ECSV product, by path under the target's products, and its physical columns
#: with their units. Columns left out are pure numbers: counts, ids, flags, fractions,
#: airmass, S/N, ratios, scale factors, file names and notes.
PHYSICAL: dict[str, dict[str, u.UnitBase]] = {
    "00_inspect/inventory.ecsv": {
        "exptime": u.s, "naxis1": u.pix, "naxis2": u.pix, "gain": u.electron / u.adu,
        "read_noise": u.electron, "ccd_temp": u.deg_C, "saturate": u.adu, "median": u.adu,
        "robust_std": u.adu, "min": u.adu, "max": u.adu},
    "00_inspect/problems.ecsv": {},
    "02_superflat/camera.ecsv": {
        "gain": u.electron / u.adu, "gain_err": u.electron / u.adu,
        "read_noise": u.electron, "read_noise_err": u.electron},
    "02_superflat/dark_matches.ecsv": {"ccd_temp": u.deg_C},
    "02_superflat/superdarks.ecsv": {"gain": u.electron / u.adu, "ccd_temp": u.deg_C},
    "03_cosmics/cosmics.ecsv": {},        # pixels hit (a count) and their fraction
    "05_background/background.ecsv": {"sky": u.electron, "sky_rms": u.electron,
                                      "sky_rate": RATE},
    "07_stack/registration.ecsv": {"dx": u.pix, "dy": u.pix, "rotation_deg": u.deg,
                                   "residual_px": u.pix, "rejected_percent": u.percent},
    "08_photometry/standards.ecsv": {
        "x": u.pix, "y": u.pix, "sep_arcsec": u.arcsec, "fwhm_px": u.pix, "m_inst": u.mag,
        "m_inst_err": u.mag, "m_cat": u.mag},
    "08_photometry/stars.ecsv": {
        "x": u.pix, "y": u.pix, "ra": u.deg, "dec": u.deg,
        **{f"{q}_{f}": unit for f in FILTERS
           for q, unit in (("flux", RATE), ("flux_err", RATE), ("mag", u.mag),
                           ("mag_err", u.mag))}},
    "08_photometry/zeropoints.ecsv": {"zp": u.mag, "zp_err": u.mag, "k": u.mag,
                                      "k_err": u.mag, "rms": u.mag},
    "09_hii_regions/continuum_scale.ecsv": {
        "x": u.pix, "y": u.pix, "flux_continuum": RATE, "flux_continuum_err": RATE,
        "flux_halpha": RATE, "flux_halpha_err": RATE},
    "09_hii_regions/hii_regions.ecsv": {
        "x": u.pix, "y": u.pix, "area_px": u.pix**2, "r_eq_px": u.pix, "flux": RATE,
        "flux_err": RATE, "flux_iso": RATE, "flux_iso_err": RATE, "flux_err_stat": RATE,
        "flux_err_scale": RATE, "ra": u.deg, "dec": u.deg, "r_gal_px": u.pix,
        "r_gal_kpc": u.kpc, "r_eq_pc": u.pc, "area_kpc2": u.kpc**2, "flux_cgs": FLUX,
        "flux_cgs_err": FLUX, "luminosity": u.erg / u.s, "luminosity_err": u.erg / u.s,
        "log_luminosity": u.dex(u.erg / u.s), "surface_brightness": FLUX / u.arcsec**2},
    "10_halpha_muse/anchor_fit.ecsv": dict.fromkeys(
        ("image", "muse", "muse_err", "muse_p16", "muse_p84"), FLUX),
    "10_halpha_muse/nebulae.ecsv": dict.fromkeys(
        ("flux_ours", "flux_ours_err", "flux_muse", "flux_muse_err", "flux_before",
         "flux_true"), FLUX),
    # one row per metric, each with its own unit in the 'unit' column: no column unit
    "11_qa/qa.ecsv": {},
}

#: 10's images that carry an uncertainty: those on the image's own grid. The ones on
#: MUSE's grid (smoothed and regridded: correlated noise) have none; see 10's notebook.
WITH_UNCERT_10 = {"halpha_contsub.fits", "halpha_contsub_sb.fits", "continuum.fits",
                  "halpha_anchored.fits", "halpha_anchored_repaired.fits",
                  "halpha_anchored_wnoise.fits", "muse_halpha.fits", "muse_nii6583.fits"}


def fits_products(root: Path) -> list[Path]:
    paths = sorted(p for p in root.rglob("*.fits")
                   if not any(part.startswith(".") for part in p.relative_to(root).parts))
    assert len(paths) > 60, f"only {len(paths)} FITS products under {root}"
    return paths


def promised_planes(rel: Path) -> tuple[bool, bool]:
    """(UNCERT, MASK) the README promises for this product."""
    step, name = rel.parts[0], rel.name
    if step in ("04_calibrate", "05_background"):
        return True, True
    if step == "06_badpix":
        return (False, False) if name == "badpix.fits" else (True, True)
    if step in ("07_stack", "08_photometry"):
        return True, True
    if step == "09_hii_regions":
        return True, True
    if step == "10_halpha_muse":
        return name in WITH_UNCERT_10, True
    if step == "02_superflat" and name.startswith("superflat_"):
        return True, True
    return False, False


def read_ccd(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)   # WCS fix-ups, long comments
        return CCDData.read(path)


def test_every_fits_product_opens_with_ccddata(demo_chain):
    failures = []
    for path in fits_products(demo_chain.products):
        rel = path.relative_to(demo_chain.products)
        try:
            ccd = read_ccd(path)
        except Exception as exc:       # noqa: BLE001 -- every product's failure, listed
            failures.append(f"{rel}: CCDData.read fails: {type(exc).__name__}: {exc}")
            continue
        if fits.getheader(path).get("BUNIT") is None:
            failures.append(f"{rel}: no BUNIT")
        if ccd.data.shape != fits.getdata(path).shape:
            failures.append(f"{rel}: CCDData read a {ccd.data.shape} image")
    assert not failures, "\n".join(failures)


def test_uncert_and_mask_where_promised(demo_chain):
    failures, checked = [], 0
    for path in fits_products(demo_chain.products):
        rel = path.relative_to(demo_chain.products)
        want_unc, want_mask = promised_planes(rel)
        with fits.open(path) as hdul:
            names = [h.name for h in hdul]
            if want_unc and "UNCERT" not in names:
                failures.append(f"{rel}: no UNCERT")
            if want_mask and "MASK" not in names:
                failures.append(f"{rel}: no MASK")
            if "UNCERT" in names:
                unc = hdul["UNCERT"].data
                if unc.shape != hdul[0].data.shape or np.nanmin(unc) < 0:
                    failures.append(f"{rel}: UNCERT is not a standard deviation per pixel")
            if "MASK" in names:
                checked += 1
                mh = hdul["MASK"]
                if mh.data.dtype != np.dtype(">u2") and mh.data.dtype != np.uint16:
                    failures.append(f"{rel}: MASK is {mh.data.dtype}, not uint16")
                for name, (value, _) in masks.BITS.items():
                    key = f"MASKB{int(np.log2(value))}"
                    if mh.header.get(key) != name:
                        failures.append(f"{rel}: MASK header has {key} = "
                                        f"{mh.header.get(key)!r}, not {name!r}")
                        break
        if want_unc and "UNCERT" in names:
            ccd = read_ccd(path)
            if ccd.uncertainty is None or ccd.uncertainty.uncertainty_type != "std":
                failures.append(f"{rel}: CCDData does not read UNCERT as a standard deviation")
    assert checked > 50, f"only {checked} products with a MASK"
    assert not failures, "\n".join(failures)


def test_each_stack_names_its_own_filters_masters(demo_chain):
    root = demo_chain.products
    # the masters the calibrated frames of each filter were made with (04)
    by_filter: dict[str, set] = {}
    for p in sorted((root / "04_calibrate").glob("*.fits")):
        h = fits.getheader(p)
        by_filter.setdefault(str(h["FILTER"]), set()).add(
            tuple(h[k] for k in ("BIASFILE", "DARKFILE", "FLATFILE")))
    stacks = sorted((root / "07_stack").glob("stack_*.fits")) + \
        sorted((root / "08_photometry").glob("stack_*.fits"))
    assert {p.parent.name for p in stacks} == {"07_stack", "08_photometry"}
    line = root / "09_hii_regions" / "halpha_line.fits"    # made on the Ha stack's header
    failures = []
    for path in [*stacks, line]:
        h = fits.getheader(path)
        filt = str(h["FILTER"])
        rel = path.relative_to(root)
        want = f"superflat_{filter_part(filt)}.fits"
        if h.get("FLATFILE") != want:
            failures.append(f"{rel} ({filt}): FLATFILE = {h.get('FLATFILE')!r}, not {want!r}")
        (frames,) = by_filter[filt]      # one set of masters per filter on the demo
        got = tuple(h.get(k) for k in ("BIASFILE", "DARKFILE", "FLATFILE"))
        if got != frames:
            failures.append(f"{rel}: masters {got}, its {filt} frames' {frames}")
    assert len(stacks) == 4
    assert not failures, "\n".join(failures)


def test_every_header_says_when_and_which_run(demo_chain):
    root = demo_chain.products
    failures = []
    for path in fits_products(root):
        rel = path.relative_to(root)
        h = fits.getheader(path)
        date = h.get("DATE")
        try:
            np.datetime64(date)
        except (TypeError, ValueError):
            failures.append(f"{rel}: DATE = {date!r} is not an ISO time")
        record = json.loads((root / ".redux" / f"{rel.parts[0]}.json").read_text())
        if h.get("REDXSTEP") != rel.parts[0]:
            failures.append(f"{rel}: REDXSTEP = {h.get('REDXSTEP')!r}")
        if h.get("REDXFP") != record["fingerprint"]:
            failures.append(f"{rel}: REDXFP = {h.get('REDXFP')!r}, the step's record says "
                            f"{record['fingerprint']!r}")
    assert not failures, "\n".join(failures)


def test_every_table_has_units_on_its_physical_columns(demo_chain):
    root = demo_chain.products
    found = sorted(str(p.relative_to(root)) for p in root.rglob("*.ecsv")
                   if not any(part.startswith(".") for part in p.relative_to(root).parts))
    unlisted = sorted(set(found) - set(PHYSICAL))
    assert not unlisted, f"tables not in PHYSICAL (say which columns are physical): {unlisted}"
    missing = sorted(set(PHYSICAL) - set(found))
    assert not missing, f"the demo run made no {missing}"
    failures = []
    for rel, columns in PHYSICAL.items():
        table = Table.read(root / rel, format="ascii.ecsv")
        for col, unit in columns.items():
            if col not in table.colnames:
                failures.append(f"{rel}: no column {col}")
            elif table[col].unit is None:
                failures.append(f"{rel}: {col} has no unit (should be {unit})")
            elif u.Unit(table[col].unit) != unit:
                failures.append(f"{rel}: {col} in {table[col].unit}, should be {unit}")
    assert not failures, f"{len(failures)} columns:\n" + "\n".join(failures)


@pytest.mark.parametrize("rel", ["03_cosmics", "06_badpix/badpix.fits"])
def test_masks_open_as_dimensionless_ccddata(demo_chain, rel):
    """The cosmic-ray and bad-pixel maps: flags, read as dimensionless images."""
    target = demo_chain.products / rel
    paths = sorted(target.glob("*_crmask.fits")) if target.is_dir() else [target]
    assert paths
    for path in paths:
        ccd = read_ccd(path)
        assert ccd.unit == u.dimensionless_unscaled, path.name
        assert np.array_equal(ccd.data, fits.getdata(path)), path.name


def test_every_file_a_step_writes_is_in_the_product_registry(demo_chain):
    """`redux_helpers.products.PRODUCTS` is the whole list: every file of every step folder of
    the demo run is one of its step's products, and every product that is not optional is there."""
    from redux_helpers import products

    unknown, missing = [], []
    for step in products.STEPS:
        folder = demo_chain.products / step
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        unknown += [f"{step}/{n}" for n in names if products.product_of(step, n) is None]
        found = {products.product_of(step, n) for n in names}
        missing += [f"{step}: {key} ({p.pattern})" for key, p in products.of_step(step).items()
                    if not p.optional and key not in found]
    assert not unknown, f"files no product of the registry names: {unknown}"
    assert not missing, f"products the demo run did not make: {missing}"
    # the registry gives the path every notebook used
    assert products.path(lambda s: demo_chain.products / s, "stack", filter="Ha").is_file()
    assert products.file_name("superdark", temp=-20) == "superdark_-20C.fits"
