"""Read access to a demo night's truth, for notebooks and tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table


class Truth:
    """Read access to a demo night's truth, for notebooks and tests."""

    def __init__(self, root):
        self.root = Path(root)
        self.dir = self.root / "truth"
        if not (self.dir / "truth.json").is_file():
            msg = f"{self.root} has no demo truth; make it with `redux demo`"
            raise FileNotFoundError(msg)
        self.facts = json.loads((self.dir / "truth.json").read_text())

    def __getitem__(self, key):
        return self.facts[key]

    def image(self, name) -> np.ndarray:
        """A truth image by file stem: 'bias_pattern', 'dark_current', 'flat_R', ..."""
        return fits.getdata(self.dir / f"{name}.fits").astype(np.float64)

    def frame_rate(self, frame) -> np.ndarray:
        """Noiseless e-/s reaching the detector in a light frame (sky included, before flat)."""
        return self.image(f"frames/{Path(frame).name.split('.')[0]}_rate")

    def cr_mask(self, frame) -> np.ndarray:
        """Pixels of a light frame hit by an injected cosmic ray."""
        return self.image(f"frames/{Path(frame).name.split('.')[0]}_crmask") > 0

    def table(self, name) -> Table:
        """A truth table: 'stars', 'hii_regions', 'hot_pixels'."""
        return Table.read(self.dir / f"{name}.ecsv")
