"""The stars' size: `seeing_fwhm` (the median FWHM of isolated bright stars) and `fit_fwhms`."""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np

from ..errors import ReduxError
from .detect import detect_stars

log = logging.getLogger(__name__)

def seeing_fwhm(data, uncertainty, mask=None, *, guess=3.5, nsigma=10.0, max_stars=30,
                positions=None):
    """The seeing: median FWHM (pixels) of Gaussians fitted to bright, clean, isolated stars.

    Stars are found with `photometry.detect_stars` at ``nsigma`` with a kernel of
    ``guess`` pixels (then 1.5, 2 and 0.7 times it, and all again at ``nsigma / 2``,
    until 3 usable stars turn up: a kernel far from the stars' size misses them). A star
    is used when it is neither flagged nor saturated, point-like (DAOFIND sharpness
    0.2-1, roundness within ±0.5), isolated (no other detection within 4 kernel FWHM)
    and 3 FWHM from the edges. With ``positions`` (x, y of stars found on another image
    of the same grid, e.g. the `seeing_fwhm` stars of the continuum stack), those are
    fitted instead: an Hα image's HII regions then can't pass for stars. Each is fitted
    with `fit_fwhms` (on its cut-out less a ring's median); the fits are repeated once
    with a fitting box sized for the first median when that differs from the kernel by
    more than 30 %. With 6 or more fits, the sharper half is kept, and in it the largest
    group of values within 15 % of each other: a galaxy's compact knots can pass every
    test above, but they are wider than the seeing, never sharper, and differ from
    each other, while the stars all share the seeing (on a clean field of stars this is
    ~1 % below the plain median).

    Returns
    -------
    fwhm : float
        The median; ``guess`` when no star could be measured.
    n_stars : int
        How many fits the median is taken of (0: the guess was returned).
    positions : ndarray
        (n, 2) x, y of the stars fitted (empty when none), for another image's call.
    """
    data = np.asarray(data, dtype=np.float64)
    guess = float(guess)
    if not (np.isfinite(guess) and guess > 0):
        msg = f"the FWHM guess must be a positive number of pixels; got {guess!r}"
        raise ReduxError(msg)
    ny, nx = data.shape

    def usable_stars(f, threshold):
        found = detect_stars(data, uncertainty, mask, fwhm=f, nsigma=threshold)
        ok = found[~found["flagged"] & ~found["saturated"]
                   & (found["sharpness"] > 0.2) & (found["sharpness"] < 1.0)
                   & (np.abs(found["roundness1"]) < 0.5) & (np.abs(found["roundness2"]) < 0.5)]
        if len(ok) > 1:
            d = np.hypot(found["x"][:, None] - ok["x"][None], found["y"][:, None] - ok["y"][None])
            d[d == 0] = np.inf
            ok = ok[d.min(axis=0) > 4 * f]
        edge = 3 * f
        inside = (ok["x"] > edge) & (ok["x"] < nx - 1 - edge) & (ok["y"] > edge) \
            & (ok["y"] < ny - 1 - edge)
        return ok[inside][:max_stars]

    def fit(stars, f):
        values = np.sort(fit_fwhms(data, stars["x"], stars["y"], fwhm=f, mask=mask))
        values = values[np.isfinite(values) & (values > 0.8) & (values < 4 * f)]
        if values.size < 3:
            return None, 0
        if values.size >= 6:        # the sharper half: knots that pass for stars are wider
            values = values[: int(math.ceil(values.size / 2))]
            # ... and in it the tightest group (within 15 %): the stars all share the seeing
            counts = [int(np.sum(values <= 1.15 * v)) - i for i, v in enumerate(values)]
            i = int(np.argmax(counts))
            if counts[i] >= 3:
                values = values[i:i + counts[i]]
        return float(np.median(values)), int(values.size)

    if positions is not None:
        xy = np.asarray(positions, float).reshape(-1, 2)
        tries = [({"x": xy[:, 0], "y": xy[:, 1]}, guess)]
    else:
        tries = ((usable_stars(f, threshold), f) for threshold in (nsigma, nsigma / 2.0)
                 for f in (guess, 1.5 * guess, 2.0 * guess, 0.7 * guess))
    for stars, f in tries:
        if len(stars["x"]) < 3:
            continue
        value, n = fit(stars, f)
        if value is None:
            continue
        if abs(value / f - 1) > 0.3:          # a box sized for the stars, once
            again, n2 = fit(stars, value)
            if again is not None:
                value, n = again, n2
        log.info("seeing %.2f px from %d stars (guess %.2f)", value, n, guess)
        return value, n, np.c_[np.asarray(stars["x"], float), np.asarray(stars["y"], float)]
    log.warning("seeing_fwhm: no 3 clean isolated stars; keeping the guess %.2f px", guess)
    return guess, 0, np.zeros((0, 2))


def fit_fwhms(data, x, y, *, fwhm, mask=None):
    """The FWHM (pixels) of a circular Gaussian fitted to the source at each (x, y).

    Each source is fitted (`photutils.psf.fit_fwhm`, a box of 2 ceil(1.5 ``fwhm``) + 1
    pixels) on its pixels less the median of a ring 3-4 ``fwhm`` around it, so that a
    star on a galaxy's light is not made wider by it. A star is as wide as the seeing;
    an HII region, a knot or a bump of a spiral arm is wider. NaN where the fit fails
    or the ring has fewer than 8 usable pixels.

    The sources are fitted in batches whose fit boxes share no pixel (isolated stars, as
    `seeing_fwhm` picks them, are one batch), each batch in one call on one image, each
    box less its own ring's median: the same fits (to 1e-8 px), without photutils' set-up
    for each call (08 on the demo, 101 stars in 8 images: 2.3 -> 0.9 s). A batch whose
    call fails, and a source alone in its batch, is fitted on its own cut-out.
    """
    from photutils.psf import fit_fwhm

    data = np.asarray(data, dtype=np.float64)
    bad = ~np.isfinite(data) if mask is None else (~np.isfinite(data) | (np.asarray(mask) > 0))
    clean = np.where(bad, 0.0, data)
    ny, nx = data.shape
    f = float(fwhm)
    half = int(math.ceil(1.5 * f))
    ring_in, ring_out = 3.0 * f, 4.0 * f
    x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
    out = np.full(x.shape, np.nan)
    cuts = []                 # (index, the cut-out's slices, its level, the fit box's slices)
    for k, (cx, cy) in enumerate(zip(x, y, strict=True)):
        r = int(math.ceil(ring_out)) + 1
        x0, x1 = max(int(round(cx)) - r, 0), min(int(round(cx)) + r + 1, nx)
        y0, y1 = max(int(round(cy)) - r, 0), min(int(round(cy)) + r + 1, ny)
        if x1 - x0 < 2 * half + 1 or y1 - y0 < 2 * half + 1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        rr = np.hypot(xx - cx, yy - cy)
        ring = (rr >= ring_in) & (rr <= ring_out) & ~bad[y0:y1, x0:x1]
        if ring.sum() < 8:
            continue
        level = float(np.median(clean[y0:y1, x0:x1][ring]))
        b = half + 1          # the fit box (round(c) +- half), one pixel wider to be sure
        box = (slice(max(int(round(cy)) - b, 0), int(round(cy)) + b + 1),
               slice(max(int(round(cx)) - b, 0), int(round(cx)) + b + 1))
        cuts.append((k, (slice(y0, y1), slice(x0, x1)), level, box))

    def one_call(image, fit_mask, xy):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return np.atleast_1d(fit_fwhm(image, mask=fit_mask, xypos=xy,
                                              fit_shape=2 * half + 1)).astype(float)
            except (ValueError, RuntimeError):
                return None

    # batches of sources whose fit boxes share no pixel (first fit, in order), each one call
    batches, taken = [], []            # the cuts of each batch; the pixels its boxes cover
    for cut in cuts:
        box = cut[3]
        i = next((i for i, covered in enumerate(taken) if not covered[box].any()), None)
        if i is None:                  # it overlaps a box of every batch so far: a new one
            batches.append([])
            taken.append(np.zeros(data.shape, bool))
            i = len(batches) - 1
        batches[i].append(cut)
        taken[i][box] = True
    alone = []
    for batch in batches:
        if len(batch) == 1:
            alone += batch
            continue
        work = clean.copy()
        for _, _, level, box in batch:
            work[box] -= level
        v = one_call(work, bad, [(x[k], y[k]) for k, *_ in batch])
        if v is not None and len(v) == len(batch):
            out[[k for k, *_ in batch]] = v
        else:
            alone += batch
    for k, (ys, xs), level, _ in alone:
        v = one_call(clean[ys, xs] - level, bad[ys, xs], [(x[k] - xs.start, y[k] - ys.start)])
        if v is not None:
            out[k] = float(v[0])
    return out
