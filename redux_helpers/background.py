"""The sky under the objects: masking sources, modelling the sky, a radial-profile sky.

A calibrated frame holds the light of the objects on top of the light of the sky
(airglow, moonlight, city light), ``I t = S + O``. The sky ``S`` is smooth; the objects
``O`` are not. To measure ``S`` the objects are found and masked first (`source_mask`),
then the sky is modelled from what is left (`sky_model`):

* ``'box'`` — sigma-clipped medians in boxes of ``box_size`` pixels, smoothed from box
  to box and interpolated to every pixel (photutils' `~photutils.background.Background2D`):
  follows gradients, but a box much smaller than a galaxy takes its faint outskirts for
  sky;
* ``'plane'`` — a least-squares plane ``a + b x + c y`` through the unmasked pixels:
  follows a gradient and nothing smaller;
* ``'constant'`` — one sigma-clipped median for the whole frame.

In a field that a galaxy fills, every unmasked pixel still holds a little of the
galaxy's light, and all three estimates come out too high. `radial_sky` follows the
observatory pipeline's method instead: it fits the galaxy's (elliptical) azimuthal
median profile with ``A f(r) + G``, so that the galaxy's tail is part of the model and
the constant ``G`` is the sky.

Nothing here reads or writes files.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> sky = rng.normal(100.0, 5.0, (64, 64))
>>> model, rms = sky_model(sky, method="constant")
>>> round(float(model[0, 0])), round(float(rms))
(100, 5)
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.stats import SigmaClip, mad_std, sigma_clipped_stats
from astropy.utils.exceptions import AstropyUserWarning

from .errors import ReduxError
from .smoothing import block_median, smooth

log = logging.getLogger(__name__)

METHODS = ("box", "plane", "constant")
PROFILES = ("exponential", "moffat", "gaussian")
#: Fewer usable pixels than this (or than `MIN_SKY_FRACTION` of the frame) is too little sky.
MIN_SKY_PIXELS = 100
MIN_SKY_FRACTION = 0.02


def _as_image(data, mask, what="data"):
    """(float64 copy of ``data``, bool array of unusable pixels); raises on no data."""
    data = np.array(data, dtype=np.float64)
    if data.ndim != 2:
        msg = f"{what} must be a 2-D image; got an array of shape {data.shape}"
        raise ValueError(msg)
    bad = ~np.isfinite(data)
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != data.shape:
            msg = f"mask has shape {mask.shape} but {what} has shape {data.shape}"
            raise ValueError(msg)
        bad |= mask
    if bad.all():
        msg = (f"{what} has no usable pixel (all NaN or masked): check the frame and its "
               "MASK plane from the calibration")
        raise ReduxError(msg)
    return data, bad


def _threshold(work, ignore, nsigma):
    """photutils' ``detect_threshold`` as one number: clipped mean + nsigma x clipped std.

    The statistics are taken on every second pixel of every second row: in a smoothed
    image neighbours are correlated, so a quarter of the pixels gives the same level to
    a fraction of its noise, four times faster.
    """
    sub, sub_bad = work[::2, ::2], ignore[::2, ::2]
    if (~sub_bad).sum() < MIN_SKY_PIXELS:
        sub, sub_bad = work, ignore
    clipped = SigmaClip(sigma=3.0, maxiters=10)(sub[~sub_bad], masked=False)
    return float(np.mean(clipped) + nsigma * np.std(clipped))


def detect(data, *, mask=None, nsigma=2.0, npixels=10, smooth_fwhm=3.0):
    """Find the sources in an image: photutils' segmentation on a smoothed copy.

    The image is smoothed with a Gaussian of ``smooth_fwhm`` pixels (`smooth`: NaN and
    masked pixels are interpolated over), and every group of at least ``npixels``
    connected pixels more than ``nsigma`` standard deviations above the (sigma-clipped)
    sky of the smoothed image is a source. Smoothing lowers the noise, so faint
    extended light (a galaxy's outskirts) is found as well as stars.

    Parameters
    ----------
    data : 2-D array
        The image, e.g. a calibrated frame in electrons.
    mask : bool array, optional
        Pixels to ignore (bad pixels, no data); they never belong to a source.
    nsigma : float
        Detection threshold, in standard deviations of the smoothed sky.
    npixels : int
        Smallest number of connected pixels above the threshold that is a source.
    smooth_fwhm : float
        FWHM in pixels of the Gaussian the image is smoothed with (0: not smoothed).

    Returns
    -------
    `~photutils.segmentation.SegmentationImage` or None
        One label per source; None when nothing is found.
    """
    from photutils.segmentation import detect_sources
    from photutils.utils.exceptions import NoDetectionsWarning

    data, bad = _as_image(data, mask)
    work = smooth(data, mask=bad, fwhm=smooth_fwhm) if smooth_fwhm and smooth_fwhm > 0 \
        else np.where(bad, np.nan, data)
    ignore = bad | ~np.isfinite(work)
    work = np.where(ignore, 0.0, work)
    threshold = _threshold(work, ignore, nsigma)
    with warnings.catch_warnings():       # "no sources found" is an answer, not a problem
        warnings.simplefilter("ignore", NoDetectionsWarning)
        return detect_sources(work, threshold, npixels, mask=ignore)


def source_mask(data, *, mask=None, nsigma=2.0, npixels=10, dilate=5, smooth_fwhm=3.0,
                except_at=None, segm=None):
    """Pixels covered by sources (stars, galaxies), grown by ``dilate`` pixels.

    Parameters
    ----------
    data : 2-D array
        The image, e.g. a calibrated frame in electrons.
    mask : bool array, optional
        Pixels to ignore (bad pixels, no data). They are not part of the result.
    nsigma, npixels, smooth_fwhm
        How sources are detected (see `detect`).
    dilate : int
        Every source is grown by this many pixels in every direction (a disc of this
        radius), so that its faint edge, below the threshold, is masked too.
    except_at : (float, float), optional
        Pixel (x, y): the source that covers it is left out of the mask, the others
        are masked (e.g. the stars around a galaxy whose profile `radial_sky` fits).
    segm : `~photutils.segmentation.SegmentationImage`, optional
        The sources `detect` found already (e.g. in the frame before its sky was
        subtracted): not detected again. ``mask``, ``nsigma``, ``npixels`` and
        ``smooth_fwhm`` are then not used.

    Returns
    -------
    bool array
        True on a source.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> img = rng.normal(0.0, 1.0, (60, 60))
    >>> img[28:33, 28:33] += 20.0
    >>> m = source_mask(img, dilate=2)
    >>> bool(m[30, 30]), bool(m[30, 34]), bool(m[5, 5])
    (True, True, False)
    """
    if segm is None:
        segm = detect(data, mask=mask, nsigma=nsigma, npixels=npixels, smooth_fwhm=smooth_fwhm)
        if segm is None:
            log.info("no sources found above %.1f sigma", nsigma)
    return _mask_of(segm, np.shape(data), dilate=dilate, except_at=except_at)


def _mask_of(segm, shape, *, dilate, except_at=None):
    """`source_mask` from a segmentation already made."""
    if segm is None:
        return np.zeros(shape, bool)
    if except_at is not None:
        ix, iy = int(round(except_at[0])), int(round(except_at[1]))
        if 0 <= iy < shape[0] and 0 <= ix < shape[1] and segm.data[iy, ix] > 0:
            segm = segm.copy()
            segm.remove_label(int(segm.data[iy, ix]))
            if segm.n_labels == 0:
                return np.zeros(shape, bool)
    if dilate and dilate > 0:
        r = int(np.ceil(dilate))
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        return segm.make_source_mask(footprint=(xx ** 2 + yy ** 2) <= dilate ** 2)
    return segm.data > 0


def _too_little_sky(bad, method):
    n_sky = int((~bad).sum())
    if n_sky < max(MIN_SKY_PIXELS, MIN_SKY_FRACTION * bad.size):
        msg = (f"only {n_sky} of {bad.size} pixels ({100 * n_sky / bad.size:.1f} %) are sky: "
               "sources and bad pixels cover the rest, too little to model the sky "
               f"(method '{method}'); detect fewer sources (raise nsigma, lower dilate) or "
               "use the radial-profile sky (radial_sky), which fits the galaxy instead of "
               "masking it")
        raise ReduxError(msg)


def sky_model(data, *, mask=None, method="box", box_size=64, filter_size=3, sigma=3.0,
              exclude_percentile=50.0, rms_image=True):
    """Model the sky of a frame from its unmasked pixels.

    Parameters
    ----------
    data : 2-D array
        The frame (sky and objects), e.g. in electrons. NaN pixels are ignored.
    mask : bool array, optional
        Pixels that are not sky: the sources (`source_mask`) and the bad pixels.
    method : {'box', 'plane', 'constant'}
        ``'box'``: sigma-clipped medians in boxes of ``box_size`` pixels, median
        filtered over ``filter_size`` boxes and interpolated (photutils'
        `~photutils.background.Background2D`); ``'plane'``: a sigma-clipped
        least-squares plane; ``'constant'``: one sigma-clipped median.
    box_size : int
        Side of a box in pixels (``'box'`` only). It should be several times larger
        than the largest source, or the box follows the source's faint outskirts.
    filter_size : int
        Odd number of boxes the box medians are median-filtered over (``'box'`` only):
        one stray box (a bright star's halo) is then replaced by its neighbours.
    sigma : float
        Values more than ``sigma`` standard deviations from the sky are rejected before
        the sky is estimated (stars and cosmic rays the mask missed).
    exclude_percentile : float
        A box with more than this per cent of its pixels masked is left out and filled
        in from its neighbours (``'box'`` only).
    rms_image : bool
        ``'box'`` only: False returns the scatter as one number (the median of the
        boxes'), not interpolated to every pixel (0.3 s saved on a 2048² frame).

    Returns
    -------
    model : 2-D array
        The sky at every pixel (masked ones included), in the unit of ``data``.
    rms : 2-D array or float
        The scatter of the sky pixels about the model: per pixel for ``'box'`` (unless
        ``rms_image`` is False), one number otherwise.

    Raises
    ------
    ReduxError
        When the frame has no usable pixel, too few sky pixels, or (``'box'``) every
        box is masked; the message says which parameter to change.
    """
    if method not in METHODS:
        msg = f"sky method must be one of {METHODS}, got {method!r}"
        raise ValueError(msg)
    data, bad = _as_image(data, mask)
    _too_little_sky(bad, method)
    if method == "constant":
        _, median, std = sigma_clipped_stats(data, mask=bad, sigma=sigma, maxiters=10)
        return np.full(data.shape, float(median)), float(std)
    if method == "plane":
        return _plane(data, bad, sigma)
    return _boxes(data, bad, box_size=box_size, filter_size=filter_size, sigma=sigma,
                  exclude_percentile=exclude_percentile, rms_image=rms_image)


def _plane(data, bad, sigma, maxiters=10):
    """A sigma-clipped least-squares plane through the good pixels."""
    ny, nx = data.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    # coordinates scaled to about -1..1 keep the normal equations well conditioned
    xs, ys = (xx - nx / 2) / max(nx / 2, 1), (yy - ny / 2) / max(ny / 2, 1)
    use = ~bad
    coef = np.zeros(3)
    rms = np.nan
    for _ in range(maxiters):
        design = np.column_stack([np.ones(use.sum()), xs[use], ys[use]])
        coef, *_ = np.linalg.lstsq(design, data[use], rcond=None)
        resid = data - (coef[0] + coef[1] * xs + coef[2] * ys)
        rms = float(mad_std(resid[use]))
        keep = ~bad & (np.abs(resid) <= sigma * rms)
        if np.array_equal(keep, use):
            break
        use = keep
        _too_little_sky(~use, "plane")
    return coef[0] + coef[1] * xs + coef[2] * ys, rms


def _boxes(data, bad, *, box_size, filter_size, sigma, exclude_percentile, rms_image=True):
    """photutils' Background2D with a median in each box; errors in our words."""
    bkg = _background2d(data, bad, box_size=box_size, filter_size=filter_size, sigma=sigma,
                        exclude_percentile=exclude_percentile)
    model = np.asarray(bkg.background, dtype=np.float64)
    rms = np.asarray(bkg.background_rms, dtype=np.float64) if rms_image \
        else float(bkg.background_rms_median)
    if not np.all(np.isfinite(model)):
        msg = (f"the box sky model has undefined values (box_size {box_size}); use a larger "
               "box_size or method='plane'")
        raise ReduxError(msg)
    return model, rms


def _background2d(data, bad, *, box_size, filter_size, sigma, exclude_percentile):
    """The `~photutils.background.Background2D` object of `sky_model`'s box method."""
    from photutils.background import Background2D, MedianBackground

    box_size = int(box_size)
    if box_size < 4:
        msg = f"box_size must be at least 4 pixels, got {box_size}"
        raise ReduxError(msg)
    box = (min(box_size, data.shape[0]), min(box_size, data.shape[1]))
    n_boxes = (int(np.ceil(data.shape[0] / box[0])), int(np.ceil(data.shape[1] / box[1])))
    fsize = int(filter_size) if filter_size else 1
    if fsize % 2 == 0:
        msg = f"filter_size must be odd (1, 3, 5, ...), got {filter_size}"
        raise ReduxError(msg)
    fsize = max(1, min(fsize, 2 * (min(n_boxes) // 2) + 1 if min(n_boxes) > 1 else 1))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyUserWarning)
            return Background2D(np.where(bad, np.nan, data), box, mask=bad,
                                filter_size=fsize, exclude_percentile=exclude_percentile,
                                sigma_clip=SigmaClip(sigma=sigma, maxiters=10),
                                bkg_estimator=MedianBackground())
    except ValueError as exc:
        msg = (f"no box of {box_size} pixels has enough sky: every box has more than "
               f"{exclude_percentile:g} % of its pixels masked ({exc}); use a larger "
               "box_size, raise exclude_percentile, or use method='plane' or 'constant'")
        raise ReduxError(msg) from None


def box_medians(data, *, mask=None, box_size=64, sigma=3.0, exclude_percentile=50.0):
    """The sigma-clipped median of every box of `sky_model`'s ``'box'`` method, unsmoothed.

    What the box model starts from, before the grid is median filtered over
    ``filter_size`` boxes and interpolated to every pixel. Box ``[j, i]`` holds the pixels
    ``data[j * box_size:(j + 1) * box_size, i * box_size:(i + 1) * box_size]``; its value
    is the median of its unmasked pixels after clipping at ``sigma`` standard deviations
    about their median (10 rounds at most).

    Parameters
    ----------
    data, mask, box_size, sigma, exclude_percentile
        As for `sky_model`.

    Returns
    -------
    2-D array
        One value per box, in the unit of ``data``; NaN for a box left out (more than
        ``exclude_percentile`` per cent of its pixels masked), which the model fills from
        its neighbours.

    >>> import numpy as np
    >>> img = np.full((8, 16), 5.0); img[:, 8:] = 7.0; img[0, 0] = 1e6
    >>> box_medians(img, box_size=8).tolist()
    [[5.0, 7.0]]
    """
    data, bad = _as_image(data, mask)
    _too_little_sky(bad, "box")
    bkg = _background2d(data, bad, box_size=box_size, filter_size=1, sigma=sigma,
                        exclude_percentile=exclude_percentile)
    mesh = np.array(bkg.background_mesh, dtype=np.float64)
    size = min(int(box_size), data.shape[0]), min(int(box_size), data.shape[1])
    for j, i in np.ndindex(mesh.shape):
        box = bad[j * size[0]:(j + 1) * size[0], i * size[1]:(i + 1) * size[1]]
        if 100 * box.sum() > exclude_percentile * size[0] * size[1]:
            mesh[j, i] = np.nan
    return mesh


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


def find_galaxy(data, *, mask=None, nsigma=2.0, npixels=10, min_fraction=0.05, smooth=9,
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
    mask : bool array, optional
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

    data, bad = _as_image(data, mask)
    if segm is None:
        segm = detect(data, mask=bad, nsigma=nsigma, npixels=npixels)
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
    error: np.ndarray         # uncertainty of each median (1.2533 sigma / sqrt(n))
    npix: np.ndarray          # usable pixels in each ring
    fitted: np.ndarray        # True for the rings the fit used (rmin <= r <= rmax)
    model: object             # the fitted astropy model, A f(r) + G
    offset: float             # G: the sky
    offset_error: float       # its one-sigma uncertainty from the fit
    chi2: float               # reduced chi-square of the fit
    profile: str              # 'exponential', 'moffat' or 'gaussian'
    rmin: float
    rmax: float


def radial_sky(data, center, *, rmax, mask=None, rmin=0.0, axis_ratio=1.0, theta_deg=0.0,
               profile="exponential", width=2.0, min_pixels=20):
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
    mask : bool array, optional
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
    data, bad = _as_image(data, mask)
    if not rmax > rmin:
        msg = f"rmax ({rmax}) must be larger than rmin ({rmin})"
        raise ValueError(msg)
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
    rows = np.array(rows, dtype=float).reshape(-1, 4)
    rad, med, err, npix = rows.T
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
    info = RadialProfile(radius=rad, median=med, error=err, npix=npix.astype(int),
                         fitted=fitted, model=fit, offset=g, offset_error=g_err, chi2=chi2,
                         profile=profile, rmin=float(rmin), rmax=float(rmax))
    return g, info


# ---- choosing the sky a frame supports ------------------------------------------------
#: The radial fit must span at least this many scale lengths: the disc's model at the
#: outermost fitted ring is then below exp(-3) = 5 % of its value at the innermost one.
MIN_SCALE_LENGTHS = 3.0
#: The galaxy's light at the innermost fitted ring, in errors of a ring median, at least.
MIN_SIGNAL = 10.0
#: ``G``'s uncertainty may be at most this many times a sky pixel's noise: a sky wrong
#: by 0.1 sigma per pixel is ~0.2 % of a sky of 2500 e- (photon noise 50 e-).
MAX_OFFSET_ERROR = 0.1
#: ``G`` plus the fitted galaxy light must match the masked sky within the larger of
#: this many errors and this fraction of a sky pixel's noise (`check_against_masked`).
MAX_MASKED_ERRORS, MAX_MASKED_DIFF = 3.0, 0.2
#: Radial sky rates of one filter that differ from the others' median by more than
#: this fraction (and by more than 5 of their errors) fall back; QA's threshold too.
MAX_RATE_SCATTER = 0.2


def scale_length(info):
    """The fitted scale length ``h`` of an exponential `RadialProfile` (NaN otherwise)."""
    if info.profile != "exponential":
        return float("nan")
    return float(-info.model.tau_0.value)


def check_radial_fit(info, *, pixel_noise, min_scale_lengths=MIN_SCALE_LENGTHS,
                     max_offset_error=MAX_OFFSET_ERROR, min_signal=MIN_SIGNAL):
    """Reasons a radial-profile sky can't be trusted; an empty list when it can.

    A fit ``A exp(-r/h) + G`` tells the sky ``G`` apart from the galaxy only where the
    profile is seen to fall: over rings that span several scale lengths. Fitted only
    where the disc has already faded (a fit that starts too far out), the rings are
    flat and ``A``, ``h`` and ``G`` trade off against one another: ``G`` can be
    anything from the sky to the sky plus the disc's faint tail.

    Parameters
    ----------
    info : `RadialProfile`
        The fit (`radial_sky`).
    pixel_noise : float
        A sky pixel's noise (standard deviation), in the unit of the frame.
    min_scale_lengths : float
        The fitted range ``rmin``..(outermost ring) must span at least this many scale
        lengths ``h``: the profile has then fallen to ``exp(-min_scale_lengths)`` of
        its innermost fitted value, i.e. it reaches the sky inside the fitted range.
    max_offset_error : float
        Largest uncertainty of ``G`` allowed, in units of ``pixel_noise``.
    min_signal : float
        The galaxy's model above ``G`` at the innermost fitted ring must exceed this
        many times a ring median's error: a fit that starts where the disc has faded
        (or whose "disc" is a hole, ``A < 0``) says nothing about ``G``.

    Returns
    -------
    list of str
        One sentence per failed check.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[0:200, 0:200]
    >>> img = 1000 + 500 * np.exp(-np.hypot(xx - 100, yy - 100) / 10.0)
    >>> img = img + np.random.default_rng(0).normal(0, 10, img.shape)
    >>> g, info = radial_sky(img, (100, 100), rmax=140, rmin=10)
    >>> check_radial_fit(info, pixel_noise=10.0)
    []
    >>> g, info = radial_sky(img, (100, 100), rmax=140, rmin=100)   # the disc has faded
    >>> bool(check_radial_fit(info, pixel_noise=10.0))
    True
    """
    reasons = []
    g, g_err = info.offset, info.offset_error
    if not (np.isfinite(g) and np.isfinite(g_err)):
        return ["the profile fit failed (no finite sky G or no uncertainty)"]
    r_in = float(np.min(info.radius[info.fitted]))
    r_out = float(np.max(info.radius[info.fitted]))
    h = scale_length(info)
    inner = float(info.model(r_in) - g)            # the galaxy's light at the first fitted ring
    ring_err = float(np.median(info.error[info.fitted]))
    if not inner > min_signal * ring_err:
        reasons.append(
            f"the galaxy has faded before the fit starts: its model at r = {r_in:.0f} px is "
            f"{inner:.2f} above G, not more than {min_signal:g} x a ring median's error "
            f"({ring_err:.2f}); the rings are flat and G trades off against the disc")
    elif info.profile == "exponential":
        span = (r_out - r_in) / h if h > 0 else 0.0
        if span < min_scale_lengths:
            reasons.append(
                f"the profile does not reach the sky inside the fitted range: rings "
                f"{r_in:.0f}-{r_out:.0f} px span {span:.1f} scale lengths (h = {h:.0f} px), "
                f"fewer than {min_scale_lengths:g}, so the disc's tail and the sky G can't "
                "be told apart")
    if g_err > max_offset_error * pixel_noise:
        reasons.append(f"G is uncertain by {g_err:.2f}, {g_err / pixel_noise:.2f} x a sky "
                       f"pixel's noise (at most {max_offset_error:g} x)")
    return reasons


def check_against_masked(g, g_err, masked_level, masked_err, *, pixel_noise, galaxy_light=0.0,
                         nsig=MAX_MASKED_ERRORS, max_diff=MAX_MASKED_DIFF):
    """A reason the radial sky ``G`` disagrees with a masked-sky estimate, or ''.

    The masked sky (a clipped median of the pixels no source covers) is not the sky
    where a galaxy fills the field: those pixels hold its undetected outskirts, and
    in a frame the galaxy fills, the detection threshold itself sits on the galaxy,
    so "undetected" can be a lot of light. The estimate is biased *high*, by more
    than any fixed bound. What the fit says is how much: the median, over those same
    pixels, of its galaxy model ``A f(r)`` (``galaxy_light``). So ``G`` plus that
    light must come out at the masked level:

    * above it by more than the tolerance (``G`` + light > masked): the fit took
      galaxy light for sky, ``G`` is too high (a fit made where the disc has faded,
      ``A`` and ``G`` trading off);
    * below it: the fitted tail falls too fast, or ``G`` is too low.

    The tolerance is ``nsig`` times the combined error, or ``max_diff`` times a sky
    pixel's noise, whichever is larger (the median of a tail plus noise is not
    exactly the tail's median plus the noise's, and stars' faint wings add a little).
    With ``galaxy_light = 0`` (no model), this is the plain comparison.

    Parameters
    ----------
    g, g_err : float
        The radial fit's sky and its uncertainty.
    masked_level, masked_err : float
        The masked-sky estimate and its uncertainty.
    pixel_noise : float
        A sky pixel's noise.
    galaxy_light : float
        The fit's galaxy model, median over the pixels of the masked estimate.
    nsig, max_diff : float
        The tolerance, in errors and in pixel noise.

    Returns
    -------
    str
        The reason, or '' when they agree.

    Examples
    --------
    >>> check_against_masked(1000.0, 1.0, 1003.0, 0.5, pixel_noise=30.0, galaxy_light=2.0)
    ''
    >>> check_against_masked(1020.0, 1.0, 1003.0, 0.5, pixel_noise=30.0)[:24]
    'the radial sky G = 1020.'
    """
    if not np.isfinite(masked_level):
        return ""
    expected = g + galaxy_light
    diff = expected - masked_level
    err = float(np.hypot(g_err, masked_err if np.isfinite(masked_err) else 0.0))
    tol = max(nsig * err, max_diff * pixel_noise)
    if abs(diff) <= tol:
        return ""
    where = "above" if diff > 0 else "below"
    return (f"the radial sky G = {g:.1f} plus the galaxy's modelled light in the unmasked "
            f"pixels ({galaxy_light:.1f}) is {abs(diff):.1f} {where} the masked-sky level "
            f"{masked_level:.1f} ({abs(diff) / pixel_noise:.2f} pixel sigma; at most "
            f"{tol:.1f}, the larger of {nsig:g} errors and {max_diff:g} sigma)"
            + (": G took galaxy light for sky" if diff > 0 else ": the fitted tail falls "
               "too fast or G is too low"))


@dataclass
class SkyChoice:
    """The sky of one frame: the model subtracted, how it was made and why."""

    model: np.ndarray          # the sky at every pixel
    method: str                # 'radial' or the masked-sky method ('box', 'plane', ...)
    reason: str                # why this method (the fallback's reason, or '-')
    offset: float = float("nan")        # radial G (NaN when no radial fit was made)
    offset_error: float = float("nan")
    masked_level: float = float("nan")  # the masked sky: clipped median of the unmasked pixels
    scale_length: float = float("nan")  # h of the radial fit, pixels
    rmin: float = float("nan")          # where the radial fit started, pixels
    profile: RadialProfile | None = None
    sources: np.ndarray | None = None   # the source mask the masked sky left out (dilated)


def fit_radial_from_galaxy(data, center, *, mask=None, axis_ratio=1.0, theta_deg=0.0,
                           rmin_h=1.0, rmin=None, start=5.0, iterations=4, width=2.0):
    """A radial sky whose fit starts at ``rmin_h`` scale lengths of the galaxy itself.

    A fixed start (a fraction of the frame's width) suits one galaxy on one frame
    size: on a larger frame or a smaller galaxy it lies where the disc has already
    faded, and the fit is unconstrained. Here a first fit from ``start`` pixels gives
    the scale length ``h``; the fit is repeated from ``rmin_h * h`` until ``h``
    settles (the bulge, left inside, then no longer steepens it).

    Parameters
    ----------
    data, center, mask, axis_ratio, theta_deg, width
        As for `radial_sky`; the rings reach the farthest corner of the frame.
    rmin_h : float
        Where the fit starts, in scale lengths.
    rmin : float, optional
        A fixed start in pixels instead (no iteration).
    start : float
        Where the first fit starts, pixels (past the seeing core).
    iterations : int
        Most fits made.

    Returns
    -------
    offset : float
    info : `RadialProfile`
    """
    ny, nx = np.shape(data)
    corners = np.array([[0, 0], [nx - 1, 0], [0, ny - 1], [nx - 1, ny - 1]], float)
    rmax = float(np.max(np.hypot(*(corners - np.asarray(center, float)).T))) / axis_ratio
    kw = dict(mask=mask, axis_ratio=axis_ratio, theta_deg=theta_deg, width=width)
    if rmin is not None:
        return radial_sky(data, center, rmax=rmax, rmin=float(rmin), **kw)
    r0 = float(start)
    g, info = radial_sky(data, center, rmax=rmax, rmin=r0, **kw)
    for _ in range(iterations - 1):
        h = scale_length(info)
        r1 = float(np.clip(rmin_h * h, start, 0.5 * rmax))
        if not np.isfinite(r1) or abs(r1 - r0) < max(0.05 * r0, width):
            break
        r0 = r1
        g, info = radial_sky(data, center, rmax=rmax, rmin=r0, **kw)
    return g, info


def sky_for_frame(data, mask=None, *, geo=None, choice="auto", sky_method="box", box_size=64,
                  filter_size=3, nsigma=2.0, npixels=10, dilate=5, rmin_h=1.0, rmin=None,
                  min_scale_lengths=MIN_SCALE_LENGTHS, max_offset_error=MAX_OFFSET_ERROR,
                  segm=None):
    """The sky of one frame, by the method the frame supports, with the reason.

    With ``choice='auto'``: a frame with a galaxy (``geo``) gets the radial-profile
    sky ``G`` (`fit_radial_from_galaxy`) if the fit passes `check_radial_fit` and
    agrees with the masked sky (`check_against_masked`); otherwise, and for a frame
    with no galaxy, the masked-sky model ``sky_method``, with the reason.
    ``choice='radial'`` takes ``G`` whatever the checks say (the reasons are still
    returned), ``choice='sky_method'`` never fits.

    Parameters
    ----------
    data : 2-D array
        The calibrated frame.
    mask : bool array, optional
        Bad pixels.
    geo : dict, optional
        The galaxy: ``x``, ``y`` (0-based pixel), ``axis_ratio``, ``theta_deg``.
    choice : {'auto', 'radial', 'sky_method'}
    sky_method, box_size, filter_size
        The masked-sky model (`sky_model`).
    nsigma, npixels, dilate
        The source mask (`source_mask`).
    rmin_h, rmin
        Where the radial fit starts (`fit_radial_from_galaxy`).
    min_scale_lengths, max_offset_error
        The fit's checks (`check_radial_fit`).
    segm : `~photutils.segmentation.SegmentationImage`, optional
        The frame's sources from `detect` (with ``nsigma``, ``npixels``), if found
        already (e.g. by `find_galaxy`): the frame is then not searched again.

    Returns
    -------
    `SkyChoice`
    """
    if choice not in ("auto", "radial", "sky_method"):
        msg = f"choice must be 'auto', 'radial' or 'sky_method', got {choice!r}"
        raise ValueError(msg)
    data, bad = _as_image(data, mask)
    if segm is None:                    # once for both masks
        segm = detect(data, mask=bad, nsigma=nsigma, npixels=npixels)
    src = _mask_of(segm, data.shape, dilate=dilate)
    masked, masked_rms, masked_note = None, float("nan"), ""
    try:
        masked, rms = sky_model(data, mask=bad | src, method=sky_method, box_size=box_size,
                                filter_size=filter_size, rms_image=False)
        masked_rms = float(np.median(rms))
    except ReduxError as exc:
        if geo is None or choice == "sky_method":
            raise
        masked_note = str(exc)
    if geo is None or choice == "sky_method":
        why = "no galaxy in the frame" if geo is None else "galaxy_sky = sky_method"
        return SkyChoice(masked, sky_method, why, masked_level=float(np.median(masked)),
                         sources=src)
    centre = (geo["x"], geo["y"])
    others = _mask_of(segm, data.shape, dilate=dilate, except_at=centre)
    noise = masked_rms if np.isfinite(masked_rms) else float(mad_std(data[~(bad | src)]))
    # the check's masked sky: one clipped median of the pixels no source covers (a box
    # model interpolates over the masked galaxy from boxes full of its outskirts)
    try:
        level = float(sky_model(data, mask=bad | src, method="constant")[0][0, 0])
    except ReduxError:
        level = float("nan")
    n_sky = max(int((~(bad | src)).sum()), 1)
    try:
        g, info = fit_radial_from_galaxy(data, centre, mask=bad | others,
                                         axis_ratio=geo.get("axis_ratio", 1.0),
                                         theta_deg=geo.get("theta_deg", 0.0),
                                         rmin_h=rmin_h, rmin=rmin)
    except ReduxError as exc:
        if choice == "radial" or masked is None:
            raise
        return SkyChoice(masked, sky_method, f"radial fit failed: {exc}", masked_level=level,
                         sources=src)
    reasons = check_radial_fit(info, pixel_noise=noise, min_scale_lengths=min_scale_lengths,
                               max_offset_error=max_offset_error)
    free = ~(bad | src)
    r = elliptical_radius(data.shape, centre, axis_ratio=geo.get("axis_ratio", 1.0),
                          theta_deg=geo.get("theta_deg", 0.0))
    light = float(np.median(info.model(r[free]))) - g if free.any() else 0.0
    disagree = check_against_masked(g, info.offset_error, level, 1.2533 * noise / np.sqrt(n_sky),
                                    pixel_noise=noise, galaxy_light=light)
    reasons += [disagree] if disagree else []
    facts = dict(offset=g, offset_error=info.offset_error, masked_level=level,
                 scale_length=scale_length(info), rmin=info.rmin, profile=info, sources=src)
    if reasons and choice == "auto" and masked is not None:
        return SkyChoice(masked, sky_method, "radial fit not trusted: " + "; ".join(reasons),
                         **facts)
    why = "galaxy_sky = radial" if choice == "radial" else "radial fit passed its checks"
    if reasons:
        why += " (checks failed: " + "; ".join(reasons) + ")"
    if masked is None:
        why += f" (no masked sky: {masked_note})"
    return SkyChoice(np.full(data.shape, g), "radial", why, **facts)


def rate_outliers(names, rates, errors=None, *, max_scatter=MAX_RATE_SCATTER, nsig=5.0):
    """Frames of one filter whose sky rate disagrees with the others': name -> reason.

    Each rate is compared with the median of the *other* frames' rates; it is an
    outlier when it differs by more than ``max_scatter`` of that median and, when
    ``errors`` are given, by more than ``nsig`` of its error as well (a sky that
    changes a little through the night is not an outlier).

    Parameters
    ----------
    names : sequence of str
        The frames.
    rates : sequence of float
        Their sky rates (sky level / exposure time), e.g. e-/s per pixel.
    errors : sequence of float, optional
        Their uncertainties, in the unit of ``rates``.
    max_scatter : float
        Largest relative difference allowed.
    nsig : float
        Smallest significant difference, in errors.

    Returns
    -------
    dict
        Outlying frame -> a sentence saying how far it is from the others.

    Examples
    --------
    >>> rate_outliers(["a", "b", "c", "d"], [10.0, 10.2, 9.9, 25.0])
    {'d': 'sky rate 25 is +150 % from the median 10 of the other frames of its filter (at most 20 %)'}
    """
    rates = np.asarray(rates, float)
    errors = np.zeros_like(rates) if errors is None else np.asarray(errors, float)
    found = {}
    if len(rates) < 2:
        return found
    for i, name in enumerate(names):
        rest = np.delete(rates, i)
        rest = rest[np.isfinite(rest)]
        if not rest.size or not np.isfinite(rates[i]):
            continue
        ref = float(np.median(rest))
        diff = rates[i] - ref
        err = errors[i] if np.isfinite(errors[i]) else 0.0
        if abs(diff) > max_scatter * abs(ref) and abs(diff) > nsig * err:
            found[str(name)] = (f"sky rate {rates[i]:.3g} is {100 * diff / ref:+.0f} % from the "
                                f"median {ref:.3g} of the other frames of its filter (at most "
                                f"{100 * max_scatter:g} %)")
    return found
