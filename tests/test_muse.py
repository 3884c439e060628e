"""MUSE cubes, maps, synthetic bands and nebulae (`redux_helpers.muse`).

Synthetic cubes are built here with known line fluxes; the real-data tests read the
Abell 478 MUSE cube, the WFPC2 F814W image and the filter curves that the BSD-licensed
mpdaf package ships as test data (../shared/realdata/muse_a478_mpdaf).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from redux_helpers import muse
from redux_helpers.errors import ReduxError

MUSE_BUNIT = "10**(-20)*erg/s/cm**2/Angstrom"
SIGMA_AA = 2.5  # Gaussian sigma of the synthetic lines (Å)
NOISE = 2.0  # 1-sigma noise per pixel, 1e-20 erg/s/cm2/Å


def celestial_header(nx, ny, naxis=2) -> fits.Header:
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = 150.0, 2.0
    h["CRPIX1"], h["CRPIX2"] = nx / 2, ny / 2
    h["CD1_1"], h["CD2_2"] = -0.2 / 3600, 0.2 / 3600
    h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
    if naxis == 3:
        h["WCSAXES"] = 3
    return h


def gaussian(wave, centre, flux):
    norm = flux / (math.sqrt(2 * math.pi) * SIGMA_AA)
    return norm * np.exp(-0.5 * ((wave - centre) / SIGMA_AA) ** 2)


def truth(nx=12, ny=10):
    """Injected fluxes per spaxel (1e-20 erg/s/cm2) and the continuum (1e-20 .../Å)."""
    yy, xx = np.mgrid[:ny, :nx].astype(float)
    ha = 2000.0 + 300.0 * xx + 150.0 * yy
    n2 = ha * (0.3 + 0.05 * xx)  # [NII]6583
    c0 = 50.0 + 5.0 * yy  # continuum at 7000 Å
    slope = 0.02 + 0.003 * xx  # per Å
    return {"halpha": ha, "nii_6583": n2, "nii_6548": n2 / 3.0, "c0": c0, "slope": slope}


def make_cube(path, *, z=0.05, noise=0.0, seed=1, nwave=600, w0=6800.0, dw=1.25,
              bunit=MUSE_BUNIT, flat=None, power=None, gz=False):
    """A MUSE-like cube (DATA, STAT) of 12 x 10 spaxels written to ``path``.

    Lines and continuum from `truth`; or a flat f_λ (``flat``) or f_λ ∝ λ^``power``
    (normalised to 1e-20 x 100 at 7000 Å) without lines.
    """
    nx, ny = 12, 10
    wave = w0 + dw * np.arange(nwave)
    t = truth(nx, ny)
    lam = wave[:, None, None]
    if flat is not None:
        data = np.full((nwave, ny, nx), flat)
    elif power is not None:
        data = 100.0 * (lam / 7000.0) ** power * np.ones((ny, nx))
    else:
        data = t["c0"] + t["slope"] * (lam - 7000.0)
        for key, rest in muse.REST_AIR.items():
            data = data + gaussian(lam, rest * (1 + z), t[key])
    var = np.full(data.shape, NOISE**2)
    if noise:
        data = data + np.random.default_rng(seed).normal(0.0, NOISE, data.shape)
    h = celestial_header(nx, ny, naxis=3)
    h["CTYPE3"], h["CUNIT3"], h["CRVAL3"], h["CRPIX3"], h["CD3_3"] = "AWAV", "Angstrom", w0, 1.0, dw
    h["BUNIT"] = bunit
    hdus = fits.HDUList([fits.PrimaryHDU(),
                         fits.ImageHDU(data.astype(np.float32), h, name="DATA"),
                         fits.ImageHDU(var.astype(np.float32), h, name="STAT")])
    hdus.writeto(path)
    return path


@pytest.fixture(scope="module")
def cubes(tmp_path_factory):
    """A noise-free and a noisy cube with lines at z = 0.05, read back."""
    d = tmp_path_factory.mktemp("muse")
    clean = muse.read_cube(make_cube(d / "clean.fits"))
    noisy = muse.read_cube(make_cube(d / "noisy.fits.gz", noise=NOISE))
    return clean, noisy


# ---- 1. line maps on a synthetic cube ----------------------------------------------------
def test_cube_units_and_wavelengths(cubes):
    clean, _ = cubes
    assert clean.data.shape == (600, 10, 12)
    assert clean.wave[0] == 6800.0 and clean.wave[-1] == pytest.approx(6800 + 599 * 1.25)
    t = truth()
    # continuum at 6800 Å in cgs (no line there)
    np.testing.assert_allclose(clean.data[0], 1e-20 * (t["c0"] - 200 * t["slope"]), rtol=1e-5)
    np.testing.assert_allclose(clean.var, (NOISE * 1e-20) ** 2, rtol=1e-6)
    assert clean.medium == "air"
    assert clean.wcs.naxis == 2


def test_line_maps_recover_injected_fluxes(cubes):
    clean, _ = cubes
    t = truth()
    maps = muse.line_maps(clean, redshift=0.05)
    # ±300 km/s at 6891 Å is ±2.76 sigma of these lines: 99.42 % of each is inside
    inside = math.erf(300.0 / muse.C_KMS * 6562.8 * 1.05 / SIGMA_AA / math.sqrt(2))
    ha = maps.halpha.data / 1e-20
    n2 = maps.nii_6583.data / 1e-20
    n1 = maps.nii_6548.data / 1e-20
    np.testing.assert_allclose(ha, t["halpha"], rtol=0.01)
    np.testing.assert_allclose(n2, t["nii_6583"], rtol=0.01)
    np.testing.assert_allclose(n1, t["nii_6548"], rtol=0.01)
    # and closer than that to the fraction of a Gaussian the window holds
    np.testing.assert_allclose(ha, inside * t["halpha"], rtol=1e-3)
    # the continuum at Hα (straight line, exactly recovered)
    lam_ha = 6562.80 * 1.05
    np.testing.assert_allclose(maps.continuum.data / 1e-20,
                               t["c0"] + t["slope"] * (lam_ha - 7000.0), rtol=1e-4)
    assert maps.halpha.unit == "erg / (s cm2)"
    assert maps.continuum.unit == str(muse.FLAMBDA_UNIT)
    assert maps.halpha.pixel_scale_arcsec == pytest.approx(0.2)
    assert maps.halpha.pixel_area_arcsec2 == pytest.approx(0.04)
    lo, hi = maps.windows["halpha"]
    assert (hi - lo) / 2 == pytest.approx(300.0 / muse.C_KMS * lam_ha)
    assert maps.windows["cont_blue"][1] < maps.windows["nii_6548"][0]


def test_line_map_errors_match_the_scatter(cubes):
    clean, noisy = cubes
    ref = muse.line_maps(clean, redshift=0.05)
    got = muse.line_maps(noisy, redshift=0.05)
    for key in ("halpha", "nii_6583", "continuum"):
        a, b = getattr(got, key), getattr(ref, key)
        pull = (a.data - b.data) / a.uncertainty
        assert abs(np.mean(pull)) < 0.3, key
        assert 0.8 < np.std(pull) < 1.2, key
    # the error includes the continuum fit's: larger than the window pixels' alone
    n_pix = 2 * 300.0 / muse.C_KMS * 6562.8 * 1.05 / 1.25
    assert np.all(got.halpha.uncertainty > 1.05 * np.sqrt(n_pix) * 1.25 * NOISE * 1e-20)


def test_redshift_estimated_from_the_summed_spectrum(cubes, caplog):
    clean, noisy = cubes
    for cube in (clean, noisy):
        with caplog.at_level(logging.INFO, logger="redux_helpers.muse"):
            found = muse.fit_redshift(cube)
        assert found["z"] == pytest.approx(0.05, abs=1e-4)
        sigma_kms = SIGMA_AA / (6562.8 * 1.05) * muse.C_KMS
        assert found["sigma_kms"] == pytest.approx(sigma_kms, rel=0.03)
    assert "redshift from the summed spectrum" in caplog.text
    maps = muse.line_maps(noisy)
    assert maps.redshift == pytest.approx(0.05, abs=1e-4)


def test_nii_stronger_than_halpha_is_still_identified(tmp_path):
    """LINER-like: [NII]6583 = 2 x Hα, so the strongest peak is [NII]6583, not Hα."""
    path = make_cube(tmp_path / "liner.fits", z=0.06)
    with fits.open(path, mode="update") as h:
        t = truth()
        wave = 6800.0 + 1.25 * np.arange(600)
        lam = wave[:, None, None]
        extra = gaussian(lam, 6583.45 * 1.06, 2.0 * t["halpha"] - t["nii_6583"]) \
            + gaussian(lam, 6548.05 * 1.06, (2.0 * t["halpha"] - t["nii_6583"]) / 3)
        h["DATA"].data = (h["DATA"].data + extra).astype(np.float32)
    cube = muse.read_cube(path)
    found = muse.fit_redshift(cube)
    assert found["peak_is"] == "nii_6583"
    assert found["z"] == pytest.approx(0.06, abs=1e-4)
    assert found["nii_ha"] == pytest.approx(2.0, rel=0.02)


def test_windows_stop_halfway_between_close_lines(cubes, caplog):
    clean, _ = cubes
    with caplog.at_level(logging.INFO, logger="redux_helpers.muse"):
        maps = muse.line_maps(clean, redshift=0.05, window_kms=600.0, cont_kms=(1500.0, 3000.0))
    mid_blue = 0.5 * (6548.05 + 6562.80) * 1.05
    mid_red = 0.5 * (6562.80 + 6583.45) * 1.05
    assert maps.windows["halpha"][0] == pytest.approx(mid_blue)
    assert maps.windows["nii_6548"][1] == pytest.approx(mid_blue)
    assert maps.windows["halpha"][1] == pytest.approx(mid_red)
    assert maps.windows["nii_6583"][0] == pytest.approx(mid_red)
    assert "meet halfway" in caplog.text
    # the Hα window now reaches 6.2 sigma towards 6548 and 8.6 towards 6583: nearly all in
    t = truth()
    np.testing.assert_allclose(maps.halpha.data / 1e-20, t["halpha"], rtol=2e-3)


# ---- 2. bad input -------------------------------------------------------------------------
def test_halpha_outside_the_cube(cubes):
    clean, _ = cubes
    with pytest.raises(ReduxError,
                       match=r"clean\.fits.*covers 6799–7549 Å.*z = 0\.2000.*7875 Å"):
        muse.line_maps(clean, redshift=0.2)
    with pytest.raises(ReduxError, match=r"clean\.fits.*red continuum band.*Å"):
        muse.line_maps(clean, redshift=0.14)  # Hα at 7482 Å, the red band past 7549 Å


def write_map(path, *, wcs=True, bunit="10**(-20)*erg/s/cm**2", stat=None, err=None):
    data = np.arange(20.0).reshape(4, 5)
    h = celestial_header(5, 4) if wcs else fits.Header()
    if bunit is not None:
        h["BUNIT"] = bunit
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(data, h, name="DATA")]
    if stat is not None:
        hdus.append(fits.ImageHDU(np.full_like(data, stat), h, name="STAT"))
    if err is not None:
        hdus.append(fits.ImageHDU(np.full_like(data, err), h, name="ERR"))
    fits.HDUList(hdus).writeto(path)
    return path


def test_read_image_units_and_errors(tmp_path):
    img = muse.read_image(write_map(tmp_path / "ha.fits", stat=9.0))
    np.testing.assert_allclose(img.data, 1e-20 * np.arange(20.0).reshape(4, 5))
    np.testing.assert_allclose(img.uncertainty, 3e-20)  # sqrt of the variance
    assert img.unit == "erg / (s cm2)"
    img = muse.read_image(write_map(tmp_path / "sb.fits", err=2.0,
                                    bunit="1e-17 erg/s/cm2/arcsec2"))
    # per arcsec² times 0.04 arcsec² per pixel
    np.testing.assert_allclose(img.data, 0.04e-17 * np.arange(20.0).reshape(4, 5))
    np.testing.assert_allclose(img.uncertainty, 0.08e-17)
    img = muse.read_image(write_map(tmp_path / "fl.fits", bunit="erg/s/cm2/A"))
    assert img.unit == str(muse.FLAMBDA_UNIT)  # 'A' taken for Angstrom, not ampere


def test_map_without_wcs(tmp_path):
    path = write_map(tmp_path / "nowcs.fits", wcs=False)
    with pytest.raises(ReduxError, match=r"nowcs\.fits: MUSE Halpha map has no celestial WCS"):
        muse.read_image(path)


def test_bunit_not_a_flux(tmp_path):
    with pytest.raises(ReduxError, match=r"adu\.fits: BUNIT = 'adu'.*not a flux.*erg/s/cm2"):
        muse.read_image(write_map(tmp_path / "adu.fits", bunit="adu"))
    with pytest.raises(ReduxError, match=r"cube_adu\.fits: BUNIT = 'adu'"):
        muse.read_cube(make_cube(tmp_path / "cube_adu.fits", bunit="adu"))
    with pytest.raises(ReduxError,
                       match=r"junk\.fits: BUNIT = 'furlongs/fortnight!'.*does not parse"):
        muse.read_image(write_map(tmp_path / "junk.fits", bunit="furlongs/fortnight!"))
    with pytest.raises(ReduxError, match=r"nobunit\.fits: .* has no BUNIT"):
        muse.read_image(write_map(tmp_path / "nobunit.fits", bunit=None))


def test_cube_given_as_a_map(cubes):
    clean, _ = cubes
    with pytest.raises(ReduxError, match=r"clean\.fits: .* is a cube .*muse\.read_cube"):
        muse.read_image(clean.path)


def test_missing_file(tmp_path):
    with pytest.raises(ReduxError, match=r"nothere\.fits: file not found"):
        muse.read_cube(tmp_path / "nothere.fits")


# ---- 3. synthetic bands -----------------------------------------------------------------
def test_pivot_wavelength_of_a_boxcar():
    wave = np.linspace(6000.0, 8000.0, 2001)
    expected = math.sqrt((8000.0**2 - 6000.0**2) / 2 / math.log(8000.0 / 6000.0))
    assert muse.pivot_wavelength(wave, np.ones_like(wave)) == pytest.approx(expected, rel=1e-6)


def test_synthetic_band_flat_and_power_law(tmp_path):
    filt_w = np.array([7000.0, 7100.0, 7300.0, 7400.0, 7500.0])
    filt_t = np.array([0.0, 0.8, 0.95, 0.6, 0.0])
    flat = muse.read_cube(make_cube(tmp_path / "flat.fits", flat=37.0))
    img, cov = muse.synthetic_band(flat, filt_w, filt_t)
    assert cov == pytest.approx(1.0)
    np.testing.assert_allclose(img.data, 37e-20, rtol=1e-3)
    assert img.unit == str(muse.FLAMBDA_UNIT)

    pl = muse.read_cube(make_cube(tmp_path / "pl.fits", power=-2.0))
    img, _ = muse.synthetic_band(pl, filt_w, filt_t)
    fine = np.linspace(7000.0, 7500.0, 50001)
    t = np.interp(fine, filt_w, filt_t)
    f = 100e-20 * (fine / 7000.0) ** -2
    expected = np.trapezoid(f * t * fine, fine) / np.trapezoid(t * fine, fine)
    np.testing.assert_allclose(img.data, expected, rtol=5e-3)
    # the photon-weighted mean is not the plain mean of f over the band
    plain = np.trapezoid(f * t, fine) / np.trapezoid(t, fine)
    print(f"\npower law: band {img.data[0, 0]:.6g}, photon-weighted {expected:.6g}, "
          f"plain mean {plain:.6g}")
    assert abs(img.data[0, 0] / expected - 1) < 0.2 * abs(plain / expected - 1)
    # the error of a mean of ~300 weighted pixels of sigma NOISE
    w = np.interp(pl.wave, filt_w, filt_t) * pl.wave  # ∫ T λ dλ of each pixel, roughly
    assert img.uncertainty[0, 0] == pytest.approx(NOISE * 1e-20 * np.sqrt((w**2).sum()) / w.sum(),
                                            rel=0.01)


def test_synthetic_band_coverage(tmp_path):
    cube = muse.read_cube(make_cube(tmp_path / "flat.fits", flat=10.0))
    end = cube.wave_edges[-1]  # 7549.375 Å
    wave = np.array([end - 150.5, end - 150.0, end + 150.0, end + 150.5])
    thr = np.array([0.0, 1.0, 1.0, 0.0])
    expected = (end**2 - (end - 150.25) ** 2) / ((end + 150.25) ** 2 - (end - 150.25) ** 2)
    img, cov = muse.synthetic_band(cube, wave, thr, min_coverage=0.4)
    assert cov == pytest.approx(0.5, abs=0.02)
    assert cov == pytest.approx(expected, abs=1e-3)
    np.testing.assert_allclose(img.data, 10e-20, rtol=1e-6)
    with pytest.raises(ReduxError, match=r"flat\.fits: the filter \(7399–7699 Å\) lies only 50% "
                                         r"inside the cube's 6799–7549 Å"):
        muse.synthetic_band(cube, wave, thr)


def test_read_filter_curve_names(tmp_path):
    cols = [fits.Column(name="lambda", format="D", array=[7000.0, 7100.0, 7200.0]),
            fits.Column(name="throughput", format="D", array=[0.1, 0.5, 0.2])]
    tabs = [fits.BinTableHDU.from_columns(cols, name=n)
            for n in ("ACS_F814W", "WFPC2_F814W", "WFC3_F656N")]
    path = tmp_path / "filters.fits"
    fits.HDUList([fits.PrimaryHDU(), *tabs]).writeto(path)
    wave, thr = muse.read_filter_curve(path, "wfpc2_f814w")
    np.testing.assert_array_equal(wave, [7000.0, 7100.0, 7200.0])
    np.testing.assert_array_equal(thr, [0.1, 0.5, 0.2])
    assert muse.read_filter_curve(path, "F656N")[1][1] == 0.5
    with pytest.raises(ReduxError, match=r"filters\.fits: filter 'F814W' is ambiguous: it could "
                                         r"be ACS_F814W, WFPC2_F814W"):
        muse.read_filter_curve(path, "F814W")
    with pytest.raises(ReduxError, match=r"'Ha' is not there: it has ACS_F814W, WFPC2_F814W, "
                                         r"WFC3_F656N"):
        muse.read_filter_curve(path, "Ha")


# ---- nebulae -----------------------------------------------------------------------------
def test_nebulae_mask_catalogue_and_sums(tmp_path, caplog):
    mask = np.full((6, 7), -1.0)
    mask[0:2, 0:3] = 0
    mask[3:6, 4:7] = 5
    mask[4, 0] = 2
    mask[5, 0] = np.nan
    mask[5, 1] = -3
    path = tmp_path / "mask.fits"
    fits.PrimaryHDU(mask, celestial_header(7, 6)).writeto(path)
    cat = Table({"region_ID": [0, 2, 5, 9], "flux": [1.0, 2.0, 3.0, 4.0]})
    cpath = tmp_path / "nebulae.ecsv"
    cat.write(cpath)
    with caplog.at_level(logging.WARNING, logger="redux_helpers.muse"):
        labels, table = muse.read_nebulae(path, cpath)
    assert "1 of 4 catalogue ids (9) are not in the mask" in caplog.text
    assert labels.data.dtype == np.int64
    assert set(np.unique(labels.data)) == {-1, 0, 2, 5}
    assert labels.data[5, 0] == -1 and labels.data[5, 1] == -1
    assert table.meta["id_column"] == "region_ID" and len(table) == 4

    image = np.arange(42.0).reshape(6, 7)
    image[4, 5] = np.nan
    err = np.full((6, 7), 2.0)
    sums = muse.nebula_sums(image, labels, uncertainty=err)
    assert list(sums["id"]) == [0, 2, 5]
    assert list(sums["npix"]) == [6, 1, 9]
    assert list(sums["n_bad"]) == [0, 0, 1]
    np.testing.assert_allclose(sums["flux"], [0 + 1 + 2 + 7 + 8 + 9, 28,
                                              np.nansum(image[3:6, 4:7])])
    np.testing.assert_allclose(sums["flux_err"], [2 * math.sqrt(6), 2.0, 2 * math.sqrt(8)])
    # the float mask straight from the file (NaN, -3) gives the same sums
    raw = muse.nebula_sums(image, mask)
    assert list(raw["id"]) == [0, 2, 5] and list(raw["npix"]) == [6, 1, 9]
    np.testing.assert_allclose(raw["flux"], sums["flux"])


def test_nebulae_bad_inputs(tmp_path):
    path = tmp_path / "mask.fits"
    fits.PrimaryHDU(np.zeros((3, 3)), celestial_header(3, 3)).writeto(path)
    cpath = tmp_path / "cat.ecsv"
    Table({"name": ["a"], "ra": [1.0]}).write(cpath)
    with pytest.raises(ReduxError, match=r"cat\.ecsv: .*no id column.*\['name', 'ra'\]"):
        muse.read_nebulae(path, cpath)
    fpath = tmp_path / "flux.fits"
    fits.PrimaryHDU(np.full((3, 3), 0.5), celestial_header(3, 3)).writeto(fpath)
    with pytest.raises(ReduxError, match=r"flux\.fits: .*non-integer"):
        muse.read_nebulae(fpath)
    with pytest.raises(ReduxError, match="regrid"):
        muse.nebula_sums(np.zeros((4, 4)), np.zeros((3, 3), int))


# ---- 4. real data: the Abell 478 MUSE cube (mpdaf's test data) -------------------------
@pytest.fixture(scope="module")
def a478(realdata):
    folder = realdata / "muse_a478_mpdaf"
    if not folder.is_dir():
        pytest.skip(f"MUSE test data not found at {folder}")
    return folder, muse.read_cube(folder / "minicube.fits.gz")


@pytest.mark.realdata
def test_a478_cube_reads(a478):
    _, cube = a478
    assert cube.data.shape == (3681, 40, 40)
    assert cube.wave[0] == pytest.approx(4749.890625) and cube.wave[1] - cube.wave[0] == 1.25
    assert cube.medium == "air"
    assert np.isnan(cube.data).sum() == 5  # the 5 pixels flagged in DQ
    # BUNIT 1e-20 erg/s/cm2/Å: the median spaxel value in cgs
    assert np.nanmedian(cube.data) == pytest.approx(23.3e-20, rel=0.01)


@pytest.mark.realdata
def test_a478_redshift_and_halpha(a478):
    _, cube = a478
    found = muse.fit_redshift(cube)
    print(f"\nA478: z = {found['z']:.5f}, sigma = {found['sigma_kms']:.0f} km/s, strongest "
          f"peak {found['peak']:.1f} Å taken as {found['peak_is']}")
    assert found["z"] == pytest.approx(0.086, abs=0.002)
    assert found["peak_is"] == "nii_6583"  # [NII] outshines Hα in this cool-core BCG

    # hand measurement of the brightest spaxel: ±10 Å around its peak, less the median
    # of 7000-7060 and 7200-7260 Å
    lam_ha = 6562.80 * (1 + found["z"])
    maps = muse.line_maps(cube, redshift=found["z"], window_kms=10.0 / lam_ha * muse.C_KMS)
    iy, ix = np.unravel_index(np.nanargmax(maps.halpha.data), maps.halpha.data.shape)
    spec = cube.data[:, iy, ix].astype(np.float64)
    w = cube.wave
    cont = np.median(spec[((w >= 7000) & (w <= 7060)) | ((w >= 7200) & (w <= 7260))])
    near = np.abs(w - lam_ha) <= 10
    peak = w[near][np.argmax(spec[near])]
    hand = (spec[np.abs(w - peak) <= 10] - cont).sum() * 1.25
    ratio = maps.halpha.data[iy, ix] / hand
    print(f"A478 brightest spaxel ({ix}, {iy}): Hα map {maps.halpha.data[iy, ix]:.4g}, "
          f"hand {hand:.4g} erg/s/cm2, ratio {ratio:.3f}")
    assert ratio == pytest.approx(1.0, abs=0.05)
    assert maps.halpha.data[iy, ix] / maps.halpha.uncertainty[iy, ix] > 30

    # the maps are linear in the data: their sums are the summed spectrum's lines
    default = muse.line_maps(cube, redshift=found["z"])
    nii_ha = np.nansum(default.nii_6583.data) / np.nansum(default.halpha.data)
    n1_n2 = np.nansum(default.nii_6548.data) / np.nansum(default.nii_6583.data)
    print(f"A478 summed spectrum: [NII]6583/Hα = {nii_ha:.3f}, [NII]6548/6583 = {n1_n2:.3f}; "
          f"default-window Hα of that spaxel / hand = {default.halpha.data[iy, ix] / hand:.3f}")
    assert 0 < nii_ha < 3
    assert n1_n2 == pytest.approx(1 / 3, abs=0.06)  # fixed by atomic physics (0.34)


@pytest.mark.realdata
def test_a478_filter_curves(a478):
    folder, _ = a478
    path = folder / "filter_list.fits"
    with pytest.raises(ReduxError,
                       match="ambiguous: it could be ACS_F814W, WFPC2_F814W, WFC3_F814W"):
        muse.read_filter_curve(path, "F814W")
    wave, thr = muse.read_filter_curve(path, "WFPC2_F814W")
    photplam = fits.getval(folder / "a478hst-cutout.fits", "PHOTPLAM", extname="SCI")
    assert muse.pivot_wavelength(wave, thr) == pytest.approx(photplam, abs=15.0)


@pytest.mark.realdata
def test_a478_synthetic_f814w_against_hst(a478):
    folder, cube = a478
    wave, thr = muse.read_filter_curve(folder / "filter_list.fits", "WFPC2_F814W")
    img, cov = muse.synthetic_band(cube, wave, thr)
    inside = (wave >= cube.wave_edges[0]) & (wave <= cube.wave_edges[-1])
    expected = np.trapezoid((thr * wave)[inside], wave[inside]) / np.trapezoid(thr * wave, wave)
    assert cov == pytest.approx(expected, abs=0.005)

    with fits.open(folder / "a478hst-cutout.fits") as h:
        sci = h["SCI"].data.astype(np.float64)
        hwcs = WCS(h["SCI"].header)
        photflam = h["SCI"].header["PHOTFLAM"]
    yy, xx = np.mgrid[: sci.shape[0], : sci.shape[1]]
    cx, cy = cube.wcs.world_to_pixel(hwcs.pixel_to_world(xx, yy))
    ny, nx = cube.data.shape[1:]
    foot = (cx > -0.5) & (cx < nx - 0.5) & (cy > -0.5) & (cy < ny - 0.5)
    hst = np.nansum(sci[foot]) * photflam
    cube_total = np.nansum(img.data)
    print(f"\nA478 WFPC2_F814W: coverage {cov:.3f}; cube {cube_total:.4g}, HST {hst:.4g} "
          f"erg/s/cm2/Å over {foot.sum()} HST pixels; cube/HST = {cube_total / hst:.3f}")
    assert 0.5 < cube_total / hst < 2.0


@pytest.mark.realdata
def test_a478_white_light_image_without_bunit(a478):
    folder, _ = a478
    path = folder / "IMAGE-HDFS-1.34.fits"
    with pytest.raises(ReduxError,
                       match=r"IMAGE-HDFS-1\.34\.fits: .* has no BUNIT.*FSCALE = 1e-20"):
        muse.read_image(path, what="MUSE white-light image")
    img = muse.read_image(path, what="MUSE white-light image", bunit=MUSE_BUNIT)
    with fits.open(path) as h:
        raw, stat, dq = h["DATA"].data, h["STAT"].data, h["DQ"].data
    assert np.isnan(img.data).sum() == int((dq != 0).sum())
    good = dq == 0
    np.testing.assert_allclose(img.data[good], 1e-20 * raw[good], rtol=1e-6)
    np.testing.assert_allclose(img.uncertainty[good], 1e-20 * np.sqrt(stat[good]), rtol=1e-6)
    assert img.pixel_scale_arcsec == pytest.approx(0.2, rel=1e-6)
