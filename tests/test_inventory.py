"""Finding and classifying a night's frames; the problems a night can have."""

import shutil

import numpy as np
import pytest
from astropy.io import fits

from redux_helpers import inventory
from redux_helpers.errors import FrameError


def test_demo_night_inventory(small_demo):
    root, truth = small_demo
    inv = inventory.build_inventory(root / "raw", {})
    counts = {k: int(np.sum(inv["frametype"] == k)) for k in set(inv["frametype"])}
    assert counts == {"bias": 11, "dark": 10, "flat": 14, "light": 8, "standard": 6}
    lights = inventory.select(inv, "light", filter="Ha")
    assert len(lights) == 4 and set(lights["exptime"]) == {600.0}
    assert inventory.light_binning(inv) == "1x1"
    # statistics: a bias frame sits at the demo's bias level
    b = inventory.select(inv, "bias")
    assert abs(np.median(b["median"]) - truth["bias_level"]) < 10
    assert len(inventory.find_problems(inv)) == 0


def test_problems_are_found_and_named(small_demo, tmp_path):
    root, _ = small_demo
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("bias_001.fits", "flat_R_001.fits", "ngc_demo_R_001.fits",
                 "ngc_demo_Ha_001.fits"):
        shutil.copy(root / "raw" / name, raw / name)
    # a light with no exposure keyword, a truncated file, a file that isn't FITS
    with fits.open(raw / "ngc_demo_R_001.fits") as h:
        del h[0].header["EXPTIME"]
        h.writeto(raw / "noexp.fits")
    data = (raw / "bias_001.fits").read_bytes()
    (raw / "cut.fits").write_bytes(data[: len(data) // 3])
    (raw / "readme.fits").write_text("not an image")
    inv = inventory.build_inventory(raw, {})
    problems = inventory.find_problems(inv)
    text = "\n".join(f"{p['severity']} {p['file']} {p['problem']}" for p in problems)
    assert "error noexp.fits no exposure time" in text
    assert "error cut.fits" in text and "truncated" in text
    assert "error readme.fits" in text
    assert "filter Ha has lights but no flats" in text
    # each fix says where its manifest line goes
    placed = inventory.find_problems(inv, place="under `m13:` in /x/night.yaml")
    todo = {str(p["file"]): str(p["what_to_do"]) for p in placed}
    assert todo["noexp.fits"] == "add it to header_overrides for this file, under `m13:` in /x/night.yaml"
    assert todo["readme.fits"] == "exclude it under `m13:` in /x/night.yaml"
    with pytest.raises(FrameError, match=r"(?s)2 file\(s\).*cut\.fits.*readme\.fits"):
        inventory.check_readable(inv)


def test_overrides_and_exclude(small_demo, tmp_path):
    root, _ = small_demo
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(root / "raw" / "ngc_demo_R_001.fits", raw / "a.fits")
    shutil.copy(root / "raw" / "ngc_demo_R_002.fits", raw / "b.fits")
    settings = {"header_overrides": {"a.fits": {"FILTER": "r'"}}, "exclude": ["b.fits"],
                "frame_types": {"a.fits": "standard"}}
    inv = inventory.build_inventory(raw, settings)
    assert list(inv["file"]) == ["a.fits"]
    assert inv["filter"][0] == "r'" and inv["frametype"][0] == "standard"
