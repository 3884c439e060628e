"""Synthetic Hα line images for the HII-region finder, made apart from the demo.

A galaxy seen at an inclination, its continuum already subtracted, leaving what a real
subtraction leaves: a smooth residual of the bulge (positive or negative: the bulge is
redder than the field stars whose colour set the scale), regions spread over the disc,
some in the inner disc on that residual, some in close pairs, and noise. Everything is
in e-/s; the truth lists every region's position, total flux and size.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.table import Table

FWHM = 3.2
SIG_SEEING = FWHM / (2 * math.sqrt(2 * math.log(2)))


def _gauss(shape, x, y, flux, sigma):
    img = np.zeros(shape)
    for xi, yi, fi, si in zip(x, y, flux, sigma, strict=True):
        r = int(math.ceil(5 * si))
        x0, y0 = int(round(xi)), int(round(yi))
        ys = slice(max(y0 - r, 0), min(y0 + r + 1, shape[0]))
        xs = slice(max(x0 - r, 0), min(x0 + r + 1, shape[1]))
        yy, xx = np.mgrid[ys, xs]
        img[ys, xs] += fi / (2 * math.pi * si ** 2) * np.exp(
            -((xx - xi) ** 2 + (yy - yi) ** 2) / (2 * si ** 2))
    return img


def make_field(seed, *, shape=(240, 260), centre=(131.3, 118.6), pa_deg=35.0, inc_deg=50.0,
               n_disc=20, n_inner=6, n_pairs=5, pair_sep=(2.0, 3.2), noise=0.02,
               bulge_peak=6.0, bulge_scale=9.0, flux_range=(3.0, 60.0)):
    """A line image with its truth: (line, line_unc, truth, geometry).

    ``n_inner`` regions lie within 12-30 px of the centre, on a bulge residual of peak
    ``bulge_peak`` e-/s per pixel (an exponential of scale ``bulge_scale`` px, seen
    through the same inclination, its sign drawn at random); ``n_pairs`` pairs are
    ``pair_sep`` FWHM apart (min, max); the rest spread over the disc.
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    x0, y0 = centre
    pa, inc = math.radians(pa_deg), math.radians(inc_deg)

    def place(r, phi):
        # a point at radius r, angle phi in the disc -> pixels (north +y, east -x)
        u, v = r * np.cos(phi), r * np.sin(phi) * math.cos(inc)
        east = u * math.sin(pa) - v * math.cos(pa)
        north = u * math.cos(pa) + v * math.sin(pa)
        return x0 - east, y0 + north

    xs, ys, kinds = [], [], []
    for kind, n, rmin, rmax in (("inner", n_inner, 12.0, 30.0), ("disc", n_disc, 35.0, 100.0)):
        k = 0
        while k < n:
            x, y = place(rng.uniform(rmin, rmax), rng.uniform(0, 2 * math.pi))
            if 8 < x < nx - 8 and 8 < y < ny - 8 and all(
                    math.hypot(x - a, y - b) > 4 * FWHM for a, b in zip(xs, ys, strict=True)):
                xs.append(x)
                ys.append(y)
                kinds.append(kind)
                k += 1
    for _ in range(n_pairs):                 # a companion beside some disc regions
        while True:
            i = int(rng.integers(0, len(xs)))
            if kinds[i] == "disc":
                break
        sep, ang = rng.uniform(*pair_sep) * FWHM, rng.uniform(0, 2 * math.pi)
        xs.append(xs[i] + sep * math.cos(ang))
        ys.append(ys[i] + sep * math.sin(ang))
        kinds[i] = "pair"
        kinds.append("pair")
    n = len(xs)
    flux = np.exp(rng.uniform(*np.log(flux_range), n))
    size = rng.uniform(0.6, 1.6, n)                       # intrinsic sigma, px
    sigma = np.hypot(size, SIG_SEEING)
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    dx, dy = xx - x0, yy - y0
    east, north = -dx, dy
    u = east * math.sin(pa) + north * math.cos(pa)
    v = (-east * math.cos(pa) + north * math.sin(pa)) / math.cos(inc)
    bulge = rng.choice([-1.0, 1.0]) * bulge_peak * np.exp(-np.hypot(u, v) / bulge_scale)
    clean = _gauss(shape, xs, ys, flux, sigma)
    unc = np.full(shape, noise)
    line = clean + bulge + rng.normal(0, noise, shape)
    truth = Table({"x": xs, "y": ys, "flux": flux, "sigma": sigma, "kind": kinds})
    geometry = {"x": x0, "y": y0, "pa_deg": pa_deg, "inclination_deg": inc_deg}
    return line, unc, truth, geometry
