"""A galaxy's own light: `elliptical_radius`, `galaxy_geometry`, `find_galaxy`, and `radial_sky` (its azimuthal profile fitted with A f(r) + G, G the sky)."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.stats import mad_std
from astropy.utils.exceptions import AstropyUserWarning

from ..errors import ReduxError
from ..smoothing import block_median
from .constants import PROFILES
from .sources import _as_image, detect

log = logging.getLogger(__name__)

def elliptical_radius(shape, center, *, axis_ratio=1.0, theta_deg=0.0):
    """Semi-major axis of the ellipse through every pixel (a circle for axis_ratio 1).

    Parameters
    ----------
    shape : (int, int)
        Image shape (rows, columns).
    center : (float, float)
        Pixel (x, y) of the centre, 0-based.
    axis_ratio : float
        Minor over major axis, in (0, 1].
    theta_deg : float
        Angle of the major axis, degrees counter-clockwise from the +x axis.

    Examples
    --------
    >>> r = elliptical_radius((5, 5), (2, 2), axis_ratio=0.5)
    >>> float(r[2, 4]), float(r[4, 2])
    (2.0, 4.0)
    """
    if not 0 < axis_ratio <= 1:
        msg = f"axis_ratio must be in (0, 1], got {axis_ratio}"
        raise ValueError(msg)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    dx, dy = xx - center[0], yy - center[1]
    t = np.deg2rad(theta_deg)
    u = np.cos(t) * dx + np.sin(t) * dy
    v = (-np.sin(t) * dx + np.cos(t) * dy) / axis_ratio
    return np.hypot(u, v)


def galaxy_geometry(wcs, *, ra, dec, pa_deg=None, inclination_deg=None):
    """Where a galaxy is in a frame: centre pixel, axis ratio and major-axis angle.

    Parameters
    ----------
    wcs : `~astropy.wcs.WCS`
        The frame's celestial WCS.
    ra, dec : float
        The galaxy's centre, degrees.
    pa_deg : float, optional
        Position angle of the major axis, degrees from north through east.
    inclination_deg : float, optional
        Inclination of the disc (0: face on); a thin disc looks ``cos(i)`` as wide as
        long.

    Returns
    -------
    dict
        ``x``, ``y`` (0-based pixel), ``axis_ratio`` and ``theta_deg`` (of the major
        axis, counter-clockwise from +x, as `elliptical_radius` takes it); a round
        galaxy (axis ratio 1) when the inclination or the position angle is unknown.
    """
    x, y = (float(v) for v in wcs.world_to_pixel_values(ra, dec))
    if pa_deg is None or inclination_deg is None:
        return {"x": x, "y": y, "axis_ratio": 1.0, "theta_deg": 0.0}
    step = 10.0 / 3600.0                         # 10 arcsec along the major axis
    pa = np.deg2rad(pa_deg)
    ra2 = ra + step * np.sin(pa) / np.cos(np.deg2rad(dec))
    dec2 = dec + step * np.cos(pa)
    x2, y2 = (float(v) for v in wcs.world_to_pixel_values(ra2, dec2))
    theta = float(np.degrees(np.arctan2(y2 - y, x2 - x)) % 180.0)
    q = float(np.clip(np.cos(np.deg2rad(inclination_deg)), 0.1, 1.0))
    return {"x": x, "y": y, "axis_ratio": q, "theta_deg": theta}


def find_galaxy(data, *, bad=None, nsigma=2.0, npixels=10, min_fraction=0.05, smooth=9,
                segm=None):
    """The centre of a source that fills much of the frame (a galaxy), or None.

    For frames whose galaxy position is not given: the largest source `detect` finds
    counts as a galaxy when it covers more than ``min_fraction`` of the frame. Its
    centre is the light-weighted centroid of its brightest part (above half its peak)
    in a copy median-filtered over ``smooth`` pixels, which removes stars on top of it.

    Parameters
    ----------
    data : 2-D array
        The frame.
    bad : bool array, optional
        Pixels to ignore.
    nsigma, npixels
        How sources are detected (see `detect`).
    min_fraction : float
        Smallest fraction of the frame the largest source must cover.
    smooth : int
        Side of the median filter, pixels; a few times a star's FWHM. Over 3 pixels it
        is taken on a copy binned by ``smooth // 3`` (block medians), where a 3-pixel
        median does the same work on a ninth of the pixels; the centroid is mapped back.
    segm : `~photutils.segmentation.SegmentationImage`, optional
        The sources `detect` found already in ``data``; not detected again.

    Returns
    -------
    dict or None
        ``x``, ``y`` (0-based pixel), ``fraction`` (of the frame the source covers), and
        ``axis_ratio`` and ``theta_deg`` (as `elliptical_radius` takes them) of the
        source's outline, from its second moments (the outline of a disc cut by the
        frame's edge comes out rounder, or stretched along the edge); None when no
        source is that large (e.g. a field of stars).
    """
    from scipy import ndimage

    data, bad = _as_image(data, bad)
    if segm is None:
        segm = detect(data, bad=bad, nsigma=nsigma, npixels=npixels)
    if segm is None:
        return None
    areas = np.asarray(segm.areas)
    fraction = float(areas.max()) / data.size
    if fraction < min_fraction:
        return None
    inside = segm.data == segm.labels[int(np.argmax(areas))]
    level = float(np.median(data[~bad & (segm.data == 0)])) if np.any(~bad & (segm.data == 0)) \
        else float(np.median(data[~bad]))
    filled = np.where(bad, level, data) - level
    b = max(int(smooth) // 3, 1)
    small, inside_small = block_median(filled, b), block_median(inside.astype(float), b) > 0.5
    smoothed = ndimage.median_filter(small, size=int(round(smooth / b)), mode="nearest")
    peak = float(np.max(smoothed[inside_small]))
    core = inside_small & (smoothed > 0.5 * peak)
    yy, xx = np.nonzero(core)
    w = smoothed[core]
    # a block's centre is at (b - 1) / 2 in the full frame's pixels
    x0 = float(np.sum(xx * w) / np.sum(w)) * b + (b - 1) / 2
    y0 = float(np.sum(yy * w) / np.sum(w)) * b + (b - 1) / 2
    # the shape of its outer isophote: second moments of the source's footprint
    fy, fx = np.nonzero(inside)
    dx, dy = fx - x0, fy - y0
    cxx, cyy, cxy = float(np.mean(dx * dx)), float(np.mean(dy * dy)), float(np.mean(dx * dy))
    half, diff = (cxx + cyy) / 2, float(np.hypot((cxx - cyy) / 2, cxy))
    q = float(np.sqrt(max(half - diff, 0.0) / (half + diff))) if half + diff > 0 else 1.0
    theta = float(np.degrees(0.5 * np.arctan2(2 * cxy, cxx - cyy)) % 180.0)
    return {"x": x0, "y": y0, "fraction": fraction, "axis_ratio": float(np.clip(q, 0.1, 1.0)),
            "theta_deg": theta}


@dataclass
class RadialProfile:
    """The azimuthal median profile around an object and the fit ``A f(r) + G``."""

    radius: np.ndarray        # mean semi-major axis of each ring, pixels
    median: np.ndarray        # median of the usable pixels of each ring
    uncertainty: np.ndarray   # of each median (1.2533 sigma / sqrt(n))
    npix: np.ndarray          # usable pixels in each ring
    fitted: np.ndarray        # True for the rings the fit used (rmin <= r <= rmax)
    model: object             # the fitted astropy model, A f(r) + G
    offset: float             # G: the sky
    offset_error: float       # its one-sigma uncertainty from the fit
    chi2: float               # reduced chi-square of the fit
    profile: str              # 'exponential', 'moffat' or 'gaussian'
    rmin: float
    rmax: float


def ring_profile(data, center, *, rmax, bad=None, axis_ratio=1.0, theta_deg=0.0, width=2.0,
                 min_pixels=20):
    """The rings of `radial_sky` out to ``rmax``: an (n, 4) array of each ring's mean
    radius, median, the median's uncertainty (1.2533 MAD-sigma / sqrt n) and pixel count;
    rings with fewer than ``min_pixels`` usable pixels left out. What every fit from
    another ``rmin`` shares (`fit_radial_from_galaxy` makes up to four)."""
    data, bad = _as_image(data, bad)
    r = elliptical_radius(data.shape, center, axis_ratio=axis_ratio, theta_deg=theta_deg)
    use = ~bad & (r <= rmax)
    ring = np.floor(r[use] / width).astype(int)
    values, radii = data[use], r[use]
    order = np.argsort(ring, kind="stable")
    ring, values, radii = ring[order], values[order], radii[order]
    starts = np.flatnonzero(np.r_[True, np.diff(ring) > 0])
    rows = []
    for part_v, part_r in zip(np.split(values, starts[1:]), np.split(radii, starts[1:]),
                              strict=True):
        if part_v.size < min_pixels:
            continue
        scatter = mad_std(part_v)
        rows.append((part_r.mean(), np.median(part_v), 1.2533 * scatter / np.sqrt(part_v.size),
                     part_v.size))
    return np.array(rows, dtype=float).reshape(-1, 4)


def radial_sky(data, center, *, rmax, bad=None, rmin=0.0, axis_ratio=1.0, theta_deg=0.0,
               profile="exponential", width=2.0, min_pixels=20, rings=None):
    """The sky as the constant of a radial-profile fit around an object.

    The median of the usable pixels in elliptical rings around ``center`` gives the
    object's profile; ``A f(r) + G`` is fitted to the rings between ``rmin`` and
    ``rmax``, weighted by each median's uncertainty, and ``G`` is the sky: what is
    left where the object has faded away. This is the observatory pipeline's method
    (a constant sky over the subframe), and the only one here that does not take a
    galaxy's faint outskirts for sky when the galaxy fills the frame.

    Parameters
    ----------
    data : 2-D array
        The frame, e.g. in electrons.
    center : (float, float)
        Pixel (x, y) of the object's centre, 0-based.
    rmax : float
        Outermost semi-major axis used, pixels.
    bad : bool array, optional
        Pixels to leave out: bad pixels and other objects (stars) on the rings.
    rmin : float
        Innermost semi-major axis fitted, pixels: leave out a core that ``f`` does not
        describe (a galaxy's bulge, the inner spiral arms).
    axis_ratio, theta_deg : float
        Shape of the rings (see `elliptical_radius`); for an inclined disc, its
        axis ratio and orientation make the profile a clean exponential.
    profile : {'exponential', 'moffat', 'gaussian'}
        ``f(r)``: ``exp(-r/h)`` suits a galaxy's disc; a Moffat or a Gaussian suits a
        star.
    width : float
        Width of a ring, pixels.
    min_pixels : int
        Rings with fewer usable pixels are left out.
    rings : array, optional
        `ring_profile`'s rings of these arguments, made already (then ``data`` and
        ``bad`` are not read again).

    Returns
    -------
    offset : float
        ``G``, the sky, in the unit of ``data``.
    info : `RadialProfile`
        The profile, the fitted model, the uncertainty of ``G`` and the fit's
        reduced chi-square.

    Raises
    ------
    ReduxError
        When fewer than 5 rings between ``rmin`` and ``rmax`` have data.
    """
    from astropy.modeling import fitting, models

    if profile not in PROFILES:
        msg = f"profile must be one of {PROFILES}, got {profile!r}"
        raise ValueError(msg)
    if not rmax > rmin:
        msg = f"rmax ({rmax}) must be larger than rmin ({rmin})"
        raise ValueError(msg)
    if rings is None:
        rings = ring_profile(data, center, rmax=rmax, bad=bad, axis_ratio=axis_ratio,
                             theta_deg=theta_deg, width=width, min_pixels=min_pixels)
    rad, med, err, npix = np.asarray(rings, float).T
    fitted = rad >= rmin
    if fitted.sum() < 5:
        msg = (f"only {int(fitted.sum())} rings with at least {min_pixels} usable pixels "
               f"between rmin={rmin:g} and rmax={rmax:g} pixels around ({center[0]:.0f}, "
               f"{center[1]:.0f}); at least 5 are needed: lower rmin, raise rmax, or check "
               "that the centre is on the frame and not in a masked region")
        raise ReduxError(msg)
    err = np.where(err > 0, err, np.nanmax(err[err > 0]) if np.any(err > 0) else 1.0)
    x, y, w = rad[fitted], med[fitted], 1.0 / err[fitted]
    g0 = float(np.median(y[-3:]))
    a0 = max(float(y[0] - g0), float(np.max(err)))
    scale0 = max((x[-1] - x[0]) / 4.0, width)
    if profile == "exponential":
        f = models.Exponential1D(amplitude=a0 * np.exp(x[0] / scale0), tau=-scale0)
        f.tau.bounds = (-1e6, -0.1)
    elif profile == "moffat":
        f = models.Moffat1D(amplitude=a0, x_0=0.0, gamma=scale0, alpha=1.5)
        f.x_0.fixed = True
    else:
        f = models.Gaussian1D(amplitude=a0, mean=0.0, stddev=scale0)
        f.mean.fixed = True
    start = f + models.Const1D(amplitude=g0)
    fitter = fitting.TRFLSQFitter(calc_uncertainties=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AstropyUserWarning)
        fit = fitter(start, x, y, weights=w, maxiter=5000)
    for c in caught:
        log.warning("radial profile fit: %s", c.message)
    resid = (fit(x) - y) * w
    dof = max(int(fitted.sum()) - len([p for p in fit.param_names if not fit.fixed[p]]), 1)
    chi2 = float(np.sum(resid ** 2) / dof)
    g = float(fit.amplitude_1.value)
    cov = fit.cov_matrix.cov_matrix if fit.cov_matrix is not None else None
    free = [p for p in fit.param_names if not fit.fixed[p]]
    g_err = (float(np.sqrt(cov[free.index("amplitude_1"), free.index("amplitude_1")]))
             if cov is not None else float("nan"))
    g_err *= np.sqrt(max(chi2, 1.0))             # a poor fit is less certain than its weights say
    info = RadialProfile(radius=rad, median=med, uncertainty=err, npix=npix.astype(int),
                         fitted=fitted, model=fit, offset=g, offset_error=g_err, chi2=chi2,
                         profile=profile, rmin=float(rmin), rmax=float(rmax))
    return g, info


