"""Modelling the sky from what the objects leave: `sky_model` ('box', 'plane', 'constant') and `box_medians`."""

from __future__ import annotations

import warnings

import numpy as np
from astropy.stats import SigmaClip, mad_std, sigma_clipped_stats
from astropy.utils.exceptions import AstropyUserWarning

from ..errors import ReduxError
from ..smoothing import mesh_image
from .constants import METHODS, MIN_SKY_FRACTION, MIN_SKY_PIXELS
from .sources import _as_image


def _too_little_sky(bad, method):
    n_sky = int((~bad).sum())
    if n_sky < max(MIN_SKY_PIXELS, MIN_SKY_FRACTION * bad.size):
        msg = (f"only {n_sky} of {bad.size} pixels ({100 * n_sky / bad.size:.1f} %) are sky: "
               "sources and bad pixels cover the rest, too little to model the sky "
               f"(method '{method}'); detect fewer sources (raise nsigma, lower dilate) or "
               "use the radial-profile sky (radial_sky), which fits the galaxy instead of "
               "masking it")
        raise ReduxError(msg)


def sky_model(data, *, bad=None, method="box", box_size=64, filter_size=3, sigma=3.0,
              exclude_percentile=50.0, rms_image=True):
    """Model the sky of a frame from its unmasked pixels.

    Parameters
    ----------
    data : 2-D array
        The frame (sky and objects), e.g. in electrons. NaN pixels are ignored.
    bad : bool array, optional
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
    data, bad = _as_image(data, bad)
    _too_little_sky(bad, method)
    if method == "constant":
        _, median, std = sigma_clipped_stats(data, mask=bad, sigma=sigma, maxiters=10)
        return np.full(data.shape, float(median)), float(std)
    if method == "plane":
        return _plane(data, bad, sigma)
    return _boxes(data, bad, box_size=box_size, filter_size=filter_size, sigma=sigma,
                  exclude_percentile=exclude_percentile, rms_image=rms_image)


def _plane(data, bad, sigma, maxiters=10):
    """A sigma-clipped least-squares plane through the good pixels.

    The normal equations are summed over rows and columns of the kept pixels, with the
    coordinates as two 1-D vectors: no coordinate image nor design matrix of every pixel
    (that took ~300 MB for a 2048² frame, this ~50 MB).
    """
    ny, nx = data.shape
    # coordinates scaled to about -1..1 keep the normal equations well conditioned
    xs = (np.arange(nx) - nx / 2) / max(nx / 2, 1)
    ys = (np.arange(ny) - ny / 2) / max(ny / 2, 1)
    use = ~bad
    coef = np.zeros(3)
    rms = np.nan
    for _ in range(maxiters):
        d = np.where(use, data, 0.0)
        per_col, per_row = use.sum(axis=0, dtype=float), use.sum(axis=1, dtype=float)
        d_col, d_row = d.sum(axis=0, dtype=float), d.sum(axis=1, dtype=float)
        sxy = float(ys @ (use.astype(float) @ xs))
        normal = np.array([[per_col.sum(), per_col @ xs, per_row @ ys],
                           [per_col @ xs, per_col @ xs ** 2, sxy],
                           [per_row @ ys, sxy, per_row @ ys ** 2]])
        rhs = np.array([d_col.sum(), d_col @ xs, d_row @ ys])
        coef = np.linalg.lstsq(normal, rhs, rcond=None)[0]
        resid = data - (coef[0] + coef[1] * xs[None, :] + coef[2] * ys[:, None])
        rms = float(mad_std(resid[use]))
        keep = ~bad & (np.abs(resid) <= sigma * rms)
        if np.array_equal(keep, use):
            break
        use = keep
        _too_little_sky(~use, "plane")
    return coef[0] + coef[1] * xs[None, :] + coef[2] * ys[:, None], rms


def _boxes(data, bad, *, box_size, filter_size, sigma, exclude_percentile, rms_image=True):
    """photutils' Background2D with a median in each box; errors in our words."""
    bkg = _background2d(data, bad, box_size=box_size, filter_size=filter_size, sigma=sigma,
                        exclude_percentile=exclude_percentile)
    model = mesh_image(bkg, data.shape)
    rms = mesh_image(bkg, data.shape, "background_rms") if rms_image \
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


def box_medians(data, *, bad=None, box_size=64, sigma=3.0, exclude_percentile=50.0):
    """The sigma-clipped median of every box of `sky_model`'s ``'box'`` method, unsmoothed.

    What the box model starts from, before the grid is median filtered over
    ``filter_size`` boxes and interpolated to every pixel. Box ``[j, i]`` holds the pixels
    ``data[j * box_size:(j + 1) * box_size, i * box_size:(i + 1) * box_size]``; its value
    is the median of its unmasked pixels after clipping at ``sigma`` standard deviations
    about their median (10 rounds at most).

    Parameters
    ----------
    data, bad, box_size, sigma, exclude_percentile
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
    data, bad = _as_image(data, bad)
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


