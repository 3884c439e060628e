"""Bad pixels from the data: a bitmask built from the superflat and the superdark.

Some pixels don't follow the calibration equation ``L = (eps I + T) t + B``: a dead
pixel or column collects almost no light (``eps`` near 0), a hot pixel makes charge
far faster than its neighbours (``T`` large), a non-linear pixel answers a bright flat
differently from a faint one. They are found where the calibration frames show them
best and flagged with the named bits of `redux_helpers.masks`:

* `from_flat` — pixels of a superflat far from their smoothed neighbourhood (``BAD``),
  and whole columns of them (``BADCOL``);
* `from_flat_ratio` — pixels whose response differs between a bright and a faint flat;
* `from_dark` — pixels of a superdark far above their neighbourhood (``HOT``);
* `build_badpix` — one ``uint16`` bitmask from these and the manifest's bad columns;
* `repair` — flagged pixels replaced by a Gaussian-weighted mean of their good
  neighbours, for display and for steps that can't skip a pixel, and flagged
  ``REPAIRED`` so that nobody takes them for measurements.

Nothing here reads or writes files, and no input array is changed.

>>> import numpy as np
>>> dark = np.full((20, 20), 0.05)
>>> dark[5, 7] = 30.0
>>> hot = from_dark(dark + np.random.default_rng(0).normal(0, 0.01, dark.shape))
>>> [(int(y), int(x)) for y, x in zip(*np.nonzero(hot))]
[(5, 7)]
"""

from __future__ import annotations

import logging

import numpy as np
from astropy.stats import mad_std

from . import masks
from .errors import ReduxError
from .morphology import pixels
from .smoothing import masked_convolve, masked_convolve_at, running_median

log = logging.getLogger(__name__)

#: Bits `repair` replaces by default: defects and hits, not saturation or missing data.
REPAIR_BITS = ("BAD", "HOT", "BADCOL", "COSMIC", "LOWFLAT")


def _image(a, what):
    a = np.array(a, dtype=np.float64)
    if a.ndim != 2:
        msg = f"{what} must be a 2-D image; got an array of shape {a.shape}"
        raise ValueError(msg)
    if not np.isfinite(a).any():
        msg = f"{what} has no finite pixel (all NaN): check the file it was read from"
        raise ReduxError(msg)
    return a


def _local_deviation(image, ignore, size):
    """image - its running median over ``size`` pixels, ignoring ``ignore`` pixels.

    The median is `smoothing.running_median`: exact below 9 pixels, from block medians
    above (a 15 x 15 median of a 2048^2 flat in 0.3 s instead of 8 s).
    """
    fill = float(np.median(image[~ignore]))
    smooth = running_median(np.where(ignore, fill, image), size)
    return image - smooth, smooth


def flat_ratio(superflat, *, size=15, fill=1.0):
    """The superflat over its running median (`_local_deviation`): its pixel-to-pixel part.

    NaN pixels are replaced by ``fill`` for the median and stay NaN in the ratio. This
    is the image `from_flat` tests; it is returned for a figure.
    """
    flat = np.asarray(superflat, dtype=np.float64)
    _, smooth = _local_deviation(np.nan_to_num(flat, nan=fill), np.zeros(flat.shape, bool), size)
    return flat / np.where(smooth > 0, smooth, np.nan)


def from_flat(superflat, *, bad=None, nsigma=5.0, size=15, min_flat=0.5):
    """Pixels of a superflat whose sensitivity is far off their neighbourhood's.

    The flat is divided by its running median over ``size`` x ``size`` pixels, which
    keeps what is smooth (vignetting, dust donuts wider than a few pixels) out of the
    test; a pixel more than ``nsigma`` robust standard deviations from 1 in that ratio
    is bad, and so is any pixel below ``min_flat`` (or NaN).

    Parameters
    ----------
    superflat : 2-D array
        A flat normalised to about 1 (``02_superflat/superflat_<filter>.fits``).
    bad : bool array, optional
        Pixels known to be bad already; they are flagged and left out of the statistics.
    nsigma : float
        Threshold in robust standard deviations of the ratio (pixel-to-pixel scatter).
    size : int
        Side of the running median, pixels; several times a dust donut's rim.
    min_flat : float
        Pixels less sensitive than this (relative to their neighbourhood, and in
        absolute value) are bad whatever the scatter.

    Returns
    -------
    bool array
        True on a bad pixel.
    """
    flat = _image(superflat, "superflat")
    low = ~np.isfinite(flat) | (flat < min_flat)
    if bad is not None:
        low |= np.asarray(bad, bool)
    if low.all():
        msg = (f"every superflat pixel is below min_flat={min_flat} or masked: is this a "
               "normalised flat?")
        raise ReduxError(msg)
    _, smooth = _local_deviation(flat, low, size)
    ratio = np.where(low, np.nan, flat / np.where(smooth > 0, smooth, np.nan))
    scatter = mad_std(ratio[np.isfinite(ratio)])
    bad = low | ~np.isfinite(ratio) | (np.abs(ratio - 1.0) > nsigma * scatter)
    bad |= np.nan_to_num(ratio, nan=0.0) < min_flat
    log.info("flat: pixel-to-pixel scatter %.4f; %d bad pixels", scatter, int(bad.sum()))
    return bad


def from_flat_ratio(flat_a, flat_b, *, bad=None, nsigma=5.0, size=15):
    """Pixels whose response differs between two flats of different brightness.

    A linear pixel records the same fraction of the light in a bright and a faint flat,
    so ``flat_a / flat_b`` is smooth; a non-linear or unstable pixel stands out of it.
    Dead pixels do *not* (they are dead in both): use `from_flat` for those.

    Parameters
    ----------
    flat_a, flat_b : 2-D arrays
        Two flats of one filter at different levels, bias and dark removed, each in any
        unit (the ratio is normalised).
    bad : bool array, optional
        Pixels to leave out (they are not flagged).
    nsigma, size
        As in `from_flat`, applied to the ratio.

    Returns
    -------
    bool array
        True on a pixel whose response changes with the level.
    """
    a, b = _image(flat_a, "flat_a"), _image(flat_b, "flat_b")
    if a.shape != b.shape:
        msg = f"flats differ in shape: {a.shape} and {b.shape}"
        raise ValueError(msg)
    ignore = ~np.isfinite(a) | ~np.isfinite(b) | (b <= 0) | (a <= 0)
    if bad is not None:
        ignore |= np.asarray(bad, bool)
    if ignore.all():
        msg = "the two flats have no pixel in common that is positive and unmasked"
        raise ReduxError(msg)
    ratio = np.where(ignore, np.nan, a / np.where(b > 0, b, 1.0))
    ratio /= np.nanmedian(ratio)
    dev, smooth = _local_deviation(np.where(ignore, 1.0, ratio), ignore, size)
    scatter = mad_std(dev[~ignore])
    return ~ignore & (np.abs(dev) > nsigma * scatter)


def from_dark(superdark, *, bad=None, nsigma=5.0, size=5):
    """Hot pixels: dark current far above the pixel's neighbourhood.

    The superdark minus its running median over ``size`` x ``size`` pixels keeps the
    single pixels and drops what is smooth (the amplifier glow); a pixel more than
    ``nsigma`` robust standard deviations above it is hot.

    Parameters
    ----------
    superdark : 2-D array
        Dark current, e.g. in e-/s (``02_superflat/superdark_<temp>C.fits``).
    bad : bool array, optional
        Pixels to leave out (never flagged).
    nsigma : float
        Threshold in robust standard deviations of (dark - running median).
    size : int
        Side of the running median, pixels.

    Returns
    -------
    bool array
        True on a hot pixel.
    """
    dark = _image(superdark, "superdark")
    ignore = ~np.isfinite(dark)
    if bad is not None:
        ignore |= np.asarray(bad, bool)
    dev, _ = _local_deviation(np.where(ignore, 0.0, dark), ignore, size)
    scatter = mad_std(dev[~ignore])
    if not scatter > 0:
        scatter = float(np.std(dev[~ignore])) or np.finfo(float).tiny
    return ~ignore & (dev > nsigma * scatter)


def _same_shape(mask, shape, what):
    """``mask`` as a bool array of ``shape``; ValueError naming ``what`` otherwise."""
    mask = np.asarray(mask, bool)
    if mask.shape != shape:
        msg = f"{what} has shape {mask.shape}, expected {shape}"
        raise ValueError(msg)
    return mask


def build_badpix(shape, *, flat=None, dark=None, bad_columns=(), bad_rows=(),
                 column_fraction=0.5):
    """One bitmask of the chip's defects, with the named bits of `redux_helpers.masks`.

    Parameters
    ----------
    shape : (int, int)
        Shape of the trimmed image (rows, columns).
    flat : bool array, optional
        Bad pixels from the flat (`from_flat`, `from_flat_ratio`): bit ``BAD``. A column
        with more than ``column_fraction`` of its pixels bad is also ``BADCOL`` whole.
    dark : bool array, optional
        Hot pixels (`from_dark`): bit ``HOT``.
    bad_columns, bad_rows : sequences of int
        **1-based** columns and rows (as the manifest's ``bad_columns`` and as DS9 counts
        them): bit ``BADCOL`` along the whole column or row. Numbers off the chip are
        an error.
    column_fraction : float
        See ``flat``.

    Returns
    -------
    uint16 array
        0 for a good pixel; the sum of its bits otherwise.

    Examples
    --------
    >>> m = build_badpix((3, 4), bad_columns=[2])
    >>> m[:, 1].tolist(), int(m.sum())
    ([4, 4, 4], 12)
    """
    shape = tuple(int(n) for n in shape)
    out = np.zeros(shape, np.uint16)
    if flat is not None:
        flat = _same_shape(flat, shape, "flat bad-pixel mask")
        out = masks.flag(out, flat, "BAD")
        cols = np.flatnonzero(flat.mean(axis=0) > column_fraction)
        out[:, cols] |= np.uint16(masks.bit("BADCOL"))
    if dark is not None:
        out = masks.flag(out, _same_shape(dark, shape, "hot-pixel mask"), "HOT")
    for name, numbers, n, axis in (("bad_columns", bad_columns, shape[1], 1),
                                   ("bad_rows", bad_rows, shape[0], 0)):
        numbers = [int(c) for c in (numbers or ())]
        off = [c for c in numbers if not 1 <= c <= n]
        if off:
            msg = (f"{name} {off} are off the chip: numbers are 1-based, from 1 to {n} "
                   "(the trimmed image); fix them in the manifest")
            raise ReduxError(msg)
        idx = [c - 1 for c in numbers]
        if axis == 1:
            out[:, idx] |= np.uint16(masks.bit("BADCOL"))
        else:
            out[idx, :] |= np.uint16(masks.bit("BADCOL"))
    return out


def repair(data, mask_bits, *, bits=REPAIR_BITS, kernel_sigma=1.5):
    """Replace flagged pixels by a Gaussian-weighted mean of their good neighbours.

    Pixels with any of ``bits`` set (and not ``NODATA``) are replaced by the mean of
    their neighbours weighted by a Gaussian of ``kernel_sigma`` pixels, as
    `astropy.convolution.interpolate_replace_nans` does (here in two 1-D passes,
    `smoothing.masked_convolve`, or where they are few at the flagged pixels alone,
    `smoothing.masked_convolve_at`); flagged, saturated, missing and NaN pixels never serve
    as neighbours.
    The replaced pixels get the ``REPAIRED`` bit and keep their other bits, so that a
    later step can still leave them out. A pixel with no good neighbour within the
    kernel (inside a large hole) is left as it was, without ``REPAIRED``.

    Parameters
    ----------
    data : 2-D array
        The image (any unit). Not changed.
    mask_bits : 2-D integer array
        Its bitmask (`redux_helpers.masks`). Not changed.
    bits : sequence of str
        Names of the bits whose pixels are replaced.
    kernel_sigma : float
        Standard deviation of the Gaussian weights, pixels.

    Returns
    -------
    repaired : 2-D float array
        A copy of ``data`` with the flagged pixels replaced: float32 if ``data`` is,
        float64 otherwise.
    mask : uint16 array
        A copy of ``mask_bits`` with ``REPAIRED`` set where a value was replaced.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.ones((7, 7))
    >>> img[3, 3] = 1000.0
    >>> bits = np.zeros((7, 7), np.uint16)
    >>> bits[3, 3] = 2                          # HOT
    >>> fixed, new = repair(img, bits)
    >>> float(fixed[3, 3]), int(new[3, 3]), float(img[3, 3])
    (1.0, 130, 1000.0)
    """
    from astropy.convolution import Gaussian2DKernel

    data = np.asarray(data)
    if data.dtype != np.float32:    # a float32 frame stays float32 (its values are kept
        data = data.astype(np.float64)   # exactly; the repaired ones are float32 anyway)
    mask_bits = np.asarray(mask_bits)
    if mask_bits.shape != data.shape:
        msg = f"mask has shape {mask_bits.shape} but the image has shape {data.shape}"
        raise ValueError(msg)
    bitmask = mask_bits.astype(np.uint16)
    if not np.isfinite(data).any():
        msg = "the image has no finite pixel (all NaN): nothing to interpolate from"
        raise ReduxError(msg)
    want = np.uint16(sum(masks.bit(b) for b in bits))
    target = ((bitmask & want) > 0) & ~masks.has(bitmask, "NODATA")
    never = target | masks.has(bitmask, "NODATA") | masks.has(bitmask, "SATURATED")
    unusable = never | ~np.isfinite(data)        # never a neighbour
    if unusable.all():
        msg = "every pixel is flagged or NaN: there are no good pixels to interpolate from"
        raise ReduxError(msg)
    # astropy's Gaussian2DKernel factors: interpolate_replace_nans(data with the unusable
    # pixels NaN, kernel, boundary='extend') in two 1-D passes (`smoothing.masked_convolve`),
    # 10x faster
    kernel_1d = Gaussian2DKernel(kernel_sigma).array.sum(axis=0)
    ys, xs = pixels(target)
    if len(ys) <= data.size // 100:   # few (a frame's hits and bad columns): at them alone
        values = masked_convolve_at(data, unusable, kernel_1d, ys, xs)
        ok = np.isfinite(values)
        out = data.copy()
        out[ys[ok], xs[ok]] = values[ok]
        done = np.zeros(target.shape, bool)
        done[ys[ok], xs[ok]] = True
    else:
        filled = masked_convolve(data, unusable, kernel_1d)
        done = target & np.isfinite(filled)
        out = np.where(done, filled, data)
    left = len(ys) - int(done.sum())
    if left:
        log.warning("%d flagged pixels have no good neighbour within the kernel and were "
                    "not repaired", left)
    new = masks.flag(bitmask, done, "REPAIRED")
    return out, new
