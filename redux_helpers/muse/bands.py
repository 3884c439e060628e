"""Filters and synthetic bands: `read_filter_curve`, `pivot_wavelength`, `synthetic_band` (the image a filter would have seen of the cube)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits

from ..errors import ReduxError
from .images import FLAMBDA_UNIT, Image
from .reading import _celestial_header, _extname, _open, _parse_unit

log = logging.getLogger(__name__)

def read_filter_curve(path, name) -> tuple[np.ndarray, np.ndarray]:
    """A filter's throughput curve from a FITS file of one table per filter.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        FITS file with one binary table extension per filter (mpdaf's
        ``filter_list.fits``: ``WFPC2_F814W``, ``ACS_F814W``, ``WFC3_F656N``,
        ``Cousins_R``, ...), columns ``lambda`` (Å unless ``TUNIT`` says otherwise) and
        ``throughput``.
    name : str
        An extension name (case-insensitive), or its end after an underscore when that
        is unique (``'F656N'``; ``'F814W'`` is ambiguous there).

    Returns
    -------
    wave, throughput : `~numpy.ndarray`
        Wavelength (Å, increasing) and throughput, float64.
    """
    path = Path(path)
    what = f"filter curve {name!r}"
    with _open(path, what) as hdul:
        tables = {_extname(h): h for h in hdul if isinstance(h, fits.BinTableHDU)}
        key = str(name).strip().upper()
        if key in tables:
            hdu = tables[key]
        else:
            cands = [n for n in tables if n.endswith("_" + key)]
            if len(cands) != 1:
                names = [str(hdul[n].header.get("EXTNAME")) for n in (cands or tables)]
                msg = (f"{path}: filter {name!r} is "
                       + ("ambiguous: it could be " if cands else "not there: it has ")
                       + ", ".join(names) + "; give one of these names")
                raise ReduxError(msg)
            hdu = tables[cands[0]]
        cols = {c.name.lower(): c for c in hdu.columns}
        if "lambda" not in cols or "throughput" not in cols:
            msg = (f"{path}: filter table {hdu.name} has columns "
                   f"{[c.name for c in hdu.columns]}; expected 'lambda' and 'throughput'")
            raise ReduxError(msg)
        wave = np.asarray(hdu.data[cols["lambda"].name], dtype=np.float64)
        thr = np.asarray(hdu.data[cols["throughput"].name], dtype=np.float64)
        tunit = cols["lambda"].unit
    if tunit:
        unit = _parse_unit(tunit, path, what, key="TUNIT")
        if unit is None or not unit.is_equivalent(u.AA):
            msg = f"{path}: filter {name!r}: lambda unit {tunit!r} is not a wavelength"
            raise ReduxError(msg)
        wave = wave * unit.to(u.AA)
    ok = np.isfinite(wave) & np.isfinite(thr)
    order = np.argsort(wave[ok])
    wave, thr = wave[ok][order], np.clip(thr[ok][order], 0.0, None)
    if wave.size < 2 or not np.any(thr > 0):
        msg = f"{path}: filter {name!r} has no positive throughput; check the table"
        raise ReduxError(msg)
    return wave, thr


def pivot_wavelength(wave, throughput) -> float:
    """The pivot wavelength (Å), ``sqrt(∫ T λ dλ / ∫ T / λ dλ)``.

    Examples
    --------
    >>> round(pivot_wavelength([5000.0, 6000.0], [1.0, 1.0]), 1)
    5477.2
    """
    wave = np.asarray(wave, dtype=np.float64)
    thr = np.asarray(throughput, dtype=np.float64)
    return float(np.sqrt(np.trapezoid(thr * wave, wave) / np.trapezoid(thr / wave, wave)))


def _band_weights(edges, wave, thr):
    """∫ T λ dλ over each pixel (between ``edges``), T linear between its samples."""
    grid = np.union1d(wave, edges[(edges > wave[0]) & (edges < wave[-1])])
    f = np.interp(grid, wave, thr) * grid
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(grid))])
    at_edges = np.interp(edges, grid, cum)  # constant outside the curve
    return np.diff(at_edges), float(cum[-1])


def synthetic_band(cube, wave, throughput, *, min_coverage=0.8, chunk=256) -> tuple[Image, float]:
    """The image a filter would see: photon-weighted mean f_λ of every spaxel.

    ``<f_λ> = ∫ f_λ T λ dλ / ∫ T λ dλ`` over the wavelengths the cube covers (the mean
    an instrument counting photons measures, as HST's ``PHOTFLAM`` assumes). The
    throughput is taken linear between its samples and integrated exactly over each
    cube pixel. NaN pixels of a spaxel drop out of both integrals; a spaxel whose
    finite pixels hold less than ``min_coverage`` of ``∫ T λ dλ`` is NaN.

    Parameters
    ----------
    cube : `Cube`
    wave, throughput : array_like
        The filter curve (Å), e.g. from `read_filter_curve`.
    min_coverage : float
        The smallest fraction of ``∫ T λ dλ`` the cube must cover.
    chunk : int
        Wavelength planes handled at once (memory).

    Returns
    -------
    image : `Image`
        Mean f_λ per spaxel (erg s⁻¹ cm⁻² Å⁻¹) with its error.
    coverage : float
        The fraction of ``∫ T λ dλ`` inside the cube's wavelength range.
    """
    wave = np.asarray(wave, dtype=np.float64)
    thr = np.asarray(throughput, dtype=np.float64)
    weights, total = _band_weights(cube.wave_edges, wave, thr)
    coverage = float(weights.sum() / total) if total > 0 else 0.0
    if coverage < min_coverage:
        strong = wave[thr > 0.01 * thr.max()]
        msg = (f"{cube.path}: the filter ({strong[0]:.0f}–{strong[-1]:.0f} Å) lies only "
               f"{coverage:.0%} inside the cube's {cube.wave_edges[0]:.0f}–"
               f"{cube.wave_edges[-1]:.0f} Å (min_coverage = {min_coverage:g}); choose a "
               "filter the cube covers, or lower min_coverage")
        raise ReduxError(msg)
    idx = np.flatnonzero(weights > 0)
    num = np.zeros(cube.data.shape[1:])
    den = np.zeros(cube.data.shape[1:])
    var = None if cube.var is None else np.zeros(cube.data.shape[1:])
    for start in range(0, idx.size, chunk):
        sel = idx[start:start + chunk]
        d = cube.data[sel].astype(np.float64)
        ok = np.isfinite(d)
        w = weights[sel][:, None, None] * ok
        num += (w * np.where(ok, d, 0.0)).sum(axis=0)
        den += w.sum(axis=0)
        if var is not None:
            var += (w**2 * np.where(ok, np.nan_to_num(cube.var[sel], nan=0.0), 0.0)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        good = den >= min_coverage * total
        data = np.where(good, num / den, np.nan)
        error = None if var is None else np.where(good, np.sqrt(var) / den, np.nan)
    header = _celestial_header(cube.wcs, str(FLAMBDA_UNIT))
    header["PIVOTWL"] = (pivot_wavelength(wave, thr), "[Angstrom] pivot wavelength of the filter")
    header["COVERAGE"] = (coverage, "fraction of int T lambda dlambda inside the cube")
    log.info("%s: synthetic band, pivot %.0f Å, %.1f %% of the filter inside the cube; %d of "
             "%d spaxels", cube.path, header["PIVOTWL"], 100 * coverage, int(good.sum()),
             good.size)
    return Image(data=data, uncertainty=error, wcs=cube.wcs, unit=str(FLAMBDA_UNIT), path=cube.path,
                 header=header), coverage


