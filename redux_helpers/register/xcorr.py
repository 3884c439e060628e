"""Registering by cross-correlation, for frames with too few stars: `correlation_image` and `register_xcorr`."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage

from ..smoothing import mesh_image
from .transform import MAD_TO_SIGMA, RegistrationError, Transform


def correlation_image(data, *, bad=None, fwhm=3.5, nsigma=2.0, box=None):
    """The frame reduced to its sources, for cross-correlation: what moves with the sky.

    Cross-correlating two raw frames matches everything they have in common, and much
    of that is fixed on the detector, not on the sky: hot pixels, bad columns, row
    banding from the read-out, vignetting. Those peak at zero shift and can outweigh
    faint stars. So, in order:

    1. a 3 x 3 running median removes features of one to four pixels (hot pixels,
       cosmic rays) while a star, several pixels wide, survives;
    2. a smooth background (medians in boxes of ``box`` pixels) is subtracted: the sky,
       its gradients and the vignetting;
    3. the median of each row, then of each column, over the pixels without sources
       is subtracted: read-out banding and column offsets;
    4. the image is smoothed with a Gaussian of ``fwhm`` (a matched filter: the noise
       drops, stars stand out) and everything below ``nsigma`` times the smoothed
       noise is set to zero, the rest lowered by that much.

    What is left is the light of the sources alone, on zero.

    Parameters
    ----------
    data : 2-D array
        A frame, raw or calibrated (any units).
    bad : bool array, optional
        Pixels to ignore (treated as background).
    fwhm : float
        Approximate size of a star in pixels.
    nsigma : float
        Threshold above the smoothed noise.
    box : int, optional
        Side of the background boxes (default ``max(32, 10 * fwhm)``).

    Returns
    -------
    2-D float array, zero where there are no sources.
    """
    a = np.array(data, dtype=np.float64)
    bad = ~np.isfinite(a) if bad is None else ~np.isfinite(a) | np.asarray(bad, bool)
    if bad.all():
        return np.zeros(a.shape)
    level = float(np.median(a[~bad]))
    a = ndimage.median_filter(np.where(bad, level, a), size=3, mode="nearest")
    box = int(box or max(32, round(10 * fwhm)))
    a -= _box_background(a, bad, box)
    noise = MAD_TO_SIGMA * np.median(np.abs(a[~bad]))
    src = bad | (a > 3 * noise)          # keep sources out of the row and column levels
    with warnings.catch_warnings():      # a row or column that is all source stays as is
        warnings.simplefilter("ignore", RuntimeWarning)
        a -= np.nan_to_num(np.nanmedian(np.where(src, np.nan, a), axis=1))[:, None]
        a -= np.nan_to_num(np.nanmedian(np.where(src, np.nan, a), axis=0))[None, :]
    a[bad] = 0.0
    smooth = ndimage.gaussian_filter(a, max(fwhm, 1.0) / 2.3548, mode="constant")
    noise = MAD_TO_SIGMA * np.median(np.abs(smooth[~bad]))
    if not np.isfinite(noise) or noise <= 0:
        return np.zeros(a.shape)
    return np.clip(smooth - nsigma * noise, 0.0, None)


def _box_background(a, bad, box):
    """The smooth level under the sources: photutils' `Background2D`, median in boxes of
    ``box`` pixels (sources and ``bad`` pixels left out), median-filtered over 3 x 3 boxes,
    as `background.sky_model` measures a sky; zero when too few pixels are good."""
    from photutils.background import Background2D, MedianBackground

    box = int(min(box, *a.shape))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return mesh_image(Background2D(a, box, mask=bad, filter_size=3, sigma_clip=None,
                                           bkg_estimator=MedianBackground(),
                                           exclude_percentile=80.0), a.shape)
    except ValueError:       # every box has too many bad pixels
        return np.zeros(a.shape)


def _peaks(cimg, fwhm, max_peaks=100):
    """Centres (x, y) of the local maxima of a correlation image, brightest first."""
    size = 2 * int(np.ceil(fwhm)) + 1
    top = (cimg == ndimage.maximum_filter(cimg, size=size, mode="constant")) & (cimg > 0)
    iy, ix = np.nonzero(top)
    order = np.argsort(cimg[iy, ix])[::-1][:max_peaks]
    iy, ix = iy[order], ix[order]
    h = size // 2
    xs, ys = [], []
    ny, nx = cimg.shape
    for y, x in zip(iy, ix, strict=True):
        y0, y1, x0, x1 = max(0, y - h), min(ny, y + h + 1), max(0, x - h), min(nx, x + h + 1)
        cy, cx = ndimage.center_of_mass(cimg[y0:y1, x0:x1])
        xs.append(x0 + cx)
        ys.append(y0 + cy)
    return np.c_[xs, ys] if xs else np.zeros((0, 2))


def register_xcorr(image, ref_image, *, bad=None, ref_bad=None, upsample=100, fwhm=3.5,
                   min_contrast=1.5) -> Transform:
    """Pure translation by cross-correlating the frames' sources, to 1/``upsample`` pixel.

    Both frames are first reduced to the light of their sources (`correlation_image`:
    hot pixels, read-out banding, column offsets and the sky removed, smoothed to
    ``fwhm``), so that what the detector adds at a fixed place does not pull the
    answer to zero shift. The correlation's highest peak is accepted only when it
    stands at least ``min_contrast`` times above the next highest one elsewhere;
    otherwise the frames have no pattern in common (a blank or clouded frame, frames
    of different fields, a rotated frame) and `RegistrationError` is raised.

    The residual reported is the rms distance, after the shift, between the peaks of
    the two correlation images that pair up (a rough star-by-star check; the shift
    itself, from all the light at once, is more precise), and ``n_stars`` their number.
    """
    from skimage.registration import phase_cross_correlation

    a = correlation_image(ref_image, bad=ref_bad, fwhm=fwhm)
    b = correlation_image(image, bad=bad, fwhm=fwhm)
    if not a.any() or not b.any():
        which = "the reference" if not a.any() else "the frame"
        msg = f"cross-correlation: {which} shows no source above its noise"
        raise RegistrationError(msg)
    # the whole correlation surface: is there one clear peak?
    xc = np.fft.irfft2(np.fft.rfft2(a) * np.conj(np.fft.rfft2(b)), s=a.shape)
    py, px = np.unravel_index(int(np.argmax(xc)), xc.shape)
    ny, nx = xc.shape
    yy = np.minimum(np.abs(np.arange(ny) - py), ny - np.abs(np.arange(ny) - py))
    xx = np.minimum(np.abs(np.arange(nx) - px), nx - np.abs(np.arange(nx) - px))
    far = np.hypot(*np.meshgrid(yy, xx, indexing="ij")) > max(2.0 * fwhm, 5.0)
    # the next highest *peak* (a local maximum), not the flank of the main one
    size = 2 * int(np.ceil(fwhm)) + 1
    other = far & (xc == ndimage.maximum_filter(xc, size=size, mode="wrap"))
    second = float(xc[other].max()) if other.any() else 0.0
    contrast = float(xc[py, px]) / second if second > 0 else np.inf
    if contrast < min_contrast:
        msg = (f"cross-correlation found no clear common pattern (best peak only "
               f"{contrast:.2f} times the next; need {min_contrast:g})")
        raise RegistrationError(msg)
    shift, _, _ = phase_cross_correlation(a, b, upsample_factor=upsample, normalization=None)
    dy, dx = (float(s) for s in shift)
    # phase_cross_correlation returns the shift that moves `image` onto `ref_image`
    t = Transform(np.eye(2), np.array([dx, dy]), "cross-correlation", 0, np.nan)
    pa, pb = _peaks(a, fwhm), _peaks(b, fwhm)
    if len(pa) and len(pb):
        from scipy.spatial import cKDTree

        dist, _ = cKDTree(pa).query(pb + np.array([dx, dy]))
        paired = dist < max(fwhm / 2, 1.0)
        if paired.sum() >= 3:
            t.n_stars = int(paired.sum())
            t.residual = float(np.sqrt(np.mean(dist[paired] ** 2)))
    return t
