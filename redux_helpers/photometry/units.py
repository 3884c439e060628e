"""Units: an image in e-/s (`rate_image`); physical units from a zero point (`photflam`,
`line_flux_per_rate`)."""

from __future__ import annotations

import numpy as np

from .constants import C_ANGSTROM
from .sky_noise import uncertainty_from_sky


def rate_image(product):
    """(data, uncertainty) per second of a product (`fitsio.read_product`).

    07's stacks are in e-/s already; a redux frame in electrons is divided by its
    ``EXPTIME``; an image made elsewhere (no ``REDXSTEP``: the manifest's ``stacks:``)
    is taken as it is, in its own units per second, with an uncertainty from its sky's
    scatter (`uncertainty_from_sky`, through its ``GAIN`` if the header has one) when
    it has none.
    """
    p = product
    if str(p.unit) in ("electron / s", "electron/s"):
        return p.data, p.uncertainty
    if "REDXSTEP" not in p.header:  # not made by redux
        if p.uncertainty is not None:
            return p.data, p.uncertainty
        unc, _, _ = uncertainty_from_sky(p.data, gain=p.header.get("GAIN"), mask=p.mask)
        return p.data, unc
    t = float(p.header["EXPTIME"])
    return p.data / t, None if p.uncertainty is None else p.uncertainty / t


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


