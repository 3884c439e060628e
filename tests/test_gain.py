"""The camera's gain and read noise: header keywords, photon transfer, and the chain.

(a) `gain.photon_transfer` on frames made here with a known gain and read noise
(Poisson electrons, Gaussian read noise, a flat pattern, a bias pattern, an overscan
level that moves from frame to frame); (b) its refusals; (c) what redux reads from
every real header in the shared folder; (d) a small night of our own making, with no
gain or read-noise keyword anywhere, through 00-04 of the real runner.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from redux_helpers import gain as gainmod
from redux_helpers import headers
from redux_helpers.errors import ReduxError

TRUE_GAIN, TRUE_RN = 2.7, 6.5          # e-/ADU, e-
BIAS_LEVEL = 1000.0                    # ADU


# ---- frames with a known gain and read noise ------------------------------------------
class Camera:
    """Raw frames of a CCD with an overscan strip on the right (uint16-like integers)."""

    def __init__(self, ny=128, nx=160, overscan=16, *, gain=TRUE_GAIN, read_noise=TRUE_RN,
                 seed=1):
        self.ny, self.nx, self.nover = ny, nx, overscan
        self.g, self.rn = gain, read_noise
        self.rng = np.random.default_rng(seed)
        y, x = np.mgrid[:ny, : nx - overscan]
        # a flat pattern: vignetting, a gradient and pixel-to-pixel sensitivity (~1 %)
        r2 = ((x - x.mean()) / x.max()) ** 2 + ((y - y.mean()) / y.max()) ** 2
        self.flat = (1 - 0.15 * r2) * (1 + 0.04 * x / x.max()) * \
            self.rng.normal(1.0, 0.01, x.shape)
        self.bias_pattern = 3.0 * np.sin(x / 7.0) + 0.02 * y   # ADU, the same every frame
        # BIASSEC / TRIMSEC, 1-based inclusive, and as numpy slices
        self.biassec = f"[{nx - overscan + 1}:{nx},1:{ny}]"
        self.trimsec = f"[1:{nx - overscan},1:{ny}]"
        self.sections = headers.sections(fits.Header({"BIASSEC": self.biassec,
                                                      "TRIMSEC": self.trimsec}))

    def frame(self, electrons):
        """A raw frame in ADU: electrons / gain + read noise + bias, overscan included."""
        level = BIAS_LEVEL + self.rng.normal(0, 4.0)        # the level drifts per frame
        raw = np.empty((self.ny, self.nx))
        img = electrons / self.g + self.bias_pattern
        raw[:, : self.nx - self.nover] = img
        raw[:, self.nx - self.nover:] = 0.0
        raw += level + self.rng.normal(0, self.rn / self.g, raw.shape)
        return np.round(raw)                                 # the ADC gives integers

    def bias(self):
        return self.frame(np.zeros(self.flat.shape))

    def flatfield(self, level_e):
        return self.frame(self.rng.poisson(level_e * self.flat).astype(float))

    def light(self, sky_e):
        return self.frame(self.rng.poisson(sky_e * self.flat).astype(float))


@pytest.fixture(scope="module")
def big_camera_frames():
    cam = Camera(ny=400, nx=416, seed=3)
    biases = [cam.bias() for _ in range(6)]
    flats = [cam.flatfield(30000.0 * (1 + 0.02 * k)) for k in range(4)]   # 2 % apart
    return cam, biases, flats


def test_photon_transfer_recovers_gain_and_read_noise(big_camera_frames):
    cam, biases, flats = big_camera_frames
    m = gainmod.photon_transfer(biases, flats, sections=cam.sections)
    assert m.gain == pytest.approx(TRUE_GAIN, rel=0.015)
    assert m.read_noise == pytest.approx(TRUE_RN, rel=0.03)
    assert m.n_pairs == 6 and m.n_bias == 6
    # the error is honest: the truth within 3 errors, and the error not absurdly large
    assert abs(m.gain - TRUE_GAIN) < 3 * m.gain_err and m.gain_err < 0.01 * TRUE_GAIN
    # the read noise of integer ADU includes the ADC's rounding, 1/12 ADU² a frame
    digitised = TRUE_GAIN * np.sqrt((TRUE_RN / TRUE_GAIN) ** 2 + 1 / 12)
    assert abs(m.read_noise - digitised) < 3 * m.read_noise_err
    # the pairs' table lies on variance = bias variance + signal / gain
    assert m.bias_variance == pytest.approx((digitised / TRUE_GAIN) ** 2, rel=0.02)
    pred = m.bias_variance + m.pairs["signal"] / TRUE_GAIN
    np.testing.assert_allclose(m.pairs["variance"], pred, rtol=0.03)


def test_factor_two_and_bias_variance_matter():
    """Low flats and a noisy read-out, where the bias-pair variance is a big term.

    The formula without subtracting the bias-pair variance, or with σ²(F1 - F2) taken as
    one frame's variance (the factor 2 forgotten), misses the truth by far more than
    the tolerance the right one meets.
    """
    cam = Camera(ny=400, nx=416, read_noise=20.0, seed=5)
    biases = [cam.bias() for _ in range(4)]
    flats = [cam.flatfield(1500.0) for _ in range(4)]
    m = gainmod.photon_transfer(biases, flats, sections=cam.sections)
    assert m.gain == pytest.approx(TRUE_GAIN, rel=0.02)
    assert m.read_noise == pytest.approx(20.0, rel=0.03)
    # the wrong formulas on the same frames
    def image_area(frame):   # trimmed, in float ADU, minus the overscan's level
        area, offset = gainmod._area_and_offset(frame, cam.sections)
        return area.astype(float) - offset

    b = [image_area(x) for x in biases[:2]]
    f = [image_area(x) for x in flats[:2]]
    s = f[0].mean() + f[1].mean() - b[0].mean() - b[1].mean()
    no_bias_var = s / np.var(f[0] - f[1])
    no_factor_two = s / 2 / (np.var(f[0] - f[1]) - np.var(b[0] - b[1]))
    assert abs(no_bias_var / TRUE_GAIN - 1) > 0.15
    assert abs(no_factor_two / TRUE_GAIN - 1) > 0.4


def test_two_levels_and_a_saturated_flat(big_camera_frames):
    cam, biases, flats = big_camera_frames
    low = [cam.flatfield(8000.0) for _ in range(2)]
    sat = np.full_like(flats[0], 65535.0)
    m = gainmod.photon_transfer(biases, [*flats, *low, sat], sections=cam.sections,
                                saturate=60000.0)
    assert m.n_flat == 6 and m.n_pairs == 7          # 6 pairs at 30000 e-, 1 at 8000 e-
    assert m.gain == pytest.approx(TRUE_GAIN, rel=0.015)
    assert sorted(np.round(m.pairs["signal"] * TRUE_GAIN / 1000))[0] == pytest.approx(7, abs=1)


def test_dead_columns_do_not_bias_the_gain():
    """Dead columns (2 % sensitivity, 1 column in 25) are clipped from a flat's mean but
    not from the pair difference, where their spread is tiny: the signal must be taken
    over the pixels whose variance is measured, or the gain comes out ~4 % high."""
    cam = Camera(ny=300, nx=316, seed=9)
    cam.flat[:, ::25] = 0.02
    biases = [cam.bias() for _ in range(4)]
    flats = [cam.flatfield(30000.0) for _ in range(4)]
    m = gainmod.photon_transfer(biases, flats, sections=cam.sections)
    assert m.gain == pytest.approx(TRUE_GAIN, rel=0.015)


# ---- (b) refusals ---------------------------------------------------------------------
def test_refusals_name_the_manifest_lines():
    cam = Camera(seed=7)
    b, f = cam.bias(), cam.flatfield(20000.0)
    cases = [([b], [f, f.copy()], "two bias frames or more, and there is 1"),
             ([b, cam.bias()], [f], "two flats of one filter and level, and there is 1"),
             ([b, cam.bias()], [f, cam.flatfield(40000.0)], "within 25 % of each other"),
             ([b, cam.bias()], [np.full_like(f, 65535.0)] * 2, "every flat is saturated")]
    for biases, flats, why in cases:
        with pytest.raises(ReduxError) as exc:
            gainmod.photon_transfer(biases, flats, sections=cam.sections, saturate=65000.0)
        text = str(exc.value)
        assert why in text, text
        assert "`gain: <e-/ADU>` and `read_noise: <e->`" in text
        assert "data_manifest.yaml" in text
    # flats of two filters at one level are not a pair
    with pytest.raises(ReduxError, match="no two flats of one filter"):
        gainmod.photon_transfer([b, cam.bias()], [f, cam.flatfield(20000.0)],
                                groups=["B", "V"], sections=cam.sections)


def _inv(rows):
    base = dict(frametype="bias", filter="", binning="1x1", median=1000.0, sat_frac=0.0,
                gain=np.nan, read_noise=np.nan, gain_key="none", read_noise_key="none",
                camera_problem="")
    return Table(rows=[{**base, "file": f"f{i}.fits", **r} for i, r in enumerate(rows)])


def test_check_camera_says_what_02_will_do():
    lights = [dict(frametype="light", filter="V", median=1500.0)] * 2
    flats = [dict(frametype="flat", filter="V", median=9000.0 + 100 * k) for k in range(3)]
    note, problems = gainmod.check_camera(_inv([{}] * 5 + flats + lights))
    assert note == ("no gain/read noise in the headers: 02 will measure it from 10 bias "
                    "and 3 flat pairs")
    assert not len(problems)
    # a CMOS camera's GAIN setting: measured, and 00 says why
    cmos = dict(gain_key="GAIN = 120 is a CMOS camera's gain setting, not e-/ADU")
    note, _ = gainmod.check_camera(_inv([cmos] * 5 + flats + lights))
    assert note.endswith("flat pairs (GAIN = 120 is a CMOS camera's gain setting, not e-/ADU)")
    # one bias: an error naming the manifest lines
    note, problems = gainmod.check_camera(_inv([{}] + flats + lights))
    assert len(problems) == 1 and problems["severity"][0] == "error"
    assert "there is 1" in problems["problem"][0]
    assert problems["what_to_do"][0] == ("add `gain: <e-/ADU>` and `read_noise: <e->` "
                                         "under the target in data_manifest.yaml")
    # flats far apart in level, or saturated: no pair
    apart = [dict(frametype="flat", filter="V", median=m) for m in (5000.0, 20000.0)]
    assert "there are none" in gainmod.check_camera(_inv([{}] * 3 + apart))[1]["problem"][0]
    sat = [dict(frametype="flat", filter="V", median=60000.0, sat_frac=0.2)] * 2
    assert "2 flat(s) are saturated" in gainmod.check_camera(_inv([{}] * 3 + sat))[1]["problem"][0]
    # the headers give it: a note, no problem
    known = dict(gain=1.9, read_noise=5.0, gain_key="GAIN", read_noise_key="RDNOISE")
    note, problems = gainmod.check_camera(_inv([known] * 3))
    assert note == "gain 1.9 e-/ADU and read noise 5 e- from GAIN" and not len(problems)
    # amplifiers that disagree: an error on that file, added to find_problems' table
    amp = {**known, "gain": np.nan, "camera_problem": "per-amplifier gains differ by 9 %"}
    before = Table(rows=[("warning", "x.fits", "something", "look")],
                   names=("severity", "file", "problem", "what_to_do"))
    _, problems = gainmod.check_camera(_inv([known, amp]), before)
    assert list(problems["severity"]) == ["warning", "error", "error"]
    assert problems["file"][1] == "f1.fits" and "per-amplifier" in problems["problem"][1]


def test_fill_inventory_and_require():
    inv = _inv([{}, dict(gain=1.5, read_noise=4.0, gain_key="GAIN", read_noise_key="RON")])
    with pytest.raises(ReduxError, match="f0.fits.*gain: <e-/ADU>"):
        gainmod.require_camera(inv)
    cam = gainmod.camera_table(gain=2.7, gain_err=0.02, read_noise=6.4, read_noise_err=0.1,
                               gain_source="measured", read_noise_source="measured",
                               n_bias=5, n_pairs=6)
    assert cam["gain"].unit == "electron / adu" and cam["read_noise"].unit == "electron"
    filled = gainmod.fill_inventory(inv, cam)
    assert list(filled["gain"]) == [2.7, 1.5] and list(filled["read_noise"]) == [6.4, 4.0]
    assert list(filled["gain_key"]) == ["measured in 02", "GAIN"]
    assert np.isnan(inv["gain"][0])                      # the input is not changed
    gainmod.require_camera(filled)
    with pytest.raises(ValueError, match="source must be"):
        gainmod.camera_table(gain=1, gain_err=0, read_noise=1, read_noise_err=0,
                             gain_source="guess", read_noise_source="header")


# ---- (c) the keyword table ------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Keyword name 'READNOISE'")   # 9 letters: HIERARCH
@pytest.mark.parametrize(("cards", "gain", "gain_key", "rn", "rn_key"), [
    ({"GAIN": 1.9, "RDNOISE": 5.0}, 1.9, "GAIN", 5.0, "RDNOISE"),
    ({"EGAIN": 1.3, "READNOIS": 9.0}, 1.3, "EGAIN", 9.0, "READNOIS"),
    # N.I.N.A. / SharpCap on a ZWO CMOS camera: GAIN is the setting, EGAIN the e-/ADU
    ({"GAIN": 120, "OFFSET": 30, "EGAIN": 0.25, "INSTRUME": "ZWO ASI294MM Pro"},
     0.25, "EGAIN", None, "none"),
    ({"GAIN": 120, "OFFSET": 30}, None, "GAIN = 120 is a CMOS camera's gain setting, "
     "not e-/ADU", None, "none"),
    ({"GAIN": 2, "INSTRUME": "SBIG ST-8"}, 2.0, "GAIN", None, "none"),   # a CCD's whole number
    ({"CCDGAIN": 1.5, "READNSEA": 3.1, "READNSEB": 3.1}, 1.5, "CCDGAIN", 3.1,
     "READNSEA..READNSEB"),
    ({"GAIN1": 2.00, "GAIN2": 2.01, "GAIN3": 2.005, "GAIN4": 1.995, "RDNOISE1": 4.0},
     pytest.approx(2.0025), "GAIN1..GAIN4", 4.0, "RDNOISE1"),
    ({"GAIN_1": 1.1, "GAIN_2": 1.1, "RON": 3.0}, 1.1, "GAIN_1..GAIN_2", 3.0, "RON"),
    ({"ATODGNA": 2.34, "ATODGNB": 2.35, "ATODGNC": 2.345, "ATODGND": 2.34, "READNOI": 8.0},
     pytest.approx(2.34375), "ATODGNA..ATODGND", 8.0, "READNOI"),
    ({"ATODGAIN": 7.0, "ENOISE": 5.2}, 7.0, "ATODGAIN", 5.2, "ENOISE"),
    ({"GAIN": "", "EPADU": 3.3, "READNOISE": 7.7}, 3.3, "EPADU", 7.7, "READNOISE"),
])
def test_keyword_table(cards, gain, gain_key, rn, rn_key):
    h = fits.Header(cards)
    assert headers.camera_keyword(h, "gain")[:2] == (gain, gain_key)
    assert headers.camera_keyword(h, "read_noise")[:2] == (rn, rn_key)


def test_amplifiers_that_disagree_are_a_problem():
    h = fits.Header({"ATODGNA": 2.34, "ATODGNB": 2.37, "ATODGNC": 2.33, "ATODGND": 2.36,
                     "READNSEA": 20.2, "READNSEB": 19.7})
    value, key, problem = headers.camera_keyword(h, "gain")
    assert value is None and key == "ATODGNA..ATODGND"
    assert problem == ("per-amplifier gains differ by 2 % (ATODGNA = 2.34, ATODGNB = 2.37, "
                       "ATODGNC = 2.33, ATODGND = 2.36): this frame needs per-amplifier "
                       "calibration, which redux doesn't do")
    cam = headers.camera(h, {"gain": 2.0})        # a manifest gain doesn't hide it
    assert cam["gain"] is None and "ATODGNA = 2.34" in cam["camera_problem"]
    assert "read noises differ by 3 %" in cam["camera_problem"]
    assert headers.camera(fits.Header({}), {"gain": 2.0, "read_noise": 7})["gain_key"] == "manifest"


# Every real header in the shared folder: what redux reads (file, HDU) -> (gain, rn).
REAL_HEADERS = {
    # KPNO 1987 RCA CCD (IRAF's tutorial): no gain or read noise in any header
    **{(f"kpno_m92_raw/m92{n}.fits", 0): (None, None)
       for n in ("001", "006", "007", "010", "011", "014", "015")},
    # SAAO 1.0 m: GAIN and RDNOISE
    ("saao_1m_single_raw/a8280271.fits", 0): ((1.9, "GAIN"), (5.0, "RDNOISE")),
    # MaxIm DL (Orion SSDSI, Apogee Alta/Aspen, ACP): none of them writes EGAIN here
    **{(f"m13_blue_lights/M13_blue_000{n}.fits.gz", 0): (None, None) for n in range(1, 6)},
    **{(f"misc_small/msumastro_biastest{n}.fit", 0): (None, None) for n in range(1, 6)},
    ("misc_small/msumastro_maximdl_5_23_header.fit", 0): (None, None),
    ("misc_small/msumastro_maximdl_6_18_header.fit", 0): (None, None),
    ("misc_small/msumastro_aspen_trimmed.fit", 0): (None, None),
    ("misc_small/M51_devpix.fits", 0): (None, None),
    # SWarp coadds in count rates: GAIN is SWarp's effective gain (gain x exposure time)
    ("kpno09m_halpha_a1367/A1367-140222-Ha.fits", 0): ((7904.624469213, "GAIN"), None),
    ("kpno09m_halpha_a1367/A1367-140222-R.fits", 0): ((947.826330996, "GAIN"), None),
    ("kpno09m_halpha_a1367/A1367-140231-Ha.fits", 0): ((7904.624469213, "GAIN"), None),
    ("kpno09m_halpha_a1367/A1367-140231-R.fits", 0): ((947.826330996, "GAIN"), None),
    ("kpno09m_halpha_a1367/A1367-140231-mask.fits", 0): ((947.826330996, "GAIN"), None),
    # HST/WFPC2: ATODGAIN = 7 in the primary header, none in the science extensions
    ("muse_a478_mpdaf/a478hst-cutout.fits", 0): ((7.0, "ATODGAIN"), None),
    ("muse_a478_mpdaf/a478hst-cutout.fits", 1): (None, None),
    ("muse_a478_mpdaf/HST-HDFS.fits", 0): ((7.0, "ATODGAIN"), None),
    ("muse_a478_mpdaf/HST-HDFS.fits", 1): ((7.0, "ATODGAIN"), None),
    # MUSE: only HIERARCH ESO DET OUTi GAIN/RON, which the table leaves out on purpose
    ("muse_a478_mpdaf/minicube.fits.gz", 0): (None, None),
    ("muse_a478_mpdaf/IMAGE-HDFS-1.34.fits", 0): (None, None),
    ("muse_a478_mpdaf/filter_list.fits", 0): (None, None),
}


@pytest.mark.parametrize(("name", "hdu"), sorted(REAL_HEADERS))
def test_real_headers(realdata, name, hdu):
    path = realdata / name
    if not path.is_file():
        pytest.skip(f"{name} not in {realdata}")
    h = fits.getheader(path, hdu)
    want_gain, want_rn = REAL_HEADERS[(name, hdu)]
    g, gkey, problem = headers.camera_keyword(h, "gain")
    rn, rkey, _ = headers.camera_keyword(h, "read_noise")
    assert (g, gkey) == (want_gain or (None, "none"))
    assert (rn, rkey) == (want_rn or (None, "none"))
    assert problem == ""


def test_every_real_header_is_listed(realdata):
    """A new file in the shared folder gets a row in REAL_HEADERS."""
    files = sorted(str(p.relative_to(realdata)) for p in realdata.glob("*/*.fit*"))
    assert set(files) == {n for n, _ in REAL_HEADERS}


# ---- (d) a night of our own making, through the real runner ---------------------------
SKY_E = 3000.0                         # e- of sky in each light frame


def make_night(raw, *, seed=11):
    """A small night with no gain or read-noise keyword anywhere (not `demo.py`'s).

    128 x 160 uint16 frames with a 16-column overscan on the right: 5 biases
    (``IMAGETYP = 'zero'``), 3 dome flats at each of two levels in V, 2 lights
    (``'object'``), exposure times in ``EXPOSURE``. Returns the camera (its flat pattern).
    """
    cam = Camera(seed=seed)
    raw.mkdir(parents=True)

    def write(name, data, imagetyp, exposure, filt=None):
        h = fits.Header({"IMAGETYP": imagetyp, "OBJECT": name, "EXPOSURE": exposure,
                         "BIASSEC": cam.biassec, "TRIMSEC": cam.trimsec})
        if filt:
            h["FILTER"] = filt
        fits.PrimaryHDU(np.clip(data, 0, 65535).astype(np.uint16), h).writeto(raw / name)

    for k in range(5):
        write(f"zero{k + 1}.fits", cam.bias(), "zero", 0.0)
    for k, level in enumerate([20000.0] * 3 + [50000.0] * 3):
        write(f"flat{k + 1}.fits", cam.flatfield(level), "dome flat", 2.0, "V")
    for k in range(2):
        write(f"m42_{k + 1}.fits", cam.light(SKY_E), "object", 60.0, "V")
    return cam


@pytest.fixture(scope="module")
def measured_night(tmp_path_factory):
    from redux_helpers.runner import run_target
    from tests.conftest import write_manifest

    root = tmp_path_factory.mktemp("night")
    cam = make_night(root / "raw")
    manifest = write_manifest(root / "m.yaml", {"night": {"raw_dir": "raw"}})
    run_target("night", manifest=manifest, products=root / "products",
               only="00,01,02,03,04", params={"backend": "astroscrappy"}, html=False)
    return cam, root / "products" / "night"


def test_night_without_gain_is_measured_in_02(measured_night):
    _, prod = measured_night
    inv = Table.read(prod / "00_inspect" / "inventory.ecsv")
    assert np.isnan(inv["gain"]).all() and set(inv["exptime"][inv["frametype"] == "light"]) == {60.0}
    assert sorted(set(inv["frametype"])) == ["bias", "flat", "light"]
    cam = Table.read(prod / "02_superflat" / "camera.ecsv")
    c = cam[0]
    print(f"measured gain {c['gain']:.3f} +- {c['gain_err']:.3f} e-/ADU (true {TRUE_GAIN}), "
          f"read noise {c['read_noise']:.2f} +- {c['read_noise_err']:.2f} e- (true {TRUE_RN})")
    assert c["gain_source"] == "measured" and c["read_noise_source"] == "measured"
    assert c["gain"] == pytest.approx(TRUE_GAIN, rel=0.03)
    assert c["read_noise"] == pytest.approx(TRUE_RN, rel=0.05)
    assert 0 < c["gain_err"] < 0.03 * TRUE_GAIN and c["n_bias"] == 5 and c["n_pairs"] == 6
    assert cam["gain"].unit == "electron / adu" and cam["read_noise"].unit == "electron"
    # 00 said so, in its executed notebook
    text = (prod / "notebooks" / "00_inspect.ipynb").read_text()
    assert "02 will measure it from 10 bias and 6 flat pairs" in text


def test_night_without_gain_calibrates_in_electrons(measured_night):
    cam, prod = measured_night
    ny, nx = cam.flat.shape
    centre = float(np.median(cam.flat[ny // 4: 3 * ny // 4, nx // 4: 3 * nx // 4]))
    for k in (1, 2):
        with fits.open(prod / "04_calibrate" / f"m42_{k}.fits") as hdul:
            assert hdul[0].header["BUNIT"].strip().lower() in ("electron", "e-")
            data, unc, mask = hdul[0].data, hdul["UNCERT"].data, hdul["MASK"].data
        good = (mask == 0) & np.isfinite(data)
        # the superflat is 1 in the centre: the sky comes out as SKY_E x the centre's flat
        level = float(np.median(data[good]))
        assert level == pytest.approx(SKY_E * centre, rel=0.03)
        # the uncertainty plane (Poisson through the measured gain + read noise) is honest
        z = (data - level)[good] / unc[good]
        assert abs(float(np.std(z)) - 1) < 0.06


def test_night_that_cant_be_measured_stops_at_00_naming_the_manifest_lines(tmp_path):
    from redux_helpers.runner import run_target
    from tests.conftest import write_manifest

    make_night(tmp_path / "raw", seed=12)
    for k in range(2, 6):                          # one bias left: no bias pair
        (tmp_path / "raw" / f"zero{k}.fits").unlink()
    manifest = write_manifest(tmp_path / "m.yaml", {"night": {"raw_dir": "raw"}})
    with pytest.raises(ReduxError) as exc:
        run_target("night", manifest=manifest, products=tmp_path / "p", only="00",
                   html=False)
    text = str(exc.value)
    assert "no gain/read noise in the headers or the manifest" in text
    assert "two bias frames or more, and there is 1" in text
    # the lines go under this target, in this manifest (not "data_manifest.yaml")
    assert f"`gain: <e-/ADU>` and `read_noise: <e->` under `night:` in {manifest}" in text
    # the two lines added: the manifest's numbers are used, and written with their source
    manifest = write_manifest(tmp_path / "m.yaml", {"night": {"raw_dir": "raw", "gain": 2.5,
                                                              "read_noise": 7.0}})
    run_target("night", manifest=manifest, products=tmp_path / "p", only="00,01,02",
               params={"min_frames": 1}, html=False)
    c = Table.read(tmp_path / "p" / "night" / "02_superflat" / "camera.ecsv")[0]
    assert (c["gain"], c["gain_source"], c["read_noise"], c["read_noise_source"]) == \
        (2.5, "manifest", 7.0, "manifest")
    assert np.isnan(c["gain_err"]) and c["n_pairs"] == 0


@pytest.mark.parametrize(("err", "source", "flag"), [(0.01, "measured", "pass"),
                                                      (0.2, "measured", "warn"),
                                                      (np.nan, "header", "info")])
def test_qa_reports_gain_and_read_noise(tmp_path, err, source, flag):
    from redux_helpers import fitsio, qa
    from redux_helpers.manifest import Target
    from redux_helpers.targets import Paths

    paths = Paths(tmp_path / "products", "night")
    cam = gainmod.camera_table(gain=2.7, gain_err=err, read_noise=6.5, read_noise_err=0.05,
                               gain_source=source, read_noise_source="measured",
                               n_bias=5, n_pairs=6)
    fitsio.write_table(cam, paths.product("camera"))
    table = qa.collect(paths, Target(name="night", manifest=tmp_path / "m.yaml", settings={}))
    r = {row["metric"]: row for row in table if row["step"] == "02_superflat"}
    assert r["gain"]["value"] == 2.7 and r["gain"]["flag"] == flag
    assert r["gain"]["unit"] == "e-/ADU"
    said = "from 5 biases and 6 flat pairs" if source == "measured" else "from the header"
    assert said in r["gain"]["reason"]
    assert r["read_noise"]["flag"] == "pass" and r["read_noise"]["error"] == 0.05
