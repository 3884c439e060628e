"""The pure line image of a ground night, (Halpha - s R) / (1 - s q), with its uncertainty
(the subtraction itself is `contsub.line_minus_continuum`, HST's too)."""

from __future__ import annotations

import numpy as np

from ..contsub import line_minus_continuum
from ..errors import ReduxError


def subtract_continuum(ha, ha_unc, r, r_unc, scale, *, scale_err=0.0, line_in_continuum=0.0):
    """The pure Hα line image, in the Hα filter's e-/s, and its uncertainty.

    ``Hα - s R`` removes the continuum, but the broad band R also receives the line
    (its rate there is ``q`` times its rate in the Hα filter), so ``s R`` also
    removes a fraction ``s q`` of the line; dividing by ``1 - s q`` puts it back.

    Parameters
    ----------
    ha, ha_unc, r, r_unc : array_like
        The aligned Hα and R stacks (e-/s, background subtracted) and their 1-sigma
        uncertainties.
    scale : float
        ``s`` from `redux_helpers.continuum_scale`.
    scale_err : float
        Its 1-sigma error. It is added per pixel as ``|∂line/∂s| σ_s`` with
        ``∂line/∂s = (q Hα - R) / (1 - s q)²``. This error is the *same* draw in every
        pixel: summing ``line_unc²`` over a region treats it as independent and so
        underestimates it. For region fluxes use ``scale_err=0`` here and add
        ``σ_s (F_R - q F_Hα) / (1 - s q)²`` (the region's fluxes in the two stacks)
        to each flux error separately.
    line_in_continuum : float
        ``q`` = (rate of the line in the R filter) / (its rate in the Hα filter),
        from the two filters' transmission at the galaxy's redshifted Hα and their
        zero points; 0 ignores the line in R.

    Returns
    -------
    line, line_unc : ndarray (float64)
        NaN where any input is NaN.
    """
    s, q, ds = float(scale), float(line_in_continuum), float(scale_err)
    if not (np.isfinite(s) and s > 0):
        msg = f"the continuum scale must be a positive number; got {scale!r}"
        raise ReduxError(msg)
    if not (np.isfinite(ds) and ds >= 0):
        msg = f"scale_err must be zero or positive; got {scale_err!r}"
        raise ReduxError(msg)
    denom = 1.0 - s * q
    if not (np.isfinite(q) and q >= 0 and denom > 0):
        msg = (f"line_in_continuum = {line_in_continuum!r} with scale {s:g} gives "
               f"1 - s q = {denom:g}; q must be >= 0 and s q < 1 (q is the line's rate in "
               "the broad band over its rate in the Hα filter, typically 0.5-1.5)")
        raise ReduxError(msg)
    ha, ha_unc, r, r_unc = (np.asarray(a, dtype=np.float64) for a in (ha, ha_unc, r, r_unc))
    _same_shape(ha=ha, ha_unc=ha_unc, r=r, r_unc=r_unc)
    # the continuum s R, its error with the scale's: sigma_s |dline/ds| (1 - s q), see above
    cont_err = np.hypot(s * r_unc, ds * (r - q * ha) / denom)
    line, line_unc = line_minus_continuum(ha, ha_unc, s * r, cont_err, factor=1.0 / denom)
    bad = ~(np.isfinite(line) & np.isfinite(line_unc))
    line[bad] = np.nan
    line_unc[bad] = np.nan
    return line, line_unc


def _same_shape(**arrays):
    shapes = {k: np.shape(v) for k, v in arrays.items() if v is not None}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{k} {s}" for k, s in shapes.items())
        msg = f"images must share one pixel grid (align the stacks first); got {listed}"
        raise ReduxError(msg)


