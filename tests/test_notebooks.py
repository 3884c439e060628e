"""Notebooks 00-04 through papermill (via `redux run`) on a small demo, checked against its truth.

One run of the chain is shared by the tests of this module; each test checks one
product against what the demo night was made from.
"""

import shutil

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from redux_helpers import cli, fitsio, masks
from tests.conftest import checksums, write_manifest

pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="module")
def chain(demo_chain):
    """The session's chain on the demo (conftest): (products, truth, raw checksums, root)."""
    return demo_chain.products, demo_chain.truth, demo_chain.raw_before, demo_chain.root


def test_raw_frames_are_never_written(chain):
    products, _, before, root = chain
    assert checksums(root / "raw") == before
    for step in ("00_inspect", "01_superbias", "02_superflat", "03_cosmics", "04_calibrate"):
        assert (products / "notebooks" / f"{step}.ipynb").is_file()
        assert (products / "notebooks" / f"{step}.html").is_file()
    assert not list(products.rglob(".*tmp*")) and not list(products.rglob(".*running*"))


def test_inventory(chain):
    products, *_ = chain
    inv = fitsio.read_table(products / "00_inspect" / "inventory.ecsv")
    assert len(inv) == 49 and int(np.sum(inv["frametype"] == "standard")) == 6


def test_superbias_against_truth(chain):
    products, truth, *_ = chain
    p = fitsio.read_product(products / "01_superbias" / "superbias.fits")
    n = p.header["NINPUTS"]
    rms = np.std(p.data - truth.image("bias_pattern"))
    assert n == 11
    assert rms < 1.5 * truth["read_noise"] / truth["gain"] / np.sqrt(n)


def test_superflats_against_truth(chain):
    products, truth, *_ = chain
    for f in ("R", "Ha"):
        p = fitsio.read_product(products / "02_superflat" / f"superflat_{f}.fits")
        good = p.mask == 0
        assert np.all(masks.has(p.mask[:, truth["dead_columns"]], "LOWFLAT"))
        rms = np.std((p.data - truth.image(f"flat_{f}"))[good])
        assert rms < 0.005, f"{f}: superflat differs from the true flat by {rms:.4f} rms"


def test_superdark_hot_pixels_against_truth(chain):
    products, truth, *_ = chain
    (path,) = sorted((products / "02_superflat").glob("superdark*.fits"))
    dark = fitsio.read_product(path)
    assert dark.unit == "electron/s"
    hot = truth.table("hot_pixels")
    ratio = dark.data[hot["y"], hot["x"]] / hot["rate"]
    assert np.max(np.abs(ratio - 1)) < 0.05


def test_cosmic_ray_masks_against_truth(chain):
    products, truth, *_ = chain
    hit = found = false = clean = 0
    for cal in sorted((products / "04_calibrate").glob("*.fits")):
        stem = cal.name.removesuffix(".fits")
        cr = fits.getdata(products / "03_cosmics" / f"{stem}_crmask.fits").astype(bool)
        other = fitsio.read_product(cal).mask & ~np.uint16(masks.bit("COSMIC"))
        usable = other == 0
        true_cr = truth.cr_mask(stem)
        hit += (true_cr & usable).sum()
        found += (true_cr & cr & usable).sum()
        false += (cr & ~true_cr & usable).sum()
        clean += (~true_cr & usable).sum()
    assert found / hit >= 0.95
    assert false / clean < 0.001


def test_calibrated_frames_against_truth(chain):
    products, truth, *_ = chain
    files = sorted((products / "04_calibrate").glob("*.fits"))
    assert len(files) == 14
    for path in files:
        ccd = CCDData.read(path)          # the data contract: CCDData reads every product
        assert ccd.unit == "electron" and ccd.uncertainty is not None
        assert ccd.header["BIASFILE"] == "superbias.fits"
        assert ccd.header["FLATFILE"].startswith("superflat_")
        p = fitsio.read_product(path)
        stem = path.name.removesuffix(".fits")
        expected = truth.frame_rate(stem) * p.header["EXPTIME"]
        clean = (p.mask == 0) & ~truth.cr_mask(stem)
        z = ((p.data - expected) / p.uncertainty)[clean]
        assert abs(np.std(z) - 1.0) < 0.1, f"{stem}: std of (data - truth)/UNCERT = {np.std(z):.3f}"
        assert abs(np.mean(z)) < 0.1


# ---- bad input through the command line: one message, exit 2, no traceback ----------
def _night(tmp_path, root, names):
    raw = tmp_path / "raw"
    raw.mkdir()
    for n in names:
        shutil.copy(root / "raw" / n, raw / n)
    m = write_manifest(tmp_path / "m.yaml", {"night": {"raw_dir": "raw"}})
    return raw, m


def _run(m, tmp_path, capsys, *extra):
    code = cli.main(["run", "night", "--manifest", str(m), "--products",
                     str(tmp_path / "products"), "--no-html", *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_truncated_frame_stops_the_run(small_demo, tmp_path, capsys):
    root, _ = small_demo
    raw, m = _night(tmp_path, root, ["bias_001.fits", "bias_002.fits", "bias_003.fits"])
    data = (raw / "bias_003.fits").read_bytes()
    (raw / "bias_003.fits").write_bytes(data[: len(data) // 2])
    code, err = _run(m, tmp_path, capsys, "--only", "00")
    assert code == 2 and "bias_003.fits is truncated" in err and "exclude" in err


def test_light_without_exposure_stops_the_run(small_demo, tmp_path, capsys):
    root, _ = small_demo
    raw, m = _night(tmp_path, root, ["bias_001.fits", "ngc_demo_R_001.fits"])
    with fits.open(raw / "ngc_demo_R_001.fits") as h:
        del h[0].header["EXPTIME"]
        h.writeto(raw / "noexp.fits")
    code, err = _run(m, tmp_path, capsys, "--only", "00")
    assert code == 2 and "noexp.fits" in err and "no exposure time" in err


def test_too_few_biases(small_demo, tmp_path, capsys):
    root, _ = small_demo
    _, m = _night(tmp_path, root, ["bias_001.fits", "bias_002.fits", "ngc_demo_R_001.fits"])
    code, err = _run(m, tmp_path, capsys, "--only", "00,01")
    assert code == 2 and "need at least 3 frames to combine, got 2" in err


def test_flat_of_zeros_is_named(small_demo, tmp_path, capsys):
    root, _ = small_demo
    names = [f"bias_00{i}.fits" for i in range(1, 4)] + \
        [f"flat_R_00{i}.fits" for i in range(1, 4)] + ["ngc_demo_R_001.fits"]
    raw, m = _night(tmp_path, root, names)
    with fits.open(raw / "flat_R_002.fits") as h:
        h[0].data[:] = 0
        h.writeto(raw / "flat_R_002.fits", overwrite=True)
    code, err = _run(m, tmp_path, capsys, "--only", "00,01,02")
    assert code == 2 and "flat_R_002.fits" in err


def test_biases_of_two_binnings_use_the_lights_binning(small_demo, tmp_path, capsys):
    root, _ = small_demo
    names = [f"bias_00{i}.fits" for i in range(1, 5)] + ["ngc_demo_R_001.fits"]
    raw, m = _night(tmp_path, root, names)
    with fits.open(raw / "bias_004.fits") as h:
        binned = h[0].data.astype(np.float32).reshape(128, 2, -1, 2).mean(axis=(1, 3))
        hdr = h[0].header
        hdr["XBINNING"], hdr["YBINNING"] = 2, 2
        fits.PrimaryHDU(binned.astype(np.uint16), header=hdr).writeto(raw / "bias_004.fits",
                                                                       overwrite=True)
    code, err = _run(m, tmp_path, capsys, "--only", "00,01")
    assert code == 0, err
    sb = fits.getheader(tmp_path / "products" / "night" / "01_superbias" / "superbias.fits")
    assert sb["NINPUTS"] == 3          # the 2x2 bias was left out, and 00 said so
    problems = fitsio.read_table(tmp_path / "products" / "night" / "00_inspect" / "problems.ecsv")
    assert any("mixed binning" in p for p in problems["problem"])
