"""Quality assessment: one table of metrics from every step, each with a flag and a reason.

`collect` reads what each step of a target's chain wrote (headers, tables, images) and
returns one row per metric: the step, a short name, the value with its error and unit,
a flag and one sentence saying why. A step whose products are missing adds no rows, so
a target that starts at 08 gets the rows of 08 onwards. A product that is there but
can't be read adds one ``fail`` row naming it.

Flags
-----
``pass``
    Within the threshold given in the reason.
``warn``
    Outside it: the product may still be usable, but look at the step's notebook.
``fail``
    The product is not usable as it is (e.g. a fifth of a flat is unusable).
``info``
    A number worth knowing with no threshold, or a comparison with the demo's truth.

Thresholds (each reason sentence states the one it used)
--------------------------------------------------------
========================  ==============================================================
00 problems               warn if the inventory listed any problem, fail if one is an
                          error (the chain can't go on)
01 superbias noise        pass within 0.8-1.25 x the expected read noise / gain / sqrt(N)
                          (x 1.2533 for a median of 3 or more), measured from differences of
                          neighbouring rows, which cancel the fixed pattern
02 gain, read noise       info when the headers or the manifest give them; measured
                          (photon transfer): pass if the relative error is at most 5 %
02 flat normalisation     pass if the median of the central half is within 1 % of 1
02 flat pixel-to-pixel    warn above 3 % (robust rms of flat / its 5x5 median)
02 flat noise             warn if the flat's own uncertainty is above 1 % per pixel
                          (info when it has none: made from a single flat)
02 flat outliers          warn if more than 2 % of pixels are < 0.5 or > 1.5 (or NaN),
                          fail above 25 %
03 cosmic rays            warn if a frame's CR fraction exceeds 5 x (median CR rate per
                          second x its exposure time) + 0.05 %, or 1 % of the frame
04 masked pixels          warn if a frame has more than 5 % of its pixels flagged
05 sky noise / UNCERT     pass within 0.85-1.2: the uncertainty plane is honest
05 sky noise / Poisson    pass within 0.9-1.3 x sqrt(sky + read noise^2) (frames in e-)
05 sky rate scatter       fail if a frame's sky rate (sky / exposure time) differs from
                          the median of the other frames of its filter by more than 20 %
                          (the frames named): a sky wrong in 05, or a sky that changed
06 bad pixels             warn above 2 %, fail above 10 % of the chip
07 registration residual  warn above 0.25 px (worst frame), fail above 1 px
07 frames left out        warn if any frame was left out of a stack
07 stack depth            warn if fewer than 3 frames (no outlier rejection possible)
07 stack rejection        fail if a stack rejected more than 5 % of its values
                          (``REJFRAC``), naming the frames with the most rejected
08 zero point             warn if its error is above 0.05 mag or none was measured
08 extinction             warn if k was not fitted (taken as given) or its error > 0.05
08 standards              warn with fewer than 3 used, or more than 20 % rejected
08 fit rms                warn above 0.05 mag
09 continuum scale        warn if its relative error is above 5 %
09 HII regions            warn if none was found
10 anchoring              warn if abs(slope - 1) > 0.2 or fewer than 5 bins
10 nebulae ours / MUSE    warn if abs(median ratio - 1) > 0.05; scatter warns above
                          twice what the flux errors explain
========================  ==============================================================

On the demo night, rows flagged ``info`` compare results with the truth the demo wrote
(``redux_helpers.targets.demo_truth``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.stats import mad_std
from astropy.table import Table
from scipy import ndimage

from . import fitsio, masks, masters, muse, product_names, provenance
from .background import MAX_RATE_SCATTER, rate_outliers
from .errors import FrameError, ReduxError
from .gain import WARN_RELATIVE_ERROR as GAIN_WARN
from .targets import demo_truth

log = logging.getLogger(__name__)

FLAGS = ("info", "pass", "warn", "fail")      # in order of concern
COLUMNS = ("step", "metric", "value", "error", "unit", "flag", "reason")

# ---- thresholds (the module docstring lists them; each reason sentence states its own)
BIAS_NOISE_RANGE = (0.8, 1.25)        # measured / expected superbias noise
FLAT_NORM_TOL = 0.01                  # |median of the central half - 1|
FLAT_P2P_WARN = 3.0                   # %, pixel-to-pixel rms
FLAT_NOISE_WARN = 1.0                 # %, median UNCERT of the superflat
FLAT_OUTLIER_WARN, FLAT_OUTLIER_FAIL = 2.0, 25.0   # % of pixels < 0.5 or > 1.5
FLAT_RANGE = (0.5, 1.5)
CR_FACTOR, CR_FLOOR, CR_MAX = 5.0, 0.05, 1.0       # x expected; % ; %
MASKED_WARN = 5.0                     # % of a calibrated frame flagged
UNCERT_RANGE = (0.85, 1.2)            # sky rms / median UNCERT
POISSON_RANGE = (0.9, 1.3)            # sky rms / sqrt(sky + RN^2)
BADPIX_WARN, BADPIX_FAIL = 2.0, 10.0  # % of the chip
REG_WARN, REG_FAIL = 0.25, 1.0        # px, worst registration residual
REJECT_FAIL = 5.0                     # % of a stack's values rejected
SKY_SCATTER_FAIL = 100 * MAX_RATE_SCATTER   # % a frame's sky rate from its filter's others
MIN_DEPTH = 3                         # frames in a stack
ZP_ERR_WARN = 0.05                    # mag
K_ERR_WARN = 0.05                     # mag/airmass
MIN_STANDARDS, MAX_REJECTED = 3, 0.2
ZP_RMS_WARN = 0.05                    # mag
CONT_SCALE_REL_WARN = 0.05            # relative error of the continuum scale
ANCHOR_SLOPE_TOL, ANCHOR_MIN_BINS = 0.2, 5
NEBULA_BIAS_TOL, NEBULA_SCATTER_FACTOR = 0.05, 2.0
MAD_TO_SIGMA = 1.4826


class _Rows:
    """Collects metric rows for one step."""

    def __init__(self):
        self.rows = []
        self.step = ""

    def add(self, metric, value, *, error=np.nan, unit="", flag="info", reason=""):
        if flag not in FLAGS:
            msg = f"flag must be one of {', '.join(FLAGS)}, got {flag!r}"
            raise ValueError(msg)
        self.rows.append((self.step, metric, _float(value), _float(error), unit, flag, reason))


def _float(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _within(value, lo, hi) -> str:
    return "pass" if lo <= value <= hi else "warn"


def _fmt(x, digits=3) -> str:
    """A number for a sentence: 3 significant digits, no exponent for everyday sizes."""
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:.{digits}g}"


def collect(paths, target) -> Table:
    """The QA table of one target: a row per metric from every step that left products.

    Parameters
    ----------
    paths : `redux_helpers.targets.Paths`
        Where the target's products are (``paths.step('01_superbias')`` etc.).
    target : `redux_helpers.manifest.Target`
        The target's settings (read noise, gain, filters) and, for the demo, its truth.

    Returns
    -------
    `~astropy.table.Table`
        Columns ``step``, ``metric``, ``value``, ``error`` (NaN if none), ``unit``,
        ``flag`` ('pass', 'warn', 'fail' or 'info') and ``reason``; the module docstring
        lists the thresholds behind the flags.
    """
    try:
        truth = demo_truth(target)
    except FileNotFoundError:          # a demo target whose night is not made yet
        truth = None
    out = _Rows()
    for step, collector in _COLLECTORS:
        folder = paths.step(step)
        if not folder.is_dir():
            continue
        out.step = step
        try:
            collector(paths, target, truth, out)
        except (OSError, ValueError, KeyError, FrameError) as exc:
            log.warning("%s: products could not be read: %s", step, exc)
            out.add("products_readable", 0, flag="fail",
                    reason=f"a product of {step} could not be read ({type(exc).__name__}: "
                           f"{exc}); re-run {step}")
    table = Table(rows=out.rows or None, names=COLUMNS,
                  dtype=(str, str, float, float, str, str, str))
    table["value"].info.format = ".5g"
    table["error"].info.format = ".3g"
    table.meta["comment"] = ("redux QA: one row per metric; flags pass/warn/fail/info, "
                             "thresholds in each reason")
    table.meta["target"] = target.name
    return table


def flags_summary(table) -> dict:
    """Counts of each flag and the worst one: ``{'pass': n, ..., 'worst': 'warn', 'n': N}``.

    The order of concern is info < pass < warn < fail; a table with no rows has
    worst 'info' (nothing was judged).

    >>> t = Table({"flag": ["pass", "warn", "info", "pass"]})
    >>> s = flags_summary(t)
    >>> s["pass"], s["warn"], s["fail"], s["worst"]
    (2, 1, 0, 'warn')
    """
    flags = [str(f) for f in table["flag"]] if len(table) else []
    unknown = sorted(set(flags) - set(FLAGS))
    if unknown:
        msg = f"unknown flag(s) {', '.join(unknown)} in the QA table; flags are {', '.join(FLAGS)}"
        raise ValueError(msg)
    counts = {f: flags.count(f) for f in FLAGS}
    worst = max(flags, key=FLAGS.index) if flags else "info"
    return {**counts, "worst": worst, "n": len(flags)}


def nebula_comparison(ours, muse_map, labels, *, ours_err=None, muse_err=None,
                      before=None, unit=None) -> Table:
    """Per-nebula flux sums of two images on one grid, over a nebula mask.

    Parameters
    ----------
    ours, muse_map : 2-D arrays
        Our image and the reference (MUSE) map, on the mask's pixel grid and in the
        same flux-per-pixel units.
    labels : 2-D array
        Nebula ids >= 0; negative (PHANGS writes -1) or NaN is background, as
        `redux_helpers.muse.read_nebulae` returns it.
    ours_err, muse_err : 2-D arrays, optional
        One-sigma uncertainty per pixel; the sums' errors add them in quadrature
        (which is too small where the noise of neighbouring pixels is correlated,
        e.g. after smoothing or regridding).
    before : 2-D array, optional
        Our image before anchoring, for a ``flux_before`` column.
    unit : str or `~astropy.units.Unit`, optional
        The images' flux-per-pixel unit (e.g. ``'erg / (s cm2)'``), given to every
        ``flux`` column.

    Returns
    -------
    `~astropy.table.Table`
        ``id``, ``n_pixels`` (pixels summed), ``n_invalid`` (pixels of the nebula left
        out because one image is not finite there), ``flux_ours``, ``flux_ours_err``,
        ``flux_muse``, ``flux_muse_err`` and ``flux_before`` when given. A pixel
        counts only where every image given is finite, so all sums cover the same
        pixels. The sums are `redux_helpers.muse.nebula_sums`'.

    Examples
    --------
    >>> lab = np.array([[1, 1, -1], [-1, 2, 2]])
    >>> t = nebula_comparison(np.ones((2, 3)), 2 * np.ones((2, 3)), lab)
    >>> t["flux_ours"].tolist(), t["flux_muse"].tolist()
    ([2.0, 2.0], [4.0, 4.0])
    """
    images = {"ours": ours, "muse": muse_map, "ours_err": ours_err, "muse_err": muse_err,
              "before": before}
    images = {k: np.asarray(v, float) for k, v in images.items() if v is not None}
    shape = np.shape(labels)
    if any(im.shape != shape for im in images.values()):
        msg = (f"nebula_comparison: the images are {[im.shape for im in images.values()]} but "
               f"the nebula labels {shape}; regrid them onto the labels' grid first")
        raise ReduxError(msg)
    valid = np.ones(shape, bool)
    for im in images.values():
        valid &= np.isfinite(im)
    blank = {k: np.where(valid, im, np.nan) for k, im in images.items()}
    sums = {name: muse.nebula_sums(blank[name], labels, error=blank.get(f"{name}_err"))
            for name in ("ours", "muse")}
    first = sums["ours"]
    tab = Table({"id": np.asarray(first["id"], int),
                 "n_pixels": np.asarray(first["npix"] - first["n_bad"], int),
                 "n_invalid": np.asarray(first["n_bad"], int)})
    for name, s in sums.items():
        tab[f"flux_{name}"] = np.asarray(s["flux"], float)
        tab[f"flux_{name}_err"] = (np.asarray(s["flux_err"], float) if "flux_err" in s.colnames
                                   else np.full(len(tab), np.nan))
    if "before" in blank:
        tab["flux_before"] = np.asarray(muse.nebula_sums(blank["before"], labels)["flux"], float)
    empty = tab["n_pixels"] == 0
    for col in tab.colnames:
        if col.startswith("flux"):
            tab[col][empty] = np.nan
            tab[col].unit = unit
    tab.meta["comment"] = ("per-nebula sums over the nebula mask; only pixels where every "
                           "image is finite; errors in quadrature (correlated noise not "
                           "included)")
    return tab


def comparison_stats(tab, col="flux_ours", ref="flux_muse") -> dict:
    """How ``col`` compares with ``ref`` row by row: the ratio's median and scatter.

    Rows where either is not finite or ``ref`` is not positive are left out.

    Returns
    -------
    dict
        ``median`` (of col / ref), ``scatter`` (1.4826 x the median absolute
        deviation of the ratio), ``scatter_dex`` (the same of log10 of the positive
        ratios), ``p16``, ``p84`` (percentiles of the ratio), ``n`` (rows used) and,
        when ``{col}_err`` and ``{ref}_err`` columns exist, ``expected_scatter``: the
        median relative error of the ratio from those errors.

    Examples
    --------
    >>> t = Table({"flux_ours": [1.0, 2.2, 2.7], "flux_muse": [1.0, 2.0, 3.0]})
    >>> s = comparison_stats(t)
    >>> round(s["median"], 3), s["n"]
    (1.0, 3)
    """
    a, b = np.asarray(tab[col], float), np.asarray(tab[ref], float)
    ok = np.isfinite(a) & np.isfinite(b) & (b > 0)
    ratio = a[ok] / b[ok]
    out = {"n": int(ratio.size), "median": np.nan, "scatter": np.nan, "scatter_dex": np.nan,
           "p16": np.nan, "p84": np.nan, "expected_scatter": np.nan}
    if not ratio.size:
        return out
    med = float(np.median(ratio))
    out.update(median=med, scatter=float(MAD_TO_SIGMA * np.median(np.abs(ratio - med))),
               p16=float(np.percentile(ratio, 16)), p84=float(np.percentile(ratio, 84)))
    pos = ratio[ratio > 0]
    if pos.size:
        lr = np.log10(pos)
        out["scatter_dex"] = float(MAD_TO_SIGMA * np.median(np.abs(lr - np.median(lr))))
    if f"{col}_err" in tab.colnames and f"{ref}_err" in tab.colnames:
        ea = np.asarray(tab[f"{col}_err"], float)[ok]
        eb = np.asarray(tab[f"{ref}_err"], float)[ok]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(ratio) * np.hypot(ea / a[ok], eb / b[ok])
        rel = rel[np.isfinite(rel)]
        if rel.size:
            out["expected_scatter"] = float(np.median(rel))
    return out


# ---- per-step collectors --------------------------------------------------------------
def _inventory(paths) -> Table | None:
    """00's inventory with 02's gain and read noise where the headers had none."""
    return masters.read_inventory(paths, need_camera=False) if paths.inventory.is_file() else None


def _inspect(paths, target, truth, out):
    inv = _inventory(paths)
    if inv is not None:
        kinds = {str(k) for k in inv["frametype"]}
        order = ("bias", "dark", "flat", "light", "standard")
        for kind in [*order, *sorted(kinds - set(order))]:
            sel = inv[inv["frametype"] == kind]
            if not len(sel) and kind not in ("bias", "flat", "light"):
                continue
            filters = sorted({str(f) for f in sel["filter"] if str(f)}) \
                if "filter" in inv.colnames else []
            per = ", ".join(f"{f} {int(np.sum(sel['filter'] == f))}" for f in filters)
            out.add(f"n_{kind}", len(sel), unit="frames",
                    flag="warn" if kind == "unreadable" and len(sel) else "info",
                    reason=f"{len(sel)} {kind} frame(s) in the inventory"
                    + (f" ({per})" if per and kind != "bias" else "")
                    + ("; unreadable files are left out of every step" if kind == "unreadable"
                       and len(sel) else ""))
    p = paths.step("00_inspect") / "problems.ecsv"
    if p.is_file():
        problems = fitsio.read_table(p)
        n_err = int(np.sum(problems["severity"] == "error")) if len(problems) else 0
        listed = "; ".join(f"{r['severity']}: {(r['file'] + ': ') if r['file'] else ''}"
                           f"{r['problem']}" for r in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        if not len(problems):
            flag, reason = "pass", "the inventory found no problem (warn if any is listed)"
        else:
            flag = "fail" if n_err else "warn"
            reason = (f"{len(problems)} problem(s) listed by 00_inspect, {n_err} error(s): "
                      f"{listed}{more}")
        out.add("n_problems", len(problems), unit="problems", flag=flag, reason=reason)


def _noise_params(inv, header, target, kind):
    """(read noise e-, gain e-/ADU) of frames of ``kind``: inventory, header, manifest."""
    rn = gain = np.nan
    if inv is not None and "read_noise" in inv.colnames:
        sel = inv[inv["frametype"] == kind]
        if len(sel):
            rn = float(np.nanmedian(np.asarray(sel["read_noise"], float)))
            gain = float(np.nanmedian(np.asarray(sel["gain"], float)))
    if not np.isfinite(rn):
        rn = _float(header.get("RDNOISE", target.get("read_noise")))
    if not np.isfinite(gain):
        gain = _float(header.get("GAIN", target.get("gain")))
    return rn, gain


def _superbias(paths, target, truth, out):
    path = paths.step("01_superbias") / "superbias.fits"
    if not path.is_file():
        return
    p = fitsio.read_product(path)
    d = p.data[np.isfinite(p.data)]
    level = float(np.median(d))
    out.add("superbias_level", level, unit="ADU",
            reason=f"median of the superbias: {level:.2f} ADU (after overscan subtraction "
                   "where the camera has one)")
    structure = float(mad_std(d))
    out.add("superbias_structure", structure, unit="ADU",
            reason=f"robust rms {structure:.2f} ADU across the superbias: the fixed pattern "
                   "(and noise) the superbias removes from every frame")
    # the noise: differences of neighbouring rows cancel column offsets and gradients
    diff = np.diff(p.data, axis=0)
    noise = float(mad_std(diff[np.isfinite(diff)]) / np.sqrt(2))
    n = int(p.header.get("NINPUTS", 0))
    method = "median"
    for line in provenance.history(p.header, "01_superbias"):
        if line.startswith("01_superbias: method="):
            method = line.split("=", 1)[1].strip()
    rn, gain = _noise_params(_inventory(paths), p.header, target, "bias")
    # a median of many values is 1.2533 x noisier than their mean; of one or two, it is the mean
    median_factor = method == "median" and n > 2
    factor = 1.2533 if median_factor else 1.0
    if n > 0 and np.isfinite(rn) and np.isfinite(gain) and gain > 0:
        expected = factor * rn / gain / np.sqrt(n)
        ratio = noise / expected
        lo, hi = BIAS_NOISE_RANGE
        flag = _within(ratio, lo, hi)
        reason = (f"superbias noise {noise:.2f} ADU is {ratio:.2f} x the expected "
                  f"{'1.25 x ' if median_factor else ''}read noise / gain / sqrt(N) = "
                  f"{expected:.2f} ADU ({rn:g} e-, {gain:g} e-/ADU, N = {n}, {method}); "
                  f"pass within {lo:g}-{hi:g} x")
        if flag == "warn":
            reason += ("; more noise: correlated noise or rejected frames; less: the "
                       "bias frames were already averages, or the read noise or gain in "
                       "the headers/manifest is wrong")
    else:
        flag = "info"
        reason = (f"superbias noise {noise:.2f} ADU (from neighbouring-row differences); "
                  "no read noise, gain or frame count to compare with")
    out.add("superbias_noise", noise, unit="ADU", flag=flag, reason=reason)
    if truth is not None:
        true = truth.image("bias_pattern")
        if true.shape == p.data.shape:
            resid = p.data - true
            rms = float(np.nanstd(resid))
            limit = 1.5 * truth["read_noise"] / truth["gain"] / np.sqrt(max(n, 1))
            out.add("superbias_vs_truth", rms, unit="ADU",
                    reason=f"rms of superbias - true bias pattern {rms:.2f} ADU "
                           f"(1.5 x read noise / gain / sqrt(N) = {limit:.2f} ADU)")


def _camera(paths, truth, out):
    """The gain and read noise every step used, with their error and source."""
    cam = masters.read_camera(paths)
    if cam is None or not len(cam):
        return
    c = cam[0]
    for q, unit, name in (("gain", "e-/ADU", "gain"), ("read_noise", "e-", "read noise")):
        value, err, source = float(c[q]), float(c[f"{q}_err"]), str(c[f"{q}_source"])
        if source == "measured":
            rel = err / value if value > 0 else np.inf
            flag = "pass" if rel <= GAIN_WARN else "warn"
            reason = (f"{name} {_fmt(value, 4)} +- {_fmt(err, 2)} {unit} measured by photon "
                      f"transfer from {int(c['n_bias'])} biases and {int(c['n_pairs'])} flat "
                      f"pairs ({100 * rel:.1f} %); pass within "
                      f"{100 * GAIN_WARN:g} %")
        else:
            flag = "info"
            reason = f"{name} {_fmt(value, 4)} {unit} from the {source}"
        if truth is not None:
            reason += f"; the demo's truth is {truth[q]:g} {unit}"
        out.add(q, value, error=err, unit=unit, flag=flag, reason=reason)


def _superflat(paths, target, truth, out):
    folder = paths.step("02_superflat")
    _camera(paths, truth, out)
    for path in sorted(folder.glob("superflat_*.fits")):
        filt = path.name.removeprefix("superflat_").removesuffix(".fits")
        p = fitsio.read_product(path)
        d = p.data
        ny, nx = d.shape
        centre = d[ny // 4: 3 * ny // 4, nx // 4: 3 * nx // 4]
        norm = float(np.nanmedian(centre))
        out.add(f"flat_norm_{filt}", norm,
                flag="pass" if abs(norm - 1) <= FLAT_NORM_TOL else "warn",
                reason=f"median of the central half of the {filt} superflat is {norm:.4f}; "
                       f"pass within {100 * FLAT_NORM_TOL:g} % of 1 (each flat is "
                       "normalised there)")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = d / ndimage.median_filter(np.nan_to_num(d), size=5)
        good = np.isfinite(ratio) & (d > FLAT_RANGE[0]) & (d < FLAT_RANGE[1])
        p2p = 100 * float(mad_std(ratio[good])) if good.any() else np.nan
        out.add(f"flat_p2p_{filt}", p2p, unit="%",
                flag="pass" if p2p <= FLAT_P2P_WARN else "warn",
                reason=f"pixel-to-pixel rms of the {filt} flat (robust rms of flat / its "
                       f"5x5 median) is {_fmt(p2p)} %; warn above {FLAT_P2P_WARN:g} %")
        unc_centre = (p.uncertainty[ny // 4: 3 * ny // 4, nx // 4: 3 * nx // 4]
                      if p.uncertainty is not None else np.array([np.nan]))
        if np.isfinite(unc_centre).any():
            unc = 100 * float(np.nanmedian(unc_centre))
            out.add(f"flat_noise_{filt}", unc, unit="%",
                    flag="pass" if unc <= FLAT_NOISE_WARN else "warn",
                    reason=f"the {filt} superflat's own uncertainty is {_fmt(unc)} % per "
                           f"pixel (median, central half); it adds to every frame's noise: "
                           f"warn above {FLAT_NOISE_WARN:g} %")
        else:
            n_in = int(p.header.get("NINPUTS", 0))
            out.add(f"flat_noise_{filt}", np.nan, unit="%",
                    reason=f"the {filt} superflat has no uncertainty (made from {n_in} "
                           "flat(s): the noise of fewer than 2 can't be measured), so its "
                           "noise is not in the frames' UNCERT either")
        lo, hi = FLAT_RANGE
        with np.errstate(invalid="ignore"):
            outside = 100 * float(np.mean(~((d >= lo) & (d <= hi))))
        flag = ("fail" if outside > FLAT_OUTLIER_FAIL else
                "warn" if outside > FLAT_OUTLIER_WARN else "pass")
        out.add(f"flat_outliers_{filt}", outside, unit="%", flag=flag,
                reason=f"{outside:.2f} % of the {filt} flat's pixels are below {lo:g}, above "
                       f"{hi:g} or not finite (dead columns, vignetting, no data); warn above "
                       f"{FLAT_OUTLIER_WARN:g} %, fail above {FLAT_OUTLIER_FAIL:g} %")
        if truth is not None and (truth.dir / f"flat_{filt}.fits").is_file():
            true = truth.image(f"flat_{filt}")
            if true.shape == d.shape:
                ok = (true > lo) & np.isfinite(d)
                rms = 100 * float(mad_std(d[ok] / true[ok] - 1))
                out.add(f"flat_vs_truth_{filt}", rms, unit="%",
                        reason=f"robust rms of {filt} flat / true flat - 1: {rms:.3f} % "
                               "(the flat's noise, plus any error in its shape)")
    for path in sorted(folder.glob("superdark*.fits")):
        p = fitsio.read_product(path)
        rate = float(np.nanmedian(p.data))
        name = path.name.removesuffix(".fits").removeprefix("superdark").strip("_") or "all"
        reason = (f"median dark current of {path.name}: {_fmt(rate)} {p.unit or 'e-/s'} "
                  f"({int(p.header.get('NINPUTS', 0))} darks)")
        if truth is not None:
            true = truth.image("dark_current")
            reason += f"; the demo's true median is {_fmt(float(np.median(true)))} e-/s"
        out.add(f"dark_rate_{name}", rate, unit=p.unit or "e-/s", reason=reason)


def _exptimes(paths) -> dict:
    inv = _inventory(paths)
    if inv is None or "exptime" not in inv.colnames:
        return {}
    return {str(r["file"]): _float(r["exptime"]) for r in inv}


def _cosmics(paths, target, truth, out):
    path = paths.step("03_cosmics") / "cosmics.ecsv"
    if not path.is_file():
        return
    tab = fitsio.read_table(path)
    if not len(tab):
        return
    frac = 100 * np.asarray(tab["fraction"], float)          # percent
    files = [str(f) for f in tab["file"]]
    out.add("cr_fraction_median", float(np.median(frac)), unit="%",
            reason=f"median fraction of pixels flagged as cosmic rays over {len(tab)} frames")
    t = np.array([_exptimes(paths).get(f, np.nan) for f in files])
    have_t = np.isfinite(t) & (t > 0)
    if have_t.sum() >= 2:
        rate = float(np.median(frac[have_t] / t[have_t]))     # % per second
        expected = np.where(have_t, CR_FACTOR * rate * t + CR_FLOOR, np.nan)
        basis = (f"{CR_FACTOR:g} x the median rate {_fmt(rate * 3600)} %/hour x its exposure "
                 f"time + {CR_FLOOR:g} %")
    else:
        expected = np.full(frac.size, CR_FACTOR * np.median(frac) + CR_FLOOR)
        basis = f"{CR_FACTOR:g} x the median fraction + {CR_FLOOR:g} % (no exposure times)"
    with np.errstate(invalid="ignore"):
        excess = frac / expected
    worst = int(np.nanargmax(excess)) if np.isfinite(excess).any() else int(np.argmax(frac))
    imax = int(np.argmax(frac))
    outliers = [files[i] for i in np.flatnonzero((excess > 1) | (frac > CR_MAX))]
    if outliers:
        flag = "warn"
        reason = (f"{len(outliers)} frame(s) with more cosmic rays than {basis} or above "
                  f"{CR_MAX:g} %: {', '.join(outliers[:4])}; look at their masks in "
                  "03_cosmics (stars taken for cosmic rays?)")
    else:
        flag = "pass"
        reason = (f"the highest fraction {frac[imax]:.3f} % ({files[imax]}); no frame exceeds "
                  f"{basis} (the closest: {files[worst]}, {_fmt(excess[worst])} of its limit) "
                  f"or {CR_MAX:g} %")
    out.add("cr_fraction_max", float(frac[imax]), unit="%", flag=flag, reason=reason)
    if truth is not None:
        found, false = [], []
        folder = paths.step("03_cosmics")
        for f in files:
            stem = fitsio.frame_stem(f)
            tpath = truth.dir / "frames" / f"{stem}_crmask.fits"
            mpath = folder / f"{stem}_crmask.fits"
            if not (tpath.is_file() and mpath.is_file()):
                continue
            true = truth.cr_mask(stem)
            ours = fits.getdata(mpath) > 0
            if true.shape != ours.shape:
                continue
            if true.sum():
                found.append(float(np.mean(ours[true])))
            if ours.sum():
                false.append(float(np.mean(~true[ours])))
        if found:
            out.add("cr_recovered_vs_truth", 100 * float(np.median(found)), unit="%",
                    reason=f"median over {len(found)} frames of the fraction of injected "
                           "cosmic-ray pixels that were flagged (faint tails are hard to find)")
        if false:
            out.add("cr_false_vs_truth", 100 * float(np.median(false)), unit="%",
                    reason=f"median over {len(false)} frames of the fraction of flagged pixels "
                           "that no cosmic ray hit")


def _calibrate(paths, target, truth, out):
    frames = sorted(paths.step("04_calibrate").glob("*.fits"))
    if not frames:
        return
    percent, worst_bits = [], {}
    for path in frames:
        with fits.open(path) as hdul:
            if "MASK" not in hdul:
                continue
            m = hdul["MASK"].data
            percent.append(100 * float(np.mean(m > 0)))
            worst_bits[path.name] = m
    if not percent:
        return
    percent = np.array(percent)
    names = list(worst_bits)
    i = int(np.argmax(percent))
    m = worst_bits[names[i]]
    bits = ", ".join(f"{b} {100 * float(np.mean(masks.has(m, b))):.2f} %"
                     for b in masks.BITS if masks.has(m, b).any())
    out.add("masked_median", float(np.median(percent)), unit="%",
            reason=f"median fraction of flagged pixels (MASK != 0) over {len(percent)} "
                   "calibrated frames")
    out.add("masked_max", float(percent[i]), unit="%",
            flag="warn" if percent[i] > MASKED_WARN else "pass",
            reason=f"{names[i]} has the most flagged pixels, {percent[i]:.2f} % ({bits or 'none'}); "
                   f"warn above {MASKED_WARN:g} %")


def _background(paths, target, truth, out):
    folder = paths.step("05_background")
    path = folder / "background.ecsv"
    if not path.is_file():
        return
    tab = fitsio.read_table(path)
    if not len(tab):
        return
    inv = _inventory(paths)
    for filt in sorted({str(f) for f in tab["filter"]}):
        sel = tab[tab["filter"] == filt]
        rate = float(np.median(sel["sky_rate"]))
        unit = str(sel["sky"].unit or "")
        out.add(f"sky_rate_{filt}", rate, unit=f"{unit}/s" if unit else "",
                reason=f"median sky level of the {len(sel)} {filt} frames, per second")
        rms = float(np.median(sel["sky_rms"]))
        # the sky's scatter against the uncertainty plane, frame by frame
        ratios, poisson = [], []
        for r in sel:
            fpath = folder / str(r["file"])
            if not fpath.is_file():
                continue
            with fits.open(fpath) as hdul:
                if "UNCERT" not in hdul:
                    continue
                unc = hdul["UNCERT"].data
                mask = hdul["MASK"].data if "MASK" in hdul else np.zeros(unc.shape, np.uint16)
                bunit = str(hdul[0].header.get("BUNIT", "")).replace(" ", "")
                exptime = _float(hdul[0].header.get("EXPTIME"))
            ok = (mask == 0) & np.isfinite(unc)
            if ok.any():
                ratios.append(float(r["sky_rms"]) / float(np.median(unc[ok])))
            rn = np.nan
            if inv is not None and "read_noise" in inv.colnames:
                hit = inv[inv["file"] == str(r["file"])]
                rn = float(hit["read_noise"][0]) if len(hit) else float(
                    np.nanmedian(np.asarray(inv["read_noise"], float)))
            if not np.isfinite(rn):
                rn = _float(target.get("read_noise"))
            sky_e = {"electron": float(r["sky"]), "electron/s": float(r["sky"]) * exptime}.get(bunit)
            if sky_e is not None and np.isfinite(rn) and sky_e > 0:
                scale = 1.0 if bunit == "electron" else exptime
                poisson.append(float(r["sky_rms"]) * scale / math.sqrt(sky_e + rn ** 2))
        if ratios:
            v = float(np.median(ratios))
            lo, hi = UNCERT_RANGE
            out.add(f"sky_noise_vs_uncert_{filt}", v, flag=_within(v, lo, hi),
                    reason=f"{filt}: the sky's measured scatter ({_fmt(rms)} {unit} median) is "
                           f"{v:.3f} x the median UNCERT of the frames; pass within {lo:g}-{hi:g} "
                           "(the uncertainty plane describes the real noise)")
        if poisson:
            v = float(np.median(poisson))
            lo, hi = POISSON_RANGE
            out.add(f"sky_noise_vs_poisson_{filt}", v, flag=_within(v, lo, hi),
                    reason=f"{filt}: the sky's scatter is {v:.3f} x sqrt(sky + read noise^2) in "
                           f"electrons (photon and read noise alone); pass within {lo:g}-{hi:g} "
                           "(flat-field, dark and bias noise add a little)")
        _sky_scatter(filt, sel, out)
        out.add(f"sky_rms_{filt}", rms, unit=unit,
                reason=f"median scatter of the {filt} sky after subtraction, per frame"
                       + ("" if poisson else " (frames not in electrons: no photon-noise "
                          "comparison)"))
        if truth is not None and filt in truth["sky_rate"]:
            true = float(truth["sky_rate"][filt])
            out.add(f"sky_rate_vs_truth_{filt}", 100 * (rate / true - 1), unit="%",
                    reason=f"{filt}: median sky rate {_fmt(rate, 5)} vs the demo's true "
                           f"{true:g} e-/s per pixel")


def _sky_scatter(filt, sel, out):
    """Fail a filter whose frames' sky rates disagree by more than SKY_SCATTER_FAIL %."""
    lights = sel[np.array([str(t) for t in sel["frametype"]]) == "light"] \
        if "frametype" in sel.colnames else sel
    if len(lights) < 2:
        return
    names = [str(f) for f in lights["file"]]
    rates = np.asarray(lights["sky_rate"], float)
    odd = rate_outliers(names, rates, max_scatter=SKY_SCATTER_FAIL / 100)
    spread = 100 * float(np.max(np.abs(rates / np.median(rates) - 1)))
    if odd:
        methods = dict(zip(names, (str(m) for m in lights["method"]), strict=True)) \
            if "method" in lights.colnames else {}
        why = "; ".join(f"{k} ({methods.get(k, '?')}): {v}" for k, v in odd.items())
        out.add(f"sky_rate_scatter_{filt}", spread, unit="%", flag="fail",
                reason=f"{filt}: {len(odd)} of {len(names)} light frames' sky rates disagree "
                       f"with the others: {why}; fail above {SKY_SCATTER_FAIL:g} % (a sky "
                       "wrong in 05, or a sky that changed through the night: look at the "
                       "frames named)")
    else:
        out.add(f"sky_rate_scatter_{filt}", spread, unit="%", flag="pass",
                reason=f"{filt}: the {len(names)} light frames' sky rates are within "
                       f"{spread:.1f} % of their median; fail if one is more than "
                       f"{SKY_SCATTER_FAIL:g} % from the others'")


def _badpix(paths, target, truth, out):
    folder = paths.step("06_badpix")
    path = folder / "badpix.fits"
    if path.is_file():
        bpm = fits.getdata(path).astype(np.uint16)
        frac = 100 * float(np.mean(bpm > 0))
        bits = ", ".join(f"{b} {int(masks.has(bpm, b).sum())}"
                         for b in masks.BITS if masks.has(bpm, b).any())
        flag = "fail" if frac > BADPIX_FAIL else "warn" if frac > BADPIX_WARN else "pass"
        out.add("bad_pixel_fraction", frac, unit="%", flag=flag,
                reason=f"{frac:.2f} % of the chip is flagged in badpix.fits "
                       f"({bits or 'nothing'} pixels); warn above {BADPIX_WARN:g} %, fail "
                       f"above {BADPIX_FAIL:g} %")
        if truth is not None:
            hot = truth.table("hot_pixels")
            x, y = np.asarray(hot["x"], int), np.asarray(hot["y"], int)
            inside = (x < bpm.shape[1]) & (y < bpm.shape[0])
            if inside.any():
                found = 100 * float(np.mean(bpm[y[inside], x[inside]] > 0))
                out.add("hot_pixels_vs_truth", found, unit="%",
                        reason=f"{found:.1f} % of the demo's {int(inside.sum())} hot pixels "
                               "are flagged")
            dead = [c for c in truth["dead_columns"] if c < bpm.shape[1]]
            if dead:
                n = sum(float(np.mean(bpm[:, c] > 0)) > 0.9 for c in dead)
                out.add("dead_columns_vs_truth", n, unit="columns",
                        reason=f"{n} of the demo's {len(dead)} dead columns are flagged "
                               "(in > 90 % of their rows)")
    repaired = []
    for fpath in sorted(folder.glob("*.fits")):
        if fpath.name != "badpix.fits":
            h = fits.getheader(fpath)
            if "NREPAIR" in h:
                repaired.append(int(h["NREPAIR"]))
    if repaired:
        out.add("repaired_median", float(np.median(repaired)), unit="pixels",
                reason=f"median number of pixels interpolated per frame over {len(repaired)} "
                       "frames (they stay flagged REPAIRED)")


def _stack(paths, target, truth, out):
    folder = paths.step("07_stack")
    path = folder / "registration.ecsv"
    left_out = None
    if path.is_file():
        reg = fitsio.read_table(path)
        used = np.asarray(reg["used"], bool)
        method = np.array([str(m) for m in reg["method"]])
        res = np.asarray(reg["residual_px"], float)
        sel = used & (method != "reference") & np.isfinite(res)
        if sel.any():
            names = np.array([str(f) for f in reg["file"]])
            i = int(np.argmax(np.where(sel, res, -np.inf)))
            worst = float(res[i])
            out.add("registration_residual_median", float(np.median(res[sel])), unit="px",
                    reason=f"median rms residual of the registered star positions over "
                           f"{int(sel.sum())} frames (the reference frame not counted)")
            flag = "fail" if worst > REG_FAIL else "warn" if worst > REG_WARN else "pass"
            out.add("registration_residual_max", worst, unit="px", flag=flag,
                    reason=f"worst registration residual {worst:.3f} px ({names[i]}, "
                           f"{method[i]}); warn above {REG_WARN:g} px (stars blurred in the "
                           f"stack), fail above {REG_FAIL:g} px")
        left = reg[~used]
        left_out = len(left)
        why = "; ".join(f"{r['file']}: {r['reason']}" for r in left[:3])
        out.add("frames_left_out", left_out, unit="frames", flag="warn" if left_out else "pass",
                reason=(f"{left_out} of {len(reg)} frames left out of the stacks: {why}"
                        if left_out else f"all {len(reg)} frames registered and stacked; "
                        "warn if any is left out"))
        if truth is not None:
            _registration_vs_truth(reg, truth, out)
    rejected, filters_of = {}, {}              # file -> per cent of its values rejected, filter
    if path.is_file() and "rejected_percent" in reg.colnames:
        rejected = {str(f): float(p) for f, p in zip(reg["file"], reg["rejected_percent"],
                                                     strict=True) if np.isfinite(p)}
        filters_of = {str(f): str(x) for f, x in zip(reg["file"], reg["filter"], strict=True)}
    for filt, spath in product_names.stacks_in(folder).items():   # FILTER from the header
        with fits.open(spath) as hdul:
            h = hdul[0].header
            depth = int(h.get("NCOMBINE", 0))
            exposure = hdul["EXPOSURE"].data if "EXPOSURE" in hdul else None
            coverage = hdul["COVERAGE"].data if "COVERAGE" in hdul else None
        extra = ""
        if exposure is not None and coverage is not None and (coverage > 0).any():
            extra = (f"; {float(np.max(exposure)):.0f} s at most, {100 * float(np.mean(coverage == depth)):.0f} "
                     f"% of the grid covered by all {depth}")
        if left_out is None and "NLEFTOUT" in h:
            extra += f"; {int(h['NLEFTOUT'])} frame(s) left out"
        out.add(f"stack_depth_{filt}", depth, unit="frames",
                flag="pass" if depth >= MIN_DEPTH else "warn",
                reason=f"{depth} frames combined in {spath.name}{extra}; warn below "
                       f"{MIN_DEPTH} (no outlier rejection possible)")
        if "REJFRAC" in h:
            _rejection(filt, spath, 100 * float(h["REJFRAC"]),
                       {f: p for f, p in rejected.items() if filters_of.get(f) == filt}, out)


def _rejection(filt, spath, percent, per_frame, out):
    """Fail a stack that rejected more than REJECT_FAIL % of its values; name the frames."""
    worst = sorted(per_frame.items(), key=lambda kv: -kv[1])[:3]
    named = ", ".join(f"{f} {p:.1f} %" for f, p in worst) if worst else "no per-frame table"
    if percent > REJECT_FAIL:
        out.add(f"stack_rejected_{filt}", percent, unit="%", flag="fail",
                reason=f"{spath.name} rejected {percent:.2f} % of its values; most from "
                       f"{named}: a frame that disagrees with the others over much of the "
                       f"grid (a wrong sky in 05, a wrong flat, clouds); fail above "
                       f"{REJECT_FAIL:g} %")
    else:
        out.add(f"stack_rejected_{filt}", percent, unit="%", flag="pass",
                reason=f"{spath.name} rejected {percent:.3f} % of its values (most from "
                       f"{named}); fail above {REJECT_FAIL:g} %")


def _registration_vs_truth(reg, truth, out):
    frames = truth["frames"]
    ref = [str(r["file"]) for r in reg if str(r["method"]) == "reference"]
    if len(ref) != 1 or ref[0] not in frames or "offset" not in frames[ref[0]]:
        return
    off_ref = np.array(frames[ref[0]]["offset"], float)
    errors = []
    for r in reg:
        f = frames.get(str(r["file"]), {})
        if (not r["used"] or "offset" not in f or f.get("rotation_deg", 0) != 0
                or str(r["method"]) == "reference"
                or frames[ref[0]].get("rotation_deg", 0) != 0):
            continue
        true = np.array(f["offset"], float) - off_ref
        errors.append(math.hypot(float(r["dx"]) - true[0], float(r["dy"]) - true[1]))
    if errors:
        rms = float(np.sqrt(np.mean(np.square(errors))))
        out.add("registration_vs_truth", rms, unit="px",
                reason=f"rms distance of the fitted shifts from the demo's true dithers over "
                       f"{len(errors)} unrotated frames")


def _photometry(paths, target, truth, out):
    folder = paths.step("08_photometry")
    path = folder / "zeropoints.ecsv"
    if path.is_file():
        for z in fitsio.read_table(path):
            _zero_point(z, truth, out)
    stars = folder / "stars.ecsv"
    if stars.is_file():
        cat = fitsio.read_table(stars)
        n = int((cat["kind"] == "star").sum()) if "kind" in cat.colnames else len(cat)
        others = "" if "kind" not in cat.colnames else f" ({len(cat) - n} other sources: the nucleus, knots)"
        out.add("n_stars", n, unit="stars", reason=f"{n} stars in the calibrated catalogue{others}")


def _zero_point(z, truth, out):
    f, source = str(z["filter"]), str(z["source"])
    zp, zp_err = _float(z["zp"]), _float(z["zp_err"])
    if source == "none":
        out.add(f"zero_point_{f}", np.nan, unit="mag", flag="warn",
                reason=f"{f}: no standards and no zero_point in the manifest: magnitudes are "
                       "instrumental and fluxes stay in e-/s")
        return
    if source == "manifest":
        out.add(f"zero_point_{f}", zp, unit="mag", flag="info",
                reason=f"{f}: zero point {zp:.3f} taken from the manifest, not measured "
                       "tonight (no standards)")
    else:
        flag = "pass" if np.isfinite(zp_err) and zp_err <= ZP_ERR_WARN else "warn"
        out.add(f"zero_point_{f}", zp, error=zp_err, unit="mag", flag=flag,
                reason=f"{f}: ZP {zp:.3f} +- {_fmt(zp_err, 2)} mag from the standards; warn "
                       f"if the error exceeds {ZP_ERR_WARN:g} mag")
    k, k_err, fitted = _float(z["k"]), _float(z["k_err"]), bool(z["k_fitted"])
    if np.isfinite(k):
        if source != "standards":
            flag, reason = "info", f"{f}: extinction {k:.3f} mag/airmass from the manifest"
        elif not fitted:
            flag = "warn"
            reason = (f"{f}: extinction k = {k:.3f} mag/airmass was not fitted (k_fitted False: "
                      "taken as given, the standards' airmasses could not constrain it); its "
                      "error is not in the zero point's")
        else:
            flag = "pass" if np.isfinite(k_err) and k_err <= K_ERR_WARN else "warn"
            reason = (f"{f}: extinction k = {k:.3f} +- {_fmt(k_err, 2)} mag/airmass fitted to the "
                      f"standards; warn if k is not fitted or its error exceeds {K_ERR_WARN:g}")
        out.add(f"extinction_{f}", k, error=k_err if fitted else np.nan, unit="mag/airmass",
                flag=flag, reason=reason)
    if source == "standards":
        n_used, n_total = int(z["n_used"]), int(z["n_total"])
        rejected = (n_total - n_used) / n_total if n_total else 0.0
        bad = n_used < MIN_STANDARDS or rejected > MAX_REJECTED
        out.add(f"n_standards_{f}", n_used, unit="measurements", flag="warn" if bad else "pass",
                reason=f"{f}: {n_used} of {n_total} standard-star measurements used; warn below "
                       f"{MIN_STANDARDS} or if more than {100 * MAX_REJECTED:g} % are rejected")
        rms = _float(z["rms"])
        out.add(f"zp_fit_rms_{f}", rms, unit="mag",
                flag="pass" if np.isfinite(rms) and rms <= ZP_RMS_WARN else "warn",
                reason=f"{f}: rms of the standards about the fit {_fmt(rms, 2)} mag; warn above "
                       f"{ZP_RMS_WARN:g} mag (clouds, a wrong catalogue match, a colour term)")
    if truth is not None and f in truth["zero_point"] and np.isfinite(zp):
        d = zp - float(truth["zero_point"][f])
        pull = f", {d / zp_err:+.2f} sigma" if np.isfinite(zp_err) and zp_err > 0 else ""
        out.add(f"zero_point_vs_truth_{f}", d, error=zp_err, unit="mag",
                reason=f"{f}: ZP - the demo's true {truth['zero_point'][f]:g} = {d:+.4f} mag{pull}")
        if np.isfinite(k) and f in truth["extinction"]:
            dk = k - float(truth["extinction"][f])
            out.add(f"extinction_vs_truth_{f}", dk, error=k_err if fitted else np.nan,
                    unit="mag/airmass",
                    reason=f"{f}: k - the demo's true {truth['extinction'][f]:g} = {dk:+.4f}")


def _hii(paths, target, truth, out):
    folder = paths.step("09_hii_regions")
    path = folder / "hii_regions.ecsv"
    cat = fitsio.read_table(path) if path.is_file() else None
    if cat is not None:
        kind = str(cat.meta.get("kind", "HII regions"))
        out.add("n_hii_regions", len(cat), unit="regions", flag="pass" if len(cat) else "warn",
                reason=f"{len(cat)} in hii_regions.ecsv ({kind}); warn if none was found")
    cs_path = folder / "continuum_scale.ecsv"
    meta = fitsio.read_table(cs_path).meta if cs_path.is_file() else {}
    scale = _float(meta.get("scale_used", (cat.meta if cat is not None else {}).get("continuum_scale")))
    err = _float(meta.get("scale_used_err",
                          (cat.meta if cat is not None else {}).get("continuum_scale_err")))
    if np.isfinite(scale):
        rel = err / scale if np.isfinite(err) and scale else np.nan
        src = meta.get("scale_from", "")
        flag = "pass" if np.isfinite(rel) and rel <= CONT_SCALE_REL_WARN else "warn"
        if src == "manifest" and not np.isfinite(rel):
            flag = "info"
        out.add("continuum_scale", scale, error=err, flag=flag,
                reason=f"continuum scale {scale:.4g} +- {_fmt(err, 2)} ({_fmt(100 * rel, 2)} %"
                       f"{', from ' + str(src) if src else ''}); warn if the relative error "
                       f"exceeds {100 * CONT_SCALE_REL_WARN:g} % (it is that error on the line "
                       "flux of a region whose continuum equals its line)")
        est = meta.get("estimates") or {}
        if len(est) > 1:
            agree = bool(meta.get("scale_agree", True))
            listed = "; ".join(f"{k} {_float(v.get('scale')):.4g} +- {_fmt(_float(v.get('scale_err')), 2)}"
                               for k, v in est.items())
            out.add("continuum_scale_agreement", len(est), unit="estimates",
                    flag="pass" if agree else "warn",
                    reason=f"{listed}: " + ("they agree within 2 sigma" if agree else
                                            "; ".join(meta.get("scale_disagreements") or []))
                    + "; warn when two independent estimates differ by more than 2 sigma")
        if meta.get("scale_from") == "stars":
            n = int(meta.get("n_used", 0))
            out.add("continuum_scale_stars", n, unit="stars", flag="pass" if n >= 5 else "warn",
                    reason=f"{n} stars measured the continuum scale (scatter "
                           f"{_fmt(_float(meta.get('scatter')), 2)}); warn below 5")
        if truth is not None:
            true = float(truth["cont_scale"])
            out.add("continuum_scale_vs_truth", 100 * (scale / true - 1), unit="%",
                    reason=f"continuum scale {scale:.4g} vs the demo's true {true:g}"
                           + (f" ({(scale - true) / err:+.1f} sigma)" if err > 0 else ""))
    if truth is not None and cat is not None and len(cat) and "ra" in cat.colnames:
        _hii_vs_truth(cat, truth, out)


def _hii_vs_truth(cat, truth, out):
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    true = truth.table("hii_regions")
    if "ra" not in true.colnames or "flux_cgs" not in cat.colnames:
        return
    ours = SkyCoord(np.asarray(cat["ra"], float) * u.deg, np.asarray(cat["dec"], float) * u.deg)
    ref = SkyCoord(np.asarray(true["ra"], float) * u.deg, np.asarray(true["dec"], float) * u.deg)
    idx, sep, _ = ref.match_to_catalog_sky(ours)
    radius = 1.5 * float(truth["pixel_scale"]) * u.arcsec
    close = sep < radius
    # one of ours per true region: the nearest
    matched = close & (np.bincount(idx[close], minlength=len(cat))[idx] == 1)
    out.add("hii_found_vs_truth", int(close.sum()), unit="regions",
            reason=f"{int(close.sum())} of the demo's {len(true)} HII regions have a detection "
                   f"within {radius.value:.1f} arcsec ({len(cat)} detections)")
    if matched.any():
        ratio = np.asarray(cat["flux_cgs"], float)[idx[matched]] / np.asarray(
            true["halpha_flux"], float)[matched]
        med = float(np.median(ratio))
        out.add("hii_flux_vs_truth", med, unit="ours/true",
                reason=f"median Halpha flux ours / true {med:.3f} over {int(matched.sum())} "
                       "regions matched one to one (Kron apertures; neighbours blend)")


def _halpha_muse(paths, target, truth, out):
    folder = paths.step("10_halpha_muse")
    path = folder / "anchor_fit.ecsv"
    if path.is_file():
        meta = fitsio.read_table(path).meta
        slope, slope_err = _float(meta.get("slope")), _float(meta.get("slope_err"))
        offset, offset_err = _float(meta.get("offset")), _float(meta.get("offset_err"))
        n_bins = _float(meta.get("n_bins"))
        n_bins, n_pix = (int(n_bins) if np.isfinite(n_bins) else 0), meta.get("n_pixels", "?")
        out.add("anchor_slope", slope, error=slope_err,
                flag="pass" if abs(slope - 1) <= ANCHOR_SLOPE_TOL else "warn",
                reason=f"MUSE = offset + slope x ours: slope {slope:.3f} +- {_fmt(slope_err, 2)}; "
                       f"warn if it differs from 1 by more than {ANCHOR_SLOPE_TOL:g} (the two "
                       "flux scales disagree by that much)")
        unit = str(meta.get("offset_unit", meta.get("unit", "")))
        out.add("anchor_offset", offset, error=offset_err, unit=unit,
                reason=f"offset {offset:.3g} +- {_fmt(offset_err, 2)} {unit} per MUSE pixel "
                       "(a difference in sky subtraction)")
        out.add("anchor_bins", n_bins, unit="bins",
                flag="pass" if n_bins >= ANCHOR_MIN_BINS else "warn",
                reason=f"the fit used {n_bins} bins of {n_pix} pixels; warn below "
                       f"{ANCHOR_MIN_BINS} bins (too few to see a slope)")
        space = truth["space"] if truth is not None and "space" in truth.facts else {}
        true_key = "anchor_slope" if "anchor_slope" in space else "muse_slope"
        if true_key in space and np.isfinite(slope) and meta.get("mode", "hst") == "hst":
            true = float(space[true_key])
            out.add("anchor_slope_vs_truth", slope - true, error=slope_err,
                    reason=f"slope - the demo's right answer {true:.4f} (MUSE / the HST "
                           f"image's line) = {slope - true:+.4f}")
    path = folder / "nebulae.ecsv"
    if path.is_file():
        neb = fitsio.read_table(path)
        s = comparison_stats(neb)
        out.add("n_nebulae", s["n"], unit="nebulae", flag="pass" if s["n"] else "warn",
                reason=f"{s['n']} of {len(neb)} nebulae have fluxes to compare with MUSE"
                       + (f" (the demo has {truth['space']['n_nebulae']})"
                          if truth is not None and "n_nebulae" in truth.facts.get("space", {})
                          else ""))
        if s["n"]:
            med = s["median"]
            out.add("nebula_ratio_median", med, unit="ours/MUSE",
                    flag="pass" if abs(med - 1) <= NEBULA_BIAS_TOL else "warn",
                    reason=f"median flux ratio ours / MUSE {med:.3f} over {s['n']} nebulae "
                           f"(16-84 %: {s['p16']:.3f}-{s['p84']:.3f}); warn if it differs "
                           f"from 1 by more than {100 * NEBULA_BIAS_TOL:g} %")
            expected = s["expected_scatter"]
            if np.isfinite(expected) and expected > 0:
                flag = "pass" if s["scatter"] <= NEBULA_SCATTER_FACTOR * expected else "warn"
                reason = (f"scatter of the ratio (1.4826 MAD) {s['scatter']:.3f}, the flux "
                          f"errors explain {expected:.3f}; warn above {NEBULA_SCATTER_FACTOR:g} x that")
            else:
                flag = "info"
                reason = (f"scatter of the ratio (1.4826 MAD) {s['scatter']:.3f} "
                          f"({_fmt(s['scatter_dex'], 2)} dex); no errors to compare with")
            out.add("nebula_ratio_scatter", s["scatter"], flag=flag, reason=reason)
            if "flux_true" in neb.colnames:
                t = comparison_stats(neb, ref="flux_true")
                if "flux_before" in neb.colnames:
                    tb = comparison_stats(neb, col="flux_before", ref="flux_true")
                    out.add("nebula_ratio_vs_truth_before", tb["median"], unit="ours/true",
                            reason=f"before anchoring, median flux ours / the demo's true flux "
                                   f"in the mask {_fmt(tb['median'], 4)} over {tb['n']} nebulae "
                                   f"(scatter {_fmt(tb['scatter'])})")
                out.add("nebula_ratio_vs_truth", t["median"], unit="ours/true",
                        reason=f"after anchoring, median flux ours / the demo's true flux in "
                               f"the mask {_fmt(t['median'], 4)} over {t['n']} nebulae (scatter "
                               f"{_fmt(t['scatter'])})")
            if "flux_before" in neb.colnames:
                b = comparison_stats(neb, col="flux_before")
                out.add("nebula_ratio_before", b["median"], unit="ours/MUSE",
                        reason=f"median ratio before anchoring {_fmt(b['median'])}, scatter "
                               f"{_fmt(b['scatter'])}: what the anchoring changed")


_COLLECTORS = (
    ("00_inspect", _inspect),
    ("01_superbias", _superbias),
    ("02_superflat", _superflat),
    ("03_cosmics", _cosmics),
    ("04_calibrate", _calibrate),
    ("05_background", _background),
    ("06_badpix", _badpix),
    ("07_stack", _stack),
    ("08_photometry", _photometry),
    ("09_hii_regions", _hii),
    ("10_halpha_muse", _halpha_muse),
)


def qa_path(paths) -> Path:
    """Where step 11 writes the QA table (``11_qa/qa.ecsv``)."""
    return paths.step("11_qa") / "qa.ecsv"
