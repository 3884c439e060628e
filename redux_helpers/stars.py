"""Finding and centring stars: the one star finder of the suite, for registration and photometry.

* `daofind` — the one call of photutils' `DAOStarFinder`; `near_flagged` — which sources
  have a flagged pixel within a radius of their centre (their centre and flux may be
  biased); `refine_centroids` — windowed centres (`sep.winpos`);
* `find_stars` — registration's stars: on a despiked frame, those touching a flagged
  pixel dropped, only the point-like ones, the brightest ``max_stars``
  (`photometry.detect_stars` keeps every star and flags, for photometry);
* `minus_local_background`, `half_light_radii`, `point_like_sources`, `despiked`.

Masks: ``bad`` is a boolean array (True: do not use the pixel); the suite's bitmasks
(``mask``, `redux_helpers.masks`) become one by ``mask > 0``.
"""

from __future__ import annotations

import warnings

import numpy as np
from astropy.stats import sigma_clipped_stats


def find_stars(data, *, bad=None, fwhm=3.5, nsigma=5.0, max_stars=200, saturate=None,
               despike=True, point_like=True):
    """Detect and centre point sources; return (x, y, flux) of the brightest, 0-based.

    Parameters
    ----------
    data : array
        A calibrated frame (any units; the sky is removed here with sigma-clipped stats).
    bad : bool array, optional
        Pixels to ignore (cosmic rays, bad columns, saturated cores): True is bad.
    fwhm : float
        Approximate seeing in pixels.
    nsigma : float
        Detection threshold above the sky noise.
    max_stars : int
        Keep at most this many, brightest first.
    saturate : float, optional
        Stars whose peak exceeds this (in ``data``'s units) are dropped. Stars touching
        a masked pixel (a saturated core, a cosmic ray, a bad column) are dropped too:
        their centres would be biased.
    despike : bool
        Detect on a running median of the frame (`despiked`), in which a hot pixel or
        a cosmic ray one or two pixels wide vanishes while a star survives (centres are
        still measured on the frame itself). On a raw frame the brightest "stars"
        would otherwise be hot pixels, fixed on the detector, and pattern matching
        would pair them at zero shift.
    point_like : bool
        Keep only sources as compact as the frame's stars (`point_like_sources`): the
        half-light radius of a knot of a spiral arm, an HII region, a blend or a
        galaxy's nucleus is larger, and its centre moves with the seeing and with the
        filter (on the demo's rotated Halpha frame, where most detections are HII
        regions, such centres put the registration 0.11 px off; stars alone, 0.01 px).
    """
    data = np.asarray(data)
    if data.dtype != np.float32:     # a float32 frame is not copied to float64 (32 MB a 2048²)
        data = data.astype(float)
    bad = ~np.isfinite(data) if bad is None else ~np.isfinite(data) | np.asarray(bad, bool)
    if bad.all():
        return np.zeros(0), np.zeros(0), np.zeros(0)
    # the sky level and noise from every 3rd pixel of every 3rd row: as good, 9x faster
    step = 3 if min(data.shape) >= 300 else 1
    _, med, std = sigma_clipped_stats(data[::step, ::step].astype(float),
                                      mask=bad[::step, ::step], sigma=3.0)
    if not np.isfinite(std) or std <= 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    clean = np.where(bad, np.float32(0), data - med).astype(np.float32, copy=False)
    found = daofind(despiked(clean) if despike else clean, nsigma * std, fwhm, bad=bad,
                    peak_max=None if saturate is None else saturate - med)
    if not len(found):
        return np.zeros(0), np.zeros(0), np.zeros(0)
    # a star touching a flagged pixel (its centre would be off): the diamond |dx|+|dy| <= r
    # around its nearest pixel, r the FWHM rounded
    found = found[~near_flagged(bad, found["x_centroid"], found["y_centroid"],
                                max(int(round(fwhm)), 1), shape="diamond")]
    local = minus_local_background(clean, fwhm=fwhm)     # once, for centres and radii
    x, y = refine_centroids(local, found["x_centroid"], found["y_centroid"], fwhm=fwhm,
                            background_subtracted=True)
    flux = np.asarray(found["flux"], float)
    if point_like:
        keep = point_like_sources(local, x, y, fwhm=fwhm, background_subtracted=True)
        x, y, flux = x[keep], y[keep], flux[keep]
    return x[:max_stars], y[:max_stars], flux[:max_stars]


def minus_local_background(data, *, fwhm=3.5):
    """``data`` (float32) less its local background: `sep.Background` in boxes of ~9 FWHM.

    A star's centre or size measured on a galaxy's slope would lean uphill without it.
    """
    import sep

    d = np.ascontiguousarray(data, dtype=np.float32)
    box = max(16, int(round(9 * fwhm)))
    return d - sep.Background(d, bw=box, bh=box).back()


def half_light_radii(data, x, y, *, fwhm=3.5, background_subtracted=False):
    """Radius holding half of each source's light within 3 FWHM (`sep.flux_radius`), px.

    The local background is removed first (`minus_local_background`) unless
    ``background_subtracted``. For a Gaussian star it is FWHM / 2.
    """
    import sep

    x, y = np.asarray(x, float), np.asarray(y, float)
    if not len(x):
        return np.zeros(0)
    d = (np.ascontiguousarray(data, dtype=np.float32) if background_subtracted
         else minus_local_background(data, fwhm=fwhm))
    r, flags = sep.flux_radius(d, x, y, np.full(len(x), 3.0 * fwhm), 0.5, subpix=5)
    return np.where(flags == 0, r, np.nan)


def point_like_sources(data, x, y, *, fwhm=3.5, tolerance=1.4, min_keep=5,
                       background_subtracted=False):
    """Which sources are as compact as the frame's stars (a bool array).

    The stars' half-light radius (`half_light_radii`) is taken as the median of the
    smallest third of the sources' (at least three): on a frame of a galaxy most
    detections may be its HII regions and knots, but the most compact are stars. A
    source is kept when its radius is at most ``tolerance`` times that; a source whose
    radius can't be measured (at an edge) is kept. When fewer than ``min_keep`` would
    remain, all are kept: a few extended sources register a frame better than none.

    >>> import numpy as np
    >>> yy, xx = np.mgrid[:100, :100]
    >>> blob = lambda x0, y0, s: 1e3 * np.exp(-((xx - x0)**2 + (yy - y0)**2) / (2 * s * s))
    >>> img = sum(blob(x0, 20, 1.4) for x0 in (15, 35, 55, 75)) + blob(20, 60, 1.4) + blob(60, 60, 4.0)
    >>> point_like_sources(img, [15, 35, 55, 75, 20, 60], [20, 20, 20, 20, 60, 60]).tolist()
    [True, True, True, True, True, False]
    """
    r = half_light_radii(data, x, y, fwhm=fwhm, background_subtracted=background_subtracted)
    good = np.isfinite(r)
    if good.sum() < 3:
        return np.ones(len(r), bool)
    smallest = np.sort(r[good])[: max(3, good.sum() // 3)]
    with np.errstate(invalid="ignore"):
        keep = ~good | (r <= tolerance * np.median(smallest))
    return keep if keep.sum() >= min_keep else np.ones(len(r), bool)


def _median3(a, axis):
    """Running median of 3 along one axis (edges repeated), element-wise: no sorting."""
    p = np.pad(a, [(1, 1) if ax == axis else (0, 0) for ax in range(a.ndim)], mode="edge")
    n = a.shape[axis]
    lo, mid, hi = (p[(slice(None),) * axis + (slice(k, k + n),)] for k in range(3))  # views
    return np.maximum(np.minimum(lo, mid), np.minimum(np.maximum(lo, mid), hi))


def despiked(a):
    """A running median of 3 along rows, then along columns: spikes gone, stars kept.

    A hot pixel, or a cosmic ray one or two pixels wide in either direction, vanishes;
    a star (several pixels across in both directions) keeps its shape and centre. This
    separable median is 8 times faster than the full 3 x 3 median on a 2048^2 frame
    (0.11 s against 0.84 s) and differs from it only for blocks of 2 x 2 pixels or
    more, which survive it.
    """
    return _median3(_median3(np.asarray(a), 1), 0)


def daofind(image, threshold, fwhm, *, bad=None, min_separation=None, peak_max=None):
    """photutils' `DAOStarFinder` on ``image`` (its sky removed): the table it finds, brightest
    first, or an empty table. ``bad`` pixels are left out of the peaks (None: none)."""
    from astropy.table import Table
    from photutils.detection import DAOStarFinder

    _fast_peak_filter()
    finder = DAOStarFinder(threshold, fwhm, exclude_border=True, min_separation=min_separation,
                           peak_max=peak_max)
    with warnings.catch_warnings():      # "no sources found" is an answer here
        warnings.simplefilter("ignore")
        found = finder(image, mask=bad)
    if found is None or len(found) == 0:
        return Table()
    found.sort("flux", reverse=True)
    return found


def _fast_peak_filter():
    """Give photutils' peak finder `morphology.window_max` for scipy's ``maximum_filter``.

    `DAOStarFinder` finds its peaks with two box maxima over the whole convolved frame
    (``photutils.detection.peakfinder``, photutils 3.0): scipy's took 0.23 s of
    `find_stars`' 0.49 s on a 2048² frame and holds the GIL, so 07's second thread
    waited. `window_max` gives the same values (tests/test_morphology.py holds whole
    star tables to photutils' own) in 0.05 s and lets the other thread run. Only the calls
    it answers exactly are taken (a 2-D NaN-free float image, one ``size``,
    ``mode='constant'``); any other goes to scipy. Where photutils finds its peaks
    another way, nothing is changed.
    """
    try:
        from photutils.detection import peakfinder
    except ImportError:
        return
    scipy_max = getattr(peakfinder, "maximum_filter", None)
    if scipy_max is None or getattr(scipy_max, "redux_window_max", False):
        return

    def maximum_filter(input, size=None, footprint=None, output=None, mode="reflect",
                       cval=0.0, origin=0, **kwargs):
        a = np.asarray(input)
        if (footprint is None and output is None and origin == 0 and not kwargs
                and mode == "constant" and isinstance(size, (int, np.integer)) and size > 0
                and a.ndim == 2 and a.dtype.kind == "f" and not np.isnan(a).any()):
            from .morphology import window_max
            return window_max(a, int(size), cval=cval)
        return scipy_max(input, size=size, footprint=footprint, output=output, mode=mode,
                         cval=cval, origin=origin, **kwargs)

    maximum_filter.redux_window_max = True
    peakfinder.maximum_filter = maximum_filter


def boxes_around(shape, x, y, radius):
    """(index, box slices, squared distance of its pixels) for each position's box of ``radius``."""
    ny, nx = shape
    r = int(np.ceil(radius))
    for i, (cx, cy) in enumerate(zip(x, y, strict=True)):
        x0, x1 = max(int(np.floor(cx)) - r, 0), min(int(np.ceil(cx)) + r + 1, nx)
        y0, y1 = max(int(np.floor(cy)) - r, 0), min(int(np.ceil(cy)) + r + 1, ny)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        yield i, (slice(y0, y1), slice(x0, x1)), (xx - cx) ** 2 + (yy - cy) ** 2


def near_flagged(bad, x, y, radius, *, shape="circle"):
    """Which positions (x, y) have a ``bad`` pixel within ``radius`` of them.

    ``circle``: pixels whose centre is within ``radius`` of (x, y); ``diamond``: pixels
    with ``|dx| + |dy| <= radius`` from the pixel nearest (x, y) (registration's rule).

    >>> bad = np.zeros((9, 9), bool); bad[4, 7] = True
    >>> near_flagged(bad, [4.0, 4.0], [4.0, 1.0], 3).tolist()
    [True, False]
    >>> near_flagged(bad, [5.0], [5.0], 2, shape="diamond").tolist()
    [False]
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    out = np.zeros(len(x), bool)
    if not bad.any():
        return out
    if shape == "diamond":
        x, y = np.round(x), np.round(y)
        for i, box, _ in boxes_around(bad.shape, x, y, radius):
            yy, xx = np.mgrid[box]
            out[i] = bool(bad[box][np.abs(yy - y[i]) + np.abs(xx - x[i]) <= radius].any())
        return out
    for i, box, d2 in boxes_around(bad.shape, x, y, radius):
        out[i] = bool(bad[box][d2 <= radius * radius].any())
    return out


def refine_centroids(data, x, y, *, fwhm=3.5, background_subtracted=False):
    """Windowed centres (Source Extractor's XWIN/YWIN, by `sep.winpos`) around each (x, y).

    The centre is iterated with pixels weighted by a Gaussian of the star's own size:
    as precise as fitting a 2-D Gaussian (0.11 px rms per star against 0.16 px for
    photutils' ``centroid_2dg`` on the 2048^2 benchmark frames) and ~200 times faster.
    A local background is removed first (`minus_local_background`, unless
    ``background_subtracted``): the weighted centre of a star on a galaxy's slope would
    lean uphill (0.07 px on a demo Hα frame without it, 0.001 px with it). A centre that
    wanders more than ``fwhm`` from its start (a blend) keeps the start.
    """
    import sep

    x, y = np.asarray(x, float), np.asarray(y, float)
    if not len(x):
        return x, y
    d = (np.ascontiguousarray(data, dtype=np.float32) if background_subtracted
         else minus_local_background(data, fwhm=fwhm))
    cx, cy, _ = sep.winpos(d, x, y, fwhm / 2.3548)
    bad = ~np.isfinite(cx) | ~np.isfinite(cy) | (np.hypot(cx - x, cy - y) > fwhm)
    return np.where(bad, x, cx), np.where(bad, y, cy)


