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

    Each pixel's values are sorted once; a clip then only moves the first and last of
    the values kept (what a clip rejects is always at the extremes), so a median is an
    index and only the absolute deviations need sorting again.

    Parameters
    ----------
    stack : array (..., N)
        N values for every pixel, float32; NaN marks values already excluded.
        It is not modified.
    method : {'median', 'mean'}
        How the surviving values of each pixel are combined.
    sigma : float
        Reject values more than ``sigma`` robust standard deviations from the median;
        ``0`` or ``None`` turns rejection off.
    maxiters : int
        Clip at most this many times (stops earlier when nothing more is rejected).
        A value once rejected stays rejected.

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
    shape, k = stack.shape[:-1], stack.shape[-1]
    x = np.sort(np.asarray(stack, np.float32).reshape(-1, k), axis=1)   # NaN go last
    lo = np.zeros(x.shape[0], np.intp)
    hi = k - np.count_nonzero(np.isnan(x), axis=1)
    med, mad = _median_mad(x, lo, hi)
    # the spread of each pixel's values before any clipping, robustly: the standard
    # deviation of the survivors would be too small, a clip trims good values too
    spread = mad * np.float32(_MAD_SMALL.get(k, k / (k - 0.8)))
    rows, m, d = np.arange(x.shape[0]), med, mad
    for _ in range(maxiters if sigma else 0):
        xs = x if rows.size == x.shape[0] else x[rows]
        width = np.float32(sigma) * d
        with np.errstate(invalid="ignore"):
            new_lo = np.maximum(lo[rows], np.count_nonzero(xs < (m - width)[:, None], axis=1))
            new_hi = np.minimum(hi[rows], np.count_nonzero(xs <= (m + width)[:, None], axis=1))
        moved = ((new_lo != lo[rows]) | (new_hi != hi[rows])) & (d > 0)
        if not moved.any():
            break
        rows = rows[moved]
        lo[rows], hi[rows] = new_lo[moved], new_hi[moved]
        m, d = _median_mad(x[rows], lo[rows], hi[rows])
        med[rows] = m
    n = hi - lo
    if method == "median":
        comb = med
    else:
        idx = np.arange(k)
        keep = (idx >= lo[:, None]) & (idx < hi[:, None])
        with np.errstate(invalid="ignore", divide="ignore"):
            comb = (np.where(keep, x, 0).sum(axis=1, dtype=np.float64) / n).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.where(n > 1, spread / np.sqrt(n), np.nan).astype(np.float32)
    if method == "median":
        err *= np.float32(MEDIAN_EFFICIENCY)
    return comb.reshape(shape), err.reshape(shape), n.reshape(shape)


def _median_mad(x, lo, hi):
    """Median and MAD-based sigma of each row's values x[lo:hi] (rows sorted)."""
    r = np.arange(x.shape[0])
    m = hi - lo
    i1 = np.clip(lo + (m - 1) // 2, 0, x.shape[1] - 1)
    i2 = np.clip(lo + m // 2, 0, x.shape[1] - 1)
    med = (x[r, i1] + x[r, i2]) * np.float32(0.5)
    dev = x - med[:, None]
    np.abs(dev, out=dev)
    if lo.any() or np.any(hi != x.shape[1]):        # values outside the kept range
        idx = np.arange(x.shape[1])
        np.putmask(dev, (idx < lo[:, None]) | (idx >= hi[:, None]), np.inf)
    dev.sort(axis=1)
    j1 = np.clip((m - 1) // 2, 0, x.shape[1] - 1)
    j2 = np.clip(m // 2, 0, x.shape[1] - 1)
    mad = (dev[r, j1] + dev[r, j2]) * np.float32(0.5 * MAD_TO_SIGMA)
    empty = m <= 0
    med[empty] = np.nan
    mad[empty] = np.nan
    return med.astype(np.float32), mad.astype(np.float32)


#: Small-sample correction of the MAD as an estimate of sigma (Croux & Rousseeuw 1992).
_MAD_SMALL = {2: 1.196, 3: 1.495, 4: 1.363, 5: 1.206, 6: 1.200, 7: 1.140, 8: 1.129, 9: 1.107}


def band_rows(n_frames, width, *, mem_mb=64.0):
    """Rows per band so that one band of every frame fits in ``mem_mb`` (with work space)."""
    per_row = n_frames * width * 4 * 4   # float32, and ~4 working copies
    return int(max(1, min(4096, mem_mb * 1e6 // per_row)))


def central_rows(n_rows, n) -> slice:
    """The ``n`` central rows of a frame of ``n_rows`` (all of its rows when ``n`` is 0 or
    reaches ``n_rows``).

    The notebooks compare their combines with ccdproc's on this band: ccdproc holds
    every frame whole in float64 (4 GB for 20 frames of 2048 x 2048), and a band of 512
    rows tests the same arithmetic on a million pixels in a quarter of the time.

    >>> central_rows(2048, 512), central_rows(300, 512), central_rows(300, 0)
    (slice(768, 1280, None), slice(0, 300, None), slice(0, 300, None))
    """
    if n <= 0 or n >= n_rows:
        return slice(0, n_rows)
    y0 = (n_rows - n) // 2
    return slice(y0, y0 + n)


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
               "check the frame selection in 00_inspect, or lower the notebook's parameter "
               f"min_frames (redux run TARGET -p min_frames={max(len(readers), 1)})")
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
    b = np.empty((len(readers), y1 - y0, readers[0].shape[1]), np.float32)
    for i, r in enumerate(readers):
        b[i] = r.band(y0, y1)
    # one transposed copy puts each pixel's values side by side (cheaper than
    # writing every frame into the pixel-major layout with a stride)
    values = np.ascontiguousarray(b.reshape(len(readers), -1).T)
    comb, err, n = clip_and_combine(values, **options)
    shape = b.shape[1:]
    return y0, y1, comb.reshape(shape), err.reshape(shape), n.reshape(shape)


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
