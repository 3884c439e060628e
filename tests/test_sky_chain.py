"""A sky that the data supports: 00-07 on two nights that are not the demo's.

`tests/othernight.py` makes them with another camera's conventions and no `galaxy:` in
the manifest: 05 must find the galaxy and choose the sky per frame. Night ``small``: a
galaxy covering a few per cent of a 640 x 512 frame; night ``filled``: a disc that
fills a 512 x 448 frame (a masked sky there is ~8 % too high). On both, the stack's
star fluxes must be within 0.5 % of the truth and the sky left in it below 1 % of the
sky rate. Then a stack made with one frame's sky wrong must fail QA, naming the frame.

Each night runs 00-05 and 07 once (06 is left out: 07 stacks 05's products when 06 has
not run, and these nights have no bad columns to repair).
"""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from astropy.io import fits
from photutils.aperture import CircularAperture, aperture_photometry

from redux_helpers import fitsio, qa
from redux_helpers.manifest import load_target
from redux_helpers.runner import run_target
from redux_helpers.targets import Paths
from tests.conftest import write_manifest
from tests.othernight import make_night

pytestmark = pytest.mark.notebooks

STEPS = "00,01,02,03,04,05,07"
TIMES = {}                                  # night -> seconds its chain took


def _run(kind, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"sky_{kind}")
    truth = make_night(root / "raw", kind)
    manifest = write_manifest(root / "m.yaml", {"night": {"raw_dir": "raw"}})   # no galaxy:
    start = time.perf_counter()
    run_target("night", manifest=manifest, products=root / "products", only=STEPS, html=False)
    TIMES[kind] = time.perf_counter() - start
    return root, manifest, truth


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return _run("small", tmp_path_factory)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    return _run("filled", tmp_path_factory)


def stack_vs_truth(products, truth):
    """(median star flux ratio stack/truth, number of stars, sky left / sky rate)."""
    path = products / "07_stack" / "stack_Red.fits"
    s = fitsio.read_product(path)
    coverage = fits.getdata(path, "COVERAGE")
    stars = truth.stars
    ny, nx = truth.shape
    aper = CircularAperture(np.c_[stars["x"], stars["y"]], r=6.0)
    galaxy = np.asarray(aperture_photometry(truth.galaxy_image(), aper)["aperture_sum"])
    got = np.asarray(aperture_photometry(np.nan_to_num(s.data), aper)["aperture_sum"])
    want = np.asarray(aperture_photometry(truth.scene(), aper)["aperture_sum"])
    holes = np.asarray(aperture_photometry((coverage == 0).astype(float), aper)["aperture_sum"])
    # bright, whole, not on the galaxy's bright part (stars are >= 14 px apart)
    pick = ((stars["flux"] > 8000) & (stars["x"] > 12) & (stars["x"] < nx - 13)
            & (stars["y"] > 12) & (stars["y"] < ny - 13) & (galaxy < 0.2 * stars["flux"])
            & (holes == 0))
    yy, xx = np.indices(truth.shape)
    near = np.zeros(truth.shape, bool)
    for x, y in zip(stars["x"], stars["y"], strict=True):
        near |= np.hypot(xx - x, yy - y) < 10
    sky = (s.mask == 0) & np.isfinite(s.data) & ~near      # the galaxy's light included
    left = float(np.median((s.data - truth.scene())[sky]))
    return float(np.median(got[pick] / want[pick])), int(pick.sum()), left / truth.sky_rate


def qa_rows(root, manifest):
    table = qa.collect(Paths(root / "products", "night"), load_target("night", manifest))
    return {r["metric"]: r for r in table}


@pytest.mark.parametrize("night, method", [("small", None), ("filled", "radial")])
def test_stack_star_fluxes_and_sky_against_truth(night, method, request):
    root, manifest, truth = request.getfixturevalue(night)
    products = root / "products" / "night"
    bg = fitsio.read_table(products / "05_background" / "background.ecsv")
    assert "reason" in bg.colnames and all(str(r) for r in bg["reason"])
    if method:       # the galaxy fills the frame: only the radial sky is right
        assert set(bg["method"]) == {method}, list(bg["reason"])
    ratio, n, left = stack_vs_truth(products, truth)
    print(f"{night}: star flux stack/truth {ratio:.5f} over {n} stars; sky left "
          f"{100 * left:+.3f} % of the sky rate; chain {TIMES.get(night, float('nan')):.1f} s")
    assert n >= 8
    assert abs(ratio - 1) < 0.005
    assert abs(left) < 0.01
    rows = qa_rows(root, manifest)
    for metric in ("stack_rejected_Red", "sky_rate_scatter_Red"):
        assert rows[metric]["flag"] == "pass", rows[metric]["reason"]
    assert rows["stack_rejected_Red"]["value"] < 0.5


def test_the_galaxy_that_fills_the_frame_fools_the_masked_sky(filled):
    """Why the radial sky matters: a box model on this night subtracts ~8 % too much."""
    root, _, truth = filled
    bg = fitsio.read_table(root / "products" / "night" / "05_background" / "background.ecsv")
    assert np.allclose(bg["sky_rate"], truth.sky_rate, rtol=0.005)
    from redux_helpers import background
    p = fitsio.read_product(root / "products" / "night" / "04_calibrate" / "n9999_001.fits")
    found = background.find_galaxy(p.data, bad=p.mask > 0)
    box = background.sky_for_frame(p.data, p.mask > 0, geo=found, choice="sky_method")
    assert np.median(box.model) / p.header["EXPTIME"] > 1.03 * truth.sky_rate


def test_a_frame_with_a_wrong_sky_fails_qa_naming_it(small, tmp_path):
    """One frame's sky 25 % too low in 05: 07 rejects it nearly whole, QA fails twice."""
    root, manifest, _ = small
    shutil.copytree(root / "products", tmp_path / "products")
    shutil.copy(manifest, tmp_path / "m.yaml")
    shutil.copytree(root / "raw", tmp_path / "raw")
    bg_dir = tmp_path / "products" / "night" / "05_background"
    bad = "n9999_003.fits"
    p = fitsio.read_product(bg_dir / bad)
    wrong = 0.25 * float(p.header["SKYLEVEL"])         # left in: the sky subtracted was 25 % low
    fitsio.write_ccd(bg_dir / bad, p.data + wrong, p.header, uncertainty=p.uncertainty,
                     mask=p.mask, unit=p.unit)
    bg = fitsio.read_table(bg_dir / "background.ecsv")
    i = list(bg["file"]).index(bad)
    bg["sky"][i] -= wrong
    bg["sky_rate"][i] = bg["sky"][i] / float(p.header["EXPTIME"])
    fitsio.write_table(bg, bg_dir / "background.ecsv")
    run_target("night", manifest=tmp_path / "m.yaml", products=tmp_path / "products", only="07",
               html=False)
    reg = fitsio.read_table(tmp_path / "products" / "night" / "07_stack" / "registration.ecsv")
    pct = dict(zip(reg["file"], reg["rejected_percent"], strict=True))
    assert pct[bad] > 50 and max(v for f, v in pct.items() if f != bad) < 5
    rows = qa_rows(tmp_path, tmp_path / "m.yaml")
    rej, scatter = rows["stack_rejected_Red"], rows["sky_rate_scatter_Red"]
    assert rej["flag"] == "fail" and rej["value"] > 5 and bad in rej["reason"]
    assert scatter["flag"] == "fail" and bad in scatter["reason"]
    assert "n9999_001" not in scatter["reason"]
