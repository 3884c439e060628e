"""Aperture photometry of stars and the standard-star calibration.

From a calibrated, background-subtracted frame in electrons per second to calibrated
magnitudes and fluxes:

1. stars are detected and centred (`detect_stars`), each flagged when a masked pixel
   or a saturated one lies within one FWHM of its centre;
2. their light is summed in a circle, less a local background measured in an annulus
   around each (`measure`); the frame's sky was removed already, but a star on a
   galaxy or in a wing of a bright neighbour sits on light that a global sky model
   does not hold;
3. a small aperture gives the best signal-to-noise for faint stars but misses the
   wings of the PSF; the fraction it misses is the same for every star of a frame and
   is measured on bright, isolated ones (`curve_of_growth`, `aperture_correction`);
4. instrumental magnitudes (`instrumental_mag`) of standard stars, paired with their
   catalogue (`match_catalog`), give the zero point and the extinction
   (`fit_zero_point`, ``m_cat - m_inst = ZP - k X (+ c colour)``);
5. a zero point on the AB system converts a count rate into a flux density
   (`photflam`) or, for an emission line inside a narrow-band filter, into a line
   flux (`line_flux_per_rate`).

Pixel positions are 0-based (numpy's and photutils' convention, not FITS').
Flagged pixels are never filled in silently: a star with a flagged pixel inside its
aperture gets a NaN flux and a count of those pixels, and the caller decides.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from astropy.stats import sigma_clipped_stats
from astropy.table import Table

from . import masks
from .errors import ReduxError
from .register import refine_centroids

log = logging.getLogger(__name__)

#: 2.5 / ln(10): a relative flux error of e is a magnitude error of 1.0857 e.
MAG_PER_LN = 2.5 / np.log(10.0)
#: sigma of a Gaussian = 1.4826 x its median absolute deviation.
MAD_TO_SIGMA = 1.4826
#: the median of n Gaussian values scatters sqrt(pi/2) times more than their mean.
MEDIAN_EFFICIENCY = np.sqrt(np.pi / 2.0)
#: speed of light in Angstrom per second.
C_ANGSTROM = 2.99792458e18
#: magnitude floor added in quadrature to every standard star's error.
ZP_ERR_FLOOR = 0.01
#: an airmass range below this can't constrain the extinction.
MIN_AIRMASS_RANGE = 0.05

DETECT_COLUMNS = ("id", "x", "y", "peak", "sharpness", "roundness1", "roundness2",
                  "flagged", "saturated")
MEASURE_COLUMNS = ("x", "y", "flux", "flux_err", "bkg", "bkg_err", "n_annulus",
                   "n_flagged", "snr")


# ---- detection -----------------------------------------------------------------------
def _bad_pixels(data, uncertainty=None, mask=None):
    """Pixels that can't be used: flagged in ``mask``, or not finite in data/uncertainty."""
    bad = ~np.isfinite(data)
    if uncertainty is not None:
        bad |= ~np.isfinite(np.asarray(uncertainty, float))
    if mask is not None:
        bad |= np.asarray(mask) > 0
    return bad


def _within(flags, x, y, radius):
    """Which positions (x, y) have a flagged pixel whose centre is within ``radius``."""
    ny, nx = flags.shape
    out = np.zeros(len(x), bool)
    if not flags.any():
        return out
    for i, box, d2 in _boxes_around((ny, nx), x, y, radius):
        out[i] = bool(flags[box][d2 <= radius * radius].any())
    return out


def _empty_detections() -> Table:
    dtypes = (int, float, float, float, float, float, float, bool, bool)
    return Table(names=DETECT_COLUMNS, dtype=dtypes)


def detect_stars(data, uncertainty, mask=None, *, fwhm=3.5, nsigma=5.0, saturate=None,
                 min_separation=None) -> Table:
    """Detect and centre the stars of a frame; every star found is kept, brightest first.

    Parameters
    ----------
    data : 2-D array
        A background-subtracted frame (e-/s).
    uncertainty : 2-D array
        Its 1-sigma uncertainty; the detection threshold is ``nsigma`` times the
        median uncertainty of the good pixels, i.e. the noise of the sky, which is
        what a faint star must stand above.
    mask : 2-D uint16 array, optional
        The bitmask (`redux_helpers.masks`); ``mask > 0`` pixels are flagged.
    fwhm : float
        Seeing in pixels (the DAOFIND kernel and the centroid window).
    nsigma : float
        Detection threshold in units of the sky noise (DAOFIND's, which scales it by
        its kernel as the original DAOFIND does).
    saturate : float, optional
        A star whose peak (in ``data``'s units) reaches this is marked ``saturated``.
        A star with a ``SATURATED`` pixel within one FWHM is marked so whatever the
        value: its core may have been replaced, or be already below the ceiling once
        the bias and the flat are removed.
    min_separation : float, optional
        Minimum distance between two detections, pixels; `None` keeps photutils'
        default (2.5 FWHM since photutils 3.0), 0 disables it.

    Returns
    -------
    astropy.table.Table
        ``id`` (1..n, brightest first), ``x``, ``y`` (0-based windowed centres),
        ``peak``, ``sharpness``, ``roundness1``, ``roundness2`` (DAOFIND's),
        ``flagged`` (a masked or non-finite pixel within 1 FWHM of the centre: its
        flux and centre may be biased) and ``saturated``. A frame without stars gives
        an empty table with these columns, not an error: the caller decides what
        that means.

    Notes
    -----
    Flagged pixels are set to zero before detection rather than masked: DAOFIND
    ignores masked pixels when it looks for peaks, so a star with a cosmic ray or a
    saturated core would vanish instead of being found and flagged.
    """
    from photutils.detection import DAOStarFinder

    data = np.asarray(data, float)
    unc = np.broadcast_to(np.asarray(uncertainty, float), data.shape)
    bad = _bad_pixels(data, unc, mask)
    if bad.all():
        log.warning("detect_stars: every pixel is flagged or not finite")
        return _empty_detections()
    noise = float(np.median(unc[~bad]))
    if not np.isfinite(noise) or noise <= 0:
        log.warning("detect_stars: the median uncertainty is %s; nothing detected", noise)
        return _empty_detections()
    clean = np.where(bad, 0.0, data)
    finder = DAOStarFinder(nsigma * noise, fwhm, exclude_border=True,
                           min_separation=min_separation)
    with warnings.catch_warnings():      # "no sources found" is an answer here
        warnings.simplefilter("ignore")
        found = finder(clean)
    if found is None or len(found) == 0:
        return _empty_detections()
    found.sort("flux", reverse=True)
    x, y = refine_centroids(clean, found["x_centroid"], found["y_centroid"], fwhm=fwhm)
    flagged = _within(bad, x, y, fwhm)
    peak = np.asarray(found["peak"], float)
    saturated = np.zeros(len(x), bool) if saturate is None else peak >= saturate
    if mask is not None:
        saturated |= _within(masks.has(mask, "SATURATED"), x, y, fwhm)
    out = Table()
    out["id"] = np.arange(1, len(x) + 1)
    out["x"], out["y"], out["peak"] = x, y, peak
    for name in ("sharpness", "roundness1", "roundness2"):
        out[name] = np.asarray(found[name], float)
    out["flagged"], out["saturated"] = flagged, saturated
    return out


# ---- aperture photometry -----------------------------------------------------------
def _check_radii(r_aperture, r_in, r_out):
    if not 0 < r_aperture <= r_in < r_out:
        msg = (f"aperture radii must satisfy 0 < r_aperture <= r_in < r_out (got "
               f"r_aperture={r_aperture}, r_in={r_in}, r_out={r_out})")
        raise ReduxError(msg)


def _positions(x, y):
    x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
    if x.shape != y.shape:
        msg = f"x and y have different lengths ({len(x)} and {len(y)})"
        raise ReduxError(msg)
    return x, y


def local_background(data, x, y, *, r_in, r_out, bad=None):
    """Per-pixel background in an annulus around each star: (bkg, bkg_err, sigma, n).

    The sigma-clipped (3 sigma) median of the unflagged annulus pixels: the median and
    the clipping keep neighbouring stars and cosmic rays in the annulus from raising
    it. ``bkg_err`` is the uncertainty of that median, ``sqrt(pi/2) sigma / sqrt(n)``
    (a median of Gaussian noise scatters sqrt(pi/2) = 1.25 times more than a mean; the
    tests check the factor against the scatter of many annuli). An annulus without
    usable pixels gives NaN.
    """
    from astropy.stats import SigmaClip
    from photutils.aperture import ApertureStats, CircularAnnulus

    x, y = _positions(x, y)
    annulus = CircularAnnulus(np.c_[x, y], r_in, r_out)
    with warnings.catch_warnings():       # all-masked annuli warn; they give NaN
        warnings.simplefilter("ignore")
        st = ApertureStats(data, annulus, mask=bad, sigma_clip=SigmaClip(sigma=3.0))
        bkg = np.atleast_1d(np.asarray(st.median, float))
        sigma = np.atleast_1d(np.asarray(st.std, float))
        n = np.atleast_1d(np.asarray(getattr(st.center_aper_area, "value",
                                             st.center_aper_area), float))
    n = np.nan_to_num(n).round().astype(int)
    with np.errstate(divide="ignore", invalid="ignore"):
        bkg_err = MEDIAN_EFFICIENCY * sigma / np.sqrt(n)
    empty = n < 1
    bkg[empty], sigma[empty], bkg_err[empty] = np.nan, np.nan, np.nan
    return bkg, bkg_err, sigma, n


def _count_flagged(bad, aperture):
    """Flagged pixels that overlap each aperture at all; pixels off the image count."""
    out = []
    flags = np.asarray(bad).astype(np.uint8)     # once, not once per star
    for m in aperture.to_mask(method="exact"):
        cut = m.cutout(flags, fill_value=1)
        out.append(0 if cut is None else int(((m.data > 0) & (cut > 0)).sum()))
    return np.array(out, int)


def measure(data, uncertainty, mask, x, y, *, r_aperture, r_in, r_out) -> Table:
    """Aperture photometry with a local annulus background, in the units of ``data``.

    Parameters
    ----------
    data, uncertainty : 2-D arrays
        Background-subtracted frame and its 1-sigma uncertainty (e-/s). The
        uncertainty should include the stars' own Poisson noise (as the reduction's
        uncertainty plane does): it is what the flux error is made of.
    mask : 2-D array or None
        Bitmask, ``mask > 0`` flagged. `None` uses every finite pixel, flagged or not
        (the caller's choice to trust, e.g., repaired pixels).
    x, y : arrays
        0-based centres.
    r_aperture, r_in, r_out : float
        Aperture radius and annulus radii, pixels.

    Returns
    -------
    astropy.table.Table
        ``x``, ``y``; ``flux`` = sum of ``data`` over the aperture (exact pixel
        overlap) less ``bkg`` x the aperture's area; ``flux_err``, whose square is
        the sum of ``uncertainty**2`` over the aperture plus ``area**2 bkg_err**2``
        (the error of the subtracted background, which is the same for every pixel
        of the aperture and so adds coherently); ``bkg`` and ``bkg_err`` per pixel
        (`local_background`); ``n_annulus`` (annulus pixels used); ``n_flagged``
        (flagged or non-finite pixels overlapping the aperture, or off the image);
        ``snr`` = flux / flux_err.

        A star with ``n_flagged > 0`` gets NaN ``flux``, ``flux_err`` and ``snr``:
        the flagged pixels are neither summed nor replaced by a guess, because a
        star missing part of its core (a saturated centre, a cosmic ray removed)
        would otherwise come out silently faint. A star at the image edge is NaN for
        the same reason.
    """
    from photutils.aperture import ApertureStats, CircularAperture

    _check_radii(r_aperture, r_in, r_out)
    x, y = _positions(x, y)
    data = np.asarray(data, float)
    unc = np.broadcast_to(np.asarray(uncertainty, float), data.shape)
    bad = _bad_pixels(data, unc, mask)
    out = Table()
    out["x"], out["y"] = x, y
    if not len(x):
        for name in MEASURE_COLUMNS[2:]:
            out[name] = np.zeros(0, int if name.startswith("n_") else float)
        return out
    aperture = CircularAperture(np.c_[x, y], r_aperture)
    bkg, bkg_err, _, n_ann = local_background(data, x, y, r_in=r_in, r_out=r_out, bad=bad)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st = ApertureStats(data, aperture, error=np.where(bad, 0.0, unc), mask=bad,
                           sum_method="exact")
        total = np.atleast_1d(np.asarray(st.sum, float))
        var = np.atleast_1d(np.asarray(st.sum_err, float)) ** 2   # sum of w * unc**2
    n_flagged = _count_flagged(bad, aperture)
    area = aperture.area
    flux = total - bkg * area
    flux_err = np.sqrt(var + (area * bkg_err) ** 2)
    lost = n_flagged > 0
    flux[lost], flux_err[lost] = np.nan, np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = flux / flux_err
    out["flux"], out["flux_err"] = flux, flux_err
    out["bkg"], out["bkg_err"] = bkg, bkg_err
    out["n_annulus"], out["n_flagged"], out["snr"] = n_ann, n_flagged, snr
    return out


# ---- aperture correction -----------------------------------------------------------
def point_like(data, uncertainty, mask, x, y, *, fwhm, r_in, r_out, tolerance=0.1,
               nsigma=4.0, min_snr=50.0):
    """Which detections are as concentrated as the stars: (bool array, concentration).

    The concentration is the background-subtracted flux within 0.75 FWHM over that
    within 2 FWHM (`measure`, local annulus ``r_in``-``r_out``): about 0.77 for a
    Gaussian star, much less for a knot of a spiral arm or a galaxy's nucleus, which a
    star finder also picks up on a galaxy's disc. The stars' value is the median of
    the detections with S/N above ``min_snr`` (or of all, if fewer than three reach it);
    a detection is point-like unless it falls below it by more than ``tolerance`` and
    ``nsigma`` errors (a sharper one, a cosmic ray or a hot pixel, is for other steps to
    catch). A detection that can't be measured (a flagged pixel in its circles) can't be
    judged and is kept: a saturated star is still a star, whose disc 09 must leave out.

    >>> import numpy as np
    >>> yy, xx = np.mgrid[:80, :80]
    >>> star = lambda x0, y0, s, f: f * np.exp(-((xx - x0)**2 + (yy - y0)**2) / (2 * s * s)) / (2 * np.pi * s * s)
    >>> img = star(20, 20, 1.3, 5e4) + star(60, 20, 1.3, 3e4) + star(20, 60, 1.3, 4e4) + star(60, 60, 4.0, 3e4)
    >>> ok, c = point_like(img, np.ones_like(img), None, [20, 60, 20, 60], [20, 20, 60, 60],
    ...                    fwhm=3.06, r_in=10, r_out=14)
    >>> ok.tolist(), [round(float(v), 2) for v in c]
    ([True, True, True, False], [0.77, 0.77, 0.77, 0.22])
    """
    core = measure(data, uncertainty, mask, x, y, r_aperture=0.75 * fwhm, r_in=r_in, r_out=r_out)
    whole = measure(data, uncertainty, mask, x, y, r_aperture=2.0 * fwhm, r_in=r_in, r_out=r_out)
    f1, f2 = np.asarray(core["flux"], float), np.asarray(whole["flux"], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        conc = f1 / f2
        err = np.abs(conc) * np.hypot(np.asarray(core["flux_err"]) / f1,
                                      np.asarray(whole["flux_err"]) / f2)
    good = np.isfinite(conc) & (f2 > 0)
    if not good.any():
        return np.ones(conc.size, bool), conc
    bright = good & (np.asarray(whole["snr"], float) > min_snr)
    ref = float(np.median(conc[bright if bright.sum() >= 3 else good]))
    with np.errstate(invalid="ignore"):
        ok = ~good | (conc >= ref - np.maximum(tolerance, nsigma * err))
    return ok, conc


def source_kinds(data, uncertainty, mask, x, y, *, fwhm, r_in, r_out, centre=None,
                 nucleus_radius=None):
    """What each detection is: ``'star'``, ``'extended'`` or ``'nucleus'``; and its concentration.

    A star finder on a galaxy also picks up its nucleus and the knots of its arms. A
    detection less concentrated than the stars (`point_like`: the share of its light
    within 0.75 FWHM of that within 2 FWHM) is ``'extended'``; the detection nearest
    ``centre`` (x0, y0, 0-based pixels; a galaxy's centre), when it lies within
    ``nucleus_radius`` pixels of it (default 3 FWHM), is the ``'nucleus'``, whatever its
    shape. Without a ``centre`` no detection is called a nucleus.

    Returns
    -------
    (ndarray of str, ndarray of float)
        The kind and the concentration of each detection (about 0.77 for a Gaussian
        star; NaN where it can't be measured, which is then called a star).

    >>> import numpy as np
    >>> yy, xx = np.mgrid[:80, :80]
    >>> blob = lambda x0, y0, s, f: f * np.exp(-((xx - x0)**2 + (yy - y0)**2) / (2 * s * s)) / (2 * np.pi * s * s)
    >>> img = blob(20, 20, 1.3, 5e4) + blob(60, 20, 1.3, 3e4) + blob(20, 60, 1.3, 4e4) + blob(60, 60, 4.0, 3e4)
    >>> kinds, c = source_kinds(img, np.ones_like(img), None, [20, 60, 20, 60], [20, 20, 60, 60],
    ...                         fwhm=3.06, r_in=10, r_out=14, centre=(61.0, 59.0))
    >>> kinds.tolist()
    ['star', 'star', 'star', 'nucleus']
    """
    x, y = _positions(x, y)
    ok, conc = point_like(data, uncertainty, mask, x, y, fwhm=fwhm, r_in=r_in, r_out=r_out)
    kinds = np.where(ok, "star", "extended").astype("<U8")
    if centre is not None and len(x):
        d = np.hypot(x - float(centre[0]), y - float(centre[1]))
        limit = 3.0 * fwhm if nucleus_radius is None else float(nucleus_radius)
        i = int(np.argmin(d))
        if d[i] <= limit:
            kinds[i] = "nucleus"
    return kinds, np.asarray(conc, float)


def _boxes_around(shape, x, y, radius):
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


def filled_cores(coverage, x, y, *, r_core, r_in, r_out):
    """Which stars' cores were combined from fewer frames than the sky around them.

    A star that saturated in some frames of a stack (the ones with the sharpest seeing)
    has its core taken from the other frames only, whose seeing was worse and whose
    peaks were lower: the stack's core is too faint, and so is the star, by a few
    hundredths of a magnitude, with no flagged pixel to say so. The stack's
    ``COVERAGE`` (frames per pixel) tells: fewer frames within ``r_core`` of the
    centre than the median of the ring ``r_in``-``r_out``. A star near a stack's edge,
    where the whole neighbourhood has fewer frames, is not flagged.

    >>> import numpy as np
    >>> cov = np.full((60, 60), 4)
    >>> cov[19:22, 19:22] = 3          # a core that saturated in one frame of four
    >>> cov[:, 50:] = 3                # the edge of the dithers: fewer frames everywhere
    >>> filled_cores(cov, [20, 40, 55], [20, 40, 30], r_core=3, r_in=6, r_out=9).tolist()
    [True, False, False]
    """
    x, y = _positions(x, y)
    cov = np.asarray(coverage, float)
    ny, nx = cov.shape
    out = np.zeros(len(x), bool)
    for i, box, d2 in _boxes_around((ny, nx), x, y, r_out):
        cut = cov[box]
        core, ring = cut[d2 <= r_core ** 2], cut[(d2 >= r_in ** 2) & (d2 <= r_out ** 2)]
        if core.size and ring.size:
            out[i] = bool(core.min() < np.median(ring))
    return out


def _median_err(values, axis=0):
    """Error of a median from the values' MAD: 1.4826 sqrt(pi/2) MAD / sqrt(n)."""
    values = np.asarray(values, float)
    n = np.sum(np.isfinite(values), axis=axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(values, axis=axis)
        mad = np.nanmedian(np.abs(values - np.expand_dims(med, axis)), axis=axis)
        err = MAD_TO_SIGMA * MEDIAN_EFFICIENCY * mad / np.sqrt(n)
    return np.where(n >= 2, err, np.nan)


def curve_of_growth(data, x, y, radii, *, r_in, r_out):
    """Median fraction of a star's light within each radius: (radii, growth, growth_err).

    Each star's background-subtracted flux in a circle of each radius (exact pixel
    overlap, annulus background as in `measure`) is divided by its flux in the
    largest radius, so that stars of any brightness can be combined; ``growth`` is
    the median over stars (robust to a neighbour or a cosmic ray in one of them) and
    ``growth_err`` its error from the stars' scatter (MAD), NaN with fewer than two
    stars. Non-finite pixels are left out of the sums, so give stars without them.
    """
    from photutils.aperture import ApertureStats, CircularAperture

    radii = np.sort(np.atleast_1d(np.asarray(radii, float)))
    _check_radii(radii[0], r_in, r_out)
    _check_radii(radii[-1], r_in, r_out)
    x, y = _positions(x, y)
    data = np.asarray(data, float)
    if not len(x):
        return radii, np.full(len(radii), np.nan), np.full(len(radii), np.nan)
    bkg = local_background(data, x, y, r_in=r_in, r_out=r_out, bad=~np.isfinite(data))[0]
    flux = np.empty((len(x), len(radii)))
    for j, r in enumerate(radii):
        aperture = CircularAperture(np.c_[x, y], r)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            total = np.atleast_1d(np.asarray(ApertureStats(data, aperture).sum, float))
        flux[:, j] = total - bkg * aperture.area
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = flux / flux[:, -1:]
    frac[~(flux[:, -1] > 0)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        growth = np.nanmedian(frac, axis=0)
    return radii, growth, _median_err(frac, axis=0)


def aperture_correction(data, uncertainty, mask, x, y, *, r_aperture, r_max, r_in, r_out,
                        radii=None) -> dict:
    """Factor from a small aperture's flux to the total flux, from bright isolated stars.

    The light a small aperture misses depends only on the PSF, the same for every star
    of the frame; it is measured as ``flux(r_max) / flux(r_aperture)`` for each of the
    given stars (pick bright, isolated, unflagged ones: the ratio of a faint star is
    noisy and a neighbour inside ``r_max`` biases it) and the median taken.

    Returns
    -------
    dict
        ``apcorr`` (multiply fluxes measured in ``r_aperture`` by it), ``apcorr_err``
        (from the stars' scatter; NaN with one star), ``mag`` = -2.5 log10(apcorr),
        the correction to *add* to instrumental magnitudes measured in
        ``r_aperture``, ``n_stars`` (stars whose both fluxes were measured),
        ``ratio`` (per given star, NaN where unusable) and the curve of growth
        ``radii``, ``growth``, ``growth_err`` (normalised at ``r_max``) for a plot.

    Raises
    ------
    ReduxError
        When no star has a usable flux in both apertures.
    """
    if not r_aperture < r_max:
        msg = f"r_max ({r_max}) must be larger than r_aperture ({r_aperture})"
        raise ReduxError(msg)
    _check_radii(r_max, r_in, r_out)
    x, y = _positions(x, y)
    small = measure(data, uncertainty, mask, x, y, r_aperture=r_aperture, r_in=r_in,
                    r_out=r_out)
    big = measure(data, uncertainty, mask, x, y, r_aperture=r_max, r_in=r_in, r_out=r_out)
    f_small, f_big = np.asarray(small["flux"]), np.asarray(big["flux"])
    good = (f_small > 0) & (f_big > 0)
    if not good.any():
        msg = (f"aperture correction: none of the {len(x)} stars given has a usable flux "
               f"within both r_aperture={r_aperture} and r_max={r_max} px (flagged pixels, "
               "image edge or no light); give bright, isolated, unflagged stars")
        raise ReduxError(msg)
    ratio = np.full(len(x), np.nan)
    ratio[good] = f_big[good] / f_small[good]
    apcorr = float(np.median(ratio[good]))
    apcorr_err = float(_median_err(ratio[good]))
    if radii is None:
        radii = np.linspace(min(1.0, r_aperture), r_max, 20)
    radii = np.union1d(np.asarray(radii, float), [r_aperture, r_max])
    radii = radii[radii <= r_max]
    cleaned = np.where(_bad_pixels(np.asarray(data, float), uncertainty, mask), np.nan, data)
    radii, growth, growth_err = curve_of_growth(cleaned, x[good], y[good], radii,
                                                r_in=r_in, r_out=r_out)
    log.info("aperture correction %.4f +- %.4f from %d stars (r %.1f -> %.1f px)",
             apcorr, apcorr_err, good.sum(), r_aperture, r_max)
    return {"apcorr": apcorr, "apcorr_err": apcorr_err, "mag": float(-2.5 * np.log10(apcorr)),
            "n_stars": int(good.sum()), "ratio": ratio, "radii": radii, "growth": growth,
            "growth_err": growth_err}


def instrumental_mag(flux, flux_err):
    """``(-2.5 log10(flux), 1.0857 flux_err / flux)``; NaN where flux <= 0 or not finite.

    ``flux`` in e-/s, so that the magnitude does not depend on the exposure time.
    """
    flux = np.asarray(flux, float)
    flux_err = np.asarray(flux_err, float)
    ok = np.isfinite(flux) & (flux > 0)
    safe = np.where(ok, flux, 1.0)
    mag = np.where(ok, -2.5 * np.log10(safe), np.nan)
    err = np.where(ok, MAG_PER_LN * flux_err / safe, np.nan)
    return mag, err


# ---- standards ---------------------------------------------------------------------
def match_catalog(x, y, wcs, cat_ra, cat_dec, *, max_sep_arcsec=2.0):
    """Pair detected stars with catalogue stars on the sky: (idx_star, idx_cat, sep_arcsec).

    Each detection is paired with its nearest catalogue star when closer than
    ``max_sep_arcsec``; a catalogue star claimed by two detections keeps the closer
    one, so the pairs are one-to-one (a blend or a spurious detection beside a
    standard must not count it twice). Pairs are returned in the order of the
    detections. ``cat_ra`` and ``cat_dec`` are in degrees (ICRS).

    Raises
    ------
    ReduxError
        When ``wcs`` is None or has no celestial axes.
    """
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    if wcs is None or not getattr(wcs, "has_celestial", False):
        msg = ("matching standards needs a celestial WCS in the frame header (CTYPE, CRVAL, "
               "CRPIX, CD), or x/y pixel columns in the standards catalogue")
        raise ReduxError(msg)
    x, y = _positions(x, y)
    cat_ra = np.atleast_1d(np.asarray(cat_ra, float))
    cat_dec = np.atleast_1d(np.asarray(cat_dec, float))
    empty = np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    if not len(x) or not len(cat_ra):
        return empty
    stars = wcs.celestial.pixel_to_world(x, y)
    catalog = SkyCoord(cat_ra * u.deg, cat_dec * u.deg, frame="icrs")
    idx, sep, _ = stars.match_to_catalog_sky(catalog)
    sep = np.atleast_1d(sep.to_value(u.arcsec))
    idx = np.atleast_1d(idx)
    close = np.flatnonzero(sep <= max_sep_arcsec)
    # closest pairs first; a catalogue star already taken is not given again
    order = close[np.argsort(sep[close], kind="stable")]
    _, first = np.unique(idx[order], return_index=True)
    keep = np.sort(order[first])
    return keep, idx[keep].astype(int), sep[keep]


@dataclass
class ZeroPointFit:
    """``m = m_inst + zp - k X (+ colour_term colour)``: one filter's photometric solution.

    ``cov`` is the covariance of (zp, k[, colour_term]); the rows of a parameter that
    was not fitted (k given from the manifest) are zero.
    """

    filter: str
    zp: float
    zp_err: float
    k: float
    k_err: float
    k_fitted: bool
    colour_term: float | None
    colour_term_err: float | None
    n_used: int
    n_total: int
    rms: float
    chi2_red: float
    used: np.ndarray
    note: str = ""
    cov: np.ndarray = field(default_factory=lambda: np.zeros((2, 2)))

    def calibrate(self, m_inst, airmass, colour=None):
        """Calibrated magnitudes of instrumental magnitudes ``m_inst`` at ``airmass``."""
        m = np.asarray(m_inst, float) + self.zp - self.k * np.asarray(airmass, float)
        if self.colour_term is not None:
            if colour is None:
                msg = (f"the zero point of filter {self.filter} has a colour term: give the "
                       "stars' colours to calibrate them")
                raise ReduxError(msg)
            m = m + self.colour_term * np.asarray(colour, float)
        return m

    def mag_err(self, m_inst_err, airmass, colour=None):
        """Error of `calibrate`'s magnitudes: the star's own error and the solution's.

        The solution's part is ``var(zp - k X (+ c colour))`` from ``cov``, covariances
        included: zp and k are strongly anti-correlated when fitted together, and
        adding their errors as if independent would overstate it near the mean
        airmass of the standards. Without ``colour`` the colour term's error is left
        out.
        """
        airmass = np.asarray(airmass, float)
        d = [np.ones_like(airmass), -airmass]
        if self.cov.shape[0] == 3:
            d.append(np.zeros_like(airmass) if colour is None
                     else np.asarray(colour, float) * np.ones_like(airmass))
        d = np.array(d)
        var_sol = np.einsum("i...,ij,j...->...", d, self.cov, d)
        return np.sqrt(np.asarray(m_inst_err, float) ** 2 + var_sol)


def _wls(a, b, w):
    """Weighted least squares: parameters and their (unscaled) covariance."""
    aw = a * w[:, None]
    cov = np.linalg.inv(a.T @ aw)
    return cov @ (aw.T @ b), cov


def fit_zero_point(m_cat, m_inst, airmass, m_err, *, filter="", colour=None, k_default=None,
                   clip=3.0, max_iter=5) -> ZeroPointFit:
    """Fit ``m_cat - m_inst = ZP - k X (+ c colour)`` to standard stars.

    Parameters
    ----------
    m_cat : array
        Catalogue magnitudes (AB if the fluxes of `photflam` are wanted).
    m_inst : array
        Instrumental magnitudes, ``-2.5 log10(e-/s)``, aperture-corrected.
    airmass : array
        Airmass of each measurement.
    m_err : array
        Error of each ``m_cat - m_inst``; 0.01 mag is added in quadrature, so that a
        few very bright stars with tiny photon errors do not decide the fit alone
        (flat-field and catalogue errors are rarely below 1 %).
    filter : str
        Name used in messages.
    colour : array, optional
        A catalogue colour (e.g. B-V); fits a colour term when given.
    k_default : float, optional
        Extinction (mag/airmass) used when the standards span less than 0.05 in
        airmass: with one airmass, zero point and extinction are degenerate.
    clip : float
        Points whose normalised residual exceeds ``clip`` times the rms of the
        normalised residuals of the used points are rejected; the fit is repeated
        from all points, up to ``max_iter`` times, until the set no longer changes.

    Returns
    -------
    ZeroPointFit
        Errors are scaled by sqrt(chi2_red) when chi2_red > 1 (the scatter is larger
        than ``m_err`` says: trust the scatter); they are not scaled down when it is
        below 1.

    Raises
    ------
    ReduxError
        Fewer than two usable stars, or too few to fit the terms asked for, or a
        single airmass without ``k_default``.
    """
    y_all = np.asarray(m_cat, float) - np.asarray(m_inst, float)
    x_all = np.broadcast_to(np.asarray(airmass, float), y_all.shape)
    e_all = np.broadcast_to(np.asarray(m_err, float), y_all.shape)
    c_all = None if colour is None else np.broadcast_to(np.asarray(colour, float), y_all.shape)
    n_total = len(y_all)
    usable = np.isfinite(y_all) & np.isfinite(x_all) & np.isfinite(e_all) & (e_all >= 0)
    if c_all is not None:
        usable &= np.isfinite(c_all)
    name = filter or "(unnamed)"
    if usable.sum() < 2:
        msg = (f"filter {name}: only {int(usable.sum())} of {n_total} standard-star "
               "measurements are usable (finite magnitudes, airmass and errors); need at "
               "least 2 to fit a zero point")
        raise ReduxError(msg)
    sig = np.sqrt(e_all ** 2 + ZP_ERR_FLOOR ** 2)
    fit_k = bool(np.ptp(x_all[usable]) >= MIN_AIRMASS_RANGE)
    k_fixed = None if fit_k else _k_default(k_default, name, x_all[usable])
    n_par = 1 + int(fit_k) + int(c_all is not None)
    if usable.sum() < n_par:
        msg = (f"filter {name}: {int(usable.sum())} usable standard-star measurements can't "
               f"fit {n_par} terms (zero point, extinction, colour term)")
        raise ReduxError(msg)

    def solve(used, k_free, k_fixed):
        cols = [np.ones_like(y_all)] + ([-x_all] if k_free else [])
        cols += [] if c_all is None else [c_all]
        a = np.column_stack(cols)
        b = y_all if k_free else y_all + k_fixed * x_all
        p, cov = _wls(a[used], b[used], 1.0 / sig[used] ** 2)
        norm = np.full(n_total, np.inf)
        norm[usable] = (b[usable] - a[usable] @ p) / sig[usable]
        return p, cov, norm, (b - a @ p)

    used = usable.copy()
    for _ in range(max_iter):
        p, cov, norm, _ = solve(used, fit_k, k_fixed)
        scale = max(float(np.sqrt(np.mean(norm[used] ** 2))), 1e-12)
        new = usable & (np.abs(norm) <= clip * scale)
        if new.sum() < n_par + 1 or np.array_equal(new, used):
            break
        used = new
        if fit_k and np.ptp(x_all[used]) < MIN_AIRMASS_RANGE:
            fit_k, n_par = False, n_par - 1
            k_fixed = _k_default(k_default, name, x_all[used])
    p, cov, norm, resid = solve(used, fit_k, k_fixed)
    n_used = int(used.sum())
    dof = n_used - n_par
    chi2_red = float(np.sum(norm[used] ** 2) / dof) if dof > 0 else np.nan
    if np.isfinite(chi2_red) and chi2_red > 1:
        cov = cov * chi2_red
    rms = float(np.sqrt(np.mean(resid[used] ** 2)))
    # the covariance in the full (zp, k[, c]) space, k's row zero when it was given
    full = np.zeros((2 + int(c_all is not None),) * 2)
    slots = [0] + ([1] if fit_k else []) + ([2] if c_all is not None else [])
    full[np.ix_(slots, slots)] = cov
    k = float(p[1]) if fit_k else float(k_fixed)
    note = "" if fit_k else (
        f"all standards of filter {name} at airmass ~{np.median(x_all[used]):.2f}: extinction "
        f"not fitted, k = {k:g} mag/airmass given")
    if n_used < usable.sum():
        note = "; ".join(s for s in (note, f"{int(usable.sum()) - n_used} outliers rejected")
                         if s)
    c_term = float(p[-1]) if c_all is not None else None
    c_err = float(np.sqrt(full[2, 2])) if c_all is not None else None
    log.info("zero point %s: ZP %.3f +- %.3f, k %.3f +- %.3f (%s), %d/%d stars, rms %.3f",
             name, p[0], np.sqrt(full[0, 0]), k, np.sqrt(full[1, 1]),
             "fitted" if fit_k else "given", n_used, n_total, rms)
    return ZeroPointFit(filter=filter, zp=float(p[0]), zp_err=float(np.sqrt(full[0, 0])),
                        k=k, k_err=float(np.sqrt(full[1, 1])), k_fitted=bool(fit_k),
                        colour_term=c_term, colour_term_err=c_err, n_used=n_used,
                        n_total=n_total, rms=rms, chi2_red=chi2_red, used=used, note=note,
                        cov=full)


def _k_default(k_default, name, airmass):
    """The extinction to use when the standards' airmasses can't constrain it."""
    if k_default is None:
        msg = (f"all standard frames of filter {name} were taken at airmass "
               f"~{np.median(airmass):.2f}: the extinction can't be fitted; give it in the "
               f"manifest under extinction: {{{name}: ...}}")
        raise ReduxError(msg)
    return float(k_default)


# ---- physical units ----------------------------------------------------------------
def photflam(zp_ab, pivot_A):
    """Flux density f_lambda (erg s^-1 cm^-2 A^-1) of a source giving 1 e-/s.

    ``zp_ab`` is an AB zero point (the AB magnitude giving 1 e-/s above the
    atmosphere): AB magnitudes are assumed, ``f_nu = 10**(-0.4 (zp + 48.6))`` erg
    s^-1 cm^-2 Hz^-1, converted at the filter's pivot wavelength ``pivot_A``
    (Angstrom) by ``f_lambda = f_nu c / lambda**2``. Multiply a rate in e-/s by it.
    """
    f_nu = 10.0 ** (-0.4 * (np.asarray(zp_ab, float) + 48.6))
    return f_nu * C_ANGSTROM / np.asarray(pivot_A, float) ** 2


def line_flux_per_rate(zp_ab, pivot_A, width_A):
    """Line flux (erg s^-1 cm^-2) of an emission line giving 1 e-/s in a narrow-band filter.

    AB zero point, as for `photflam`; the filter is taken as rectangular with
    effective width ``width_A`` (Angstrom; the integral of its normalised
    transmission), and the line is assumed to lie within it at the pivot's
    transmission. Multiply a continuum-subtracted rate in e-/s by it.
    """
    return photflam(zp_ab, pivot_A) * np.asarray(width_A, float)


def uncertainty_from_sky(data, *, gain=None, mask=None, light=None, boxes=4):
    """Sky level, its noise and a 1-sigma uncertainty image, for an image that has none.

    The image is cut into ``boxes`` x ``boxes`` boxes; in each, the sigma-clipped
    (3 sigma) median and standard deviation of the unflagged pixels are measured, and
    the box with the faintest median gives the sky and its noise: in an image that a
    galaxy fills, the whole image's median is galaxy light, and its faintest part is
    the best guess of empty sky. A source adds its Poisson noise, ``light / gain``
    (``light`` defaults to ``data - sky``, negative values counting as zero), when
    ``gain`` is known: the number of electrons per unit of the image (e-/ADU, or e-/ADU
    x seconds for a count-rate image, SWarp's effective ``GAIN``). Without a gain the
    uncertainty is the sky's everywhere, and bright sources' errors come out too small.

    Returns
    -------
    uncertainty : ndarray
        Same shape as ``data``; NaN where ``data`` is.
    sky, sky_rms : float
        The sky level (not subtracted here) and its per-pixel noise.
    """
    data = np.asarray(data, dtype=np.float64)
    good = np.isfinite(data)
    if mask is not None:
        good &= np.asarray(mask) == 0
    if good.sum() < 100:
        msg = f"only {int(good.sum())} usable pixels: too few to measure the sky's noise"
        raise ReduxError(msg)
    ny, nx = data.shape
    best = None
    for ys in np.array_split(np.arange(ny), boxes):
        for xs in np.array_split(np.arange(nx), boxes):
            cut = data[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1][good[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]]
            if cut.size < 50:
                continue
            _, med, std = sigma_clipped_stats(cut, sigma=3.0, maxiters=10)
            if best is None or med < best[0]:
                best = (float(med), float(std))
    if best is None:
        _, med, std = sigma_clipped_stats(data[good], sigma=3.0, maxiters=10)
        best = (float(med), float(std))
    sky, rms = best
    var = np.full(data.shape, rms ** 2)
    if gain is not None:
        gain = float(gain)
        if not (np.isfinite(gain) and gain > 0):
            msg = f"gain must be positive; got {gain!r}"
            raise ReduxError(msg)
        src = data - sky if light is None else np.asarray(light, dtype=np.float64)
        var = var + np.clip(np.nan_to_num(src), 0.0, None) / gain
    unc = np.sqrt(var)
    unc[~np.isfinite(data)] = np.nan
    return unc, sky, rms


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
    pixels) on its cut-out less the median of a ring 3-4 ``fwhm`` around it, so that a
    star on a galaxy's light is not made wider by it. A star is as wide as the seeing;
    an HII region, a knot or a bump of a spiral arm is wider. NaN where the fit fails
    or the ring has fewer than 8 usable pixels.
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
        cut = clean[y0:y1, x0:x1] - np.median(clean[y0:y1, x0:x1][ring])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                v = fit_fwhm(cut, mask=bad[y0:y1, x0:x1], xypos=[(cx - x0, cy - y0)],
                             fit_shape=2 * half + 1)
            except (ValueError, RuntimeError):
                continue
        out[k] = float(np.atleast_1d(v)[0])
    return out
