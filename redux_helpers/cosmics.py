"""Cosmic-ray masks with L.A.Cosmic (van Dokkum 2001).

Cosmic rays deposit charge in one or a few pixels, sharper than any star the
atmosphere lets through. L.A.Cosmic finds them by their sharp edges: the Laplacian of
the image, compared with the noise expected at each pixel, picks out pixels whose
edges are too sharp to be light that passed through the telescope.

Three backends give equivalent masks:

* ``'exact'`` (the default) — the textbook algorithm with exact median filters, made
  only where a hit is possible (`first_pass`, then `later_pass`): the same mask, pixel
  for pixel, as astroscrappy's with ``sepmed=False``; on a 2048² frame 0.18 + 0.12 CPU s
  for the two passes, against 1.8 s for astroscrappy's fast first pass alone;
* ``'astroscrappy'`` — a C implementation of the same algorithm, run with its fast
  *separable* median filters (``sepmed=True``), followed by two checks that keep its
  quality (see below);
* ``'lacosmic'`` — the `lacosmic` package (pure Python, one core), the textbook
  algorithm with exact median filters over the whole frame, 3-25× slower than
  ``'exact'``; ``benchmarks/bench_cosmics.py`` measures them.

The separable median is a poor stand-in for the exact one on star cores: alone, it
flags the cores of bright stars as hits (47 pixels on a 1024² demo frame, none with the
exact median). Two checks, on the few flagged pixels only, take them back:

* **the exact seed test** (`check_seeds`): L.A.Cosmic's two tests (Laplacian S/N above
  ``cr_threshold``, ``contrast`` times the fine structure) are redone with exact medians
  at each flagged pixel; a flagged pixel is kept only within 2 pixels of one that passes
  them (L.A.Cosmic's growth into neighbours), so the separable median's false seeds and
  what grew from them go;
* **the star guard** (`star_like`): a group of flagged pixels is taken back when its
  brightest pixel looks like a star's core rather than a hit: it is not a local maximum
  (a star's flank), or all four of its direct neighbours stand above
  ``STAR_NEIGHBOUR_RATIO`` of its height above the local background (a PSF at least 2
  pixels wide; a hit drops to the sky within a pixel, across its track at least).
  L.A.Cosmic's own ``contrast`` test lets such cores through in crowded fields, where a
  neighbouring star lifts the fine-structure median; the guard can follow either backend.
  Its price: a hit on a star's core fainter than about the core itself, or on a star's
  flank fainter than the flank's slope, is taken back with it (those pixels are lost to
  photometry of that star anyway).
  It is on by default for ``'exact'`` and off for the others (``star_guard=None``): on
  the 1024² demo's 14 frames the exact medians flag 127 pixels of bright light (compact
  Hα knots, star cores) that no cosmic ray hit, 2 with the guard (astroscrappy's checked
  separable median: 18), for a recall of 99.0 % against 99.3 % of the 7672 hit pixels;
  with astroscrappy's check alone no star core is flagged on the test frames, and on the
  256² demo night the guard took back 5 of 490 hit pixels (recall 95.3 % → 94.3 %).

Two passes (``maxiter=2``) flag as much as four on the demo and on
``tests/test_cosmics.py``'s crowded frame, in half the time; the second catches the
faint ends of tracks next to pixels cleaned by the first. With astroscrappy only the
first pass runs over the whole frame: a later pass can change nothing further than 6
pixels from a pixel flagged before it (its tests see the image within 4 pixels, and
its growth reaches 2 more), so `later_pass` makes it there only, with exact medians
(about 1 % of a frame; on a 2048² light the two passes took 4.9 CPU s with
astroscrappy's own second pass, 3.1 s so; the demo frame's mask is the same).

The parameter names follow L.A.Cosmic: ``cr_threshold`` (sigma-clip limit of the
Laplacian, astroscrappy's ``sigclip``), ``neighbor_threshold`` (the lower limit, as a
signal-to-noise, that grows a detection into its neighbours; astroscrappy's
``sigfrac × sigclip``) and ``contrast`` (how much sharper than the image's fine
structure a hit must be; astroscrappy's ``objlim``).

astroscrappy 1.3.0's saturated-star mask (its ``update_mask``, run once per call) is
mended here before the first call (`_astroscrappy`): its 5×5 dilation repeated twice
leaks a byte per pixel every call (4 MB a 2048² frame: 80 MB over a 20-light night,
growing with the night), and it median-filters the whole frame even when no pixel
reaches ``satlevel`` (0.35 of its 1.28 CPU s on a 2048² frame; the suite passes no
``satlevel`` and masks saturation itself). The mended one gives the same mask, pixel
for pixel (`tests/test_cosmics.py`).
"""

from __future__ import annotations

import logging

import numpy as np
from astropy.stats import mad_std
from scipy import ndimage

from .morphology import grow_square, pixels, window_min, within

log = logging.getLogger(__name__)

BACKENDS = ("exact", "astroscrappy", "lacosmic")
#: Pixels by which a frame is mirrored out at its edges before astroscrappy runs.
EDGE_PAD = 6
STAR_NEIGHBOUR_RATIO = 0.3   # a star's direct neighbours stand above this share of its core


def detect_cosmics(data, *, uncertainty=None, bad=None, read_noise, backend="exact",
                   contrast=5.0, cr_threshold=5.0, neighbor_threshold=2.5, maxiter=2,
                   saturate=None, saturated=None, margin=3, sepmed=True, star_guard=None):
    """Return a boolean mask of cosmic-ray pixels in a frame in electrons.

    Parameters
    ----------
    data : array
        Bias- and dark-subtracted, flat-fielded frame in electrons (sky included).
    uncertainty : array, optional
        One-sigma uncertainty in electrons; from Poisson + read noise when not given.
    bad : bool array, optional
        Pixels to ignore (saturated, no flat): never flagged.
    read_noise : float
        Read noise in electrons.
    backend : {'exact', 'astroscrappy', 'lacosmic'}
        Which implementation runs (see the module description).
    contrast, cr_threshold, neighbor_threshold, maxiter : float, float, float, int
        L.A.Cosmic's parameters (see the module description); with 'exact', and with
        astroscrappy and ``sepmed``, the passes after the first are `later_pass`'s.
    saturate : float, optional
        Electrons above which a pixel is left alone (astroscrappy's ``satlevel``; with
        'exact', those pixels grown by 4, as astroscrappy grows a saturated core).
    saturated : bool array, optional
        Saturated pixels (also in ``bad``).
    margin : float
        Pixels within this distance (in pixels) of a saturated pixel are not flagged: the
        edge of a clipped star core is as sharp as a cosmic ray.
    sepmed : bool
        astroscrappy only: its separable median filters (fast), checked afterwards by
        `check_seeds`; False runs its exact medians (2.3× the CPU time) unchecked.
    star_guard : bool, optional
        Take back groups whose brightest pixel looks like a star's core (`star_like`);
        None: on for ``'exact'``, off for the others (see the module description).

    Returns
    -------
    bool array
        True where a cosmic ray hit, never on a ``bad`` pixel.
    """
    if backend not in BACKENDS:
        msg = f"cosmic-ray backend must be one of {BACKENDS}, got {backend!r}"
        raise ValueError(msg)
    data = np.asarray(data, dtype=np.float32)
    bad = ~np.isfinite(data) if bad is None else ~np.isfinite(data) | np.asarray(bad, bool)
    filled = fill_nearest(data, bad)
    if backend == "lacosmic":
        import lacosmic

        error = uncertainty
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
    elif backend == "exact":
        keep_out = bad if not saturate else bad | grow_square(filled >= saturate, 4)
        crmask = first_pass(filled, bad=keep_out, read_noise=read_noise, contrast=contrast,
                            cr_threshold=cr_threshold, neighbor_threshold=neighbor_threshold)
        crmask = _later_passes(filled, crmask, keep_out, maxiter - 1, read_noise=read_noise,
                               contrast=contrast, cr_threshold=cr_threshold,
                               neighbor_threshold=neighbor_threshold)
    else:
        astroscrappy = _astroscrappy()

        # astroscrappy misses hits in the outer 2-3 rows and columns (its filters stop
        # short of the edge): it runs on the frame mirrored out by EDGE_PAD pixels
        pad = EDGE_PAD
        padded = np.pad(filled, pad, mode="reflect")
        filled = padded[pad:-pad, pad:-pad]   # the same values: one frame-sized copy fewer
        crmask, _ = astroscrappy.detect_cosmics(
            padded, inmask=np.pad(bad, pad, mode="reflect"),
            sigclip=cr_threshold, sigfrac=neighbor_threshold / cr_threshold, objlim=contrast,
            gain=1.0, readnoise=read_noise, satlevel=saturate if saturate else np.inf,
            niter=1 if sepmed else maxiter, sepmed=sepmed, cleantype="meanmask",
            verbose=False)
        crmask = crmask[pad:-pad, pad:-pad]
        if sepmed:
            crmask = check_seeds(filled, crmask, read_noise=read_noise, contrast=contrast,
                                 cr_threshold=cr_threshold)
            keep_out = bad if not saturate else bad | (filled >= saturate)
            crmask = _later_passes(filled, crmask, keep_out, maxiter - 1,
                                   read_noise=read_noise, contrast=contrast,
                                   cr_threshold=cr_threshold,
                                   neighbor_threshold=neighbor_threshold)
    crmask = np.asarray(crmask, bool)
    if star_guard is None:
        star_guard = backend == "exact"
    if star_guard:
        crmask = crmask & ~star_like(filled, crmask)
    if saturated is not None and margin and np.any(saturated):
        bad = bad | within(saturated, margin)
    return crmask & ~bad


def _later_passes(filled, crmask, keep_out, n, **tests):
    """``crmask`` after up to ``n`` more L.A.Cosmic iterations (`later_pass`), stopping
    at the first that adds nothing."""
    for _ in range(n):
        grown = later_pass(filled, crmask, bad=keep_out, **tests)
        if grown.sum() == crmask.sum():
            break
        crmask = grown
    return crmask


def _astroscrappy():
    """The astroscrappy module, its ``update_mask`` replaced (once) by `_update_mask`."""
    import astroscrappy
    import astroscrappy.astroscrappy as core

    # detect_cosmics finds update_mask among its module's globals at every call
    if core.update_mask is not _update_mask:
        _REPLACED["update_mask"] = core.update_mask
        core.update_mask = _update_mask
    return astroscrappy


_REPLACED = {}   # what `_astroscrappy` replaced, for the test that compares the two


def _update_mask(data, mask, satlevel, sepmed):
    """astroscrappy's ``update_mask`` without its leak and its needless median filter.

    Adds to ``mask`` (uint8, in place) the cores of saturated stars (pixels at or above
    ``satlevel`` whose median-filtered value is above a tenth of it) grown by two 5×5
    dilations, and ``mask`` itself grown by one pixel, as astroscrappy does.
    """
    from astroscrappy.utils import dilate3, dilate5, medfilt5, sepmedfilt7

    level = float(np.float32(satlevel))          # astroscrappy takes it as a C float
    saturated = data >= level
    if saturated.any():
        smooth = sepmedfilt7(data) if sepmed else medfilt5(data)
        saturated &= smooth > level / 10.0
        # dilate5(x, 2) mallocs its intermediate image and never frees it; twice one
        # iteration is the same dilation
        saturated = dilate5(dilate5(saturated, 1), 1)
    mask[:, :] = np.logical_or(saturated, dilate3(mask))


def _windows(image, ys, xs, half):
    """The (2 half + 1)² boxes of ``image`` centred on pixels (ys, xs), edges mirrored."""
    return _boxes_at(np.pad(image, half, mode="reflect"), ys + half, xs + half, half)


def _boxes_at(image, ys, xs, half):
    """The (2 half + 1)² boxes of ``image`` centred on (ys, xs), which lie ``half`` or
    more pixels inside it (a padded image): shape (n, 2 half + 1, 2 half + 1)."""
    oy, ox = np.mgrid[-half:half + 1, -half:half + 1]
    return image[ys[:, None, None] + oy, xs[:, None, None] + ox]


_PAD = 8            # mirrored border of the padded arrays `_laplacian_tests` works on
_CHUNK = 1 << 16    # pixels whose boxes are gathered at once (bounds the memory)


def _median_at(image, ys, xs, half):
    """Exact median of the (2 half + 1)² box of ``image`` around each pixel (ys, xs)."""
    k = (2 * half + 1) ** 2 // 2
    out = np.empty(len(ys), np.float32)
    for i in range(0, len(ys), _CHUNK):
        box = _boxes_at(image, ys[i:i + _CHUNK], xs[i:i + _CHUNK], half)
        out[i:i + _CHUNK] = np.partition(box.reshape(len(box), -1), k, axis=1)[:, k]
    return out


def _laplacian_tests(data, where, read_noise):
    """L.A.Cosmic's two numbers at the pixels ``where`` (bool) of ``data``, exact medians.

    Returns (ys, xs, sig, fine) for those pixels: ``sig`` is the Laplacian of the 2×
    subsampled image over twice the noise, less its 5×5 median (astroscrappy's ``sp``);
    ``fine`` the fine structure (the 3×3 median less the 7×7 median of 3×3 medians) over
    the noise; the noise is the square root of the 5×5 median of the variance (Poisson +
    read noise). A pixel's numbers depend on ``data`` within 4 pixels of it, so each
    intermediate image is computed only where some pixel of ``where`` needs it (within 2
    or 3 pixels), each of its values once: the cost follows the number of pixels asked
    for, not the frame. The frame is mirrored at its edges.
    """
    ys, xs = pixels(where)
    if not len(ys):
        return ys, xs, np.zeros(0, np.float32), np.zeros(0, np.float32)
    P = _PAD
    img = np.pad(np.asarray(data, np.float32), P, mode="reflect")
    asked = np.zeros(img.shape, bool)
    asked[ys + P, xs + P] = True
    y2, x2 = pixels(grow_square(asked, 2))    # within 2 px: noise, S/N
    y3, x3 = pixels(grow_square(asked, 3))    # within 3 px: 3x3 medians
    # the variance's 5x5 median is that of the image, clipped at 0, plus the read noise²:
    # a rank statistic of an odd number of values commutes with a rising function, so no
    # variance image (16 MB for a 2048² frame) is made
    noise = np.zeros(img.shape, np.float32)
    noise[y2, x2] = np.sqrt(np.clip(_median_at(img, y2, x2, 2), 0, None)
                            + np.float32(read_noise ** 2))
    lap = _laplacian(img[y2, x2], lambda dy, dx: img[y2 + dy, x2 + dx])
    snr = np.zeros(img.shape, np.float32)
    snr[y2, x2] = lap / (2 * noise[y2, x2])
    m3 = np.zeros(img.shape, np.float32)
    m3[y3, x3] = _median_at(img, y3, x3, 1)
    yp, xp = ys + P, xs + P
    sig = snr[yp, xp] - _median_at(snr, yp, xp, 2)
    fine = (m3[yp, xp] - _median_at(m3, yp, xp, 3)) / noise[yp, xp]
    return ys, xs, sig, fine


def _laplacian(centre, shifted):
    """L.A.Cosmic's Laplacian of the image subsampled 2×, positive part, binned back.

    The mean over (dy, dx) in (±1, ±1) of max(2 centre - shifted(dy, 0) - shifted(0, dx),
    0), ``shifted(dy, dx)`` the image moved so: the same numbers on a whole frame
    (`first_pass`'s bound) as at a list of pixels (`_laplacian_tests`).
    """
    twice = 2 * centre
    lap = 0
    for dy in (-1, 1):
        for dx in (-1, 1):
            lap = lap + np.maximum(twice - shifted(dy, 0) - shifted(0, dx), 0)
    return lap / 4


def _is_seed(sig, fine, contrast, cr_threshold):
    return (sig > cr_threshold) & (sig / np.maximum(fine, 0.01) > contrast)


def check_seeds(data, crmask, *, read_noise, contrast=5.0, cr_threshold=5.0):
    """Keep the flagged pixels within 2 pixels of one passing L.A.Cosmic's exact tests.

    At each flagged pixel of ``crmask`` the two tests of a new detection are redone on
    ``data`` (electrons, no pixel masked) with exact medians (`_laplacian_tests`): the
    Laplacian's S/N must exceed ``cr_threshold``, and ``contrast`` times the fine
    structure. The cost grows with the number of flagged pixels only, not with the frame.
    """
    ys, xs, sig, fine = _laplacian_tests(data, crmask, read_noise)
    seeds = np.zeros(crmask.shape, bool)
    seed = _is_seed(sig, fine, contrast, cr_threshold)
    seeds[ys[seed], xs[seed]] = True
    return np.asarray(crmask, bool) & grow_square(seeds, 2)


def clean_hits(data, crmask, bad=None):
    """Copy of ``data`` with each flagged pixel replaced by the mean of its clean 5×5 box.

    astroscrappy's ``cleantype='meanmask'``: the box's pixels neither flagged nor ``bad``;
    a pixel with none keeps the median of its box.
    """
    out = np.array(data, np.float32)
    ys, xs = pixels(crmask)
    if not len(ys):
        return out
    hidden = np.asarray(crmask, bool) if bad is None else np.asarray(crmask, bool) | bad
    vals = _windows(out, ys, xs, 2).reshape(len(ys), -1)
    ok = ~_windows(hidden, ys, xs, 2).reshape(len(ys), -1)
    n = ok.sum(axis=1)
    mean = np.where(ok, vals, 0).sum(axis=1) / np.maximum(n, 1)
    out[ys, xs] = np.where(n > 0, mean, np.median(vals, axis=1))
    return out


def first_pass(data, *, bad, read_noise, contrast=5.0, cr_threshold=5.0,
               neighbor_threshold=2.5):
    """L.A.Cosmic's first iteration with exact medians, made where a hit can be.

    A new hit needs its Laplacian S/N above ``cr_threshold`` less a 5×5 median of
    that S/N, which is never negative (the Laplacian's positive part): so its
    Laplacian must exceed ``2 cr_threshold`` times the noise. Over the whole frame only
    that bound is taken, with the noise from the 5×5 *minimum* of the image (never above
    the median the exact test uses; three numpy passes, no median filter); at the few
    pixels it lets through (star cores and hits, about 0.1 % of a frame) the exact tests
    are made (`_laplacian_tests`), then the growth into neighbours, as astroscrappy does
    with ``sepmed=False``: the same mask (`tests/test_cosmics.py`), 0.18 CPU s a 2048²
    frame against astroscrappy's 1.8 s. ``bad`` pixels and their direct neighbours are
    never flagged (astroscrappy grows its mask so by one pixel).
    """
    data = np.asarray(data, np.float32)
    bad = grow_square(bad, 1)
    P = 2
    img = np.pad(data, P, mode="reflect")
    ny, nx = data.shape
    lap = _laplacian(data, lambda dy, dx: img[P + dy:P + dy + ny, P + dx:P + dx + nx])
    low = window_min(img, 2)[P:P + ny, P:P + nx]      # 5x5 minimum <= 5x5 median
    np.maximum(low, 0, out=low)
    low += np.float32(read_noise ** 2)
    np.sqrt(low, out=low)
    # a hair below the bound, so that float rounding can't leave out a pixel that passes
    candidates = (lap > np.float32(2 * cr_threshold * (1 - 1e-4)) * low) & ~bad
    del lap, low
    img = None     # the padded copy (16 MB a 2048² frame), before the tests' own
    ys, xs, sig, fine = _laplacian_tests(data, candidates, read_noise)
    seed = _is_seed(sig, fine, contrast, cr_threshold)
    seeds = np.zeros(data.shape, bool)
    seeds[ys[seed], xs[seed]] = True
    if not seed.any():
        return seeds
    return _grow_hits(data, seeds, bad=bad, read_noise=read_noise,
                      cr_threshold=cr_threshold, neighbor_threshold=neighbor_threshold)


def _grow_hits(data, seeds, *, bad, read_noise, cr_threshold, neighbor_threshold,
               sig=None):
    """``seeds`` grown into neighbours whose Laplacian S/N passes ``cr_threshold``, then
    into theirs above ``neighbor_threshold`` (L.A.Cosmic), never onto ``bad`` pixels;
    the S/N made within 2 pixels of a seed (or taken from ``sig``, a frame of it)."""
    if sig is None:
        ys, xs, sig_at, _ = _laplacian_tests(data, grow_square(seeds, 2) & ~bad, read_noise)
        sig = np.zeros(seeds.shape, np.float32)
        sig[ys, xs] = sig_at
    ok = ~bad
    grown = grow_square(seeds, 1) & ok & (sig > cr_threshold)
    return grow_square(grown, 1) & ok & (sig > neighbor_threshold)


def later_pass(data, crmask, *, bad, read_noise, contrast=5.0, cr_threshold=5.0,
               neighbor_threshold=2.5):
    """``crmask`` and what one more L.A.Cosmic iteration adds to it, computed where it can.

    An iteration cleans the flagged pixels (`clean_hits`) and searches the whole frame
    again. Its tests at a pixel depend on the image within 4 pixels only
    (`_laplacian_tests`), so a new seed can appear only within 4 pixels of a pixel that
    was cleaned, and the two growth steps that follow (into neighbours above
    ``cr_threshold``, then above ``neighbor_threshold``) reach 2 pixels further: the
    tests are made, with exact medians, at the pixels within 6 pixels of a flagged one
    (about 1 % of a frame), and give there what the iteration over the frame would.
    ``bad`` pixels (and saturated ones) and their direct neighbours are never flagged nor
    used to clean a flagged pixel (astroscrappy grows its mask so by one pixel).
    """
    crmask = np.asarray(crmask, bool)
    if not crmask.any():
        return crmask
    bad = grow_square(bad, 1)
    cleaned = clean_hits(data, crmask, bad)
    near = grow_square(crmask, 6)
    region = near & ~bad  # the cleaned pixels too: one can stand out still (astroscrappy)
    ys, xs, sig_at, fine_at = _laplacian_tests(cleaned, region, read_noise)
    sig = np.zeros(crmask.shape, np.float32)
    sig[ys, xs] = sig_at
    within4 = grow_square(crmask, 4)[ys, xs]
    hit = _is_seed(sig_at, fine_at, contrast, cr_threshold) & within4
    if not hit.any():
        return crmask
    seeds = np.zeros(crmask.shape, bool)
    seeds[ys[hit], xs[hit]] = True
    return crmask | _grow_hits(cleaned, seeds, bad=~region, read_noise=read_noise,
                               cr_threshold=cr_threshold,
                               neighbor_threshold=neighbor_threshold, sig=sig)


def star_like(data, crmask, *, ratio=STAR_NEIGHBOUR_RATIO):
    """The flagged pixels whose group looks like part of a star rather than a hit.

    Groups are 8-connected flagged pixels. A group's brightest pixel, measured above the
    median of the 9×9 box's border (the local background), is star-like when one of its
    8 neighbours is brighter (a star's flank, not its peak) or when all 4 direct
    neighbours stand above ``ratio`` of its height (the light spread over a PSF).
    A hit on a star's core counts as the star's unless it at least doubles the core.
    """
    labels, n = ndimage.label(crmask, structure=np.ones((3, 3), bool))
    if not n:
        return np.zeros(crmask.shape, bool)
    data = np.asarray(data, np.float32)
    # each group's brightest pixel (the first in row order among equals) from the flagged
    # pixels alone: scipy's maximum_position sorts the whole frame (0.4-0.8 s a 2048²
    # frame, against 0.02 s)
    ys, xs = pixels(crmask)
    lab, val = labels[ys, xs], data[ys, xs]
    order = np.lexsort((-val, lab))
    first = order[np.r_[True, lab[order][1:] != lab[order][:-1]]]
    peaks = np.c_[ys[first], xs[first]]
    box = _windows(data, peaks[:, 0], peaks[:, 1], 4)                      # (n, 9, 9)
    border = np.concatenate([box[:, 0], box[:, -1], box[:, 1:-1, 0], box[:, 1:-1, -1]], axis=1)
    sky = np.median(border, axis=1)
    height = box[:, 4, 4] - sky
    direct = np.stack([box[:, 3, 4], box[:, 5, 4], box[:, 4, 3], box[:, 4, 5]], 1)
    around = np.concatenate([box[:, 3, 3:6], box[:, 5, 3:6], box[:, 4, 3:6:2]], axis=1)
    star = ((direct - sky[:, None]).min(axis=1) >= ratio * height) | (
        around.max(axis=1) > box[:, 4, 4])
    return np.r_[False, star][labels]


def isolated_hits(data, crmask, *, n=2, half=10, bad=None, max_contrast=3.0,
                  percentile=99.0):
    """Centres of the brightest flagged groups that sit on empty sky, for cut-outs.

    A cut-out meant to show what a hit on the sky looks like must not hold a star. Each
    8-connected group of ``crmask`` gets the box of ``2 half + 1`` pixels around its
    centre; the box's other pixels (the group grown by 2 pixels, every other flagged
    pixel and ``bad`` pixels left out) are its surroundings. A group is isolated when the
    ``percentile`` of its surroundings stands less than ``max_contrast`` robust standard
    deviations (of the surroundings) above their median: noise alone reaches about 2.3
    at the 99th percentile, a star in the box far more. Of the isolated groups, the ``n``
    with the highest peak above the surroundings' median are returned, brightest first;
    if fewer are isolated, the quietest of the rest fill the list.

    Parameters
    ----------
    data : 2-D array
        The frame (any unit); NaN pixels count as ``bad``.
    crmask : bool array
        Flagged pixels (a cosmic-ray mask, or the ``COSMIC`` bit of a ``MASK`` plane).
    n : int
        How many centres to return at most.
    half : int
        Half the side of the box, in pixels (the cut-out's half width).
    bad : bool array, optional
        Pixels that are not part of the surroundings (saturated, dead columns).
    max_contrast, percentile : float
        The isolation test above.

    Returns
    -------
    list of (int, int)
        ``(y, x)`` of the chosen groups' centres (0-based), only boxes wholly inside.

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> img = rng.normal(100.0, 5.0, (60, 60))
    >>> img[10, 10] += 900.0; img[40, 40] += 2000.0; img[40, 43:46] += 3000.0   # 2nd near a "star"
    >>> cr = np.zeros(img.shape, bool); cr[10, 10] = cr[40, 40] = True
    >>> isolated_hits(img, cr, n=1)
    [(10, 10)]
    """
    data = np.asarray(data, float)
    crmask = np.asarray(crmask, bool)
    ny, nx = data.shape
    skip = ~np.isfinite(data) | crmask
    if bad is not None:
        skip = skip | np.asarray(bad, bool)
    labels, count = ndimage.label(crmask, structure=np.ones((3, 3), bool))
    centres = ndimage.center_of_mass(crmask, labels, np.arange(1, count + 1))  # one pass
    found = []  # (isolated, score) per group: isolated ones by peak, the rest by quiet
    for i, centre in enumerate(centres, start=1):
        y, x = (int(round(c)) for c in centre)
        if not (half <= y < ny - half and half <= x < nx - half):
            continue
        box = (slice(y - half, y + half + 1), slice(x - half, x + half + 1))
        hit = ndimage.binary_dilation(labels[box] == i, iterations=2)
        around = data[box][~(hit | skip[box])]
        if around.size < 0.5 * (2 * half + 1) ** 2:
            continue
        level, spread = float(np.median(around)), float(mad_std(around))
        contrast = (float(np.percentile(around, percentile)) - level) / max(spread, 1e-30)
        peak = float(np.nanmax(np.where(labels[box] == i, data[box], np.nan))) - level
        found.append((contrast < max_contrast, peak if contrast < max_contrast else -contrast,
                      (y, x)))
    found.sort(key=lambda f: (not f[0], -f[1]))
    return [f[2] for f in found[:n]]


_MANY_GROUPS = 3000   # groups of bad pixels beyond which `fill_nearest` takes the whole frame


def fill_nearest(data, bad):
    """Copy of ``data`` with ``bad`` pixels replaced by their nearest good neighbour.

    A masked column or saturated core filled with a constant would leave sharp edges
    that L.A.Cosmic takes for cosmic rays; the nearest good value leaves none. The
    distance transform runs on a box around each group of bad pixels (a few hundred
    boxes of a few hundred pixels, not a whole frame: 0.25 -> 0.01 s a 2048² frame),
    grown until every bad pixel's nearest good one lies closer than the box's edge, so
    it is the frame's nearest good pixel. With very many groups (more than
    `_MANY_GROUPS`) one transform of the whole frame is cheaper.
    """
    bad = np.asarray(bad, bool)
    out = np.array(data, np.float32)
    if not bad.any():
        return out
    if bad.all():
        return np.zeros(data.shape, np.float32)
    labels, n = ndimage.label(bad)
    if n > _MANY_GROUPS:
        idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
        return np.asarray(data[tuple(idx)], np.float32)
    ny, nx = bad.shape
    for k, (sy, sx) in enumerate(ndimage.find_objects(labels), start=1):
        grow = 4
        while True:
            y0, y1 = max(sy.start - grow, 0), min(sy.stop + grow, ny)
            x0, x1 = max(sx.start - grow, 0), min(sx.stop + grow, nx)
            whole = (y0, y1, x0, x1) == (0, ny, 0, nx)
            box = bad[y0:y1, x0:x1]
            dist, (iy, ix) = ndimage.distance_transform_edt(box, return_indices=True)
            mine = labels[y0:y1, x0:x1] == k
            if whole or (box.size > mine.sum() and dist[mine].max() <= grow):
                break
            grow *= 2
        out[y0:y1, x0:x1][mine] = data[iy[mine] + y0, ix[mine] + x0]
    return out
