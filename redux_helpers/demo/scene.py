"""The demo night's scene: galaxy, HII regions, stars, the chip's bias, dark and flats."""

from __future__ import annotations

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from .model import (
    BIAS_LEVEL,
    BULGE_COLOUR,
    CONT_SCALE,
    EXTINCTION,
    FILTERS,
    GAIN,
    GALAXY,
    HALPHA_CGS_PER_RATE,
    LINE_IN_R,
    OVERSCAN_COLS,
    PIXEL_SCALE,
    READ_NOISE,
    SATURATE,
    STD_FIELD,
    ZERO_POINT,
    DemoConfig,
)


# ---- small pieces ------------------------------------------------------------------
def gauss_stamps(image, xs, ys, fluxes, sigma, *, halfwidth=None):
    """Add circular Gaussians of total ``fluxes`` at (xs, ys) (0-based pixel centres)."""
    ny, nx = image.shape
    sig = np.broadcast_to(np.asarray(sigma, float), np.shape(xs))
    for x, y, f, s in zip(xs, ys, fluxes, sig, strict=True):
        hw = int(np.ceil(5 * s)) if halfwidth is None else halfwidth
        x0, x1 = max(int(x) - hw, 0), min(int(x) + hw + 2, nx)
        y0, y1 = max(int(y) - hw, 0), min(int(y) + hw + 2, ny)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        image[y0:y1, x0:x1] += f / (2 * np.pi * s * s) * np.exp(
            -((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s))
    return image


def make_wcs(ra, dec, crpix, rotation_deg=0.0):
    """A TAN WCS, north up and east left for rotation 0; crpix is 1-based."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = list(crpix)
    s = PIXEL_SCALE / 3600.0
    t = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    w.wcs.cd = np.array([[-s, 0.0], [0.0, s]]) @ rot
    return w


def frame_to_ref(shape, offset, rotation_deg):
    """Reference-grid coordinates (x, y) of every pixel of a frame.

    A frame pixel at (x, y) sees the sky point at reference position
    ``R(theta) (p - c) + c + offset`` where ``c`` is the image centre.
    """
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    cx, cy = (nx - 1) / 2, (ny - 1) / 2
    t = np.deg2rad(rotation_deg)
    xr = np.cos(t) * (xx - cx) - np.sin(t) * (yy - cy) + cx + offset[0]
    yr = np.sin(t) * (xx - cx) + np.cos(t) * (yy - cy) + cy + offset[1]
    return xr, yr


def ref_to_frame(x, y, shape, offset, rotation_deg):
    """Inverse of `frame_to_ref` for points."""
    ny, nx = shape
    cx, cy = (nx - 1) / 2, (ny - 1) / 2
    t = np.deg2rad(rotation_deg)
    dx, dy = np.asarray(x) - cx - offset[0], np.asarray(y) - cy - offset[1]
    return np.cos(t) * dx + np.sin(t) * dy + cx, -np.sin(t) * dx + np.cos(t) * dy + cy


class Night:
    """Builds every array of the night from one random generator."""

    gauss = staticmethod(gauss_stamps)   # for demo_muse, which draws the same sources

    def __init__(self, cfg: DemoConfig):
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        n = cfg.size
        self.shape = (n, n)
        self.scale = n / 1024.0
        self._instrument()
        self._scene()

    # the detector and optics
    def _instrument(self):
        rng, (ny, nx) = self.rng, self.shape
        yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
        # fixed bias pattern (ADU): column offsets, a gradient, a glow in one corner
        col = rng.normal(0.0, 1.5, nx)
        glow = 6.0 * np.exp(-(xx + yy) / (0.08 * nx))
        self.bias_pattern = (col[None, :] + 3.0 * (xx / nx - 0.5) + glow).astype(np.float32)
        # dark current (e-/s): base, amplifier glow, hot pixels
        dark = 0.03 + 0.4 * np.exp(-((nx - xx) + yy) / (0.1 * nx))
        n_hot = max(20, int(1e-3 * nx * ny))
        hy, hx = rng.integers(2, ny - 2, n_hot), rng.integers(2, nx - 2, n_hot)
        hx, hy = np.unique(np.c_[hx, hy], axis=0).T
        hot_rate = np.exp(rng.uniform(np.log(5.0), np.log(80.0), hx.size))
        dark[hy, hx] = hot_rate
        self.dark_current = dark.astype(np.float32)
        self.hot = Table({"x": hx, "y": hy, "rate": hot_rate},
                         meta={"comment": "0-based pixel of the trimmed image; e-/s"})
        # flat patterns: pixel sensitivity shared by filters, vignetting and dust per filter
        p2p = rng.normal(1.0, 0.01, self.shape)
        r2 = ((xx - nx / 2) ** 2 + (yy - ny / 2) ** 2) / (nx / 2) ** 2
        dead = np.sort(rng.choice(np.arange(nx // 8, nx - nx // 8), 2, replace=False))
        self.dead_columns = [int(c) for c in dead]
        self.flats = {}
        for f, vig in zip(FILTERS, (0.12, 0.16), strict=True):
            pattern = p2p * (1.0 - vig * r2)
            for _ in range(4):
                cx, cy = rng.uniform(0.1, 0.9, 2) * (nx, ny)
                rad = rng.uniform(6, 14) * max(self.scale, 0.5)
                rr = np.hypot(xx - cx, yy - cy)
                pattern *= 1.0 - rng.uniform(0.02, 0.04) * np.exp(-((rr - rad) / 1.5) ** 2)
            pattern[:, dead] = 0.02
            c = self.central(pattern)
            self.flats[f] = (pattern / np.median(c)).astype(np.float32)

    def central(self, a):
        ny, nx = a.shape
        return a[ny // 4: 3 * ny // 4, nx // 4: 3 * nx // 4]

    def _hard_regions(self, xs, ys, rate, sigma):
        """Regions a finder finds hard: in the inner disc beside the bulge, and close pairs.

        Drawn from a generator of their own, so the rest of the scene (stars, arm regions,
        noise) is the same as without them. Inner regions sit at 0.3-0.6 scale lengths
        from the centre, where the bulge and the disc are bright; each pair's second
        region is 2.2-3.5 seeing FWHM (7-11 px) from an arm region, with a quarter to
        the whole of its flux.
        """
        rng = np.random.default_rng([self.cfg.seed, 9])
        n_inner, n_pair = max(4, int(8 * self.scale)), max(3, int(8 * self.scale))
        inner = {"x": [], "y": [], "r": []}
        for _ in range(40 * n_inner):
            if len(inner["x"]) == n_inner:
                break
            r, phi = rng.uniform(0.3, 0.6) * self.h, rng.uniform(0, 2 * np.pi)
            u, v = r * np.cos(phi), r * np.sin(phi) * np.cos(self.inc)
            x = self.xc - np.sin(self.pa) * u + np.cos(self.pa) * v
            y = self.yc + np.cos(self.pa) * u + np.sin(self.pa) * v
            near = np.hypot(np.r_[xs, inner["x"]] - x, np.r_[ys, inner["y"]] - y)
            if near.size and near.min() < 9:
                continue
            inner["x"].append(x)
            inner["y"].append(y)
            inner["r"].append(r)
        n_in = len(inner["x"])
        inner = {k: np.array(v) for k, v in inner.items()}
        inner["rate"] = np.exp(rng.uniform(np.log(60.0), np.log(400.0), n_in))
        inner["sigma"] = rng.uniform(1.0, 1.8, n_in)
        pairs = {"x": [], "y": [], "r": [], "rate": [], "sigma": []}
        taken_x, taken_y = np.r_[xs, inner["x"]], np.r_[ys, inner["y"]]
        ny, nx = self.shape
        for i in rng.permutation(len(xs)):
            if len(pairs["x"]) == n_pair:
                break
            d, ang = rng.uniform(7.0, 11.0), rng.uniform(0, 2 * np.pi)
            x, y = xs[i] + d * np.cos(ang), ys[i] + d * np.sin(ang)
            others = np.hypot(taken_x - x, taken_y - y)
            others[i] = np.inf                      # its partner
            if not (12 <= x < nx - 12 and 12 <= y < ny - 12) or others.min() < 9:
                continue
            dx, dy = x - self.xc, y - self.yc
            u = -np.sin(self.pa) * dx + np.cos(self.pa) * dy
            v = (np.cos(self.pa) * dx + np.sin(self.pa) * dy) / np.cos(self.inc)
            pairs["x"].append(x)
            pairs["y"].append(y)
            pairs["r"].append(np.hypot(u, v))
            pairs["rate"].append(max(rng.uniform(0.25, 1.0) * rate[i], 20.0))
            pairs["sigma"].append(min(sigma[i], 1.6))
            taken_x, taken_y = np.r_[taken_x, x], np.r_[taken_y, y]
        return inner, {k: np.array(v) for k, v in pairs.items()}

    # the sky: galaxy, HII regions, field stars, standards
    def _scene(self):
        rng, (ny, nx) = self.rng, self.shape
        self.xc, self.yc = (nx - 1) / 2 + 0.3, (ny - 1) / 2 - 0.4
        self.h = nx / 12.0
        pa, inc = np.deg2rad(GALAXY["pa_deg"]), np.deg2rad(GALAXY["inclination_deg"])
        self.pa, self.inc = pa, inc
        # HII regions along two logarithmic arms
        n_hii = max(12, int(25 * self.scale))
        pitch, r0 = np.deg2rad(20.0), 0.5 * self.h
        xs, ys, rs = [], [], []
        tries = 0
        while len(xs) < n_hii and tries < 10000:
            tries += 1
            r = rng.uniform(0.6, 3.0) * self.h
            phi = np.log(r / r0) / np.tan(pitch) + np.pi * rng.integers(0, 2) \
                + rng.normal(0, 0.15)
            u, v = r * np.cos(phi), r * np.sin(phi) * np.cos(inc)
            x = self.xc - np.sin(pa) * u + np.cos(pa) * v
            y = self.yc + np.cos(pa) * u + np.sin(pa) * v
            if not (12 <= x < nx - 12 and 12 <= y < ny - 12):
                continue
            if xs and np.min(np.hypot(np.array(xs) - x, np.array(ys) - y)) < 9:
                continue
            xs.append(x)
            ys.append(y)
            rs.append(r)
        rate = np.exp(rng.uniform(np.log(20.0), np.log(400.0), len(xs)))
        sigma = rng.uniform(1.0, 2.2, len(xs))
        inner, pairs = self._hard_regions(xs, ys, rate, sigma)
        xs, ys, rs = (np.r_[a, inner[k], pairs[k]] for a, k in ((xs, "x"), (ys, "y"), (rs, "r")))
        rate, sigma = np.r_[rate, inner["rate"], pairs["rate"]], np.r_[sigma, inner["sigma"], pairs["sigma"]]
        self.hii = Table({"id": np.arange(1, len(xs) + 1), "x": xs, "y": ys,
                          "r_disk": rs, "sigma": sigma,
                          "halpha_rate": rate, "halpha_flux": rate * HALPHA_CGS_PER_RATE})
        # field stars, kept off the galaxy's brightest part; the first three saturate
        n_star = max(30, int(150 * self.scale ** 2))
        xs = rng.uniform(6, nx - 6, n_star)
        ys = rng.uniform(6, ny - 6, n_star)
        mags = 21.0 - 6.0 * rng.power(2.5, n_star) ** 1.0
        mags[:3] = rng.uniform(13.0, 13.8, 3)
        far = np.hypot(xs - self.xc, ys - self.yc) > 0.8 * self.h
        xs, ys, mags = xs[far], ys[far], mags[far]
        colour = rng.normal(0.0, 0.03, xs.size)   # scatter of Ha/R flux ratio about CONT_SCALE
        self.stars = Table({"id": np.arange(1, xs.size + 1), "x": xs, "y": ys, "R": mags})
        rate_r = 10 ** (-0.4 * (mags - ZERO_POINT["R"]))
        rate_ha = CONT_SCALE * rate_r * (1 + colour)
        self.stars["Ha"] = ZERO_POINT["Ha"] - 2.5 * np.log10(rate_ha)
        self.stars["rate_R"], self.stars["rate_Ha"] = rate_r, rate_ha
        ref = make_wcs(GALAXY["ra"], GALAXY["dec"], (self.xc + 1, self.yc + 1))
        self.ref_wcs = ref
        for t in (self.stars, self.hii):
            ra, dec = ref.pixel_to_world_values(t["x"], t["y"])
            t["ra"], t["dec"] = ra, dec
        # standards: 8 stars in their own field, plus a few faint field stars
        n_std = 8
        sx = rng.uniform(0.15, 0.85, n_std) * nx
        sy = rng.uniform(0.15, 0.85, n_std) * ny
        sm = rng.uniform(12.5, 15.0, n_std)
        scol = rng.normal(0.0, 0.03, n_std)
        self.std_wcs = make_wcs(STD_FIELD["ra"], STD_FIELD["dec"], (nx / 2 + 1, ny / 2 + 1))
        sra, sdec = self.std_wcs.pixel_to_world_values(sx, sy)
        srate_r = 10 ** (-0.4 * (sm - ZERO_POINT["R"]))
        srate_ha = CONT_SCALE * srate_r * (1 + scol)
        self.standards = Table({
            "name": [f"DEMO-{i + 1:02d}" for i in range(n_std)], "ra": sra, "dec": sdec,
            "R": sm, "Ha": ZERO_POINT["Ha"] - 2.5 * np.log10(srate_ha)})
        self.std_xy = (sx, sy, srate_r, srate_ha)

    def galaxy_rate(self, xr, yr, filt):
        """Continuum surface brightness of the galaxy (e-/s/pixel) at reference coords."""
        pa, inc = self.pa, self.inc
        dx, dy = xr - self.xc, yr - self.yc
        u = -np.sin(pa) * dx + np.cos(pa) * dy
        v = (np.cos(pa) * dx + np.sin(pa) * dy) / np.cos(inc)
        r = np.hypot(u, v)
        phi = np.arctan2(v, u)
        spiral = np.cos(2 * (phi - np.log(np.maximum(r, 1e-3) / (0.5 * self.h))
                             / np.tan(np.deg2rad(20.0))))
        weight = 1.0 - np.exp(-((r / (0.5 * self.h)) ** 2))   # arms fade in smoothly
        disk = 60.0 * np.exp(-r / self.h) * (1.0 + 0.5 * weight * spiral)
        # a round bulge with a core no sharper than the seeing
        r_sky = np.sqrt(dx ** 2 + dy ** 2 + 2.0 ** 2)
        bulge = 150.0 * np.exp(-(r_sky - 2.0) / (0.08 * self.h + 1.0))
        return disk + bulge if filt == "R" else CONT_SCALE * (disk + BULGE_COLOUR * bulge)

    def scene(self, filt, *, shape=None, offset=(0.0, 0.0), rotation_deg=0.0,
              seeing_fwhm=3.2, airmass=0.0, science=True):
        """Noiseless rate image (e-/s) of the objects, before the flat, after extinction."""
        shape = shape or self.shape
        sig = seeing_fwhm / 2.3548
        att = 10 ** (-0.4 * EXTINCTION[filt] * airmass)
        img = np.zeros(shape)
        if science:
            xr, yr = frame_to_ref(shape, offset, rotation_deg)
            img += self.galaxy_rate(xr, yr, filt)
            x, y = ref_to_frame(self.stars["x"], self.stars["y"], shape, offset, rotation_deg)
            gauss_stamps(img, x, y, self.stars[f"rate_{filt}"], sig)
            x, y = ref_to_frame(self.hii["x"], self.hii["y"], shape, offset, rotation_deg)
            line = self.hii["halpha_rate"] * (1.0 if filt == "Ha" else LINE_IN_R)
            gauss_stamps(img, x, y, line, np.hypot(self.hii["sigma"], sig))
        else:
            sx, sy, rr, rh = self.std_xy
            x, y = ref_to_frame(sx, sy, shape, offset, rotation_deg)
            gauss_stamps(img, x, y, rr if filt == "R" else rh, sig)
        return img * att

    def cosmic_rays(self, exptime):
        """Electrons deposited by cosmic rays in one exposure (short tracks)."""
        rng, (ny, nx) = self.rng, self.shape
        n = rng.poisson(150 * (nx * ny / 1024 ** 2) * exptime / 300.0)
        dep = np.zeros(self.shape)
        for _ in range(n):
            x, y = rng.uniform(2, nx - 3), rng.uniform(2, ny - 3)
            length = rng.uniform(0, 6)
            ang = rng.uniform(0, np.pi)
            steps = max(int(np.ceil(length * 2)), 1)
            t = np.linspace(0, length, steps)
            px = np.clip(np.round(x + t * np.cos(ang)).astype(int), 0, nx - 1)
            py = np.clip(np.round(y + t * np.sin(ang)).astype(int), 0, ny - 1)
            pix = np.unique(np.c_[py, px], axis=0)
            dep[pix[:, 0], pix[:, 1]] += np.exp(rng.uniform(np.log(800), np.log(15000),
                                                            len(pix)))
        return dep

    def readout(self, electrons):
        """Electrons in the image area -> raw ADU frame with overscan, as uint16."""
        rng, (ny, nx) = self.rng, self.shape
        level = BIAS_LEVEL + rng.normal(0.0, 3.0)
        rows = 2.0 * np.sin(2 * np.pi * (np.arange(ny) / ny * 1.5 + rng.uniform()))
        raw = np.empty((ny, nx + OVERSCAN_COLS))
        rn = READ_NOISE / GAIN
        raw[:, :nx] = electrons / GAIN + self.bias_pattern
        raw[:, nx:] = 0.0
        raw += level + rows[:, None] + rng.normal(0.0, rn, raw.shape)
        return np.clip(np.round(raw), 0, SATURATE).astype(np.uint16)

    def expose(self, rate, exptime, *, flat):
        """Poisson electrons from a rate image through the flat, plus dark current."""
        signal = self.rng.poisson(np.clip(rate * flat * exptime, 0, None)).astype(float)
        return signal + self.rng.poisson(self.dark_current * exptime)




def frame_wcs(ref: WCS, shape, offset, rotation_deg) -> WCS:
    """The WCS of a frame that sees the reference grid shifted and rotated."""
    crpix_ref = np.array(ref.wcs.crpix) - 1.0
    x, y = ref_to_frame(crpix_ref[0], crpix_ref[1], shape, offset, rotation_deg)
    w = ref.deepcopy()
    w.wcs.crpix = [float(x) + 1.0, float(y) + 1.0]
    t = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    w.wcs.cd = ref.wcs.cd @ rot
    return w


