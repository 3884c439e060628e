"""Cosmic-ray masks with L.A.Cosmic (van Dokkum 2001).

Cosmic rays deposit charge in one or a few pixels, sharper than any star the
atmosphere lets through. L.A.Cosmic finds them by their sharp edges: the Laplacian of
the image, compared with the noise expected at each pixel, picks out pixels whose
edges are too sharp to be light that passed through the telescope.

Two backends give equivalent masks:

* ``'lacosmic'`` — the `lacosmic` package (pure Python, one core);
* ``'astroscrappy'`` — a C implementation of the same algorithm (both cores), several
  times faster; ``benchmarks/`` measures both.

The parameter names follow L.A.Cosmic: ``cr_threshold`` (sigma-clip limit of the
Laplacian, astroscrappy's ``sigclip``), ``neighbor_threshold`` (the lower limit, as a
signal-to-noise, that grows a detection into its neighbours; astroscrappy's
``sigfrac × sigclip``) and ``contrast`` (how much sharper than the image's fine
structure a hit must be; astroscrappy's ``objlim``).
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)

BACKENDS = ("lacosmic", "astroscrappy")


def detect_cosmics(data, *, error=None, mask=None, read_noise, backend="lacosmic",
                   contrast=5.0, cr_threshold=5.0, neighbor_threshold=2.5, maxiter=4,
                   saturate=None, saturated=None, margin=2):
    """Return a boolean mask of cosmic-ray pixels in a frame in electrons.

    Parameters
    ----------
    data : array
        Bias- and dark-subtracted, flat-fielded frame in electrons (sky included).
    error : array, optional
        One-sigma uncertainty in electrons; from Poisson + read noise when not given.
    mask : bool array, optional
        Pixels to ignore (saturated, no flat): never flagged.
    read_noise : float
        Read noise in electrons.
    backend : {'lacosmic', 'astroscrappy'}
    contrast, cr_threshold, neighbor_threshold, maxiter : float, float, float, int
        L.A.Cosmic's parameters (see the module description).
    saturate : float, optional
        Electrons above which a pixel is left alone (astroscrappy's ``satlevel``).
    saturated : bool array, optional
        Saturated pixels (also in ``mask``).
    margin : int
        Pixels within this distance of a saturated pixel are not flagged: the edge of
        a clipped star core is as sharp as a cosmic ray.
    """
    if backend not in BACKENDS:
        msg = f"cosmic-ray backend must be one of {BACKENDS}, got {backend!r}"
        raise ValueError(msg)
    data = np.asarray(data, dtype=np.float32)
    bad = ~np.isfinite(data)
    if mask is not None:
        bad |= np.asarray(mask, bool)
    filled = fill_nearest(data, bad)
    if backend == "lacosmic":
        import lacosmic

        if error is None:
            error = np.sqrt(np.clip(filled, 0, None) + read_noise ** 2)
        error = fill_nearest(error, bad | ~np.isfinite(error))
        from astropy import log as astropy_log

        level = astropy_log.level
        astropy_log.setLevel("WARNING")      # lacosmic reports each iteration at INFO
        try:
            _, crmask = lacosmic.remove_cosmics(
                filled, contrast, cr_threshold, neighbor_threshold, error=error, mask=bad,
                maxiter=maxiter)
        finally:
            astropy_log.setLevel(level)
    else:
        import astroscrappy

        # sepmed=False: the exact median filter; the separable approximation flags ~6x
        # more star cores as cosmic rays (71 against 11 on tests/test_cosmics.py's frame)
        crmask, _ = astroscrappy.detect_cosmics(
            filled, inmask=bad, sigclip=cr_threshold,
            sigfrac=neighbor_threshold / cr_threshold, objlim=contrast, gain=1.0,
            readnoise=read_noise, satlevel=saturate if saturate else np.inf,
            niter=maxiter, sepmed=False, cleantype="meanmask", verbose=False)
    if saturated is not None and margin and np.any(saturated):
        bad = bad | ndimage.binary_dilation(np.asarray(saturated, bool), iterations=margin)
    return np.asarray(crmask, bool) & ~bad


def fill_nearest(data, bad):
    """Copy of ``data`` with ``bad`` pixels replaced by their nearest good neighbour.

    A masked column or saturated core filled with a constant would leave sharp edges
    that L.A.Cosmic takes for cosmic rays; the nearest good value leaves none.
    """
    if not bad.any():
        return np.asarray(data, np.float32).copy()
    if bad.all():
        return np.zeros(data.shape, np.float32)
    idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
    return np.asarray(data[tuple(idx)], np.float32)


def _one(args):
    data, kwargs = args
    return detect_cosmics(data, **kwargs)


def detect_many(frames, *, workers=1, progress=None, **kwargs):
    """`detect_cosmics` over many frames, in ``workers`` processes.

    ``frames`` is a sequence of (data, error, mask) or (data, error, mask, saturated)
    tuples; keyword arguments are those of `detect_cosmics` (``read_noise`` may be a
    sequence, one per frame). Returns the masks in the same order.
    """
    rn = kwargs.pop("read_noise")
    rns = list(rn) if np.ndim(rn) else [rn] * len(frames)
    jobs = [(f[0], {**kwargs, "error": f[1], "mask": f[2], "read_noise": r,
                    "saturated": f[3] if len(f) > 3 else None})
            for f, r in zip(frames, rns, strict=True)]
    if workers <= 1 or len(jobs) <= 1:
        out = []
        for j in jobs:
            out.append(_one(j))
            if progress:
                progress(1)
        return out
    with ProcessPoolExecutor(max_workers=workers) as pool:
        out = []
        for m in pool.map(_one, jobs):
            out.append(m)
            if progress:
                progress(1)
        return out
