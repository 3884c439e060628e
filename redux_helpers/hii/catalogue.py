"""The HII-region catalogue: positions, fluxes, luminosities, radii; the luminosity function's slope."""

from __future__ import annotations

import logging
import math

import numpy as np
from astropy import units as u
from astropy.table import Table

from ..errors import ReduxError
from ..skywcs import celestial_wcs, pixel_scale_arcsec, world_of
from .constants import _CM_PER_MPC, _RAD_PER_ARCSEC
from .geometry import check_galaxy, galaxy_frame

log = logging.getLogger(__name__)

def catalogue(regions, *, wcs=None, galaxy=None, pixel_scale_arcsec=None,
              flux_per_rate=None) -> Table:
    """The region table of `find_regions` with positions, radii and physical fluxes.

    Adds, where the inputs allow:

    * ``ra``, ``dec`` (deg) with a ``wcs``;
    * ``r_gal_px``: deprojected galactocentric radius (`galaxy_frame`), with a
      ``galaxy`` dict (see `check_galaxy`); ``r_gal_kpc`` also needs its
      ``distance_mpc`` and a pixel scale;
    * ``r_eq_pc`` and ``area_kpc2`` (the segment's size, not deprojected) with a
      distance and a pixel scale;
    * ``flux_cgs``, ``flux_cgs_err`` (erg s⁻¹ cm⁻², ``flux × flux_per_rate``) with
      ``flux_per_rate`` (erg s⁻¹ cm⁻² per e-/s of line in the Hα filter, from the
      flux calibration);
    * ``luminosity``, ``luminosity_err`` (erg/s, ``4π d² F``) and
      ``log_luminosity`` with a distance; no extinction correction (Galactic or
      internal) and no [NII] correction: a narrow Hα filter usually passes
      [NII] 6548, 6583 too;
    * ``surface_brightness`` (erg s⁻¹ cm⁻² arcsec⁻²): the isophotal flux over the
      segment's area, the mean surface brightness inside the isophote.

    ``pixel_scale_arcsec`` defaults to the WCS's. Every column has a unit and a
    description; ``meta['columns']`` repeats the descriptions.
    """
    t = Table(regions, copy=True)
    x, y = np.asarray(t["x"], float), np.asarray(t["y"], float)
    scale = _pixel_scale(wcs, pixel_scale_arcsec)
    add = _adder(t)
    if wcs is not None:
        ra, dec = world_of(celestial_wcs(wcs, required=True), x, y)
        add("ra", ra, u.deg, "right ascension of the centroid")
        add("dec", dec, u.deg, "declination of the centroid")
    dist = None
    if galaxy is not None:
        # a flux in erg/s/cm^2 needs no distance; luminosities come only with one
        x0, y0 = check_galaxy(galaxy, t.meta.get("image_shape"), wcs)
        _, _, r = galaxy_frame(x, y, x0=x0, y0=y0, pa_deg=galaxy["pa_deg"],
                               inc_deg=galaxy["inclination_deg"], wcs=wcs)
        add("r_gal_px", r, u.pix, "deprojected galactocentric radius")
        dist = galaxy.get("distance_mpc")
        t.meta["galaxy"] = {**dict(galaxy), "x0": x0, "y0": y0}
    if dist is not None and scale is not None:
        kpc_per_px = scale * _RAD_PER_ARCSEC * dist * 1e3
        add("r_gal_kpc", t["r_gal_px"].data * kpc_per_px, u.kpc,
            "deprojected galactocentric radius")
        add("r_eq_pc", np.asarray(t["r_eq_px"], float) * kpc_per_px * 1e3, u.pc,
            "equivalent radius of the segment, sqrt(area / pi)")
        add("area_kpc2", np.asarray(t["area_px"], float) * kpc_per_px ** 2, u.kpc ** 2,
            "area of the segment (on the sky, not deprojected)")
    if flux_per_rate is not None:
        _add_fluxes(t, add, float(flux_per_rate), dist, scale)
    t.meta["pixel_scale_arcsec"] = scale
    return t


def _adder(t):
    t.meta.setdefault("columns", {})

    def add(name, values, unit, description):
        t[name] = np.asarray(values, float)
        t[name].unit, t[name].description = unit, description
        t.meta["columns"][name] = description
    return add


def _add_fluxes(t, add, per_rate, dist, scale):
    flux = np.asarray(t["flux"], float) * per_rate
    flux_err = np.asarray(t["flux_err"], float) * per_rate
    cgs = u.erg / u.s / u.cm ** 2
    add("flux_cgs", flux, cgs, "Hα line flux (Kron aperture), flux x flux_per_rate")
    add("flux_cgs_err", flux_err, cgs, "1-sigma error of flux_cgs")
    if dist is not None:
        four_pi_d2 = 4.0 * math.pi * (dist * _CM_PER_MPC) ** 2
        lum = four_pi_d2 * flux
        add("luminosity", lum, u.erg / u.s, "Hα luminosity 4 pi d^2 F, no extinction "
            "or [NII] correction")
        add("luminosity_err", four_pi_d2 * flux_err, u.erg / u.s, "1-sigma error")
        with np.errstate(divide="ignore", invalid="ignore"):
            log_l = np.where(lum > 0, np.log10(lum), np.nan)
        add("log_luminosity", log_l, u.dex(u.erg / u.s), "log10 of luminosity / (erg/s); "
            "NaN where the flux is not positive")
    if scale is not None:
        sb = np.asarray(t["flux_iso"], float) * per_rate / (
            np.asarray(t["area_px"], float) * scale ** 2)
        add("surface_brightness", sb, cgs / u.arcsec ** 2,
            "mean Hα surface brightness inside the segment (flux_iso / area)")


def _pixel_scale(wcs, given):
    """Arcsec per pixel: ``given``, else the WCS's (geometric mean of its axes)."""
    from_wcs = pixel_scale_arcsec(wcs) if wcs is not None else None
    if given is None:
        return from_wcs
    given = float(given)
    if not (np.isfinite(given) and given > 0):
        msg = f"pixel_scale_arcsec must be positive; got {given!r}"
        raise ReduxError(msg)
    if from_wcs is not None and abs(given / from_wcs - 1) > 0.01:
        log.warning("pixel_scale_arcsec %.4f differs from the WCS's %.4f; using %.4f",
                    given, from_wcs, given)
    return given


def lf_slope(luminosity, *, lo, hi=None):
    """Maximum-likelihood slope ``b`` of a luminosity function ``dN/dlog10 L ~ L**b``.

    Fitted to the regions themselves, not to a histogram's bins (whose few counts
    each would make a line through them mean little): the log-luminosities ``x``
    between ``log10(lo)`` and ``log10(hi)`` (default: the brightest) are taken as
    drawn from a density ``~ 10**(b x)`` truncated to that range, and its likelihood
    is maximised over ``b`` on a fine grid. ``b = -1`` is ``dN/dL ~ L**-2``, what HII
    regions of real spiral galaxies follow; ``b = 0`` is a flat count per dex.

    Returns
    -------
    (b, b_err, n)
        The slope, its 1-sigma error (where the log-likelihood falls by 1/2 from its
        peak; the larger side) and the number of regions used.

    >>> import numpy as np
    >>> x = np.linspace(38.0, 40.0, 201)[:-1] + 0.005    # flat per dex
    >>> b, err, n = lf_slope(10 ** x, lo=1e38, hi=1e40)
    >>> round(b, 2), n
    (0.0, 200)
    """
    lum = np.asarray(luminosity, float)
    lum = lum[np.isfinite(lum) & (lum > 0)]
    a = math.log10(lo)
    c = math.log10(hi) if hi is not None else float(np.log10(lum.max()))
    x = np.log10(lum)
    x = x[(x >= a) & (x <= c)]
    n = x.size
    if n < 3 or c <= a:
        msg = f"lf_slope: {n} regions between {lo:.3g} and {10 ** c:.3g}; need at least 3"
        raise ReduxError(msg)
    grid = np.linspace(-4.0, 4.0, 8001)
    k = grid * math.log(10.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        # log of the normalisation of 10**(b x) over [a, c]; at b = 0 it is log(c - a)
        norm = np.where(np.abs(k) < 1e-9, math.log(c - a),
                        np.log(np.abs(np.expm1(k * (c - a))) / np.abs(k)) + k * a)
    loglike = k * x.sum() - n * norm
    best = int(np.argmax(loglike))
    inside = grid[loglike >= loglike[best] - 0.5]
    err = float(max(grid[best] - inside.min(), inside.max() - grid[best]))
    return float(grid[best]), err, int(n)


