"""Images without an uncertainty, the seeing, and what is left of the stars in a line image."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .constants import FWHM_TO_SIGMA


def galaxy_extent(image, x0, y0, *, sky_rms, smooth=10.0, nsigma=3.0, bad=None):
    """The galaxy's pixels: its light, smoothed, above the sky's noise and joined to its centre.

    ``image`` (sky subtracted) is smoothed by a Gaussian of ``smooth`` pixels, which
    turns the noise of one pixel ``sky_rms`` into ``sky_rms / (2 sqrt(pi) smooth)``;
    pixels more than ``nsigma`` times that above zero, connected to the centre
    (x0, y0), holes filled, are the galaxy. Stars make islands of their own, left
    out unless they touch the galaxy. Flagged and NaN pixels count as zero.

    Returns
    -------
    ndarray of bool, or None
        None when the centre itself is not above the threshold.
    """
    image = np.asarray(image, dtype=np.float64)
    dead = ~np.isfinite(image)
    if bad is not None:
        dead |= np.asarray(bad, bool)
    smoothed = ndimage.gaussian_filter(np.where(dead, 0.0, image), float(smooth), mode="constant")
    level = float(nsigma) * float(sky_rms) / (2.0 * math.sqrt(math.pi) * float(smooth))
    above = smoothed > level
    labels, _ = ndimage.label(above)
    ny, nx = image.shape
    iy, ix = int(round(min(max(y0, 0), ny - 1))), int(round(min(max(x0, 0), nx - 1)))
    if labels[iy, ix] == 0:
        return None
    return ndimage.binary_fill_holes(labels == labels[iy, ix])


def saturated_cores(bad, image, *, min_level, min_area=2, max_area=2000):
    """Blobs of flagged pixels inside the image and surrounded by light: saturated stars.

    A star bright enough to saturate leaves a hole in a stack (its core is NaN or
    flagged), so a star finder misses it, but its wings are still there and a
    continuum subtraction leaves a residual of them. A blob is kept when it does not
    touch the edge of the image (a no-data border does), has ``min_area`` to
    ``max_area`` pixels, and the median of ``image`` in a 2-pixel ring around it is
    above ``min_level`` (a star's wing, not empty sky).

    Returns
    -------
    x, y : ndarray
        Centre of each blob (0-based pixels).
    area : ndarray
        Its number of pixels.
    edge : ndarray
        The median of ``image`` in the ring: the star's light at the hole's edge.
    """
    bad = np.asarray(bad, bool)
    image = np.asarray(image, dtype=np.float64)
    labels, _ = ndimage.label(bad)
    xs, ys, areas, edges = [], [], [], []
    ny, nx = bad.shape
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        (y0, y1), (x0, x1) = (sl[0].start, sl[0].stop), (sl[1].start, sl[1].stop)
        if y0 == 0 or x0 == 0 or y1 == ny or x1 == nx:
            continue
        blob = labels[sl] == i
        area = int(blob.sum())
        if not min_area <= area <= max_area:
            continue
        pad = (slice(max(y0 - 3, 0), min(y1 + 3, ny)), slice(max(x0 - 3, 0), min(x1 + 3, nx)))
        here = labels[pad] == i
        ring = ndimage.binary_dilation(here, iterations=2) & ~here & ~bad[pad]
        values = image[pad][ring]
        values = values[np.isfinite(values)]
        if not values.size or np.median(values) <= min_level:
            continue
        cy, cx = ndimage.center_of_mass(here)
        xs.append(cx + pad[1].start)
        ys.append(cy + pad[0].start)
        areas.append(area)
        edges.append(float(np.median(values)))
    return np.array(xs, float), np.array(ys, float), np.array(areas, int), np.array(edges, float)


def star_radii(peak, level, *, fwhm, core=0.0, pad=3.0):
    """Radius around each star out to which its residual stays above ``level``, plus ``pad``.

    A star whose colour differs from the average star's by a fraction ``f`` leaves
    ``f s R / (1 - s q)`` of itself in the line image (see `subtract_continuum`). Its
    light falls off as the PSF, taken here as a Gaussian of the measured ``fwhm``, so
    the residual of peak ``P`` stays above the line image's noise ``n`` out to

        r = sqrt(core² + 2 σ² ln(P / n)),   σ = fwhm / 2.3548,

    where ``core`` is the radius at which ``P`` was measured: 0 for a star measured
    whole (``P`` = flux / (2 π σ²)), the radius of the hole for a saturated star (``P``
    the light at the hole's edge, see `saturated_cores`). ``pad`` pixels are added for
    the wings a real PSF has and a Gaussian does not; a star whose residual is below
    ``level`` everywhere still gets ``core + pad``.

    Parameters
    ----------
    peak, level : array_like
        Peak residual and the noise it is compared with (one unit, e.g. e-/s per pixel
        of the line image); NaN peaks give NaN radii, a peak at or below ``level``
        (or negative: a faint star's noisy flux) ``core + pad``.
    fwhm : float
        Seeing in pixels.
    core, pad : float or array_like
        Pixels.

    Returns
    -------
    ndarray
    """
    peak = np.atleast_1d(np.asarray(peak, float))
    level = np.broadcast_to(np.asarray(level, float), peak.shape)
    core = np.broadcast_to(np.asarray(core, float), peak.shape)
    sigma = float(fwhm) * FWHM_TO_SIGMA
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(level > 0, peak / level, np.inf)
        log_ratio = np.where(ratio > 1.0, np.log(ratio), 0.0)
    r2 = core ** 2 + 2.0 * sigma ** 2 * log_ratio
    r2[~np.isfinite(peak)] = np.nan
    return np.sqrt(r2) + pad


def residual_radius(line, line_unc, x, y, *, r_max, bad=None):
    """How far from (x, y) a residual in ``line`` stays above the noise, measured on it.

    The median of ``|line|`` in rings one pixel wide around (x, y) is compared with
    the median of ``line_unc`` in the same ring (for pure noise the first is 0.67 times
    the second); the radius is the first ring where it falls below. For what no model
    predicts: the residual of a galaxy's nucleus, whose colour is not the stars', or
    whose light a smooth model could not follow. Returns ``r_max`` when the residual
    never falls below the noise within it, 0 when the centre ring already is noise.
    """
    line = np.asarray(line, dtype=np.float64)
    unc = np.asarray(line_unc, dtype=np.float64)
    ok = np.isfinite(line) & np.isfinite(unc)
    if bad is not None:
        ok &= ~np.asarray(bad, bool)
    ny, nx = line.shape
    half = int(math.ceil(r_max)) + 1
    x0, x1 = max(int(round(x)) - half, 0), min(int(round(x)) + half + 1, nx)
    y0, y1 = max(int(round(y)) - half, 0), min(int(round(y)) + half + 1, ny)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    ring_of = np.floor(np.hypot(xx - x, yy - y)).astype(int)
    cut, err, good = np.abs(line[y0:y1, x0:x1]), unc[y0:y1, x0:x1], ok[y0:y1, x0:x1]
    for ring in range(int(math.ceil(r_max)) + 1):
        sel = good & (ring_of == ring)
        if sel.any() and np.median(cut[sel]) < np.median(err[sel]):
            return float(ring)
    return float(r_max)


def discs(shape, x, y, radii):
    """Boolean image: True within ``radii`` of any (x, y)."""
    out = np.zeros(shape, bool)
    ny, nx = shape
    for cx, cy, rad in zip(np.atleast_1d(x), np.atleast_1d(y), np.atleast_1d(radii), strict=True):
        if not np.isfinite(rad) or rad <= 0:
            continue
        x0, x1 = max(int(math.floor(cx - rad)), 0), min(int(math.ceil(cx + rad)) + 1, nx)
        y0, y1 = max(int(math.floor(cy - rad)), 0), min(int(math.ceil(cy + rad)) + 1, ny)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        out[y0:y1, x0:x1] |= np.hypot(xx - cx, yy - cy) <= rad
    return out


def light_centre(image, bad=None, *, smooth=10.0):
    """(x, y) of the brightest point of ``image`` smoothed by a Gaussian of ``smooth`` px.

    The centre of a galaxy whose manifest gives no position (or whose image has no
    WCS): smoothing over ~10 px makes the galaxy's bulge win over stars and knots.
    Flagged and NaN pixels count as zero.
    """
    image = np.asarray(image, dtype=np.float64)
    dead = ~np.isfinite(image)
    if bad is not None:
        dead |= np.asarray(bad, bool)
    smooth_img = ndimage.gaussian_filter(np.where(dead, 0.0, image), float(smooth),
                                         mode="constant")
    y, x = np.unravel_index(int(np.argmax(smooth_img)), smooth_img.shape)
    return float(x), float(y)


