"""Standards: `match_catalog` (stars to a catalogue on the sky) and `fit_zero_point` (ZP, extinction, colour term by weighted least squares)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..errors import ReduxError
from .aperture import _positions
from .constants import MIN_AIRMASS_RANGE, ZP_ERR_FLOOR

log = logging.getLogger(__name__)


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


