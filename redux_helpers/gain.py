"""The camera's gain and read noise, measured from bias and flat pairs (photon transfer).

When neither the headers nor the manifest say how many electrons make one ADU (the
**gain**, e-/ADU) and how noisy the read-out is (the **read noise**, e-), they are
measured as IRAF's ``findgain`` does (Janesick's photon-transfer method). A flat of
``S`` ADU above bias holds ``g S`` electrons, whose Poisson variance is ``g S`` e², or
``S / g`` ADU²; the read-out adds ``σ_b²`` ADU². The difference of two flats of one
level cancels the flat pattern (dust, vignetting), leaving twice that variance; the
difference of two biases leaves twice ``σ_b²``. So, for flats F1, F2 and biases B1, B2::

    gain       = ((F̄1 + F̄2) - (B̄1 + B̄2)) / (σ²(F1 - F2) - σ²(B1 - B2))   [e-/ADU]
    read noise = gain · σ(B1 - B2) / √2                                     [e-]

`photon_transfer` computes this on arrays over a central region, in sub-regions (tiles)
whose spread gives an honest error, from every pair of biases and of flats of one
filter and similar level; it touches no file. A flat pair a little apart in level is
differenced as ``F1 - r F2`` with ``r = S1 / S2``, so the flat pattern still cancels.
`plan` chooses the frames from an inventory, `check_camera` tells notebook 00 what will
happen, `camera_table` and `fill_inventory` carry the numbers to every later step.

>>> rng = np.random.default_rng(0)
>>> g, rn, level = 2.5, 5.0, 1000.0          # e-/ADU, e-, bias level in ADU
>>> bias = [level + rng.normal(0, rn / g, (200, 200)) for _ in range(2)]
>>> flat = [level + rng.poisson(40000, (200, 200)) / g + rng.normal(0, rn / g, (200, 200))
...         for _ in range(2)]
>>> m = photon_transfer(bias, flat)
>>> round(m.gain, 1), round(m.read_noise, 0)
(2.5, 5.0)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from astropy.stats import sigma_clip, sigma_clipped_stats
from astropy.table import Table

from . import parallel
from .errors import ReduxError
from .inventory import light_binning

log = logging.getLogger(__name__)

MANIFEST_LINES = "gain: <e-/ADU>` and `read_noise: <e->"
WARN_RELATIVE_ERROR = 0.05   # a measured gain or read noise less precise than this: warn


class GainError(ReduxError):
    """The gain and read noise can't be measured; the message names the manifest lines."""


PLACE = "under the target in data_manifest.yaml"   # when the caller names no target


def refusal(why: str, *, place=None) -> GainError:
    """The error to raise when the gain can't be measured, naming the manifest lines.

    ``place`` says where they go (`redux_helpers.manifest.Target.place`).
    """
    msg = (f"the gain and read noise can't be measured: {why}. Measure them another way "
           f"and add `{MANIFEST_LINES}` {place or PLACE}")
    return GainError(msg)


def _refuse(why: str):
    raise refusal(why)


@dataclass
class GainMeasurement:
    """A photon-transfer measurement (see `photon_transfer`)."""

    gain: float             # e-/ADU, median over tiles
    gain_err: float         # e-/ADU, from the spread over tiles
    read_noise: float       # e-
    read_noise_err: float   # e-
    bias_variance: float    # ADU², one bias frame's read-out variance σ²(B1 - B2) / 2
    n_bias: int
    n_flat: int
    n_pairs: int            # flat pairs used
    pairs: Table = field(repr=False)   # one row per flat pair: signal, variance, gain


#: A tile's side is at most this (its centre is used): 65 536 pixels measure a variance to
#: 0.6 %, and on a 2048² chip the measurement then reads 0.39 of the pixels it would.
MAX_TILE_SIDE = 256


def _region(shape, fraction, tiles, max_side=MAX_TILE_SIDE):
    """Slices of ``tiles`` x ``tiles`` sub-regions spread over the central ``fraction``.

    Each is the centre, at most ``max_side`` pixels a side, of its share of that region.
    """
    ny, nx = shape
    y0, x0 = int(ny * (1 - fraction) / 2), int(nx * (1 - fraction) / 2)
    ys = np.linspace(y0, ny - y0, tiles + 1).astype(int)
    xs = np.linspace(x0, nx - x0, tiles + 1).astype(int)

    def centre(lo, hi):
        cut = max(0, (hi - lo - max_side) // 2)
        return slice(lo + cut, hi - cut)

    return [(centre(ys[i], ys[i + 1]), centre(xs[j], xs[j + 1]))
            for i in range(tiles) for j in range(tiles)]


def _clipped(values, sigma):
    """(mean, variance) of ``values`` after iterative ``sigma`` clipping."""
    mean, _, std = sigma_clipped_stats(values, sigma=sigma, maxiters=5)
    return float(mean), float(std) ** 2


def photon_transfer(biases, flats, *, groups=None, names=None, sections=None, fraction=0.8,
                    tiles=4, sigma=4.0, level_tolerance=0.25, saturate=np.inf, max_pairs=20):
    """Gain and read noise from bias pairs and flat pairs (Janesick's photon transfer).

    Parameters
    ----------
    biases : iterable of 2-D arrays
        Bias frames in ADU on the image area (trimmed; overscan removed or not, but
        treated the same way as ``flats``). At least two. Only each frame's tiles are
        kept, so a generator that reads the frames holds one at a time.
    flats : iterable of 2-D arrays
        Flat frames in ADU, the same shape. Pairs are made only of flats of one group
        whose levels above bias agree within ``level_tolerance``.
    groups : list of str, optional
        The group (filter) of each flat; all flats are one group when not given.
    names : list of str, optional
        A name for each flat (file names), for the table of pairs.
    sections : tuple of slices, optional
        ``(biassec, trimsec)`` as `headers.sections` gives them for raw frames: each
        frame's overscan level (its median) is then removed and the image area cut out
        first.
    fraction : float
        The central fraction of each axis measured (edges are often vignetted).
    tiles : int
        The region is cut into ``tiles`` x ``tiles`` sub-regions; each gives its own
        gain, and their spread gives the error.
    sigma : float
        Clip differences this many standard deviations out (cosmic rays, hot pixels).
    level_tolerance : float
        Flats within this fraction of each other's level above bias are a pair. As the
        second flat is scaled to the first, the level matters little; a wide gap is more
        likely to change the lamp's or the twilight's pattern, or the linearity.
    saturate : float
        In the input arrays' units (raw ADU): a flat with 0.1 % of its image area at or
        above it is dropped.
    max_pairs : int
        At most this many bias pairs, and flat pairs per group (closest levels first).

    Returns
    -------
    GainMeasurement
        ``gain`` [e-/ADU] and ``read_noise`` [e-] (medians over tiles of each tile's
        value averaged over every pair) with errors ``1.25 σ / √n_tiles``, and
        ``pairs``: per flat pair the first flat's signal ``S1`` [ADU] above bias, the
        variance ``σ²(F1 - r F2) / (1 + r)`` [ADU²] with ``r = S1 / S2``, and the gain,
        for a photon-transfer plot (variance ≈ bias_variance + signal / gain).

    Raises
    ------
    GainError
        Fewer than two biases, no two flats of one group and level, saturated flats, or
        flats whose variance is not above the biases'.
    """
    # each frame is cut to its tiles as it comes and dropped: only the 16 tiles (at most
    # 256² each) of every frame are held, not the frames (24 of 2048² in float64 were
    # 1.1 GB), and a generator reading the frames one by one is never held whole
    area = sections[1] if sections is not None else (slice(None), slice(None))
    boxes, shape = None, None

    def tiles_of(frames, *, saturation=None):
        nonlocal boxes, shape
        out = []
        for f in frames:
            if saturation is not None:
                saturation.append(float(np.mean(np.asarray(f)[area] >= saturate)))
            a, offset = _area_and_offset(f, sections)   # only the tiles become float
            if shape is None:
                shape = a.shape
                boxes = _region(shape, fraction, tiles)
            if a.shape != shape:
                msg = "bias and flat frames must have one shape (trim them the same way)"
                raise ValueError(msg)
            out.append([a[t].astype(float) - offset for t in boxes])
        return out

    biases = tiles_of(biases)
    sat_frac = []
    flats = tiles_of(flats, saturation=sat_frac)
    groups = list(groups) if groups is not None else [""] * len(flats)
    names = list(names) if names is not None else [f"flat {i + 1}" for i in range(len(flats))]
    if len(biases) < 2:
        _refuse(f"that needs two bias frames or more, and there {_are(len(biases), 'is')}")
    if len(flats) < 2:
        _refuse(f"that needs two flats of one filter and level, and there "
                f"{_are(len(flats), 'is')}")
    nt = len(boxes)

    # bias: each tile's mean level and one frame's read-out variance, σ²(Bi - Bj) / 2
    bias_mean = np.array([[_clipped(b[t], sigma)[0] for t in range(nt)] for b in biases])
    level = bias_mean.mean(axis=0)                          # per tile, ADU
    bias_pairs = list(combinations(range(len(biases)), 2))[:max_pairs]
    var_b = np.median(parallel.each(      # pairs in threads: numpy's clipping frees the GIL
        lambda ij: [_clipped(biases[ij[0]][t] - biases[ij[1]][t], sigma)[1] / 2 for t in range(nt)],
        bias_pairs), axis=0)                                # per tile, ADU²

    # flats: drop saturated ones, then pair within a group by level
    keep = [k for k in range(len(flats)) if sat_frac[k] < 1e-3]
    if len(flats) - len(keep):
        log.info("%d flat(s) saturated: not used for the gain", len(flats) - len(keep))
    signal = {k: np.array([_clipped(flats[k][t], sigma)[0] for t in range(nt)]) - level
              for k in keep}
    pairs = _flat_pairs(keep, groups, signal, level_tolerance=level_tolerance,
                        max_pairs=max_pairs)
    gains, variance = _pair_gains(flats, pairs, nt, signal, level, var_b, sigma=sigma)
    tile_gain = np.nanmean(gains, axis=0)
    ok = np.isfinite(tile_gain)
    if ok.sum() < max(2, nt // 2):
        _refuse("the flat pairs vary no more than the bias pairs (are the flats exposed, "
                "and the biases biases?)")
    tile_rn = tile_gain * np.sqrt(var_b)
    g, rn = float(np.median(tile_gain[ok])), float(np.median(tile_rn[ok]))
    n_ok = int(ok.sum())
    g_err = float(1.2533 * np.std(tile_gain[ok], ddof=1) / np.sqrt(n_ok))
    rn_err = float(1.2533 * np.std(tile_rn[ok], ddof=1) / np.sqrt(n_ok))
    table = Table(rows=[(names[i], names[j], groups[i],
                         float(np.median(signal[i])),
                         float(np.median(variance[p])), float(np.nanmedian(gains[p])))
                        for p, (i, j) in enumerate(pairs)],
                  names=("flat1", "flat2", "group", "signal", "variance", "gain"),
                  dtype=(str, str, str, float, float, float))
    table["signal"].unit, table["variance"].unit = "adu", "adu2"
    table["gain"].unit = "electron/adu"
    log.info("gain %.3f +- %.3f e-/ADU, read noise %.2f +- %.2f e- from %d bias and "
             "%d flat pairs", g, g_err, rn, rn_err, len(bias_pairs), len(pairs))
    return GainMeasurement(gain=g, gain_err=g_err, read_noise=rn, read_noise_err=rn_err,
                           bias_variance=float(np.median(var_b)), n_bias=len(biases),
                           n_flat=len(keep), n_pairs=len(pairs), pairs=table)


def _flat_pairs(keep, groups, signal, *, level_tolerance, max_pairs):
    """Pairs (i, j) of usable flats of one group whose levels agree, closest first."""
    pairs = []
    for grp in dict.fromkeys(groups[k] for k in keep):
        members = [k for k in keep if groups[k] == grp]
        cand = []
        for i, j in combinations(members, 2):
            si, sj = np.median(signal[i]), np.median(signal[j])
            if si > 0 and sj > 0 and abs(si / sj - 1) <= level_tolerance:
                cand.append((abs(si / sj - 1), i, j))
        pairs += [(i, j) for _, i, j in sorted(cand)[:max_pairs]]
    if not pairs:
        why = ("every flat is saturated" if not keep else
               "no two flats of one filter are within "
               f"{100 * level_tolerance:.0f} % of each other's level above bias")
        _refuse(why)
    return pairs


def _pair_gains(flats, pairs, n_tiles, signal, level, var_b, *, sigma):
    """(gain, variance) per pair and tile: S (1 + r) / (σ²(F1 - r F2) - (1 + r²) σ²_bias)."""
    def one_pair(ij):
        i, j = ij
        g, var = np.full(n_tiles, np.nan), np.full(n_tiles, np.nan)
        for t in range(n_tiles):
            r = signal[i][t] / signal[j][t]
            f1 = flats[i][t] - level[t]
            d = f1 - r * (flats[j][t] - level[t])
            # the signal over the very pixels whose variance is measured: a clipped mean
            # would leave out dead columns whose (tiny) variance is in σ²(d)
            kept = ~sigma_clip(d, sigma=sigma, maxiters=5).mask
            v, s1 = float(np.var(d[kept])), float(np.mean(f1[kept]))
            var[t] = v / (1 + r)
            excess = v - (1 + r ** 2) * var_b[t]
            if excess > 0:
                g[t] = s1 * (1 + r) / excess
        return g, var

    done = parallel.each(one_pair, pairs)        # pairs in threads, as the biases'
    gains = np.array([g for g, _ in done]).reshape(len(pairs), n_tiles)
    variance = np.array([v for _, v in done]).reshape(len(pairs), n_tiles)
    return gains, variance


def _area_and_offset(frame, sections):
    """(the frame's image area as it is, its overscan's median to subtract; 0 without).

    One level per frame, not one per row: a row's median of a few overscan columns has
    noise of its own, which would add to the read noise measured.
    """
    frame = np.asarray(frame)
    if sections is None:
        return frame, 0.0
    (by, bx), (ty, tx) = sections
    return frame[ty, tx], float(np.median(frame[by, bx].astype(float)))


def _are(n, verb):
    return f"{verb} {n}" if n == 1 else f"are {n}"


# ---- choosing frames from an inventory, and saying what will happen ------------------
@dataclass
class Plan:
    """The frames a photon-transfer measurement would use (see `plan`)."""

    biases: list            # file names
    flat_groups: list       # [(filter, [file names of one level]), ...] of 2+ flats
    why_not: str = ""       # empty when it can be measured

    @property
    def n_flat_pairs(self) -> int:
        return sum(len(f) * (len(f) - 1) // 2 for _, f in self.flat_groups)

    @property
    def n_bias_pairs(self) -> int:
        return len(self.biases) * (len(self.biases) - 1) // 2


def plan(inv, *, level_tolerance=0.25, flat_sat_frac=0.0):
    """Which biases and flats of an inventory would measure the gain, or why none can.

    Uses the frames whose binning matches the lights; flats with more than
    ``flat_sat_frac`` of their pixels saturated are left out; flats of one filter are
    grouped by level above bias (within ``level_tolerance``).
    """
    binning = light_binning(inv)
    usable = inv[(inv["frametype"] != "unreadable") & (inv["binning"] == binning)]
    biases = usable[usable["frametype"] == "bias"]
    flats = usable[usable["frametype"] == "flat"]
    saturated = flats[np.asarray(flats["sat_frac"], float) > flat_sat_frac]
    flats = flats[np.asarray(flats["sat_frac"], float) <= flat_sat_frac]
    bias_level = float(np.median(biases["median"])) if len(biases) else 0.0
    found = []
    for filt in sorted(set(flats["filter"])):
        sub = flats[flats["filter"] == filt]
        levels = np.asarray(sub["median"], float) - bias_level
        order = np.argsort(levels)
        group = [order[0]]
        for k in order[1:]:
            if levels[k] <= levels[group[0]] * (1 + level_tolerance) and levels[k] > 0:
                group.append(k)
            else:
                found.append((filt, group))
                group = [k]
        found.append((filt, group))
    flat_groups = [(f, [str(sub_file) for sub_file in flats[flats["filter"] == f]["file"][g]])
                   for f, g in found if len(g) >= 2]
    why = ""
    if len(biases) < 2:
        why = f"it needs two bias frames or more, and there {_are(len(biases), 'is')}"
    elif not flat_groups:
        why = (f"it needs two flats of one filter within {100 * level_tolerance:.0f} % "
               "of each other's level, and there are none"
               + (f" ({len(saturated)} flat(s) are saturated)" if len(saturated) else ""))
    return Plan(biases=[str(f) for f in biases["file"]], flat_groups=flat_groups, why_not=why)


def missing(inv):
    """Rows of an inventory (readable frames) with no gain or no read noise."""
    ok = inv[inv["frametype"] != "unreadable"]
    bad = ~np.isfinite(np.asarray(ok["gain"], float)) | \
        ~np.isfinite(np.asarray(ok["read_noise"], float))
    return ok[bad]


def check_camera(inv, problems=None, *, place=None, **plan_options):
    """What notebook 00 says about the gain and read noise, and the problems it adds.

    Parameters
    ----------
    inv : `~astropy.table.Table`
        The inventory (`inventory.build_inventory`).
    problems : `~astropy.table.Table`, optional
        `inventory.find_problems`'s table, to which the camera's problems are added.
    place : str, optional
        Where the manifest lines go, for the message (`redux_helpers.manifest.Target.place`).
    **plan_options
        Passed to `plan`.

    Returns
    -------
    note : str
        One sentence: where the gain and read noise come from, or that 02 will measure
        them from N bias and M flat pairs.
    problems : `~astropy.table.Table`
        ``problems`` with an ``error`` row for each frame whose amplifiers disagree, and
        one when the gain can't be measured (naming the manifest lines to add).
    """
    rows = []
    ok = inv[inv["frametype"] != "unreadable"]
    has_problem = "camera_problem" in ok.colnames
    for r in ok[[bool(p) for p in ok["camera_problem"]]] if has_problem else []:
        rows.append(("error", r["file"], r["camera_problem"],
                     "reduce each amplifier's section as a frame of its own, or exclude it"))
    lacking = missing(ok)
    if not len(ok):
        note = "no frames: nothing to say about the gain"
    elif not len(lacking):
        keys = sorted({str(k) for k in ok["gain_key"]}) if "gain_key" in ok.colnames else []
        note = (f"gain {np.nanmedian(np.asarray(ok['gain'], float)):g} e-/ADU and read noise "
                f"{np.nanmedian(np.asarray(ok['read_noise'], float)):g} e- from "
                + (", ".join(keys) or "the headers"))
    else:
        p = plan(inv, **plan_options)
        if p.why_not:
            note = "no gain/read noise in the headers or the manifest, and 02 can't measure it"
            rows.append(("error", "", f"{len(lacking)} frame(s) have no gain/read noise in "
                         f"the headers or the manifest, and 02 can't measure it: {p.why_not}",
                         f"add `{MANIFEST_LINES}` {place or PLACE}"))
        else:
            note = (f"no gain/read noise in the headers: 02 will measure it from "
                    f"{p.n_bias_pairs} bias and {p.n_flat_pairs} flat pairs")
        why = sorted({str(k) for k in lacking["gain_key"]} - {"none", ""}) \
            if "gain_key" in lacking.colnames else []
        if why:
            note += f" ({'; '.join(why)})"
    out = Table(rows=rows or None, names=("severity", "file", "problem", "what_to_do"),
                dtype=(str, str, str, str))
    if problems is not None and len(problems):
        from astropy.table import vstack
        out = vstack([problems, out]) if len(out) else problems
    return note, out


# ---- carrying the numbers to the later steps -----------------------------------------
CAMERA_COLUMNS = ("gain", "gain_err", "read_noise", "read_noise_err", "gain_source",
                  "read_noise_source", "n_bias", "n_pairs")


def camera_table(*, gain, gain_err, read_noise, read_noise_err, gain_source,
                 read_noise_source, n_bias=0, n_pairs=0) -> Table:
    """The one-row table of ``02_superflat/camera.ecsv`` (units on the columns).

    Sources are ``'header'``, ``'manifest'`` or ``'measured'``; errors are NaN for
    numbers the headers or the manifest gave.
    """
    for src in (gain_source, read_noise_source):
        if src not in ("header", "manifest", "measured"):
            msg = f"source must be 'header', 'manifest' or 'measured', got '{src}'"
            raise ValueError(msg)
    t = Table(rows=[(float(gain), float(gain_err), float(read_noise), float(read_noise_err),
                     gain_source, read_noise_source, int(n_bias), int(n_pairs))],
              names=CAMERA_COLUMNS)
    t["gain"].unit = t["gain_err"].unit = "electron/adu"
    t["read_noise"].unit = t["read_noise_err"].unit = "electron"
    return t


def fill_inventory(inv, camera) -> Table:
    """A copy of ``inv`` whose missing gains and read noises are ``camera``'s.

    Values the headers or the manifest gave are kept; the ``gain_key`` and
    ``read_noise_key`` of a filled row become ``'measured in 02'`` (or the camera
    table's source). ``inv`` is not changed.
    """
    out = inv.copy()
    if camera is None or not len(camera):
        return out
    c = camera[0]
    for q in ("gain", "read_noise"):
        values = np.asarray(out[q], float)
        lack = ~np.isfinite(values)
        if lack.any() and np.isfinite(float(c[q])):
            values[lack] = float(c[q])
            out[q] = values
            out[q].unit = inv[q].unit
            key = f"{q}_key"
            if key in out.colnames:
                src = str(c[f"{q}_source"])
                label = "measured in 02" if src == "measured" else src
                out[key] = [label if m else k for k, m in zip(out[key], lack, strict=True)]
    return out


def require_camera(inv, *, what="this step", place=None):
    """Raise a `GainError` naming the manifest lines when a frame still has no gain."""
    lacking = missing(inv)
    if len(lacking):
        names = ", ".join(str(f) for f in lacking["file"][:5]) + (" ..." if len(lacking) > 5 else "")
        msg = (f"{len(lacking)} frame(s) have no gain or read noise ({names}), which "
               f"{what} needs: the headers don't give them, and 02_superflat did not measure "
               f"them (run it first). Or add `{MANIFEST_LINES}` {place or PLACE}")
        raise GainError(msg)
    return inv
