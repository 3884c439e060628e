"""Shared fixtures: a small demo night (256 x 256) and the real-data folder."""

from __future__ import annotations

import os
from pathlib import Path

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
