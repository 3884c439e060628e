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
    if redshift is None:
        found = fit_redshift(cube)
        redshift = found["z"]
        if np.isfinite(found["sigma_kms"]) and found["sigma_kms"] > window_kms / 2.5:
            log.warning("the lines are broad (σ = %.0f km/s): ±%.0f km/s windows miss %.1f %% "
                        "of each line; consider a larger window_kms", found["sigma_kms"],
                        window_kms,
                        100 * math.erfc(window_kms / found["sigma_kms"] / math.sqrt(2)))
    z = float(redshift)
    centre, windows = _windows(rest, z, window_kms, cont_kms)
    _check_range(cube, z, centre, windows, cont_kms)

    edges = cube.wave_edges
    lo = np.searchsorted(edges, windows["cont_blue"][0], side="right") - 1
    hi = np.searchsorted(edges, windows["cont_red"][1], side="left")
    lo, hi = max(lo, 0), min(hi, cube.wave.size)
    wave = cube.wave[lo:hi]
    x = wave - centre["halpha"]
    slab = cube.data[lo:hi].astype(np.float64)
    vslab = None if cube.var is None else cube.var[lo:hi]

    in_band = np.zeros(wave.size, bool)
    for key in ("cont_blue", "cont_red"):
        b = (wave >= windows[key][0]) & (wave <= windows[key][1])
        in_band |= b
    band = slab[in_band]
    m, s0, xbar, sxx, slope, icpt = _line_fit_terms(band, x[in_band])
    enough = np.ones(s0.shape, bool)
    for key in ("cont_blue", "cont_red"):
        b = (wave[in_band] >= windows[key][0]) & (wave[in_band] <= windows[key][1])
        enough &= m[b].sum(axis=0) >= MIN_BAND_PIXELS
    vband = None if vslab is None else np.where(m, vslab[in_band], 0.0)

    def cont_var(x0):
        """Variance of the fitted continuum at x0 (per spaxel)."""
        if vband is None:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            lj = m * (1.0 / s0 + (x0 - xbar) * (x[in_band][:, None, None] - xbar) / sxx)
        return (lj**2 * vband).sum(axis=0)

    header = _celestial_header(cube.wcs, str(FLUX_UNIT))
    header["REDSHIFT"] = (z, "redshift of the line windows")
    maps = {}
    for key in ("halpha", "nii_6583", "nii_6548"):
        ov = _overlap(edges[lo:hi + 1], *windows[key])
        use = ov > 0
        w = ov[use]
        total = w.sum()
        xw = float((w * x[use]).sum() / total)
        flux = np.tensordot(w, slab[use], axes=1) - total * (icpt + slope * xw)
        flux[~enough] = np.nan
        err = None
        if vslab is not None:
            var = np.tensordot(w**2, vslab[use], axes=1) + total**2 * cont_var(xw)
            err = np.sqrt(var)
            err[~np.isfinite(flux)] = np.nan
        h = header.copy()
        h["LINE"] = (key, "line of this map")
        h["LAMOBS"] = (centre[key], "[Angstrom] observed centre of the line")
        h["WINLO"], h["WINHI"] = windows[key]
        maps[key] = Image(data=flux, error=err, wcs=cube.wcs, unit=str(FLUX_UNIT),
                          path=cube.path, header=h)
    cont = np.where(enough, icpt, np.nan)
    cerr = None
    if vslab is not None:
        cerr = np.sqrt(cont_var(0.0))
        cerr[~enough] = np.nan
    h = _celestial_header(cube.wcs, str(FLAMBDA_UNIT))
    h["REDSHIFT"] = (z, "redshift of the line windows")
    h["LAMOBS"] = (centre["halpha"], "[Angstrom] continuum evaluated at Halpha")
    continuum = Image(data=cont, error=cerr, wcs=cube.wcs, unit=str(FLAMBDA_UNIT),
                      path=cube.path, header=h)
    log.info("line maps at z = %.5f: Hα window %.1f-%.1f Å, continuum bands %.0f-%.0f and "
             "%.0f-%.0f Å; %d of %d spaxels measured", z, *windows["halpha"],
             *windows["cont_blue"], *windows["cont_red"],
             int(np.isfinite(maps["halpha"].data).sum()), maps["halpha"].data.size)
    return LineMaps(halpha=maps["halpha"], nii_6583=maps["nii_6583"],
                    nii_6548=maps["nii_6548"], continuum=continuum, redshift=z,
                    windows=windows)


