"""A night of another observatory's making, apart from `redux_helpers.demo`.

Not the demo's conventions: ``IMAGETYP`` 'Bias Frame' / 'Flat Field' / 'Light Frame',
the exposure time in ``EXPOSURE``, the gain in ``EGAIN`` and the read noise in
``READNOIS``, the filter called 'Red', a non-square chip with an overscan strip on the
right, no WCS, and no ``galaxy:`` for the manifest to give: redux must find the galaxy
in the frames. The light frames hold a sky of known rate, stars of known flux and
position, and an inclined exponential disc with a small bulge; frames are shifted
against each other by a few pixels and hit by cosmic rays.

Two nights (`NIGHTS`): ``'small'``, a galaxy that covers a few per cent of a 640 x 512
frame, and ``'filled'``, one whose disc fills a 512 x 448 frame (its outskirts still
~2 % of the sky at the corners).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.table import Table

GAIN, READ_NOISE = 1.6, 5.5            # e-/ADU, e-
BIAS_ADU = 800.0
OVERSCAN = 16
EXPOSURE = 30.0                        # s, every light
SKY_RATE = 80.0                        # e-/s per pixel through 'Red'
SEEING = (1.50, 1.47, 1.53)            # Gaussian sigma of the stars, px, per light (see below)
OFFSETS = ((0.0, 0.0), (4.3, -3.1), (-2.7, 5.6))   # (dx, dy) of each light, px
# The seeing differs by 4 % between the lights: with 11 % (1.42-1.58 px) 07's rejection
# (stack_sigma 5, snoise 0.1) clips the cores of the bright stars in the sharpest frame
# and the stack's star fluxes come out 0.45 % low, whatever the sky.

NIGHTS = {
    # shape (ny, nx) of the trimmed image, galaxy centre (ref frame), scale length px,
    # central surface brightness e-/s/px, axis ratio, major axis deg from +x
    "small": {"shape": (512, 640), "centre": (300.4, 270.7), "h": 22.0, "mu0": 100.0,
              "q": 0.75, "theta": 30.0, "seed": 21},
    "filled": {"shape": (448, 512), "centre": (250.6, 230.2), "h": 80.0, "mu0": 120.0,
               "q": 0.8, "theta": -20.0, "seed": 22},
}


@dataclass
class NightTruth:
    """What the night was made from: everything in e-/s on the first light's grid."""

    kind: str
    shape: tuple
    stars: Table            # x, y (0-based, first light's grid), flux (e-/s)
    galaxy: dict
    sky_rate: float = SKY_RATE
    exptime: float = EXPOSURE
    lights: list = field(default_factory=list)

    def galaxy_image(self, offset=(0.0, 0.0)):
        """The galaxy (disc + bulge) in e-/s per pixel, shifted by ``offset``."""
        g = self.galaxy
        ny, nx = self.shape
        yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
        dx, dy = xx - g["x"] - offset[0], yy - g["y"] - offset[1]
        t = math.radians(g["theta"])
        u = math.cos(t) * dx + math.sin(t) * dy
        v = (-math.sin(t) * dx + math.cos(t) * dy) / g["q"]
        r = np.hypot(u, v)
        return g["mu0"] * np.exp(-r / g["h"]) + 4 * g["mu0"] * np.exp(-r / (0.12 * g["h"]))

    def stars_image(self, offset=(0.0, 0.0), sigma=SEEING[0]):
        """The stars in e-/s per pixel, shifted by ``offset``, Gaussian of ``sigma`` px."""
        img = np.zeros(self.shape)
        for x, y, f in zip(self.stars["x"], self.stars["y"], self.stars["flux"], strict=True):
            x, y = x + offset[0], y + offset[1]
            r = int(math.ceil(6 * sigma))
            x0, y0 = int(round(x)), int(round(y))
            ys = slice(max(y0 - r, 0), min(y0 + r + 1, self.shape[0]))
            xs = slice(max(x0 - r, 0), min(x0 + r + 1, self.shape[1]))
            gy, gx = np.mgrid[ys, xs]
            img[ys, xs] += f / (2 * math.pi * sigma ** 2) * np.exp(
                -((gx - x) ** 2 + (gy - y) ** 2) / (2 * sigma ** 2))
        return img

    def scene(self):
        """Stars and galaxy without the sky, e-/s, on the first light's grid."""
        return self.galaxy_image() + self.stars_image()


def _stars(rng, shape, n=70, n_bright=14):
    ny, nx = shape
    x, y = [], []
    while len(x) < n:                      # no two stars closer than 14 px
        px, py = rng.uniform(15, nx - 16), rng.uniform(15, ny - 16)
        if all(math.hypot(px - a, py - b) > 14 for a, b in zip(x, y, strict=True)):
            x.append(px)
            y.append(py)
    flux = np.exp(rng.uniform(np.log(300.0), np.log(6000.0), n))
    flux[:n_bright] = rng.uniform(8000.0, 25000.0, n_bright)
    return Table({"x": x, "y": y, "flux": flux})


def make_night(raw, kind="small"):
    """Write the night's raw frames into ``raw``; return its `NightTruth`.

    5 biases, 5 flats and 3 lights in 'Red', uint16 with a 16-column overscan.
    """
    spec = NIGHTS[kind]
    rng = np.random.default_rng(spec["seed"])
    ny, nx = spec["shape"]
    raw.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:ny, 0:nx]
    r2 = ((xx - nx / 2) / nx) ** 2 + ((yy - ny / 2) / ny) ** 2
    flat = (1 - 0.3 * r2) * rng.normal(1.0, 0.008, (ny, nx))
    # 1 at the centre, as 02 normalises a flat (median of the central half): the truth
    # is then in the calibrated frames' electrons, not a per cent away
    flat /= np.median(flat[ny // 4: 3 * ny // 4, nx // 4: 3 * nx // 4])
    bias_pattern = 2.0 * np.cos(xx / 23.0) + 0.003 * yy          # ADU, every frame
    truth = NightTruth(kind, (ny, nx), _stars(rng, (ny, nx)),
                       {"x": spec["centre"][0], "y": spec["centre"][1], "h": spec["h"],
                        "mu0": spec["mu0"], "q": spec["q"], "theta": spec["theta"]})

    def write(name, electrons, imagetyp, exposure, filt=None):
        level = BIAS_ADU + rng.normal(0, 3.0)
        adu = np.empty((ny, nx + OVERSCAN))
        adu[:, :nx] = electrons / GAIN + bias_pattern
        adu[:, nx:] = 0.0
        adu += level + rng.normal(0, READ_NOISE / GAIN, adu.shape)
        h = fits.Header()
        h["IMAGETYP"] = imagetyp
        h["OBJECT"] = "NGC 9999" if imagetyp == "Light Frame" else imagetyp
        h["EXPOSURE"] = (exposure, "[s]")
        if filt:
            h["FILTER"] = filt
        h["EGAIN"] = (GAIN, "electrons per ADU")
        h["READNOIS"] = (READ_NOISE, "e-")
        h["BIASSEC"] = f"[{nx + 1}:{nx + OVERSCAN},1:{ny}]"
        h["TRIMSEC"] = f"[1:{nx},1:{ny}]"
        h["INSTRUME"] = "other camera (tests/othernight.py)"
        fits.PrimaryHDU(np.clip(np.round(adu), 0, 65535).astype(np.uint16), h).writeto(
            raw / name, overwrite=True)

    for k in range(5):
        write(f"b{k + 1:03d}.fits", np.zeros((ny, nx)), "Bias Frame", 0.0)
    for k in range(5):
        write(f"f{k + 1:03d}.fits", rng.poisson(25000.0 * flat).astype(float), "Flat Field",
              3.0, "Red")
    for k, (offset, sigma) in enumerate(zip(OFFSETS, SEEING, strict=True)):
        rate = SKY_RATE + truth.galaxy_image(offset) + truth.stars_image(offset, sigma)
        e = rng.poisson(rate * EXPOSURE * flat).astype(float)
        hits = rng.integers(0, ny * nx, 25)                       # cosmic rays
        e.flat[hits] += rng.uniform(2000.0, 15000.0, hits.size)
        name = f"n9999_{k + 1:03d}.fits"
        write(name, e, "Light Frame", EXPOSURE, "Red")
        truth.lights.append(name)
    return truth
