"""`uncertainty_from_sky`: an uncertainty image for a frame made elsewhere, from its sky's scatter."""

from __future__ import annotations

import numpy as np
from astropy.stats import sigma_clipped_stats

from ..errors import ReduxError


def uncertainty_from_sky(data, *, gain=None, mask=None, light=None, boxes=4):
    """Sky level, its noise and a 1-sigma uncertainty image, for an image that has none.

    The image is cut into ``boxes`` x ``boxes`` boxes; in each, the sigma-clipped
    (3 sigma) median and standard deviation of the unflagged pixels are measured, and
    the box with the faintest median gives the sky and its noise: in an image that a
    galaxy fills, the whole image's median is galaxy light, and its faintest part is
    the best guess of empty sky. A source adds its Poisson noise, ``light / gain``
    (``light`` defaults to ``data - sky``, negative values counting as zero), when
    ``gain`` is known: the number of electrons per unit of the image (e-/ADU, or e-/ADU
    x seconds for a count-rate image, SWarp's effective ``GAIN``). Without a gain the
    uncertainty is the sky's everywhere, and bright sources' errors come out too small.

    Returns
    -------
    uncertainty : ndarray
        Same shape as ``data``; NaN where ``data`` is.
    sky, sky_rms : float
        The sky level (not subtracted here) and its per-pixel noise.
    """
    data = np.asarray(data, dtype=np.float64)
    good = np.isfinite(data)
    if mask is not None:
        good &= np.asarray(mask) == 0
    if good.sum() < 100:
        msg = f"only {int(good.sum())} usable pixels: too few to measure the sky's noise"
        raise ReduxError(msg)
    ny, nx = data.shape
    best = None
    for ys in np.array_split(np.arange(ny), boxes):
        for xs in np.array_split(np.arange(nx), boxes):
            cut = data[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1][good[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]]
            if cut.size < 50:
                continue
            _, med, std = sigma_clipped_stats(cut, sigma=3.0, maxiters=10)
            if best is None or med < best[0]:
                best = (float(med), float(std))
    if best is None:
        _, med, std = sigma_clipped_stats(data[good], sigma=3.0, maxiters=10)
        best = (float(med), float(std))
    sky, rms = best
    var = np.full(data.shape, rms ** 2)
    if gain is not None:
        gain = float(gain)
        if not (np.isfinite(gain) and gain > 0):
            msg = f"gain must be positive; got {gain!r}"
            raise ReduxError(msg)
        src = data - sky if light is None else np.asarray(light, dtype=np.float64)
        var = var + np.clip(np.nan_to_num(src), 0.0, None) / gain
    unc = np.sqrt(var)
    unc[~np.isfinite(data)] = np.nan
    return unc, sky, rms


