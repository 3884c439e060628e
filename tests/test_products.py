"""The product registry: names from fields, files back to their product, one step a product."""

import pytest

from redux_helpers import products
from redux_helpers.targets import Paths


def test_names_and_their_fields(tmp_path):
    paths = Paths(tmp_path, "night")
    assert paths.product("crmask", stem="ngc_R_001") == (
        tmp_path.resolve() / "night" / "03_cosmics" / "ngc_R_001_crmask.fits")
    assert paths.product("stack", filter="H-alpha/6563").name == "stack_H-alpha_6563.fits"
    assert products.fields_of("superflat") == ("filter",)
    with pytest.raises(TypeError, match="needs the fields"):
        paths.product("stack")               # the filter is missing
    with pytest.raises(KeyError, match="unknown product"):
        paths.product("stacks")


def test_files_are_told_apart_by_step(tmp_path):
    paths = Paths(tmp_path, "night")
    folder = paths.step("06_badpix", create=True)
    for name in ("badpix.fits", "ngc_R_001.fits", ".ngc_R_001.tmp-data.npy", "notes.txt"):
        (folder / name).write_bytes(b"")
    assert [(f, p.name) for f, p in products.instances(paths, "repaired")] == [
        ({"stem": "ngc_R_001"}, "ngc_R_001.fits")]
    assert [p.name for p in products.files_of(folder, "06_badpix")] == ["badpix.fits",
                                                                       "ngc_R_001.fits"]
    # the same name is another product in another step
    assert products.product_of("04_calibrate", "badpix.fits") == "calibrated"
    assert products.product_of("11_qa", "ngc_R_001.fits") is None


def test_every_product_belongs_to_a_step_and_names_are_unique_within_it():
    for step in products.STEPS:
        made = products.of_step(step)
        patterns = [p.pattern for p in made.values()]
        assert len(patterns) == len(set(patterns)), step
    assert {p.step for p in products.PRODUCTS.values()} == set(products.STEPS)
