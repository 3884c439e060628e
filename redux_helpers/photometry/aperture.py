"""Aperture photometry: `local_background` (sigma-clipped annulus) and `measure` (flux, its error, the background, flagged pixels)."""

from __future__ import annotations

import warnings

import numpy as np
from astropy.table import Table

from ..errors import ReduxError
from .constants import MEASURE_COLUMNS, MEDIAN_EFFICIENCY
from .detect import _bad_pixels


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


