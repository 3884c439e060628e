"""Shared fixtures: a small demo night (256 x 256) and the real-data folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from redux_helpers import demo

REPO = Path(__file__).resolve().parent.parent
REALDATA = Path(os.environ.get("REDUX_REALDATA", REPO.parent / "shared" / "realdata"))
SMALL = 256


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    """A 256 x 256 demo night: (root folder, truth)."""
    root = tmp_path_factory.mktemp("demo") / "demo"
    demo.ensure_demo(root, demo.DemoConfig(size=SMALL))
    return root, demo.Truth(root)


def write_manifest(path: Path, targets: dict, defaults: dict | None = None) -> Path:
    """Write a manifest file for a test."""
    doc = {"targets": targets}
    if defaults:
        doc["defaults"] = defaults
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="session")
def realdata():
    """The shared folder of real telescope frames; tests skip when it is absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real frames not found at {REALDATA} (set REDUX_REALDATA)")
    return REALDATA


def demo_target(root, truth, **galaxy) -> dict:
    """The manifest entry of the small demo (as the repository's `demo`, at 256 pixels)."""
    g = truth["galaxy"]
    config = {k: truth["config"][k] for k in ("size", "rotation_deg")}   # as it was made
    return {"raw_dir": str(root / "raw"), "demo": config,
            "filters": {"halpha": "Ha", "continuum": "R"},
            "galaxy": {**{k: g[k] for k in ("ra", "dec", "pa_deg", "inclination_deg",
                                            "distance_mpc")}, **galaxy},
            "standards": str(root / "standards.ecsv"),
            "extinction": dict(truth["extinction"]),
            "bandpasses": {**demo.BANDPASSES,
                           "F656N": {k: truth["space"]["hst"]["F656N"][k]
                                     for k in ("pivot_A", "width_A")}},
            "contsub": {"line_in_continuum": demo.LINE_IN_R},
            "hst": {"halpha": str(root / "hst" / "f656n.fits"),
                    "continuum": [str(root / "hst" / f"{f}.fits") for f in ("f555w", "f814w")]},
            "muse": {"halpha_map": str(root / "muse" / "halpha_map.fits"),
                     "nebula_mask": str(root / "muse" / "nebula_mask.fits"),
                     "nebula_catalog": str(root / "muse" / "nebulae.ecsv")}}


ROTATION = 2.0   # degrees: the last light of each filter of the chain's demo is rotated


@pytest.fixture(scope="session")
def rotated_demo(tmp_path_factory):
    """A 256 x 256 demo night whose last light of each filter is rotated by 2 degrees."""
    root = tmp_path_factory.mktemp("rotdemo") / "demo"
    demo.ensure_demo(root, demo.DemoConfig(size=SMALL, rotation_deg=ROTATION))
    return root, demo.Truth(root)


def checksums(folder: Path) -> dict:
    """sha256 of every file in a folder, by name."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


class Chain(NamedTuple):
    products: Path      # products/<target>
    truth: demo.Truth
    manifest: Path
    raw_before: dict    # checksums of the raw frames before the run
    root: Path          # the demo's folder


@pytest.fixture(scope="session")
def demo_chain(rotated_demo, tmp_path_factory):
    """The whole chain 00-11, run once for the session on the rotated small demo.

    Shared by the notebook tests of every step (test_notebooks, test_stack_chain,
    test_hii_chain, test_halpha_chain); each checks its step's products against the
    demo's truth. One run instead of one per test module: the suite's largest saving.
    """
    from redux_helpers.runner import available_steps, run_target

    root, truth = rotated_demo
    work = tmp_path_factory.mktemp("chain")
    target = {**demo_target(root, truth), "bad_columns": [30]}   # a listed column, for 06
    m = write_manifest(work / "m.yaml", {"demo": target})
    before = checksums(root / "raw")
    steps = [s[:2] for s in available_steps()]
    run_target("demo", manifest=m, products=work / "products", params={"workers": 2},
               only=",".join(steps))
    return Chain(work / "products" / "demo", truth, m, before, root)
