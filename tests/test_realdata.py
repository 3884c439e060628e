"""Real telescope frames from ../shared/realdata (skipped, saying so, when absent).

Sources: Kitt Peak 1987 RCA CCD frames of M92 from the IRAF "CCD reductions" tutorial;
an SAAO 1.0 m frame from ccdproc's test data; MaxIm DL / ACP header crops from
msumastro; the IRAF dev$pix image of M51; M13 frames from a small amateur camera.
"""

import numpy as np
import pytest
from astropy.io import fits

from redux_helpers import headers, inventory
from redux_helpers.calibrate import FrameReader


def test_m92_classification_through_manifest_codes(realdata):
    settings = {"filter_keyword": "FILTERS", "filter_codes": {"5 0": "B", "6 0": "V"}}
    inv = inventory.build_inventory(realdata / "kpno_m92_raw", settings)
    kinds = {r["file"]: (r["frametype"], r["filter"]) for r in inv}
    assert kinds["m92001.fits"][0] == "bias"
    assert kinds["m92006.fits"] == ("flat", "B") and kinds["m92007.fits"] == ("flat", "V")
    assert kinds["m92010.fits"] == ("light", "V") and kinds["m92014.fits"] == ("light", "B")
    assert inv["exptime"][list(inv["file"]).index("m92014.fits")] == 120.0


def test_m92_overscan_matches_hand_arithmetic(realdata):
    path = realdata / "kpno_m92_raw" / "m92010.fits"
    raw = fits.getdata(path).astype(np.float64)
    r = FrameReader(path)
    assert r.shape == (512, 320)
    hand = raw[:, :320] - np.median(raw[:, 320:352], axis=1)[:, None]
    np.testing.assert_allclose(r.read(), hand, rtol=1e-6, atol=1e-3)


def test_saao_prescan_on_the_left(realdata):
    path = realdata / "saao_1m_single_raw" / "a8280271.fits"
    h = fits.getheader(path)
    r = FrameReader(path)
    assert r.shape == (520, 512)
    raw = fits.getdata(path).astype(np.float64)
    hand = raw[:, 16:528] - np.median(raw[:, 3:13], axis=1)[:, None]
    np.testing.assert_allclose(r.read(), hand, rtol=1e-6, atol=1e-2)
    assert headers.frame_type(h) == "light"
    assert headers.gain(h) == 1.9 and headers.read_noise(h) == 5.0
    assert headers.filter_name(h, settings={"filter_keyword": "FILTERS",
                                            "filter_codes": {48: "V"}}) == "V"


@pytest.mark.parametrize("name,kind,filt,exptime", [
    ("msumastro_maximdl_5_23_header.fit", "light", "B", 90.0),
    ("msumastro_maximdl_6_18_header.fit", "light", "r", 90.0),
    ("msumastro_biastest1.fit", "bias", None, 0.0),
    ("msumastro_aspen_trimmed.fit", "flat", "R", 1.0),
    ("M51_devpix.fits", "light", None, 600.0),
])
def test_misc_headers_classify(realdata, name, kind, filt, exptime):
    h = fits.getheader(realdata / "misc_small" / name)
    assert headers.frame_type(h) == kind
    assert headers.filter_name(h) == filt
    assert headers.exptime(h) == exptime
    assert headers.binning(h) == "1x1"


def test_maxim_light_frame_and_gz(realdata):
    inv = inventory.build_inventory(realdata / "m13_blue_lights", {})
    assert len(inv) == 5 and set(inv["frametype"]) == {"light"}
    assert set(inv["exptime"]) == {5.0}


def test_real_bias_crops_combine(realdata):
    """Five real bias crops (level ~35860, rms ~20), against numpy by hand.

    Where no value of a pixel was clipped the combine is numpy's median to the float32
    digit; the superbias's noise is a median-of-5's: 0.535 x one frame's (a Monte-Carlo
    number for Gaussian noise), one frame's noise measured from the difference of two
    frames, which cancels the fixed pattern.
    """
    from astropy.stats import mad_std

    from redux_helpers.combine import combine_readers

    files = sorted((realdata / "misc_small").glob("msumastro_biastest*.fit"))
    res = combine_readers([FrameReader(f) for f in files], method="median")
    stack = np.stack([fits.getdata(f).astype(float) for f in files])
    assert len(files) == 5
    kept = res.n_used == 5
    assert kept.mean() > 0.6          # 74 %: a clip of 5 values by their own MAD takes 8.6 % of them
    assert np.allclose(res.data[kept], np.median(stack, axis=0)[kept], rtol=0, atol=0.01)
    sigma_1 = mad_std(stack[0] - stack[1]) / np.sqrt(2)          # ~19.9 ADU
    expected = 0.535 * sigma_1
    assert abs(np.nanmedian(res.uncertainty) / expected - 1) < 0.08
    ratio = np.std(res.data - np.median(res.data)) / np.std(stack[0] - np.median(stack[0]))
    assert abs(ratio - 0.535) < 0.05, ratio                       # 0.558 measured


@pytest.fixture(scope="module")
def m92(realdata, tmp_path_factory):
    """The chain 00-08 run once on the M92 frames; the products folder."""
    from redux_helpers.runner import run_target
    from tests.conftest import REPO

    products = tmp_path_factory.mktemp("m92")
    run_target("m92", manifest=REPO / "data_manifest.yaml", products=products, html=False,
               only="00,01,02,03,04,05,06,07,08")
    return products


@pytest.mark.notebooks
def test_m92_chain_matches_a_hand_reduction(realdata, m92):
    """The chain (00-04 through papermill) on M92 B and V agrees with plain numpy to 1e-5.

    Hand reduction: per-row overscan median of columns 321-352 subtracted, trimmed to
    columns 1-320; bias = the (already averaged) bias frame so treated; each flat minus
    bias, normalised by the median of every fourth row of its central half; light =
    (raw - overscan - bias) * gain / normalised flat where the flat is above 0.2.
    """
    from redux_helpers import fitsio

    tmp_path = m92
    raw = realdata / "kpno_m92_raw"

    def trimmed(name):
        d = fits.getdata(raw / name).astype(np.float64)
        return d[:, :320] - np.median(d[:, 320:352], axis=1)[:, None]

    gain = 2.0
    bias = trimmed("m92001.fits")
    flats = {}
    for name, filt in (("m92006.fits", "B"), ("m92007.fits", "V")):
        f = (trimmed(name) - bias) * gain
        level = np.median(f[128:384:4, 80:240])
        flats[filt] = f / level
    for name, filt in (("m92010.fits", "V"), ("m92011.fits", "V"), ("m92014.fits", "B"),
                       ("m92015.fits", "B")):
        flat = flats[filt]
        good = flat > 0.2
        hand = (trimmed(name) - bias) * gain / np.where(good, flat, 1.0)
        ours = fitsio.read_product(tmp_path / "m92" / "04_calibrate" / name)
        assert ours.header["FLATFILE"] == f"superflat_{filt}.fits"
        np.testing.assert_allclose(ours.data[good], hand[good], rtol=1e-5, atol=1e-3)
        assert np.all(np.isnan(ours.data[~good]))      # zero flat pixels are never divided by
        assert good.mean() > 0.9


def test_m92_photometry_positions_agree_with_an_independent_centroid(m92):
    """The chain 00-08 on M92 (the module's one run): the CMD's stars sit where a plain
    centroid puts them.

    Independent centroid: for each of the 20 brightest well-measured stars (S/N > 50 in B
    and V, neither flagged nor crowded) of 08's
    catalogue, the intensity-weighted mean position over an 11 x 11 box of the V stack,
    after subtracting the box's median, iterated three times from the catalogue's
    position rounded to a pixel. Also checks the CMD is a cluster's: B - V of the
    main-sequence turn-off region has a narrow spread.
    """
    from redux_helpers import fitsio

    tmp_path = m92
    cat = fitsio.read_table(tmp_path / "m92" / "08_photometry" / "stars.ecsv")
    zp = fitsio.read_table(tmp_path / "m92" / "08_photometry" / "zeropoints.ecsv")
    assert set(zp["source"]) == {"none"}                     # no standards: instrumental
    v = fitsio.read_product(tmp_path / "m92" / "07_stack" / "stack_V.fits").data
    good = (cat["snr_V"] > 50) & (cat["snr_B"] > 50) & ~cat["flagged"] & ~cat["crowded"]
    assert good.sum() >= 15
    pick = np.flatnonzero(good)[np.argsort(-np.asarray(cat["flux_V"][good]))][:20]
    ny, nx = v.shape
    errors = []
    for i in pick:
        x, y = float(cat["x"][i]), float(cat["y"][i])
        cx, cy = round(x), round(y)
        for _ in range(3):
            x0, y0 = int(round(cx)), int(round(cy))
            if not (5 <= x0 < nx - 5 and 5 <= y0 < ny - 5):
                break
            box = np.nan_to_num(v[y0 - 5:y0 + 6, x0 - 5:x0 + 6])
            w = np.clip(box - np.median(box), 0, None)
            yy, xx = np.mgrid[y0 - 5:y0 + 6, x0 - 5:x0 + 6]
            cx, cy = float((w * xx).sum() / w.sum()), float((w * yy).sum() / w.sum())
        errors.append(np.hypot(cx - x, cy - y))
    assert np.median(errors) < 0.15 and np.max(errors) < 0.5, errors
    colour = np.asarray(cat["mag_B"] - cat["mag_V"])[good]
    assert np.percentile(colour, 75) - np.percentile(colour, 25) < 0.3


@pytest.mark.notebooks
def test_saao_single_frame_runs_to_photometry_and_matches_a_hand_reduction(realdata, tmp_path):
    """The one raw SAAO frame (prescan on the left) from the repository manifest, 00-08.

    By hand: each row less the median of its prescan (BIASSEC), the TRIMSEC area, times
    GAIN = 1.9: 04's frame is that to float32 precision. 08's brightest isolated star: its
    flux is the sky-subtracted sum in its aperture with each edge pixel counted by the part
    of it inside (10 x 10 sub-pixels), within 0.5 % (whole pixels alone are 1.9 % off).
    """
    from astropy.stats import sigma_clipped_stats

    from redux_helpers import fitsio
    from redux_helpers.photometry import measure
    from redux_helpers.runner import run_target
    from tests.conftest import REPO

    run_target("saao", manifest=REPO / "data_manifest.yaml", products=tmp_path, html=False,
               only="00,01,02,03,04,05,06,07,08")
    raw = fits.getdata(realdata / "saao_1m_single_raw" / "a8280271.fits").astype(float)
    by_hand = (raw - np.median(raw[:, 3:13], axis=1)[:, None])[:, 16:528] * 1.9
    ours = fitsio.read_product(tmp_path / "saao" / "04_calibrate" / "a8280271.fits")
    assert ours.data.shape == by_hand.shape == (520, 512)
    assert np.allclose(ours.data, by_hand, rtol=1e-5, atol=1e-3)
    cat = fitsio.read_table(tmp_path / "saao" / "08_photometry" / "stars.ecsv")
    stack = fitsio.read_product(tmp_path / "saao" / "07_stack" / "stack_48.fits")
    ok = (cat["kind"] == "star") & ~cat["flagged"] & ~cat["crowded"] & (cat["snr_48"] > 100)
    assert ok.sum() >= 2                         # a sparse field: two bright isolated stars
    i = int(np.flatnonzero(ok)[np.argmax(np.asarray(cat["flux_48"])[ok])])
    x0, y0 = float(cat["x"][i]), float(cat["y"][i])
    yy, xx = np.indices(stack.data.shape)
    d = np.hypot(xx - x0, yy - y0)
    sub = (np.arange(10) + 0.5) / 10 - 0.5
    r_ap = 5.25                                  # 1.5 x the stars' 3.5 px FWHM, as 08's aperture
    near = d < r_ap + 1
    frac = np.mean([np.hypot(xx[near] + dx - x0, yy[near] + dy - y0) <= r_ap
                    for dx in sub for dy in sub], axis=0)
    ring = (d >= 4 * 3.5) & (d <= 6 * 3.5) & (stack.mask == 0)
    _, sky, _ = sigma_clipped_stats(stack.data[ring], sigma=3.0)
    hand = float(np.sum(stack.data[near] * frac) - sky * frac.sum())
    got = float(measure(stack.data, stack.uncertainty, stack.mask, [x0], [y0], r_aperture=r_ap,
                        r_in=4 * 3.5, r_out=6 * 3.5)["flux"][0])
    assert abs(hand / got - 1) < 0.005, (hand, got)
