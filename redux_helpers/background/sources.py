"""Finding the objects to leave out of the sky: `detect` (segmentation above the smoothed sky noise) and `source_mask`."""

from __future__ import annotations

import logging

import numpy as np
from astropy.stats import SigmaClip

from ..errors import ReduxError
from ..morphology import within
from ..smoothing import smooth
from .constants import MIN_SKY_PIXELS

log = logging.getLogger(__name__)

def _as_image(data, bad, what="data"):
    """(``data`` as floating point, bool array of unusable pixels); raises on no data.

    A float32 frame (as the calibrated frames are) stays float32 and is not copied, nor
    is a float64 one; other types become float64. A 2048² frame's sky then holds no
    float64 copy of it (32 MB, and twice that inside photutils' box statistics, which
    keep the input's type): 05's peak a frame ~210 -> ~160 MB. float32's 1e-7 is far below any
    sky's noise. Nothing here writes into it.
    """
    data = np.asarray(data)
    if data.dtype.kind != "f":
        data = data.astype(np.float64)
    if data.ndim != 2:
        msg = f"{what} must be a 2-D image; got an array of shape {data.shape}"
        raise ValueError(msg)
    given = bad
    bad = ~np.isfinite(data)
    if given is not None:
        given = np.asarray(given, bool)
        if given.shape != data.shape:
            msg = f"the bad-pixel mask has shape {given.shape} but {what} has shape {data.shape}"
            raise ValueError(msg)
        bad |= given
    if bad.all():
        msg = (f"{what} has no usable pixel (all NaN or masked): check the frame and its "
               "MASK plane from the calibration")
        raise ReduxError(msg)
    return data, bad


def _threshold(work, ignore, nsigma):
    """photutils' ``detect_threshold`` as one number: clipped mean + nsigma x clipped std.

    The statistics are taken on every ``step``-th pixel of every ``step``-th row, ``step``
    at least 2 and enough to leave about 2^18 pixels (2 up to 1024², 4 for 2048²): in a
    smoothed image neighbours are correlated, and a quarter of a million pixels gives the
    level to a fraction of its noise (its standard deviation to 0.14 %), faster.
    """
    step = max(2, int(np.sqrt(work.size / 2 ** 18)))
    sub, sub_bad = work[::step, ::step], ignore[::step, ::step]
    if (~sub_bad).sum() < MIN_SKY_PIXELS:
        sub, sub_bad = work, ignore
    clipped = SigmaClip(sigma=3.0, maxiters=10)(sub[~sub_bad], masked=False)
    return float(np.mean(clipped) + nsigma * np.std(clipped))


def detect(data, *, bad=None, nsigma=2.0, npixels=10, smooth_fwhm=3.0):
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
    bad : bool array, optional
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
    data, bad = _as_image(data, bad)
    work = smooth(data, bad=bad, fwhm=smooth_fwhm) if smooth_fwhm and smooth_fwhm > 0 \
        else np.where(bad, np.nan, data)
    ignore = bad | ~np.isfinite(work)
    work = np.where(ignore, 0.0, work)
    threshold = _threshold(work, ignore, nsigma)
    return segments((work > threshold) & ~ignore, npixels)


def segments(above, npixels):
    """photutils' ``detect_sources`` on a thresholded image: the 8-connected groups of at
    least ``npixels`` True pixels, numbered 1, 2, ... in the order scipy labels them, as a
    `~photutils.segmentation.SegmentationImage`; None when there is none.

    The same image as photutils' (tests/test_background.py holds them equal), counted by
    ``np.bincount`` instead of a Python loop over every group's cut-out: a 2048² frame's
    ~3000 groups 0.06-0.13 s -> 0.04 s, and the loop no longer holds the GIL from the
    other thread of 05's loop.
    """
    from photutils.segmentation import SegmentationImage
    from scipy import ndimage

    labels, n = ndimage.label(above, structure=np.ones((3, 3), bool))
    if n == 0:
        return None
    keep = np.bincount(labels.ravel(), minlength=n + 1) >= npixels
    keep[0] = False
    if not keep.any():
        return None
    number = np.zeros(n + 1, labels.dtype)
    number[keep] = np.arange(1, int(keep.sum()) + 1, dtype=labels.dtype)
    return SegmentationImage(number[labels])


def source_mask(data, *, bad=None, nsigma=2.0, npixels=10, dilate=5, smooth_fwhm=3.0,
                except_at=None, segm=None):
    """Pixels covered by sources (stars, galaxies), grown by ``dilate`` pixels.

    Parameters
    ----------
    data : 2-D array
        The image, e.g. a calibrated frame in electrons.
    bad : bool array, optional
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
        subtracted): not detected again. ``bad``, ``nsigma``, ``npixels`` and
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
        segm = detect(data, bad=bad, nsigma=nsigma, npixels=npixels, smooth_fwhm=smooth_fwhm)
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
    if dilate and dilate > 0:   # the disc x² + y² <= dilate², as photutils' footprint
        return within(segm.data > 0, dilate)
    return segm.data > 0


