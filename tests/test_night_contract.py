"""A night redux has not seen: it is reduced right, or 00 stops and says what to add.

Nights laid out as other observers lay them out (frames in subfolders, two frames of
one name, a damaged .fits.gz), from a manifest with ``raw_dir:`` only, and the real
frames of ``../shared/realdata`` (skipped, saying so, when absent): Kitt Peak 1987 M92
frames of the IRAF "CCD reductions" tutorial, an SAAO 1.0 m frame from ccdproc's test
data, M13 lights from a MaxIm DL amateur camera.
"""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
from astropy.io import fits

from redux_helpers import fingerprint, fitsio
from redux_helpers.errors import ReduxError
from redux_helpers.runner import run_target
from tests.conftest import write_manifest


def _run00(tmp_path, target: dict, name="night"):
    manifest = write_manifest(tmp_path / "manifest.yaml", {name: target})
    products = tmp_path / "products"
    run_target(name, manifest=manifest, products=products, only="00", html=False)
    return products / name


def _stops_at_00(tmp_path, target: dict) -> str:
    with pytest.raises(ReduxError) as exc:
        _run00(tmp_path, target)
    text = str(exc.value)
    assert text.startswith("00_inspect: ")
    return text


# ---- real nights from raw_dir only ---------------------------------------------------
@pytest.mark.notebooks
def test_m92_without_filter_keyword_stops_naming_filters(realdata, tmp_path):
    """M92's filter is only in FILTERS ('5 0' = B, '6 0' = V) and in OBJECT: 00 stops,
    lists the keyword and its values and the manifest lines that fix it; nothing later
    runs, so no flat or stack can mix B and V."""
    text = _stops_at_00(tmp_path, {"raw_dir": str(realdata / "kpno_m92_raw")})
    assert "6 frames (2 flat, 4 light) have no filter" in text
    assert "FILTERS = '5 0', '6 0'" in text
    assert 'filter_keyword: FILTERS  and  filter_codes: {"5 0": <name>, "6 0": <name>}' in text
    assert "filter_from_object: [B, V]" in text          # OBJECT says 'M-92 B', 'V filter ...'
    assert not (tmp_path / "products" / "night" / "01_superbias").exists()


@pytest.mark.notebooks
def test_saao_numeric_filter_code_stops_naming_it(realdata, tmp_path):
    text = _stops_at_00(tmp_path, {"raw_dir": str(realdata / "saao_1m_single_raw")})
    assert "a8280271.fits" in text and "FILTERS = '48'" in text
    assert 'filter_codes: {"48": <name>}' in text


@pytest.mark.notebooks
def test_m13_without_any_filter_keyword_says_how_to_give_one(realdata, tmp_path):
    text = _stops_at_00(tmp_path, {"raw_dir": str(realdata / "m13_blue_lights")})
    assert "5 frames (5 light) have no filter" in text
    assert "no header keyword names a filter" in text
    assert 'header_overrides: {"*": {FILTER: <name>}}' in text


def test_m92_hint_leads_to_separate_b_and_v(realdata):
    """Following the hint (filter_from_object: [B, V]) sorts every flat and light right."""
    from redux_helpers import inventory

    inv = inventory.build_inventory(realdata / "kpno_m92_raw",
                                    {"filter_from_object": ["B", "V"]})
    got = {r["file"]: r["filter"] for r in inv if r["frametype"] != "bias"}
    assert got == {"m92006.fits": "B", "m92007.fits": "V", "m92010.fits": "V",
                   "m92011.fits": "V", "m92014.fits": "B", "m92015.fits": "B"}
    assert not any(inventory.find_problems(inv)["severity"] == "error")


# ---- a night laid out in subfolders, two frames of one name --------------------------
def _subfolder_night(small_demo, dest):
    """The small demo night re-laid: calibrations in calib/, the galaxy's lights in two
    folders night1/ and night2/ whose frames have the same names (standards left out)."""
    root, _ = small_demo
    raw = root / "raw"
    (dest / "calib").mkdir(parents=True)
    for p in raw.glob("*.fits"):
        if p.name.startswith(("bias", "dark", "flat")):
            shutil.copy(p, dest / "calib" / p.name)
    moved = {}
    for filt in ("R", "Ha"):
        for i in (1, 2, 3, 4):
            folder = dest / ("night1" if i <= 2 else "night2")
            folder.mkdir(exist_ok=True)
            name = f"ngc_demo_{filt}_{(i - 1) % 2 + 1:03d}.fits"
            shutil.copy(raw / f"ngc_demo_{filt}_{i:03d}.fits", folder / name)
            moved[f"{folder.name}/{name}"] = f"ngc_demo_{filt}_{i:03d}.fits"
    return moved


@pytest.mark.notebooks
def test_same_name_in_two_subfolders_both_reach_the_stack(small_demo, tmp_path):
    """night1/ngc_demo_R_001.fits and night2/ngc_demo_R_001.fits are two frames: both are
    calibrated to products of their own (each equal to its own raw frame's calibration)
    and both are stacked: NCOMBINE is 4 per filter and the registration lists 8 frames."""
    raw = tmp_path / "raw"
    moved = _subfolder_night(small_demo, raw)
    manifest = write_manifest(tmp_path / "m.yaml", {"night": {"raw_dir": str(raw)}})
    products = tmp_path / "products"
    run_target("night", manifest=manifest, products=products, html=False,
               only="00,01,02,03,04,05,06,07", params={"backend": "astroscrappy"})
    root = products / "night"
    inv = fitsio.read_table(root / "00_inspect" / "inventory.ecsv")
    assert set(moved) <= set(inv["file"])
    a = fitsio.read_product(root / "04_calibrate" / "night1__ngc_demo_R_001.fits")
    b = fitsio.read_product(root / "04_calibrate" / "night2__ngc_demo_R_001.fits")
    # two different frames (demo R_001 and R_003): different sky noise, different airmass
    assert a.header["AIRMASS"] != b.header["AIRMASS"]
    assert np.nanstd(a.data - b.data) > 5.0
    reg = fitsio.read_table(root / "07_stack" / "registration.ecsv")
    assert sorted(str(f) for f in reg["file"]) == sorted(moved)
    for filt in ("R", "Ha"):
        h = fits.getheader(root / "07_stack" / f"stack_{filt}.fits")
        assert h["NCOMBINE"] == 4 and h["FILTER"] == filt
    # the record of each step lists exactly what its folder holds
    for step in ("04_calibrate", "07_stack"):
        rec = fingerprint.read_record(root, step)
        listed = {k for k in rec["products"] if k.startswith(step)}
        there = {str(p.relative_to(root)) for p in (root / step).rglob("*") if p.is_file()}
        assert listed == there


@pytest.mark.notebooks
def test_bad_crc_stops_00_naming_the_file(small_demo, tmp_path):
    """A full-length .fits.gz with a wrong CRC: astropy reads it without complaint; 00
    reads every compressed file whole, so it stops naming that file."""
    root, _ = small_demo
    raw = tmp_path / "raw"
    raw.mkdir()
    for p in sorted((root / "raw").glob("*.fits")):
        if p.name.startswith(("bias_00", "flat_R_00", "ngc_demo_R")):
            shutil.copy(p, raw / p.name)
    src = raw / "ngc_demo_R_002.fits"
    packed = bytearray(gzip.compress(src.read_bytes()))
    packed[-6] ^= 0x55                                  # the CRC32 in the gzip trailer
    (raw / "ngc_demo_R_002.fits.gz").write_bytes(bytes(packed))
    src.unlink()
    assert fitsio.read_frame(raw / "ngc_demo_R_002.fits.gz")[0].shape == (256, 288)
    text = _stops_at_00(tmp_path, {"raw_dir": str(raw)})
    assert "ngc_demo_R_002.fits.gz is damaged" in text and "CRC check failed" in text


def test_two_files_of_one_product_name_are_refused():
    """a.fits and a.fits.gz in one folder would make one product: 00 names both."""
    from astropy.table import Table

    from redux_helpers import inventory

    assert inventory.duplicate_stems(["a.fits", "a.fits.gz", "b/a.fits"]) == {
        "a": ["a.fits", "a.fits.gz"]}
    table = Table({"file": ["n1/x.fits", "n2/x.fits"], "date_obs": ["2024-05-03T20:00"] * 2,
                   "naxis1": [10, 10], "naxis2": [10, 10], "median": [5.0, 5.0],
                   "robust_std": [1.0, 1.0], "min": [0.0, 0.0], "max": [9.0, 9.0]})
    assert inventory.same_frames(table) == [["n1/x.fits", "n2/x.fits"]]


# ---- each step's folder holds what this run made, and only that -----------------------
@pytest.mark.notebooks
def test_a_rerun_leaves_no_stale_product(small_demo, tmp_path):
    """A product an earlier run made (here a superflat of a filter since renamed, and a
    stray file) is gone after the step runs again; the record lists what is there."""
    root, _ = small_demo
    manifest = write_manifest(tmp_path / "m.yaml", {"night": {"raw_dir": str(root / "raw")}})
    products = tmp_path / "products"
    stale = products / "night" / "01_superbias" / "superflat_none.fits"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    run_target("night", manifest=manifest, products=products, only="00,01", html=False)
    there = sorted(p.name for p in stale.parent.iterdir())
    assert "superflat_none.fits" not in there and "superbias.fits" in there
    rec = fingerprint.read_record(products / "night", "01_superbias")
    assert sorted(k.split("/")[-1] for k in rec["products"] if k.startswith("01_")) == there


def test_misc_small_stops_at_00_for_filter_then_for_sizes(realdata):
    """misc_small is a drawer of unrelated real frames: M51 (512x512, no filter keyword,
    'B' only in OBJECT), MaxIm crops of 200x100 and 100x100, 100x100 bias crops. Given
    M51's filter, 00 still refuses to combine B frames of two sizes, naming both."""
    from redux_helpers import inventory

    folder = realdata / "misc_small"
    problems = inventory.find_problems(inventory.build_inventory(folder, {}))
    (err,) = problems[problems["severity"] == "error"]
    assert err["file"] == "M51_devpix.fits" and "filter_from_object: [B]" in err["what_to_do"]
    inv = inventory.build_inventory(folder, {"header_overrides": {
        "M51_devpix.fits": {"FILTER": "B"}}})
    problems = inventory.find_problems(inv)
    (err,) = problems[problems["severity"] == "error"]
    assert "lights of filter B come in 2 raw sizes: 512x512 (1: M51_devpix.fits); " \
           "200x100 (1: msumastro_maximdl_5_23_header.fit)" in err["problem"]


def test_calibration_frames_of_another_size_are_refused():
    from astropy.table import Table

    from redux_helpers import inventory

    t = Table({"file": ["b1.fits", "b2.fits", "f1.fits", "l1.fits", "l2.fits"],
               "frametype": ["bias", "bias", "flat", "light", "light"],
               "filter": ["", "", "V", "V", "V"],
               "naxis1": [100, 110, 110, 110, 110], "naxis2": [100, 100, 100, 100, 100]})
    (what, files), = inventory.mixed_sizes(t)
    assert files == "b1.fits" and "1 bias frame(s) are not the lights' size 110x100" in what
    t["naxis1"][4] = 120
    assert "lights of filter V come in 2 raw sizes" in inventory.mixed_sizes(t)[0][0]
