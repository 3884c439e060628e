"""Anchoring an Hα image to a MUSE Hα map: regrid, match the beams, fit, anchor, repair.

Two images of the same line from two instruments disagree: their flux scales differ by
a few per cent (filter curves, [NII] in a narrow filter, calibration), and their
backgrounds by an offset (sky subtraction). A MUSE map, made from spectra, is the better
reference for both; an imaging camera has the sharper view. Anchoring keeps the camera's
resolution and takes MUSE's scale and zero:

1. `regrid` the image onto the MUSE grid (``reproject``), conserving flux by the ratio of
   the pixels' areas;
2. `beam_match`: smooth the sharper of the two to the other's resolution, with a
   Gaussian of FWHM √(θ_broad² − θ_sharp²) (smoothing is done on the image's own grid,
   before regridding, so that no detail is aliased);
3. `binned_fit`: the relation MUSE = offset + slope × image over the pixels both see,
   with stars masked: pixels in equal-count bins of the image's value, the median of
   each bin, a straight line through the medians (percentile cuts drop the noisiest
   and the saturated ends);
4. `anchor`: the full-resolution image becomes offset' + slope × image, the offset
   scaled to the image's pixel area;
5. `repair_negatives`: pixels that anchoring leaves ≤ 0 (or below −n σ) are masked and
   filled by interpolation with a Gaussian kernel (``astropy.convolution``), and
   `add_white_noise` keeps a variant with noise put back where pixels were filled, so a
   repaired patch is not smoother than its neighbours.

`difference_ratio` gives MUSE − image and MUSE / image on the MUSE grid, the maps where
a mismatch shows. `star_mask` finds compact continuum sources with little line emission
(stars), which a continuum subtraction leaves as residuals and the fit must not see.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from astropy.stats import mad_std
from astropy.wcs import WCS
from scipy import ndimage

from .errors import ReduxError
from .morphology import within
from .skywcs import pixel_area_arcsec2
from .smoothing import running_median

log = logging.getLogger(__name__)

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def regrid(data, wcs_in: WCS, wcs_out: WCS, shape_out, *, conserve_flux=True,
           names=("image", "reference")) -> np.ndarray:
    """Reproject ``data`` onto ``wcs_out`` (bicubic); flux per pixel kept by the area ratio.

    ``reproject_interp`` samples the image's values at the new pixels' centres: a
    surface brightness. With ``conserve_flux`` the result is multiplied by
    area_out / area_in, so a flux per pixel stays a flux per pixel (the total is kept
    for an image smoothed to at least the coarser pixel). Pixels outside the input are
    NaN. Bicubic, not bilinear: a straight line between pixels cuts the top of every
    peak (by ~0.7 % for a peak 4 pixels wide), which biases the anchoring slope by as
    much.

    Raises
    ------
    ReduxError
        When the two grids share no sky (``names`` say which files, for the message).
    """
    from reproject import reproject_interp

    data = np.asarray(data, float)
    valid = np.isfinite(data)
    # a spline through one NaN is NaN everywhere: interpolate the image with its holes
    # at 0, and the map of valid pixels beside it, and blank what the holes dominate
    out, footprint = reproject_interp((np.where(valid, data, 0.0), wcs_in.celestial),
                                      wcs_out.celestial, shape_out=tuple(shape_out),
                                      order="bicubic")
    if not valid.all():
        cover, _ = reproject_interp((valid.astype(float), wcs_in.celestial), wcs_out.celestial,
                                    shape_out=tuple(shape_out), order="bilinear")
        footprint = np.where(np.nan_to_num(cover) > 0.5, footprint, 0.0)
    if not np.any(footprint > 0):
        msg = (f"{names[0]} and {names[1]} share no sky (no pixel of the second falls on "
               "the first); check both files' WCS (CRVAL1/CRVAL2) and that they are of the "
               "same field")
        raise ReduxError(msg)
    out[footprint <= 0] = np.nan
    if conserve_flux:
        out *= pixel_area_arcsec2(wcs_out) / pixel_area_arcsec2(wcs_in)
    return out


def _normalized(data, valid, sigma, *, out=None) -> np.ndarray:
    """Gaussian-weighted mean of the ``valid`` pixels around every pixel (σ in pixels).

    The image with invalid pixels at 0, convolved, divided by the convolved map of valid
    pixels: a hole or an edge does not pull its neighbours towards zero. Separable
    filters throughout; with no hole, the weights are the outer product of two 1-D
    filtered rows of ones (no second 2-D filter, no 2-D weight image).
    """
    num = ndimage.gaussian_filter(np.where(valid, data, 0.0), sigma, mode="constant",
                                  output=out)
    with np.errstate(invalid="ignore", divide="ignore"):
        if valid.all():
            num /= ndimage.gaussian_filter1d(np.ones(data.shape[0]), sigma, mode="constant")[:, None]
            num /= ndimage.gaussian_filter1d(np.ones(data.shape[1]), sigma, mode="constant")[None, :]
        else:
            # the weights in float32: they are within [0, 1], and it halves the memory
            num /= ndimage.gaussian_filter(valid.astype(np.float32), sigma, mode="constant",
                                           output=np.float32)
    return num


def smooth(data, fwhm_px) -> np.ndarray:
    """Gaussian smoothing (FWHM in pixels) that ignores NaN pixels and keeps them NaN.

    A normalised convolution (`_normalized`): an edge or a hole doesn't pull its
    neighbours to zero.
    """
    data = np.asarray(data, float)
    if fwhm_px <= 0:
        return data.copy()
    valid = np.isfinite(data)
    out = _normalized(data, valid, fwhm_px * FWHM_TO_SIGMA)
    out[~valid] = np.nan
    return out


def kernel_fwhm(fwhm_from, fwhm_to) -> float:
    """FWHM of the Gaussian that takes a Gaussian beam of ``fwhm_from`` to ``fwhm_to``."""
    if fwhm_to < fwhm_from:
        msg = (f"can't sharpen a beam: {fwhm_from:.3g} is already broader than "
               f"{fwhm_to:.3g}")
        raise ReduxError(msg)
    return math.sqrt(fwhm_to ** 2 - fwhm_from ** 2)


@dataclass
class BeamMatch:
    """The image and the reference on the reference's grid, at one resolution."""

    image: np.ndarray          # the image, smoothed (if sharper) and regridded
    reference: np.ndarray      # the reference, smoothed if it was the sharper
    fwhm_arcsec: float         # the common resolution
    smoothed: str              # 'image', 'reference' or 'neither'
    kernel_arcsec: float       # FWHM of the kernel used
    notes: list[str] = field(default_factory=list)


def beam_match(image, reference, *, image_wcs, image_fwhm, reference_wcs, reference_fwhm,
               names=("image", "MUSE map")) -> BeamMatch:
    """Bring ``image`` onto the reference's grid at the broader of the two resolutions.

    Parameters
    ----------
    image, reference : 2-D arrays
        Flux per pixel, each on its own grid.
    image_wcs, reference_wcs : WCS
    image_fwhm, reference_fwhm : float
        PSF FWHM of each, arcsec.
    """
    img_pix = math.sqrt(pixel_area_arcsec2(image_wcs))
    ref_pix = math.sqrt(pixel_area_arcsec2(reference_wcs))
    notes = []
    reference = np.asarray(reference, float)
    k_img = kernel_fwhm(image_fwhm, reference_fwhm) if image_fwhm <= reference_fwhm else 0.0
    image, image_wcs = _cutout(image, image_wcs, reference.shape, reference_wcs,
                               margin_px=4 * k_img * FWHM_TO_SIGMA / img_pix + 3 + ref_pix / img_pix)
    if image_fwhm <= reference_fwhm:
        k = kernel_fwhm(image_fwhm, reference_fwhm)
        sm = smooth(image, k / img_pix)
        smoothed = "image" if k > 0 else "neither"
        notes.append(f"{names[0]} (FWHM {image_fwhm:.2f}″) smoothed with a Gaussian of FWHM "
                     f"{k:.2f}″ to the {names[1]}'s {reference_fwhm:.2f}″")
        ref = reference
    else:
        k = kernel_fwhm(reference_fwhm, image_fwhm)
        sm = np.asarray(image, float)
        ref = smooth(reference, k / ref_pix)
        smoothed = "reference"
        notes.append(f"the {names[1]} (FWHM {reference_fwhm:.2f}″) is the sharper: it is "
                     f"smoothed with FWHM {k:.2f}″ to the {names[0]}'s {image_fwhm:.2f}″")
    on_ref = regrid(sm, image_wcs, reference_wcs, reference.shape, names=names)
    return BeamMatch(on_ref, ref, max(image_fwhm, reference_fwhm), smoothed, k, notes)


def _cutout(image, image_wcs, reference_shape, reference_wcs, *, margin_px):
    """The part of ``image`` under the reference's grid, plus a margin, and its WCS.

    Smoothing and regridding only that part gives the same result on the reference's
    grid (the margin holds the kernel's reach): when a MUSE field covers a sixth of an
    HST image, 5x less time and memory.
    """
    ny, nx = reference_shape
    ex, ey = np.r_[np.arange(0, nx, 10), nx - 1], np.r_[np.arange(0, ny, 10), ny - 1]
    xs = np.r_[ex, ex, np.zeros_like(ey), np.full_like(ey, nx - 1)]
    ys = np.r_[np.zeros_like(ex), np.full_like(ex, ny - 1), ey, ey]
    wi = image_wcs.celestial
    ix, iy = wi.world_to_pixel_values(*reference_wcs.celestial.pixel_to_world_values(xs, ys))
    m = int(math.ceil(margin_px))
    h, w = np.shape(image)
    x0, x1 = max(int(np.floor(np.min(ix))) - m, 0), min(int(np.ceil(np.max(ix))) + m + 1, w)
    y0, y1 = max(int(np.floor(np.min(iy))) - m, 0), min(int(np.ceil(np.max(iy))) + m + 1, h)
    if x0 >= x1 or y0 >= y1 or (x0, y0, x1, y1) == (0, 0, w, h):
        return image, image_wcs          # no overlap (regrid says so) or nothing to cut
    return np.asarray(image)[y0:y1, x0:x1], wi.slice((slice(y0, y1), slice(x0, x1)))


def difference_ratio(image_on_ref, reference):
    """``reference − image`` and ``reference / image`` (NaN where the image is ≤ 0)."""
    diff = reference - image_on_ref
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(image_on_ref > 0, reference / image_on_ref, np.nan)
    return diff, ratio


@dataclass
class Fit:
    """reference = offset + slope × image, fitted to binned medians."""

    offset: float
    slope: float
    offset_err: float
    slope_err: float
    x: np.ndarray              # bin medians of the image
    y: np.ndarray              # bin medians of the reference
    y_err: np.ndarray          # error of each median
    y16: np.ndarray
    y84: np.ndarray
    n_per_bin: int
    n_pixels: int
    cuts: tuple[float, float]  # image values between which pixels were used
    image_level: float = 0.0   # the image's background level the S/N cut was made above

    def meta(self) -> dict:
        return {"offset": self.offset, "offset_err": self.offset_err, "slope": self.slope,
                "slope_err": self.slope_err, "n_bins": int(self.x.size),
                "n_pixels": self.n_pixels, "n_per_bin": self.n_per_bin,
                "cut_low": self.cuts[0], "cut_high": self.cuts[1],
                "image_level": self.image_level}


def binned_fit(image, reference, *, bad=None, n_bins=20, percentiles=(0.5, 99.9),
               min_snr=5.0, image_noise=None, level=0.0, min_pixels=50) -> Fit:
    """Fit ``reference = offset + slope × image`` to the medians of equal-count bins.

    Pixels where either is NaN, or ``bad`` is True, are left out; so are those whose
    image value is less than ``min_snr`` times the image's noise (``image_noise``, else
    measured by `noise_level`) above ``level``: in bins of pure noise the reference's
    median does not follow the image's (their noises are independent), which would
    flatten the slope. ``level`` is the image's zero: 0 for an image whose empty sky is
    at 0; ``None`` measures it (`background_level`), for a line image (empty away from
    its regions) whose drizzled sky was left in or taken out too far. Don't measure it on
    a broad-band image that a galaxy fills: its "background" would be the galaxy.
    Near the cut the image's own noise still moves pixels into brighter bins than their
    true value (an Eddington bias, of order (σ/x)² per bin): it steepens the slope and
    lowers the offset a little, +0.3-0.5 % and −1 to −1.5 % on the demo and the
    4096² benchmark at 5 σ; a higher ``min_snr`` shrinks it at the cost of the faint
    pixels that pin the offset.
    Of the rest, values outside the ``percentiles`` are left out (the noisiest tail
    below, saturated or star-contaminated peaks above). The rest are sorted by image value and cut into
    ``n_bins`` bins of equal count; in each bin the medians of both are taken (robust
    to the odd mismatched pixel), and a straight line is fitted to the medians weighted
    by their errors (1.2533 × σ / √n). The errors of offset and slope are from the
    fit's covariance, scaled by the reduced χ² when that is above 1.

    Raises
    ------
    ReduxError
        With fewer than ``min_pixels`` usable pixels.
    """
    x = np.asarray(image, float).ravel()
    y = np.asarray(reference, float).ravel()
    ok = np.isfinite(x) & np.isfinite(y)
    if bad is not None:
        ok &= ~np.asarray(bad, bool).ravel()
    x, y = x[ok], y[ok]
    level = (background_level(x) if x.size else 0.0) if level is None else float(level)
    if min_snr and x.size:
        noise = noise_level(x) if image_noise is None else float(image_noise)
        bright = x > level + min_snr * noise
        x, y = x[bright], y[bright]
    if x.size < min_pixels:
        msg = (f"only {x.size} pixels are seen by both images (after masks): too few to "
               f"fit their relation (need {min_pixels}); do the two overlap?")
        raise ReduxError(msg)
    lo, hi = np.percentile(x, percentiles)
    keep = (x >= lo) & (x <= hi)
    x, y = x[keep], y[keep]
    order = np.argsort(x)
    x, y = x[order], y[order]
    n_bins = max(3, min(int(n_bins), x.size // 10))
    edges = np.linspace(0, x.size, n_bins + 1).astype(int)
    xm, ym, ye, y16, y84 = [], [], [], [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        xs, ys = x[a:b], y[a:b]
        xm.append(np.median(xs))
        ym.append(np.median(ys))
        p16, p84 = np.percentile(ys, (16, 84))
        y16.append(p16)
        y84.append(p84)
        ye.append(1.2533 * 0.5 * (p84 - p16) / math.sqrt(ys.size))
    xm, ym, ye = np.array(xm), np.array(ym), np.maximum(np.array(ye), 1e-300)
    w = 1.0 / ye ** 2
    a_mat = np.vstack([np.ones_like(xm), xm]).T
    cov = np.linalg.inv(a_mat.T @ (a_mat * w[:, None]))
    offset, slope = cov @ (a_mat.T @ (w * ym))
    chi2 = float(np.sum(w * (ym - offset - slope * xm) ** 2) / max(xm.size - 2, 1))
    cov = cov * max(chi2, 1.0)
    return Fit(float(offset), float(slope), float(math.sqrt(cov[0, 0])),
               float(math.sqrt(cov[1, 1])), xm, ym, ye, np.array(y16), np.array(y84),
               int(edges[1] - edges[0]), int(x.size), (float(lo), float(hi)), float(level))


def anchor(image, fit: Fit, *, image_pixel_area, reference_pixel_area) -> np.ndarray:
    """The image on the reference's scale and zero, at the image's own resolution.

    ``offset`` is per reference pixel; per image pixel it is scaled by the ratio of the
    pixels' areas, so that summing the anchored image over a reference pixel gives
    offset + slope × (the image's flux there).
    """
    return fit.offset * (image_pixel_area / reference_pixel_area) + fit.slope * np.asarray(image)


def repair_negatives(image, *, nsigma=None, kernel_fwhm_px=3.0):
    """Fill pixels ≤ 0 (or below −``nsigma`` σ) by Gaussian-kernel interpolation.

    Each such pixel gets the Gaussian-weighted mean of its valid neighbours (the
    normalised convolution of `smooth`, what ``astropy.convolution
    .interpolate_replace_nans`` does, by separable filters: 5x faster on 4096²). A
    pixel with no valid neighbour within the kernel is filled by a kernel three times
    broader.

    With ``nsigma=None`` every pixel ≤ 0 is filled: in the sky between regions half
    of the noise is negative, so this lifts the sum of any aperture that holds sky
    (by ~20 % for faint nebulae); it makes an image for display, not for photometry.
    With ``nsigma=3`` only significant negatives (a star's residual, an artefact) are.

    Returns
    -------
    repaired : ndarray
        The image with those pixels replaced.
    filled : ndarray of bool
        The pixels that were replaced.
    """
    data = np.asarray(image, float)
    finite = np.isfinite(data)
    if nsigma is None:
        bad = data <= 0
    else:
        bad = data < -nsigma * noise_level(data)
    bad &= finite
    repaired = data.copy()
    todo, valid = bad, finite & ~bad
    for widen in (1, 3):
        if not todo.any():
            break
        filled = _normalized(data, valid, widen * kernel_fwhm_px * FWHM_TO_SIGMA)
        repaired[todo] = filled[todo]
        todo = todo & ~np.isfinite(repaired)
    return repaired, bad


def noise_level(image) -> float:
    """Robust σ of an image's faint pixels (1.4826 × MAD below the median's 2 σ).

    Measured on at most a million pixels (every n-th): σ to ~0.1 %, 10x faster on 4096².
    """
    v = np.asarray(image, float).ravel()
    v = v[:: max(1, v.size // 1_000_000)]    # a million values give σ to 0.1 %
    v = v[np.isfinite(v)]
    s = mad_std(v)
    faint = v[v < np.median(v) + 2 * s]
    return float(mad_std(faint))


def background_level(image) -> float:
    """Robust level of an image's faint pixels: a median clipped at ±2 σ about itself.

    Where a continuum-subtracted image has nothing, it should be 0; a drizzled HST image
    whose sky was left in (or taken out too far) sits at a level of its own, which the
    anchoring fit's offset takes out but its S/N cut must not mistake for signal.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> round(background_level(5.0 + rng.normal(0, 1, 10000)), 1)
    5.0
    """
    v = np.asarray(image, float).ravel()
    v = v[:: max(1, v.size // 1_000_000)]
    v = v[np.isfinite(v)]
    if not v.size:
        return 0.0
    s = noise_level(v)
    m = float(np.median(v))
    for _ in range(5):               # sources pull the plain median up; clipping walks it down
        m = float(np.median(v[np.abs(v - m) < 2 * s]))
    return m


def add_white_noise(image, where, sigma, *, seed=0) -> np.ndarray:
    """``image`` with Gaussian noise of ``sigma`` added in the pixels ``where``."""
    rng = np.random.default_rng(seed)
    out = np.array(image, float)
    out[where] += rng.normal(0.0, sigma, int(np.count_nonzero(where)))
    return out


def star_mask(continuum, line, *, fwhm_px, nsigma=5.0, max_line_ratio=0.2, grow=1.5):
    """Compact continuum sources with little line: the stars of the field.

    A source is compact where the continuum minus its running median over ~6 FWHM
    (`smoothing.running_median`: of block medians from 9 pixels on, 0.35 s for the
    demo's 1296² image against 2.9 s for scipy's exact 13² median, and the same fit to
    the demo's truth, slope 0.8797 against 0.8796) stands
    ``nsigma`` above that high-pass image's noise; it is a star (and not a young cluster
    in an HII region) where the line there is below ``max_line_ratio`` of that
    continuum excess. Each is grown by ``grow`` FWHM.

    Parameters
    ----------
    continuum, line : 2-D arrays on one grid
        The continuum under the line, and the line, in the same flux units per pixel.
    """
    c = np.nan_to_num(np.asarray(continuum, float))
    size = max(5, int(round(6 * fwhm_px)) | 1)
    high = c - running_median(c, size)
    noise = mad_std(high)
    compact = high > nsigma * noise
    lab, n = ndimage.label(compact)
    if n == 0:
        return np.zeros(c.shape, bool)
    ids = np.arange(1, n + 1)
    cont_sum = ndimage.sum_labels(high, lab, ids)
    line_sum = ndimage.sum_labels(np.nan_to_num(np.asarray(line, float)), lab, ids)
    stars = ids[line_sum < max_line_ratio * cont_sum]
    mask = np.isin(lab, stars)
    return within(mask, max(1, int(round(grow * fwhm_px))))


def align(image_on_ref, reference, *, max_shift_px=10.0, upsample=20):
    """The shift (dx, dy), in reference pixels, that lines the image up with the reference.

    Two instruments' WCS can disagree by an arcsecond, several MUSE spaxels; a pixel
    fit between misaligned images pairs a region's peak with its neighbour's wing and
    flattens the slope. The shift is the peak of the two images' phase correlation
    (``skimage.registration.phase_cross_correlation``, to 1/``upsample`` pixel), on
    their common footprint with holes filled by the median. A feature at pixel p of
    the image is at p + (dx, dy) in the reference.

    Raises
    ------
    ReduxError
        When the shift is larger than ``max_shift_px``: that is not a WCS error to
        correct but two different fields, or a correlation that found nothing.
    """
    from skimage.registration import phase_cross_correlation

    a = np.asarray(image_on_ref, float)
    b = np.asarray(reference, float)
    both = np.isfinite(a) & np.isfinite(b)
    if both.sum() < 16:
        msg = "the image and the reference overlap in fewer than 16 pixels: nothing to align"
        raise ReduxError(msg)
    ys, xs = np.nonzero(both)
    sl = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    a, b, both = a[sl], b[sl], both[sl]
    a = np.where(both, a, np.median(a[both])) - np.median(a[both])
    b = np.where(both, b, np.median(b[both])) - np.median(b[both])
    shift, _, _ = phase_cross_correlation(b, a, upsample_factor=upsample, normalization=None)
    dy, dx = float(shift[0]), float(shift[1])
    if math.hypot(dx, dy) > max_shift_px:
        msg = (f"the image and the MUSE reference look {math.hypot(dx, dy):.1f} pixels apart "
               f"(more than max_shift_px = {max_shift_px:g}): not a WCS error to correct; "
               "check that they are of the same field, or turn the alignment off")
        raise ReduxError(msg)
    return dx, dy


def shift_wcs(wcs: WCS, ref_wcs: WCS, dx, dy) -> WCS:
    """A copy of ``wcs`` moved on the sky by (dx, dy) pixels of ``ref_wcs``.

    The move is the sky offset between the reference grid's centre and that point
    plus (dx, dy), applied to ``CRVAL``: for shifts of a few arcsec the rotation this
    neglects is far below a pixel.
    """
    ny, nx = ref_wcs.pixel_shape[::-1] if ref_wcs.pixel_shape else (1, 1)
    cx, cy = (nx - 1) / 2, (ny - 1) / 2
    ra0, dec0 = ref_wcs.celestial.pixel_to_world_values(cx, cy)
    ra1, dec1 = ref_wcs.celestial.pixel_to_world_values(cx + dx, cy + dy)
    out = wcs.deepcopy()
    out.wcs.crval = [out.wcs.crval[0] + (ra1 - ra0), out.wcs.crval[1] + (dec1 - dec0)]
    out.wcs.set()
    return out


def fit_beam(image, reference, *, image_wcs, image_fwhm, reference_wcs, bad=None,
             fwhms=None):
    """The reference's resolution (FWHM, arcsec) that best matches the image, and the scan.

    For each trial FWHM the image is matched to it (`beam_match`) and the straight line
    reference = a + b × image is fitted by least squares over all common pixels; the
    trial with the smallest rms residual wins, refined between the trials by the vertex
    of a parabola through it and its two neighbours. Too small a FWHM leaves the image's
    peaks sharper than the reference's, too large makes them flatter; either way the
    residuals grow. Use it when the reference's header doesn't say its resolution, or a
    combined cube's seeing is not one number.

    Returns
    -------
    best : float
        The refined FWHM (arcsec); the best trial when it is at an end of the scan.
    scan : list of (fwhm, rms, slope)
    """
    if fwhms is None:
        fwhms = np.round(np.arange(max(image_fwhm, 0.4), 2.01, 0.1), 2)
    scan = []
    for f in fwhms:
        if f <= image_fwhm:
            continue
        bm = beam_match(image, reference, image_wcs=image_wcs, image_fwhm=image_fwhm,
                        reference_wcs=reference_wcs, reference_fwhm=float(f))
        x, y = bm.image, bm.reference
        ok = np.isfinite(x) & np.isfinite(y)
        if bad is not None:
            ok &= ~bad
        if ok.sum() < 10:
            continue
        sx, sy = np.std(x[ok]) or 1.0, np.std(y[ok]) or 1.0     # cgs values are ~1e-19
        a_mat = np.vstack([np.ones(ok.sum()), x[ok] / sx]).T
        coef, *_ = np.linalg.lstsq(a_mat, y[ok] / sy, rcond=None)
        rms = float(np.std(y[ok] / sy - a_mat @ coef) * sy)
        scan.append((float(f), rms, float(coef[1] * sy / sx)))
    if not scan:
        msg = "no trial resolution could be compared: do the image and the reference overlap?"
        raise ReduxError(msg)
    i = min(range(len(scan)), key=lambda k: scan[k][1])
    best = scan[i][0]
    if 0 < i < len(scan) - 1:
        # between the trials: the vertex of the parabola through the minimum and its two
        # neighbours (a 0.1" grid alone leaves up to 0.05" of error, which mismatches the
        # beams enough to move nebula sums by a few per cent)
        (f0, r0, _), (f1, r1, _), (f2, r2, _) = scan[i - 1], scan[i], scan[i + 1]
        den = (f0 - f1) * (f0 - f2) * (f1 - f2)
        a = (f2 * (r1 - r0) + f1 * (r0 - r2) + f0 * (r2 - r1)) / den
        b = (f2 ** 2 * (r0 - r1) + f1 ** 2 * (r2 - r0) + f0 ** 2 * (r1 - r2)) / den
        if a > 0:
            best = float(min(max(-b / (2 * a), f0), f2))
    return best, scan
