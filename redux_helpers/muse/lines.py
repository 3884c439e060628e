"""Hα and [NII] maps from a cube: `fit_redshift`/`estimate_redshift` and `line_maps` (a straight continuum either side, the line summed in a window)."""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
from scipy import ndimage, optimize, signal

from ..errors import ReduxError
from .images import (
    C_KMS,
    CONT_MEDIAN_AA,
    FLAMBDA_UNIT,
    FLUX_UNIT,
    MIN_BAND_PIXELS,
    REST_AIR,
    REST_VACUUM,
    Image,
    LineMaps,
)
from .reading import _celestial_header

log = logging.getLogger(__name__)

def _rest(cube) -> dict:
    return REST_VACUUM if cube.medium == "vacuum" else REST_AIR


def _summed_spectrum(cube):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        spec = np.nansum(cube.data, axis=(1, 2), dtype=np.float64)
        var = None if cube.var is None else np.nansum(cube.var, axis=(1, 2))
    return spec, var


def _complex_model(rest):
    keys = ("halpha", "nii_6583", "nii_6548")

    def model(lam, z, sig_kms, a_ha, a_n2, a_n1, c0, c1):
        out = c0 + c1 * (lam - rest["halpha"] * (1 + z))
        for key, amp in zip(keys, (a_ha, a_n2, a_n1), strict=True):
            centre = rest[key] * (1 + z)
            sig = centre * sig_kms / C_KMS
            out = out + amp * np.exp(-0.5 * ((lam - centre) / sig) ** 2)
        return out

    return model


def fit_redshift(cube, *, min_snr=5.0, max_candidates=10) -> dict:
    """The redshift of the Hα+[NII] complex in the cube's summed spectrum, with details.

    The method:

    1. the spectrum summed over all spaxels, less a running median over
       `CONT_MEDIAN_AA` (the continuum), leaves the emission lines;
    2. its peaks above ``min_snr`` times the noise (the larger of the robust scatter of
       that line spectrum and the square root of the summed variance) are the
       candidates, strongest first;
    3. each candidate is tried as Hα and as [NII]6583 (which is the stronger line in
       LINERs and cool-core galaxies); the identification stands when both Hα and
       [NII]6583 then lie above 3 sigma at their expected places (±1.5 pixels); among
       those that stand, the one whose three lines (Hα, [NII]6583, [NII]6548) add up
       to the most wins;
    4. three Gaussians of common redshift and velocity dispersion over a straight
       continuum are fitted to the summed spectrum around the complex, which refines
       the redshift to a small fraction of a pixel.

    Returns
    -------
    dict
        ``z``, ``sigma_kms`` (the lines' velocity dispersion, instrumental included),
        ``peak`` (Å) and ``peak_is`` (the strongest candidate's identification),
        ``nii_ha`` (the fitted amplitude ratio [NII]6583/Hα), ``fitted`` (False when the
        fit failed and the candidate's redshift is returned).

    Raises
    ------
    ReduxError
        No peak identified as Hα or [NII]6583 with its partner line.
    """
    rest = _rest(cube)
    wave = cube.wave
    spec, var = _summed_spectrum(cube)
    dl = float(np.median(np.diff(wave)))
    size = max(3, int(CONT_MEDIAN_AA / dl) | 1)
    line = spec - ndimage.median_filter(spec, size=size, mode="nearest")
    mad = 1.4826 * float(np.median(np.abs(line - np.median(line))))
    noise = max(mad, 0.0 if var is None else float(np.sqrt(np.median(var))),
                1e-9 * float(np.max(np.abs(line))) or 1e-300)
    peaks, props = signal.find_peaks(line, height=min_snr * noise)
    order = np.argsort(props["peak_heights"])[::-1][:max_candidates]
    wmin, wmax = wave[0], wave[-1]

    def level(lam):
        if not wmin <= lam <= wmax:
            return None
        near = np.abs(wave - lam) <= 1.5 * dl
        return float(np.max(line[near])) if near.any() else None

    best = None
    for i in order:
        lam_p = float(wave[peaks[i]])
        for as_line in ("halpha", "nii_6583"):
            z = lam_p / rest[as_line] - 1.0
            levels = {k: level(rest[k] * (1 + z)) for k in rest}
            if levels["halpha"] is None or levels["nii_6583"] is None:
                continue
            if levels["halpha"] <= 3 * noise or levels["nii_6583"] <= 3 * noise:
                continue
            score = sum(v for v in levels.values() if v is not None)
            if best is None or score > best[0]:
                best = (score, z, lam_p, as_line)
    if best is None:
        strongest = f"{wave[peaks[order[0]]]:.1f} Å" if len(order) else "none"
        msg = (f"{cube.path}: no Hα with [NII]6583 beside it found in the cube's summed "
               f"spectrum ({len(peaks)} peaks above {min_snr:g} sigma; strongest: {strongest}); "
               "give the redshift (galaxy: redshift in the manifest, or the notebook's "
               "muse_redshift)")
        raise ReduxError(msg)
    _, z0, lam_p, as_line = best
    out = {"z": z0, "sigma_kms": float("nan"), "peak": lam_p, "peak_is": as_line,
           "nii_ha": float("nan"), "fitted": False}
    lo = rest["nii_6548"] * (1 + z0) * (1 - 3000.0 / C_KMS)
    hi = rest["nii_6583"] * (1 + z0) * (1 + 3000.0 / C_KMS)
    sel = (wave >= lo) & (wave <= hi) & np.isfinite(spec)
    scale = float(np.max(np.abs(spec[sel]))) or 1.0  # fit numbers near 1: cgs ones near 1e-17
    lam, y = wave[sel], spec[sel] / scale
    c0 = float(np.median(y))
    amps = [max(level(rest[k] * (1 + z0)) or 0.0, 0.0) / scale
            for k in ("halpha", "nii_6583", "nii_6548")]
    dz = 500.0 / C_KMS
    p0 = [z0, 150.0, *amps, c0, 0.0]
    bounds = ([z0 - dz, 5.0, 0, 0, 0, -np.inf, -np.inf],
              [z0 + dz, 2000.0, np.inf, np.inf, np.inf, np.inf, np.inf])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            popt, _ = optimize.curve_fit(_complex_model(rest), lam, y, p0=p0, bounds=bounds,
                                         x_scale="jac", max_nfev=2000)
        out.update(z=float(popt[0]), sigma_kms=float(popt[1]), fitted=True,
                   nii_ha=float(popt[3] / popt[2]) if popt[2] > 0 else float("nan"))
    except (RuntimeError, ValueError) as exc:
        log.warning("%s: the Gaussian fit of the Hα+[NII] complex failed (%s); using "
                    "z = %.5f from the peak at %.1f Å", cube.path, exc, z0, lam_p)
    log.info("%s: redshift from the summed spectrum: z = %.5f (the peak at %.1f Å taken "
             "as %s; fitted σ = %.0f km/s, [NII]6583/Hα peak ratio %.2f)",
             cube.path, out["z"], lam_p, "Hα" if as_line == "halpha" else "[NII]6583",
             out["sigma_kms"], out["nii_ha"])
    return out


def estimate_redshift(cube, *, min_snr=5.0) -> float:
    """The redshift from the Hα+[NII] complex of the summed spectrum (see `fit_redshift`)."""
    return fit_redshift(cube, min_snr=min_snr)["z"]


def _overlap(edges, lo, hi) -> np.ndarray:
    """Length (Å) of each pixel inside [lo, hi]."""
    return np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, None)


def _windows(rest, z, window_kms, cont_kms):
    centre = {k: rest[k] * (1 + z) for k in ("nii_6548", "halpha", "nii_6583")}
    half = {k: c * window_kms / C_KMS for k, c in centre.items()}
    win = {k: [centre[k] - half[k], centre[k] + half[k]] for k in centre}
    for left, right in (("nii_6548", "halpha"), ("halpha", "nii_6583")):
        mid = 0.5 * (centre[left] + centre[right])
        if win[left][1] > mid or win[right][0] < mid:
            log.info("±%.0f km/s around %s and %s would overlap: the windows meet halfway, "
                     "at %.2f Å (%.0f km/s from each)", window_kms, left, right, mid,
                     C_KMS * (mid - centre[left]) / centre[left])
            win[left][1] = min(win[left][1], mid)
            win[right][0] = max(win[right][0], mid)
    blue = centre["nii_6548"]
    red = centre["nii_6583"]
    win["cont_blue"] = [blue * (1 - cont_kms[1] / C_KMS), blue * (1 - cont_kms[0] / C_KMS)]
    win["cont_red"] = [red * (1 + cont_kms[0] / C_KMS), red * (1 + cont_kms[1] / C_KMS)]
    return centre, {k: tuple(float(x) for x in v) for k, v in win.items()}


def _check_range(cube, z, centre, windows, cont_kms):
    wmin, wmax = float(cube.wave_edges[0]), float(cube.wave_edges[-1])
    where = "check the redshift (galaxy: redshift in the manifest, or the notebook's muse_redshift)"
    lam = centre["halpha"]
    if not wmin <= lam <= wmax:
        msg = (f"{cube.path}: the cube covers {wmin:.0f}–{wmax:.0f} Å, but Hα at z = {z:.4f} "
               f"falls at {lam:.0f} Å — outside it; {where}")
        raise ReduxError(msg)
    for key in ("cont_blue", "cont_red", "nii_6548", "nii_6583"):
        lo, hi = windows[key]
        if lo < wmin or hi > wmax:
            name = {"cont_blue": "its blue continuum band", "cont_red": "its red continuum band",
                    "nii_6548": "[NII]6548", "nii_6583": "[NII]6583"}[key]
            msg = (f"{cube.path}: the cube covers {wmin:.0f}–{wmax:.0f} Å, but for Hα at "
                   f"z = {z:.4f} ({lam:.0f} Å) {name} spans {lo:.0f}–{hi:.0f} Å — outside "
                   f"it; {where}, or bring cont_kms = {tuple(cont_kms)} closer")
            raise ReduxError(msg)


def _line_fit_terms(band, x):
    """Sums of the least-squares straight line through each spaxel's finite band pixels."""
    m = np.isfinite(band)
    y = np.where(m, band, 0.0)
    xs = x[:, None, None] * m
    s0 = m.sum(axis=0).astype(np.float64)
    s1 = xs.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        xbar = s1 / s0
        sxx = (xs * x[:, None, None]).sum(axis=0) - s1 * xbar
        slope = ((xs * y).sum(axis=0) - xbar * y.sum(axis=0)) / sxx
        icpt = y.sum(axis=0) / s0 - slope * xbar
    return m, s0, xbar, sxx, slope, icpt


def line_maps(cube, *, redshift=None, window_kms=300.0, cont_kms=(1500.0, 3000.0)) -> LineMaps:
    """Hα, [NII]6583 and [NII]6548 flux maps, and the continuum at Hα, from a cube.

    In every spaxel a straight line is fitted (least squares, equal weights) to the
    finite pixels of two continuum bands: from ``cont_kms[0]`` to ``cont_kms[1]`` km/s
    bluewards of [NII]6548 and redwards of [NII]6583, so free of all three lines. A
    line's flux is the sum over its window, ±``window_kms`` around its redshifted
    centre, of (data − continuum) × pixel width, pixels cut by a window's edge counting
    by the fraction inside it. Windows never overlap: where ±``window_kms`` would
    reach past halfway to the neighbouring line, both windows stop halfway (logged).
    A spaxel with a NaN inside a line window, or fewer than `MIN_BAND_PIXELS` finite
    pixels in a band, is NaN in that map.

    Errors come from the cube's variance: the window pixels' and the continuum's under
    the window, propagated exactly through the straight-line fit (the bands are apart
    from the windows, so the two add in quadrature). The variance of a MUSE cube
    ignores the covariance its resampling puts between neighbouring pixels, so these
    errors are lower limits (typically by a few tens of per cent).

    Parameters
    ----------
    cube : `Cube`
    redshift : float, optional
        The galaxy's redshift; None estimates it from the cube (`fit_redshift`) and logs
        what it found.
    window_kms : float
        Half-width of each line's window (km/s). ±300 km/s holds 99 % of a line of
        velocity dispersion (instrumental included) up to ~115 km/s.
    cont_kms : (float, float)
        Inner and outer edge (km/s from [NII]6548 and [NII]6583) of the continuum bands.

    Returns
    -------
    `LineMaps`
    """
    cont_kms = (float(cont_kms[0]), float(cont_kms[1]))
    if not 0 < window_kms <= cont_kms[0] < cont_kms[1]:
        msg = (f"line_maps: need 0 < window_kms <= cont_kms[0] < cont_kms[1], got "
               f"window_kms = {window_kms}, cont_kms = {cont_kms}: the continuum bands must "
               "lie outside the line windows")
        raise ReduxError(msg)
    rest = _rest(cube)
    z = _redshift_of(cube, redshift, window_kms)
    centre, windows = _windows(rest, z, window_kms, cont_kms)
    _check_range(cube, z, centre, windows, cont_kms)
    fit = _ContinuumFit(cube, windows, centre["halpha"])
    header = _celestial_header(cube.wcs, str(FLUX_UNIT))
    header["REDSHIFT"] = (z, "redshift of the line windows")
    maps = {}
    for key in ("halpha", "nii_6583", "nii_6548"):
        flux, err = fit.line_flux(*windows[key])
        h = header.copy()
        h["LINE"] = (key, "line of this map")
        h["LAMOBS"] = (centre[key], "[Angstrom] observed centre of the line")
        h["WINLO"], h["WINHI"] = windows[key]
        maps[key] = Image(data=flux, uncertainty=err, wcs=cube.wcs, unit=str(FLUX_UNIT),
                          path=cube.path, header=h)
    cont = np.where(fit.enough, fit.icpt, np.nan)
    cerr = None
    if fit.vslab is not None:
        cerr = np.sqrt(fit.cont_var(0.0))
        cerr[~fit.enough] = np.nan
    h = _celestial_header(cube.wcs, str(FLAMBDA_UNIT))
    h["REDSHIFT"] = (z, "redshift of the line windows")
    h["LAMOBS"] = (centre["halpha"], "[Angstrom] continuum evaluated at Halpha")
    continuum = Image(data=cont, uncertainty=cerr, wcs=cube.wcs, unit=str(FLAMBDA_UNIT),
                      path=cube.path, header=h)
    log.info("line maps at z = %.5f: Hα window %.1f-%.1f Å, continuum bands %.0f-%.0f and "
             "%.0f-%.0f Å; %d of %d spaxels measured", z, *windows["halpha"],
             *windows["cont_blue"], *windows["cont_red"],
             int(np.isfinite(maps["halpha"].data).sum()), maps["halpha"].data.size)
    return LineMaps(halpha=maps["halpha"], nii_6583=maps["nii_6583"],
                    nii_6548=maps["nii_6548"], continuum=continuum, redshift=z,
                    windows=windows)


def _redshift_of(cube, redshift, window_kms) -> float:
    """The redshift given, else the cube's own (`fit_redshift`), warning of broad lines."""
    if redshift is not None:
        return float(redshift)
    found = fit_redshift(cube)
    if np.isfinite(found["sigma_kms"]) and found["sigma_kms"] > window_kms / 2.5:
        log.warning("the lines are broad (σ = %.0f km/s): ±%.0f km/s windows miss %.1f %% "
                    "of each line; consider a larger window_kms", found["sigma_kms"],
                    window_kms, 100 * math.erfc(window_kms / found["sigma_kms"] / math.sqrt(2)))
    return float(found["z"])


class _ContinuumFit:
    """The straight-line continuum of every spaxel, fitted to the two continuum bands.

    ``x`` is the wavelength from ``x0`` (Hα's observed centre); ``icpt + slope x`` the
    continuum; ``enough`` where both bands have `MIN_BAND_PIXELS` finite pixels;
    `cont_var` the variance of the fitted continuum at ``x``, `line_flux` a window's
    line flux and its error.
    """

    def __init__(self, cube, windows, x0):
        self.edges = cube.wave_edges
        lo = np.searchsorted(self.edges, windows["cont_blue"][0], side="right") - 1
        hi = np.searchsorted(self.edges, windows["cont_red"][1], side="left")
        self.lo, self.hi = max(lo, 0), min(hi, cube.wave.size)
        wave = cube.wave[self.lo:self.hi]
        self.x = wave - x0
        self.slab = cube.data[self.lo:self.hi].astype(np.float64)
        self.vslab = None if cube.var is None else cube.var[self.lo:self.hi]
        bands = [(wave >= windows[k][0]) & (wave <= windows[k][1]) for k in ("cont_blue", "cont_red")]
        self.in_band = bands[0] | bands[1]
        self.m, self.s0, self.xbar, self.sxx, self.slope, self.icpt = _line_fit_terms(
            self.slab[self.in_band], self.x[self.in_band])
        self.enough = np.ones(self.s0.shape, bool)
        for b in bands:
            self.enough &= self.m[b[self.in_band]].sum(axis=0) >= MIN_BAND_PIXELS
        self.vband = None if self.vslab is None else np.where(self.m, self.vslab[self.in_band], 0.0)

    def cont_var(self, x0):
        """Variance of the fitted continuum at x0 (per spaxel)."""
        if self.vband is None:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            lj = self.m * (1.0 / self.s0 + (x0 - self.xbar)
                           * (self.x[self.in_band][:, None, None] - self.xbar) / self.sxx)
        return (lj**2 * self.vband).sum(axis=0)

    def line_flux(self, w_lo, w_hi):
        """(flux, error) of the line in the window (w_lo, w_hi) Å, continuum removed."""
        ov = _overlap(self.edges[self.lo:self.hi + 1], w_lo, w_hi)
        use = ov > 0
        w = ov[use]
        total = w.sum()
        xw = float((w * self.x[use]).sum() / total)
        flux = np.tensordot(w, self.slab[use], axes=1) - total * (self.icpt + self.slope * xw)
        flux[~self.enough] = np.nan
        err = None
        if self.vslab is not None:
            var = np.tensordot(w**2, self.vslab[use], axes=1) + total**2 * self.cont_var(xw)
            err = np.sqrt(var)
            err[~np.isfinite(flux)] = np.nan
        return flux, err


