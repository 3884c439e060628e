"""Continuum subtraction of a narrow-band Hα image calibrated with HST's flux keywords.

A narrow-band Hα image holds the line *and* the stars' continuum under it. With the flux
calibration every HST image carries in its header,

* ``PHOTFLAM``: the flux density f_λ (erg s⁻¹ cm⁻² Å⁻¹) of a source giving 1 e⁻/s (or
  count/s), and
* ``PHOTPLAM``: the filter's pivot wavelength (Å),

each image becomes f_λ at its pivot, ``f = data × PHOTFLAM``, and the continuum under the
line is estimated from broad-band images:

* **one continuum** image: its f_λ taken as the continuum at Hα (a flat f_λ between the
  two pivots; the continuum's colour is not known);
* **two continua** bracketing the line (λ₁ < λ_Hα < λ₂): interpolated at the Hα pivot,
  either **linearly** in λ, ``f = w f₁ + (1 − w) f₂`` with ``w = (λ₂ − λ)/(λ₂ − λ₁)``, or
  in **log** space (a power law f_λ ∝ λ^β through the two points),
  ``ln f = w' ln f₁ + (1 − w') ln f₂`` with ``w' = ln(λ₂/λ)/ln(λ₂/λ₁)``. A power law can't
  go through a zero or a negative value: such pixels (sky noise) are interpolated
  linearly, and how many is reported.

The line flux of a pixel is then ``F = (f_Hα − f_cont) × W``, with ``W`` the narrow
filter's rectangular width (Å): the f_λ a line of flux F adds when it lies inside the
filter's band, ``F / W``. HST headers don't give ``W``: `line_width` takes it from the
caller, the manifest, the handbook values of `redux_helpers.hst_filters` (by
``INSTRUME``/``DETECTOR``/``FILTER``), or estimates it from ``PHOTBW`` with a warning.
`measure_fwhm` measures the image's resolution on its stars when no header gives it. Uncertainties propagate from the images' error planes. Exact zeros are
"no data" in a drizzled image and become NaN, never divided by.

`read_flux_image` reads such an image (its ``SCI``/primary data, ``ERR``/``UNCERT``
plane, WCS and keywords), refusing one without ``PHOTFLAM``/``PHOTPLAM`` with a message
naming the file and the keyword.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from . import fitsio, hst_filters
from .errors import ReduxError
from .photometry import seeing_fwhm
from .skywcs import pixel_scale_arcsec

log = logging.getLogger(__name__)

FILTER_KEYS = ("FILTER", "FILTNAM1", "FILTER1", "FILTER2")


@dataclass
class FluxImage:
    """An image in e⁻/s (or counts/s) with its flux calibration and WCS."""

    data: np.ndarray
    uncertainty: np.ndarray | None
    wcs: WCS | None
    header: fits.Header
    path: Path
    filter: str
    photflam: float
    photplam: float
    instrument: str = ""         # INSTRUME, e.g. 'WFC3', 'ACS'
    detector: str = ""           # DETECTOR, e.g. 'UVIS', 'WFC'
    photbw: float | None = None  # PHOTBW, the filter's RMS bandwidth (Å), if given

    @property
    def flam(self) -> np.ndarray:
        """f_λ per pixel, erg s⁻¹ cm⁻² Å⁻¹."""
        return self.data * self.photflam

    @property
    def flam_uncertainty(self) -> np.ndarray | None:
        return None if self.uncertainty is None else self.uncertainty * self.photflam

    @property
    def pixel_arcsec(self) -> float:
        if self.wcs is None:
            msg = f"{self.path}: no celestial WCS, so no pixel scale"
            raise ReduxError(msg)
        return pixel_scale_arcsec(self.wcs)


def _data_hdu(hdul, path):
    names = [h.name for h in hdul]
    for name in ("SCI", "PRIMARY"):
        if name in names and hdul[name].data is not None and hdul[name].data.ndim == 2:
            return hdul[name]
    idx = fitsio.image_hdu_index(hdul)
    if idx is None:
        msg = f"{path}: no 2-D image in any extension"
        raise ReduxError(msg)
    return hdul[idx]


def read_flux_image(path, *, what="image", photflam=None, photplam=None) -> FluxImage:
    """Read an image with ``PHOTFLAM`` and ``PHOTPLAM``, and its error plane if any.

    Parameters
    ----------
    path : path-like
        HST-style file (``SCI`` and ``ERR`` extensions) or one of the chain's products
        (primary data and ``UNCERT``).
    what : str
        What the image is for, for messages ("Halpha image", "continuum image").
    photflam, photplam : float, optional
        Values to use where the header has none (e.g. from the manifest).

    Raises
    ------
    ReduxError
        When the file can't be read, or neither it nor the arguments give ``PHOTFLAM``
        and ``PHOTPLAM``.
    """
    path = Path(path)
    with fitsio.open_fits(path) as hdul:
        hdu = _data_hdu(hdul, path)
        header = hdu.header.copy()
        primary = hdul[0].header
        data = np.asarray(hdu.data, dtype=np.float64)
        error = None
        for name in ("ERR", "UNCERT"):
            if name in [h.name for h in hdul] and hdul[name].data is not None:
                error = np.asarray(hdul[name].data, dtype=np.float64)
                break
    keys = {}
    for key, given in (("PHOTFLAM", photflam), ("PHOTPLAM", photplam)):
        value = header.get(key, primary.get(key, given))
        if value is None or not np.isfinite(float(value)) or float(value) <= 0:
            msg = (f"{path}: the {what} has no usable {key} keyword (in its data extension "
                   f"or primary header), so its counts can't be turned into a flux; add "
                   f"{key} to the header, or give photflam/photplam for it in the notebook's "
                   "parameters")
            raise ReduxError(msg)
        keys[key] = float(value)
    # the filter: ACS names two wheels (FILTER1, FILTER2), one of them CLEAR
    filt = next((str(h[k]).strip() for h in (header, primary) for k in FILTER_KEYS
                 if h.get(k) and not str(h[k]).strip().upper().startswith("CLEAR")), "")
    inst, det = (next((str(h[k]).strip() for h in (header, primary) if h.get(k)), "")
                 for k in ("INSTRUME", "DETECTOR"))
    photbw = header.get("PHOTBW", primary.get("PHOTBW"))
    zeros = data == 0.0
    if zeros.any():
        data = np.where(zeros, np.nan, data)     # no data in a drizzled image
        log.info("%s: %d pixels exactly 0 taken as 'no data' (NaN)", path.name, zeros.sum())
    wcs = WCS(header, naxis=2) if header.get("CTYPE1") else None
    return FluxImage(data, error, wcs, header, path, filt, keys["PHOTFLAM"], keys["PHOTPLAM"],
                     inst, det, None if photbw is None else float(photbw))


def line_width(line: FluxImage, *, width_A=0.0, bandpasses=None, manifest="the manifest"):
    """The narrow filter's rectangular width (Å), and where it came from.

    In this order: ``width_A`` when positive (the notebook's parameter); the manifest's
    ``bandpasses: {FILTER: {width_A: ...}}``; the table of HST filters
    (`redux_helpers.hst_filters`, by ``INSTRUME``/``DETECTOR``/``FILTER``); an estimate
    from the header's ``PHOTBW``, with a warning.

    Returns
    -------
    `redux_helpers.hst_filters.Width`

    Raises
    ------
    ReduxError
        When none of these gives a width, naming the manifest line to add.
    """
    if width_A and width_A > 0:
        return hst_filters.Width(float(width_A), None, "parameter")
    entry = (bandpasses or {}).get(line.filter) or {}
    if entry.get("width_A"):
        return hst_filters.Width(float(entry["width_A"]), entry.get("pivot_A"), "manifest")
    try:
        return hst_filters.filter_width(line.instrument, line.detector, line.filter,
                                        photbw=line.photbw, what=f"Halpha image {line.path.name}")
    except KeyError:
        name = line.filter or "FILTER"
        msg = (f"{line.path}: the width of the Halpha filter {name!r} "
               f"(INSTRUME {line.instrument or '?'}, DETECTOR {line.detector or '?'}) is not "
               "known: it is not in redux_helpers.hst_filters and the header has no PHOTBW; "
               f"add bandpasses: {{{name}: {{pivot_A: {line.photplam:.1f}, width_A: ...}}}} to "
               f"the target in {manifest}, or set line_width_A")
        raise ReduxError(msg) from None


def measure_fwhm(line: FluxImage, continua=(), *, guess_px=2.0):
    """The image's resolution (PSF FWHM, arcsec) measured from its stars.

    Stars are found on the first continuum image (on the line image's grid), where the
    HII regions can't pass for stars, and their FWHM fitted on the line image itself
    (`redux_helpers.photometry.seeing_fwhm`, at those positions); without a continuum,
    on the line image alone.

    Returns
    -------
    fwhm_arcsec : float
    n_stars : int
        How many stars the value is the median of.

    Raises
    ------
    ReduxError
        When fewer than 3 clean isolated stars could be measured.
    """
    def err_of(im):
        if im.uncertainty is not None:
            return np.where(np.isfinite(im.uncertainty) & (im.uncertainty > 0), im.uncertainty, np.nan)
        d = im.data[np.isfinite(im.data)]
        return np.full(im.data.shape, 1.4826 * np.median(np.abs(d - np.median(d))))

    positions = None
    cont = next((c for c in continua if c.data.shape == line.data.shape), None)
    if cont is not None:
        _, n, xy = seeing_fwhm(cont.data, err_of(cont), guess=guess_px)
        positions = xy if n else None
    fwhm, n, _ = seeing_fwhm(line.data, err_of(line), guess=guess_px, positions=positions)
    if n < 3:
        msg = (f"{line.path}: the resolution of the image is not in its header (FWHM) and "
               f"fewer than 3 clean isolated stars could be measured on it; set "
               "image_fwhm_arcsec")
        raise ReduxError(msg)
    return fwhm * line.pixel_arcsec, n


@dataclass
class Continuum:
    """The continuum f_λ at the line's pivot, and how it was found."""

    flam: np.ndarray
    uncertainty: np.ndarray | None
    mode: str                    # 'one' or 'two'
    interp: str                  # 'flat', 'linear' or 'log'
    weights: tuple[float, ...]   # weight of each continuum image (in f or in ln f)
    n_linear_fallback: int = 0   # pixels a log interpolation had to do linearly
    notes: list[str] = field(default_factory=list)


def continuum_at(pivot, continua: list[FluxImage], *, interp="log") -> Continuum:
    """Estimate f_λ of the continuum at wavelength ``pivot`` (Å).

    Parameters
    ----------
    pivot : float
        The line filter's pivot wavelength (Å).
    continua : list of FluxImage
        One continuum image, or two on either side of ``pivot``; on the same grid.
    interp : {'log', 'linear'}
        How two continua are interpolated: a power law through them (``log``) or a
        straight line in λ. Ignored for one continuum.
    """
    if len(continua) == 1:
        c = continua[0]
        return Continuum(c.flam, c.flam_uncertainty, "one", "flat", (1.0,),
                         notes=[f"one continuum ({c.filter or c.path.name}, pivot "
                                f"{c.photplam:.0f} Å) taken as flat in f_λ up to {pivot:.0f} Å"])
    if len(continua) != 2:
        msg = f"continuum subtraction takes one or two continuum images, not {len(continua)}"
        raise ReduxError(msg)
    if interp not in ("log", "linear"):
        msg = f"interp must be 'log' or 'linear', not {interp!r}"
        raise ReduxError(msg)
    c1, c2 = sorted(continua, key=lambda c: c.photplam)
    l1, l2 = c1.photplam, c2.photplam
    if not l1 < pivot < l2:
        msg = (f"the two continuum images ({c1.path.name} at {l1:.0f} Å, {c2.path.name} at "
               f"{l2:.0f} Å) don't bracket the line's pivot {pivot:.0f} Å: interpolating "
               "would be extrapolating; use one of them alone, or continua on either side")
        raise ReduxError(msg)
    f1, f2 = c1.flam, c2.flam
    e1 = c1.flam_uncertainty if c1.flam_uncertainty is not None else np.zeros_like(f1)
    e2 = c2.flam_uncertainty if c2.flam_uncertainty is not None else np.zeros_like(f2)
    w = (l2 - pivot) / (l2 - l1)
    lin = w * f1 + (1 - w) * f2
    lin_err = np.hypot(w * e1, (1 - w) * e2)
    if interp == "linear":
        return Continuum(lin, lin_err, "two", "linear", (w, 1 - w))
    wl = np.log(l2 / pivot) / np.log(l2 / l1)
    ok = (f1 > 0) & (f2 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        logf = np.exp(wl * np.log(np.where(ok, f1, 1.0)) + (1 - wl) * np.log(np.where(ok, f2, 1.0)))
        log_err = logf * np.hypot(wl * e1 / f1, (1 - wl) * e2 / f2)
    flam = np.where(ok, logf, lin)
    err = np.where(ok, log_err, lin_err)
    n_fb = int((~ok & np.isfinite(f1) & np.isfinite(f2)).sum())
    notes = []
    if n_fb:
        notes.append(f"{n_fb} pixels with a continuum ≤ 0 (sky noise) interpolated linearly: "
                     "a power law can't pass through them")
    return Continuum(flam, err, "two", "log", (wl, 1 - wl), n_fb, notes)


@dataclass
class LineImage:
    """A continuum-subtracted line image: flux per pixel (erg s⁻¹ cm⁻²) and its error."""

    flux: np.ndarray
    uncertainty: np.ndarray
    continuum: Continuum
    width_A: float
    pixel_area_arcsec2: float

    @property
    def surface_brightness(self) -> np.ndarray:
        """erg s⁻¹ cm⁻² arcsec⁻²."""
        return self.flux / self.pixel_area_arcsec2


def line_minus_continuum(on, on_err, continuum, continuum_err, *, factor=1.0):
    """``factor × (on − continuum)`` and its 1-sigma error: every continuum subtraction's core.

    ``on`` is the narrow-band image (line + continuum), ``continuum`` the continuum under
    the line in the same units, each with an error (None: none); the errors add in
    quadrature. HST's (`subtract`): f_λ images and ``factor`` the filter's width;
    a ground night's (`hii.subtract_continuum`): ``continuum = s R`` and
    ``factor = 1 / (1 − s q)``.

    >>> line_minus_continuum(np.array([5.0]), np.array([3.0]), np.array([1.0]), np.array([4.0]),
    ...                      factor=2.0)
    (array([8.]), array([10.]))
    """
    on = np.asarray(on, dtype=np.float64)
    zeros = np.zeros_like(on)
    line = (on - np.asarray(continuum, dtype=np.float64)) * factor
    err = np.hypot(zeros if on_err is None else on_err,
                   zeros if continuum_err is None else continuum_err) * abs(factor)
    return line, err


def subtract(line: FluxImage, continua: list[FluxImage], *, width_A, interp="log") -> LineImage:
    """Hα line flux per pixel: ``(f_Hα − f_cont) × width``.

    Parameters
    ----------
    line : FluxImage
        The narrow-band image.
    continua : list of FluxImage
        One or two continuum images, on the line image's grid (regrid them first).
    width_A : float
        The narrow filter's width (Å): a line of flux F inside the band adds F / width
        to the image's f_λ.
    interp : {'log', 'linear'}
        For two continua.
    """
    for c in continua:
        if c.data.shape != line.data.shape:
            msg = (f"{c.path}: continuum image is {c.data.shape[1]}x{c.data.shape[0]} "
                   f"pixels, the line image {line.path.name} {line.data.shape[1]}x"
                   f"{line.data.shape[0]}: regrid it onto the line image's grid first")
            raise ReduxError(msg)
    if not width_A or width_A <= 0:
        msg = f"the line filter's width must be a positive number of Å, not {width_A!r}"
        raise ReduxError(msg)
    cont = continuum_at(line.photplam, continua, interp=interp)
    flux, error = line_minus_continuum(line.flam, line.flam_uncertainty, cont.flam, cont.uncertainty,
                                       factor=width_A)
    area = line.pixel_arcsec ** 2 if line.wcs is not None else 1.0
    return LineImage(flux, error, cont, float(width_A), area)


HALPHA_SOURCES = ("auto", "hst", "ground")


def halpha_mode(*, halpha_source="auto", anchor_band="", has_hst=False, has_line_09=False,
                manifest="the manifest"):
    """Which Hα 10 works on: ``'band'``, ``'hst'``, ``'ground'``, or None (nothing to do).

    ``anchor_band`` (a broad band to anchor instead of Hα) wins; then an HST Hα image
    (``hst: {halpha: ...}`` in the manifest) unless ``halpha_source = 'ground'``; then
    09's ground-based line image. ``halpha_source = 'hst'`` without an HST image is
    refused, naming the manifest line to add.

    >>> halpha_mode(has_hst=True, has_line_09=True), halpha_mode(has_line_09=True)
    ('hst', 'ground')
    >>> halpha_mode(halpha_source="ground", has_hst=True, has_line_09=True)
    'ground'
    >>> halpha_mode() is None
    True
    """
    if halpha_source not in HALPHA_SOURCES:
        raise ReduxError(f"halpha_source = {halpha_source!r}: use one of {', '.join(HALPHA_SOURCES)}")
    if anchor_band:
        return "band"
    if halpha_source in ("auto", "hst") and has_hst:
        return "hst"
    if halpha_source == "hst":
        raise ReduxError(f"halpha_source = 'hst', but there is no HST Halpha image: add "
                         f"hst: {{halpha: FILE}} to the target in {manifest}")
    return "ground" if has_line_09 else None


def select_continua(images, names=""):
    """The continuum images whose filter is among ``names`` (a comma list; '' keeps all).

    A name that matches no image is refused, with the images there are.
    """
    if not names:
        return list(images)
    keep = [n.strip().upper() for n in names.split(",") if n.strip()]
    chosen = [im for im in images if (im.filter or "").upper() in keep]
    if len(chosen) != len(keep):
        raise ReduxError(f"continuum_filters = {names!r}: the continuum images are "
                         f"{', '.join(im.filter or im.path.name for im in images)}")
    return chosen
