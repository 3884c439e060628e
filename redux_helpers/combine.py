"""Robust, streamed combination of many frames into one master.

A master (superbias, superdark, superflat) is the pixel-by-pixel combination of many
frames with outliers rejected. Held in memory at once, 60 frames of 2048² in float64
take 2 GB before any work; here the frames are read in bands of rows, each band of
every frame is read once, combined, and dropped, so memory stays bounded whatever
the number of frames.

Rejection is an iterated sigma clip about the median with a robust sigma from the
median absolute deviation (MAD × 1.4826), the same rule as
``ccdproc.combine(sigma_clip=True, sigma_clip_dev_func=mad_std)``.
"""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import bottleneck as bn
import numpy as np

from .errors import FrameError

log = logging.getLogger(__name__)

MAD_TO_SIGMA = 1.482602218505602
#: Standard error of a median relative to a mean, for normally distributed values.
MEDIAN_EFFICIENCY = 1.2533141373155001


@dataclass
class Combined:
    """A combined frame: values, their standard error, and how many frames each used."""

    data: np.ndarray
    uncertainty: np.ndarray
    n_used: np.ndarray
    n_frames: int

    @property
    def rejected_fraction(self) -> float:
        """Fraction of all input values the clipping rejected."""
        return 1.0 - float(self.n_used.sum()) / (self.n_frames * self.n_used.size)


def clip_and_combine(stack, *, method="median", sigma=3.0, maxiters=5):
    """Sigma-clip a stack of values along its last axis and combine what survives.

    Parameters
    ----------
    stack : array (..., N)
        N values for every pixel, float32; NaN marks values already excluded.
        It is modified in place (rejected values set to NaN).
    method : {'median', 'mean'}
        How the surviving values of each pixel are combined.
    sigma : float
        Reject values more than ``sigma`` robust standard deviations from the median;
        ``0`` or ``None`` turns rejection off.
    maxiters : int
        Clip at most this many times (stops earlier when nothing more is rejected).

    Returns
    -------
    combined, std_error, n_used : arrays (...)
        ``std_error`` is the robust spread of the pixel's values (MAD × 1.4826, before
        clipping) over the square root of the number used, times 1.2533 for a median;
        NaN where fewer than two values were used.

    Examples
    --------
    >>> s = np.array([[1., 2., 3., 2., 100.]], dtype=np.float32)
    >>> c, e, n = clip_and_combine(s, method="mean")
    >>> float(c[0]), int(n[0])
    (2.0, 4)
    """
    if method not in ("median", "mean"):
        msg = f"method must be 'median' or 'mean', got {method!r}"
        raise ValueError(msg)
    flat = stack.reshape(-1, stack.shape[-1])
    k = flat.shape[1]
    med = _median_rows(flat)
    dev = np.abs(flat - med[:, None])
    # the spread of each pixel's values before any clipping, robustly: the standard
    # deviation of the survivors would be too small, a clip trims good values too
    mad = _median_rows(dev) * np.float32(MAD_TO_SIGMA)
    small = _MAD_SMALL.get(k, k / (k - 0.8))   # MAD's small-sample bias
    spread = mad * np.float32(small)
    if sigma and maxiters:
        # first pass over every pixel, in place; later passes only where values went
        with np.errstate(invalid="ignore"):
            bad = dev > (np.float32(sigma) * mad)[:, None]
        bad &= (mad > 0)[:, None]
        active = np.flatnonzero(bad.any(axis=1))
        sub = flat[active]
        sub[bad[active]] = np.nan
        flat[active] = sub
        med[active] = _median_rows(sub)
        del dev, bad
        for _ in range(maxiters - 1):
            if not active.size:
                break
            sub = flat[active]
            d = np.abs(sub - med[active][:, None])
            m = _median_rows(d) * np.float32(MAD_TO_SIGMA)
            with np.errstate(invalid="ignore"):
                b = (d > (np.float32(sigma) * m)[:, None]) & (m > 0)[:, None]
            rows = b.any(axis=1)
            sub[b] = np.nan
            flat[active] = sub
            active = active[rows]
            med[active] = _median_rows(flat[active])
    n = k - np.count_nonzero(np.isnan(flat), axis=1)
    if method == "median":
        comb = med
    else:
        comb = bn.nanmean(flat, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.where(n > 1, spread / np.sqrt(n), np.nan).astype(np.float32)
    if method == "median":
        err *= np.float32(MEDIAN_EFFICIENCY)
    shape = stack.shape[:-1]
    return comb.reshape(shape), err.astype(np.float32).reshape(shape), n.reshape(shape)


#: Small-sample correction of the MAD as an estimate of sigma (Croux & Rousseeuw 1992).
_MAD_SMALL = {2: 1.196, 3: 1.495, 4: 1.363, 5: 1.206, 6: 1.200, 7: 1.140, 8: 1.129, 9: 1.107}


def _median_rows(x):
    """Median of each row of a 2-D float32 array, ignoring NaN.

    NaN-free input (the usual first pass) takes a partition, about twice as fast as
    bottleneck's nanmedian for the few tens of values a pixel has.
    """
    if x.shape[0] == 0:
        return np.zeros(0, np.float32)
    if np.isnan(x).any():
        return bn.nanmedian(x, axis=1)
    k = x.shape[1]
    hi = k // 2
    part = np.partition(x, hi, axis=1)
    if k % 2:
        return part[:, hi].astype(np.float32)
    # even count: the lower middle value is the largest of the lower half (one
    # partition and a max are cheaper than a partition on two positions)
    return ((part[:, hi] + part[:, :hi].max(axis=1)) * np.float32(0.5)).astype(np.float32)


def band_rows(n_frames, width, *, mem_mb=64.0):
    """Rows per band so that one band of every frame fits in ``mem_mb`` (with work space)."""
    per_row = n_frames * width * 4 * 4   # float32, and ~4 working copies
    return int(max(1, min(4096, mem_mb * 1e6 // per_row)))


def combine_readers(readers, *, method="median", sigma=3.0, maxiters=5, min_frames=3,
                    mem_mb=64.0, progress=None, workers=1):
    """Combine frames given as band readers (see `redux_helpers.calibrate.FrameReader`).

    Parameters
    ----------
    readers : sequence
        Objects with ``.shape``, ``.path`` and ``.band(y0, y1)`` returning float32 rows.
    method, sigma, maxiters : see `clip_and_combine`
    min_frames : int
        Fewer frames than this is an error.
    mem_mb : float
        Memory budget for one band of all frames, in MB.
    progress : callable, optional
        Called with the number of rows done after each band (e.g. a tqdm ``update``).
    workers : int
        Bands are combined in this many processes (each reads its own bands, so every
        file is still read once); 2 uses both cores of a 2-core machine.

    Returns
    -------
    `Combined`
    """
    readers = list(readers)
    if len(readers) < min_frames:
        msg = (f"need at least {min_frames} frames to combine, got {len(readers)}; "
               "check the frame selection in 00_inspect (or lower min_frames)")
        raise FrameError(msg)
    shapes = {tuple(r.shape) for r in readers}
    if len(shapes) > 1:
        by_shape = {}
        for r in readers:
            by_shape.setdefault(tuple(r.shape), []).append(str(getattr(r, "path", "?")))
        detail = "; ".join(f"{s[1]}x{s[0]}: {', '.join(p[:3])}{' ...' if len(p) > 3 else ''}"
                           for s, p in by_shape.items())
        msg = (f"frames of different sizes can't be combined ({detail}); they differ in "
               "binning or windowing: exclude the odd ones in the manifest")
        raise FrameError(msg)
    ny, nx = shapes.pop()
    n = len(readers)
    step = band_rows(n, nx, mem_mb=mem_mb)
    data = np.empty((ny, nx), np.float32)
    unc = np.empty((ny, nx), np.float32)
    used = np.empty((ny, nx), np.int16)
    options = {"method": method, "sigma": sigma, "maxiters": maxiters}
    bands = [(y0, min(y0 + step, ny)) for y0 in range(0, ny, step)]
    if workers > 1 and len(bands) > 1:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_start,
                                 initargs=(readers, options)) as pool:
            for y0, y1, d, u, k in pool.map(_worker_band, bands):
                data[y0:y1], unc[y0:y1], used[y0:y1] = d, u, k
                if progress:
                    progress(y1 - y0)
    else:
        for y0, y1 in bands:
            _, _, data[y0:y1], unc[y0:y1], used[y0:y1] = _band(readers, y0, y1, options)
            if progress:
                progress(y1 - y0)
    log.info("combined %d frames of %dx%d in bands of %d rows", n, nx, ny, step)
    return Combined(data=data, uncertainty=unc, n_used=used, n_frames=n)


def _band(readers, y0, y1, options):
    b = np.empty((y1 - y0, readers[0].shape[1], len(readers)), np.float32)
    for i, r in enumerate(readers):
        b[:, :, i] = r.band(y0, y1)
    return (y0, y1, *clip_and_combine(b, **options))


_WORKER = {}


def _worker_start(readers, options):
    for r in readers:
        r.reopen()          # a forked worker must not share its parent's file positions
    _WORKER.update(readers=readers, options=options)


def _worker_band(band):
    return _band(_WORKER["readers"], *band, _WORKER["options"])


def central_level(reader, *, fraction=0.5, row_step=4):
    """Robust level (median) of a frame's central region, from every ``row_step``-th row.

    Used to normalise flats before they are combined; reading only every fourth row of
    the central half costs an eighth of the file.
    """
    ny, nx = reader.shape
    y0, y1 = int(ny * (1 - fraction) / 2), int(ny * (1 + fraction) / 2)
    x0, x1 = int(nx * (1 - fraction) / 2), int(nx * (1 + fraction) / 2)
    rows = [reader.band(y, y + 1)[0, x0:x1] for y in range(y0, y1, row_step)]
    return float(np.nanmedian(np.concatenate(rows)))
