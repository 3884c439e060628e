"""The arithmetic of CCD calibration: overscan, trim, bias, dark, flat, electrons.

The local-effects equation says what a pixel records::

    raw = overscan_level + bias_pattern + (flat * I + dark) * t / gain

and calibration inverts it::

    I * t = ((raw - overscan - superbias) * gain - superdark * t) / superflat    [e-]

Every function here takes arrays and returns new ones; inputs are never changed and
nothing touches the disk except `FrameReader`, which reads raw files band by band so
that a combine of many frames stays within a fixed amount of memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import bottleneck as bn
import numpy as np
from astropy.io import fits
from astropy.stats import mad_std

from . import headers, masks
from .errors import FrameError
from .fitsio import image_hdu_index, open_fits

log = logging.getLogger(__name__)


def overscan_level(raw, biassec):
    """Per-row bias level from the overscan columns (median of each row: robust).

    Parameters
    ----------
    raw : array (rows, columns)
        Raw frame in ADU, overscan included.
    biassec : tuple of slices
        (rows, columns) of the overscan, from `headers.parse_section`.

    Returns
    -------
    array (rows,)
        The level to subtract from each row of ``raw[biassec[0]]``, in ADU.
    """
    strip = np.asarray(raw[biassec[0], biassec[1]], dtype=np.float32)
    return bn.median(strip, axis=1)


def subtract_overscan_and_trim(raw, biassec, trimsec):
    """(raw - per-row overscan level) cut to the image area ``trimsec``, in ADU."""
    raw = np.asarray(raw, dtype=np.float32)
    if biassec[0] != trimsec[0]:
        # the overscan covers other rows than the image: use each image row's own level
        level = overscan_level(raw, (trimsec[0], biassec[1]))
    else:
        level = overscan_level(raw, biassec)
    return raw[trimsec] - level[:, None]


def trimmed_header(header):
    """A copy of a raw header that fits the trimmed image of a product.

    The overscan keywords no longer apply (``BIASSEC``/``TRIMSEC``/``DATASEC``), nor
    does integer scaling (``BZERO``/``BSCALE``) or a pedestal (``PEDESTAL``, added when
    the frame was read); a WCS reference pixel moves with the trim (a prescan on the
    left shifts ``CRPIX1``).
    """
    h = fits.Header(header, copy=True)
    sec = headers.sections(h)
    if sec:
        _, (ty, tx) = sec
        if "CRPIX1" in h:
            h["CRPIX1"] = h["CRPIX1"] - tx.start
        if "CRPIX2" in h:
            h["CRPIX2"] = h["CRPIX2"] - ty.start
    for key in ("BIASSEC", "TRIMSEC", "DATASEC", "BZERO", "BSCALE", "BLANK", "PEDESTAL"):
        h.remove(key, ignore_missing=True)
    return h


@dataclass
class Masters:
    """The calibration frames one light (or flat) is calibrated with.

    Arrays are on the trimmed grid; ``bias`` in ADU, ``dark`` in e-/s, ``flat``
    normalised to 1. Any may be None (not available). ``*_unc`` are their standard
    deviations; ``flat_mask`` marks flat pixels that must not be divided by.
    """

    bias: np.ndarray | None = None
    bias_unc: np.ndarray | None = None
    dark: np.ndarray | None = None
    dark_unc: np.ndarray | None = None
    flat: np.ndarray | None = None
    flat_unc: np.ndarray | None = None
    flat_mask: np.ndarray | None = None
    names: dict | None = None   # kind -> file name, for provenance


class FrameReader:
    """Reads a raw frame's image area band by band, with overscan and masters removed.

    Each band is returned as float32 on the trimmed grid: ADU after overscan and bias;
    electrons if ``gain`` is given; minus ``dark * exptime`` if a dark rate is given;
    divided by ``scale`` (e.g. the flat's level, or the exposure time for a dark).
    The file is opened once and only the rows asked for are read from disk.

    Parameters
    ----------
    path : path-like
        The raw frame (never written).
    overrides : dict, optional
        Manifest keyword overrides for this file.
    bias : array, optional
        Superbias in ADU on the trimmed grid.
    gain : float, optional
        e-/ADU; when given, bands are in electrons.
    dark : array, optional
        Superdark in e-/s (needs ``gain``).
    scale : float
        Every band is divided by this.
    """

    def __init__(self, path, *, overrides=None, bias=None, gain=None, dark=None, scale=1.0):
        self.path = path
        self._hdul = open_fits(path)
        hdu = self._hdul[image_hdu_index(self._hdul)]
        self.hdu = hdu
        self.header = fits.Header(hdu.header)
        for k, v in (overrides or {}).items():
            self.header[str(k).upper()] = v
        ny, nx = hdu.header["NAXIS2"], hdu.header["NAXIS1"]
        self.raw_shape = (ny, nx)
        try:
            self.sections = headers.sections(self.header)
        except FrameError as exc:
            raise FrameError(f"{path}: {exc}") from None
        if self.sections:
            (by, bx), (ty, tx) = self.sections
            if bx.stop > nx or ty.stop > ny or tx.stop > nx or by.stop > ny:
                msg = (f"{path}: BIASSEC/TRIMSEC reach outside the {nx}x{ny} image; fix them "
                       "with header_overrides in the manifest")
                raise FrameError(msg)
            self.shape = (ty.stop - ty.start, tx.stop - tx.start)
        else:
            self.shape = self.raw_shape
        self.pedestal = headers.pedestal(self.header)
        self.bias, self.gain, self.dark, self.scale = bias, gain, dark, float(scale)
        if dark is not None and gain is None:
            msg = "a dark (e-/s) can only be subtracted from a frame in electrons: give gain"
            raise ValueError(msg)
        self.exptime = headers.exptime(self.header)
        if dark is not None and self.exptime is None:
            msg = (f"{path} has no exposure time (EXPTIME/EXPOSURE), so its dark can't be "
                   "scaled; add it with header_overrides in the manifest")
            raise FrameError(msg)

    def close(self):
        self._hdul.close()

    def reopen(self):
        """Open the file again with a handle of its own (for a worker process, which
        must not share a file position with its parent)."""
        self._hdul = open_fits(self.path)
        self.hdu = self._hdul[image_hdu_index(self._hdul)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def raw_band(self, y0, y1):
        """Raw ADU of trimmed rows y0:y1, all columns (overscan included)."""
        off = self.sections[1][0].start if self.sections else 0
        try:
            raw = np.asarray(self.hdu.section[off + y0: off + y1, :], dtype=np.float32)
        except (TypeError, ValueError, OSError) as exc:
            msg = f"{self.path}: rows {y0}-{y1} can't be read ({exc}); the file may be damaged"
            raise FrameError(msg) from None
        if self.pedestal:
            raw += np.float32(self.pedestal)
        return raw

    def band(self, y0, y1):
        """The calibrated band of trimmed rows y0:y1 (see the class description)."""
        raw = self.raw_band(y0, y1)
        if self.sections:
            (by, bx), (ty, tx) = self.sections
            out = raw[:, tx] - bn.median(raw[:, bx], axis=1)[:, None]
        else:
            out = raw
        if self.bias is not None:
            out = out - self.bias[y0:y1]
        if self.gain is not None:
            out = out * np.float32(self.gain)
        if self.dark is not None:
            out = out - self.dark[y0:y1] * np.float32(self.exptime)
        if self.scale != 1.0:
            out = out / np.float32(self.scale)
        return out

    def read(self):
        """The whole calibrated image."""
        return self.band(0, self.shape[0])


def calibrate_frame(raw, header, masters: Masters, *, gain, read_noise, saturate=np.inf,
                    crmask=None, min_flat=0.2, per_second=False, extinction=None,
                    airmass=None, bad_columns=()):
    """Calibrate one raw frame into electrons, with an uncertainty and a mask.

    ``(raw - overscan - bias) * gain - dark * t``, divided by the flat where the flat
    is above ``min_flat``; elsewhere the pixel is set to NaN and flagged ``LOWFLAT``.

    Parameters
    ----------
    raw : array
        The raw frame in ADU, overscan included if the camera has one.
    header : `~astropy.io.fits.Header`
        Its header (``BIASSEC``/``TRIMSEC``, ``EXPTIME``).
    masters : `Masters`
        Superbias (ADU), superdark (e-/s) and superflat, each optional.
    gain : float
        e-/ADU.
    read_noise : float
        e- per pixel per read.
    saturate : float
        Raw ADU at and above which a pixel is flagged ``SATURATED``.
    crmask : bool array, optional
        Cosmic-ray pixels (trimmed grid), flagged ``COSMIC``.
    min_flat : float
        Flat values at or below this are not divided by.
    per_second : bool
        Divide by the exposure time: e-/s instead of e-.
    extinction : float, optional
        mag/airmass; with ``airmass``, scales the frame to above the atmosphere.
    bad_columns : sequence of int
        1-based columns of the trimmed image (the manifest's ``bad_columns``), flagged
        ``BADCOL``; their values are kept (06_badpix repairs them).

    Returns
    -------
    data, uncertainty, mask : arrays
        Electrons (or e-/s), one-sigma uncertainty in the same unit, `masks` bitmask.
    """
    if gain is None or read_noise is None or not np.isfinite(gain) or not np.isfinite(read_noise):
        msg = ("gain and read noise are needed to work in electrons; add GAIN/RDNOISE to "
               "the headers or 'gain:'/'read_noise:' to the manifest")
        raise FrameError(msg)
    t = headers.exptime(header)
    if t is None:
        msg = ("frame has no exposure time (EXPTIME/EXPOSURE/ITIME); add it with "
               "header_overrides in the manifest")
        raise FrameError(msg)
    adu, raw_trim = _minus_bias(np.asarray(raw, dtype=np.float32), header, masters)
    electrons = adu * np.float32(gain)
    var = np.clip(electrons, 0, None) + np.float32(read_noise) ** 2
    if masters.bias_unc is not None:  # the superbias's own noise (NaN: none known)
        var += np.nan_to_num(masters.bias_unc * gain) ** 2
    if masters.dark is not None:
        electrons = electrons - masters.dark * np.float32(t)
        if masters.dark_unc is not None:
            var += np.nan_to_num(masters.dark_unc * t) ** 2
    mask = masks.flag(np.zeros(electrons.shape, np.uint16), raw_trim >= saturate, "SATURATED")
    data, var, mask = _flat_fielded(electrons, var, mask, masters, min_flat=min_flat)
    if crmask is not None:
        mask = masks.flag(mask, crmask, "COSMIC")
    mask = _with_bad_columns(mask, bad_columns)
    unc = np.sqrt(var)
    factor = _rate_factor(t, per_second=per_second, extinction=extinction, airmass=airmass)
    if factor != 1.0:
        data, unc = data * np.float32(factor), unc * np.float32(factor)
    return data.astype(np.float32), unc.astype(np.float32), mask


def noise_check(data, uncertainty, mask=None, *, read_noise=None):
    """Does the frame scatter as its uncertainty plane says?

    The difference of two horizontally adjacent pixels has the sum of their variances,
    whatever the sky or the light under them: divided by the square root of that sum it
    has a standard deviation of 1 when gain and read noise are right. Its robust
    standard deviation (MAD) over every second row is ``ratio``; stars, hits and hot
    pixels are too few to move it, and row-to-row banding cancels in a difference along
    the row. A wrong gain, a read noise taken from another camera, or an offset left
    in the data (a bias level counted as signal) moves it away from 1.

    Returns
    -------
    dict
        ``ratio`` (measured / predicted scatter), ``predicted`` (median uncertainty of
        the pixels used), ``n_pixels`` and ``read_noise_fit``: with ``read_noise`` (e-,
        as used), the read noise that would make the ratio 1 if the gain is right (NaN
        without it, or when no read noise can: the scatter is below the Poisson noise,
        so the gain or the level is wrong). All NaN with fewer than 100 pairs.
    """
    data = np.asarray(data, np.float32)[::2]
    unc = np.asarray(uncertainty, np.float32)[::2]
    ok = np.isfinite(data) & np.isfinite(unc) & (unc > 0)
    if mask is not None:
        ok &= np.asarray(mask)[::2] == 0
    pair = ok[:, 1:] & ok[:, :-1]
    diff = (data[:, 1:] - data[:, :-1])[pair]
    var = (unc[:, 1:] ** 2 + unc[:, :-1] ** 2)[pair]
    out = {"ratio": np.nan, "predicted": np.nan, "n_pixels": int(diff.size),
           "read_noise_fit": np.nan}
    if diff.size < 100:
        return out
    out["ratio"] = ratio = float(mad_std(diff / np.sqrt(var)))
    out["predicted"] = predicted = float(np.sqrt(np.median(var) / 2))
    rn2 = np.nan if read_noise is None else read_noise ** 2 + (ratio ** 2 - 1) * predicted ** 2
    if rn2 > 0:
        out["read_noise_fit"] = float(np.sqrt(rn2))
    return out


def noise_advice(check, row, place, tolerance) -> str:
    """The message for a frame whose scatter is not what its gain and read noise say.

    ``check`` is `noise_check`'s result, ``row`` the frame's inventory row (``gain``,
    ``read_noise`` and where each came from), ``place`` where a manifest line goes.
    """
    gain, rn = float(row["gain"]), float(row["read_noise"])
    msg = (f"{row['file']}: neighbouring pixels scatter {check['ratio']:.2f} x the noise that "
           f"gain {gain:g} e-/ADU (from {row['gain_key']}) and read noise {rn:g} e- (from "
           f"{row['read_noise_key']}) predict ({check['predicted']:.1f} e-): every cosmic-ray "
           "threshold and signal-to-noise after this would be off by that factor. ")
    fit = check["read_noise_fit"]
    if check["ratio"] > 1 and np.isfinite(fit):
        msg += (f"If the gain is right, the read noise that fits is {fit:.1f} e-: add "
                f"`read_noise: {fit:.1f}` {place}, or the camera's measured gain and read noise")
    else:
        msg += ("The frame is quieter than the light in it allows: the gain is too high, or a "
                "level is counted as light (a bias with no bias frames or overscan to remove "
                f"it); give the camera's `gain:` {place}, or add its bias frames")
    return msg + f"; to go on anyway, run with -p noise_tolerance=<more than {tolerance:g}>"


def _minus_bias(raw, header, masters):
    """(ADU minus overscan and superbias on the trimmed grid, the raw trimmed frame)."""
    sec = headers.sections(header)
    if sec:
        adu = subtract_overscan_and_trim(raw, *sec)
        raw_trim = raw[sec[1]]
    else:
        adu, raw_trim = raw.copy(), raw
    if masters.bias is not None:
        if masters.bias.shape != adu.shape:
            msg = (f"superbias is {masters.bias.shape[1]}x{masters.bias.shape[0]} but the frame "
                   f"is {adu.shape[1]}x{adu.shape[0]} after trimming: binning or TRIMSEC differ")
            raise FrameError(msg)
        adu = adu - masters.bias
    return adu, raw_trim


def _flat_fielded(electrons, var, mask, masters, *, min_flat):
    """Divide by the superflat, its noise added; pixels of a flat at or below ``min_flat``
    (or flagged in it) are NaN and ``LOWFLAT``."""
    if masters.flat is None:
        return electrons, var, mask
    flat = masters.flat
    low = ~(flat > min_flat)
    if masters.flat_mask is not None:
        low |= np.asarray(masters.flat_mask, bool)
    safe = np.where(low, 1.0, flat).astype(np.float32)
    data = electrons / safe
    var = var / safe ** 2
    if masters.flat_unc is not None:
        var += np.nan_to_num(data * masters.flat_unc / safe) ** 2
    data[low] = np.nan
    var[low] = np.nan
    return data, var, masks.flag(mask, low, "LOWFLAT")


def _with_bad_columns(mask, bad_columns):
    """``BADCOL`` on the manifest's bad columns (1-based, on the trimmed image)."""
    off = [c for c in bad_columns or () if not 1 <= c <= mask.shape[1]]
    if off:
        msg = (f"bad_columns {off} are off the chip ({mask.shape[1]} columns after trimming): "
               "numbers are 1-based columns of the trimmed image; fix them in the manifest")
        raise FrameError(msg)
    cols = [c - 1 for c in bad_columns or ()]
    if cols:
        mask[:, cols] |= np.uint16(masks.bit("BADCOL"))
    return mask


def _rate_factor(t, *, per_second, extinction, airmass):
    """1/t when ``per_second``, times 10**(0.4 k X) when an extinction k is given."""
    factor = 1.0 / t if per_second else 1.0
    if extinction is not None:
        if airmass is None or not np.isfinite(airmass):
            msg = ("extinction correction asked for, but the frame has no airmass (AIRMASS/"
                   "SECZ); add it with header_overrides or turn the correction off")
            raise FrameError(msg)
        factor *= 10 ** (0.4 * extinction * airmass)
    return factor
