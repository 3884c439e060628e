"""From an aperture to the whole star: `point_like`, `source_kinds`, `filled_cores`, `curve_of_growth`, `aperture_correction`, `instrumental_mag`."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from astropy.stats import gaussian_fwhm_to_sigma

from ..errors import ReduxError
from ..stars import boxes_around
from .aperture import _check_radii, _positions, local_background, measure
from .constants import MAD_TO_SIGMA, MAG_PER_LN, MEDIAN_EFFICIENCY
from .detect import _bad_pixels

log = logging.getLogger(__name__)

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
    for i, box, d2 in boxes_around((ny, nx), x, y, r_out):
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




def apcorr_stars(table, shape, *, ring, meas=None, skip=None, n=40):
    """Indices of up to ``n`` stars fit to measure an aperture correction on.

    A star of ``table`` (`detect_stars`' columns) qualifies when it is unflagged and
    unsaturated, not in ``skip`` (True to leave out: not point-like, a core combined from
    fewer frames), has no neighbour within ``ring`` pixels (the background annulus's
    outer radius) and lies ``ring + 1`` pixels inside the image of ``shape``. With
    ``meas`` (`measure`'s table for the same stars) it must also be bright (S/N > 30: the
    curve of a faint star is noise) and, when 6 or more remain, on the flatter half of
    the sky (local background over its error): on a galaxy the ring's background is
    biased by the slope.
    """
    x, y = np.asarray(table["x"], float), np.asarray(table["y"], float)
    ok = ~np.asarray(table["flagged"], bool) & ~np.asarray(table["saturated"], bool)
    if skip is not None:
        ok &= ~np.asarray(skip, bool)
    if meas is not None:
        ok &= np.nan_to_num(np.asarray(meas["snr"], float)) > 30
        flat = np.abs(np.asarray(meas["bkg"], float)) / np.asarray(meas["bkg_err"], float)
        ok &= np.isfinite(flat)
        if ok.sum() >= 6:
            ok &= flat <= np.median(flat[ok])
    d = np.hypot(x[:, None] - x[None], y[:, None] - y[None])
    np.fill_diagonal(d, np.inf)
    ok &= d.min(axis=1, initial=np.inf) > ring
    ny, nx = shape
    edge = ring + 1
    ok &= (x > edge) & (x < nx - 1 - edge) & (y > edge) & (y < ny - 1 - edge)
    return np.flatnonzero(ok)[:n]


def gaussian_apcorr(fwhm, *, r_aperture, r_max) -> dict:
    """The aperture correction of a Gaussian star of ``fwhm`` (radii in pixels).

    ``(1 - exp(-r_max² / 2σ²)) / (1 - exp(-r_aperture² / 2σ²))``: for an image without
    three bright isolated stars to measure it on.

    >>> round(gaussian_apcorr(3.0, r_aperture=4.5, r_max=9.0)["apcorr"], 5)
    1.00196
    """
    var2 = 2 * (fwhm * gaussian_fwhm_to_sigma) ** 2
    apcorr = (1 - np.exp(-r_max ** 2 / var2)) / (1 - np.exp(-r_aperture ** 2 / var2))
    return {"apcorr": float(apcorr), "apcorr_err": 0.0, "mag": float(-2.5 * np.log10(apcorr)),
            "n_stars": 0, "gaussian": True}


def image_aperture_correction(data, uncertainty, mask, table, *, fwhm, aperture, r_max,
                              annulus, meas=None, skip=None, min_stars=3) -> dict:
    """An image's aperture correction from its stars, or a Gaussian star's when it can't.

    ``table`` is `detect_stars`' table, ``meas`` `measure`'s for it, ``skip`` stars to
    leave out (see `apcorr_stars`); ``aperture``, ``r_max`` and ``annulus`` (inner,
    outer) are radii in units of ``fwhm`` (pixels). Returns `aperture_correction`'s dict
    with ``gaussian`` False, or, with fewer than ``min_stars`` usable stars,
    `gaussian_apcorr`'s (``gaussian`` True): the caller says so.
    """
    r_in, r_out = annulus[0] * fwhm, annulus[1] * fwhm
    pick = apcorr_stars(table, np.shape(data), ring=r_out, meas=meas, skip=skip)
    try:
        ac = aperture_correction(data, uncertainty, mask, np.asarray(table["x"])[pick],
                                 np.asarray(table["y"])[pick], r_aperture=aperture * fwhm,
                                 r_max=r_max * fwhm, r_in=r_in, r_out=r_out)
    except ReduxError:
        ac = {"n_stars": 0}
    if ac["n_stars"] < min_stars:
        return gaussian_apcorr(fwhm, r_aperture=aperture * fwhm, r_max=r_max * fwhm)
    return {**ac, "gaussian": False}
