"""The demo night is deterministic, realistic in form, and consistent with its truth."""

import hashlib

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from redux_helpers import demo


def test_same_config_same_bytes(tmp_path):
    cfg = demo.DemoConfig(size=64, n_bias=3, n_dark=1, n_flat=1, n_light=2)
    a = demo.make_demo(tmp_path / "a", cfg)
    b = demo.make_demo(tmp_path / "b", cfg)
    for p in sorted((a / "raw").iterdir()):
        assert hashlib.sha256(p.read_bytes()).digest() == \
            hashlib.sha256((b / "raw" / p.name).read_bytes()).digest()


def test_raw_frames_look_like_a_camera_wrote_them(small_demo):
    root, truth = small_demo
    h = fits.getheader(root / "raw" / "ngc_demo_R_002.fits")
    assert h["BITPIX"] == 16 and h["BZERO"] == 32768
    for key in ("IMAGETYP", "FILTER", "EXPTIME", "GAIN", "RDNOISE", "AIRMASS", "DATE-OBS",
                "OBJECT", "XBINNING", "CCD-TEMP", "BIASSEC", "TRIMSEC"):
        assert key in h
    # the WCS of a dithered frame puts a star where the truth says it is
    stars = truth.table("stars")
    offset = truth["frames"]["ngc_demo_R_002.fits"]["offset"]
    x, y = WCS(h).world_to_pixel_values(stars["ra"][5], stars["dec"][5])
    assert abs(x - (stars["x"][5] - offset[0])) < 0.01
    assert abs(y - (stars["y"][5] - offset[1])) < 0.01


def test_truth_is_consistent(small_demo):
    root, truth = small_demo
    flat = truth.image("flat_R")
    n = flat.shape[0]
    assert abs(np.median(flat[n // 4: 3 * n // 4, n // 4: 3 * n // 4]) - 1) < 1e-6
    assert np.all(flat[:, truth["dead_columns"]] < 0.05)
    # a star's rate in a frame = its catalogue magnitude through zero point and extinction
    stars = truth.table("stars")
    facts = truth["frames"]["ngc_demo_R_001.fits"]
    expected = 10 ** (-0.4 * (stars["R"] - truth["zero_point"]["R"]
                              + truth["extinction"]["R"] * facts["airmass"]))
    rate = truth.frame_rate("ngc_demo_R_001") - truth["sky_rate"]["R"]
    x, y = np.round(stars["x"]).astype(int), np.round(stars["y"]).astype(int)
    inside = (x >= 12) & (x < n - 12) & (y >= 12) & (y < n - 12)
    d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    crowded = ((d < 20) & (stars["R"][None, :] < stars["R"][:, None] + 5)).sum(axis=1) > 1
    g = truth["galaxy"]
    far = np.hypot(x - g["x"], y - g["y"]) > 40                      # off the galaxy's bright disk
    order = [i for i in np.argsort(stars["R"]) if inside[i] and far[i] and not crowded[i]][2:7]
    assert len(order) == 5                                           # the check always runs
    ratios = []
    for i in order:      # a 17 x 17 box, minus the galaxy under it (the median of a ring around)
        big = rate[y[i] - 12: y[i] + 13, x[i] - 12: x[i] + 13]
        ring = np.ones(big.shape, bool)
        ring[4:-4, 4:-4] = False
        ratios.append((big[4:-4, 4:-4].sum() - 17 ** 2 * np.median(big[ring])) / expected[i])
    assert abs(np.median(ratios) - 1) < 0.02, ratios   # a zero point 0.03 mag off fails
    # cosmic rays were injected in every light frame, hot pixels in the dark current
    assert truth.cr_mask("ngc_demo_R_001").sum() > 0
    hot = truth.table("hot_pixels")
    assert np.all(truth.image("dark_current")[hot["y"], hot["x"]] >= 5.0)
