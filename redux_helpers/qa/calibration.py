"""QA collectors of the calibration steps, 00-04: inventory, masters, camera, cosmic rays, calibrated frames."""

from __future__ import annotations

import logging

import numpy as np
from astropy.io import fits
from astropy.stats import mad_std
from scipy import ndimage

from .. import fitsio, masks, masters, products, provenance
from ..gain import WARN_RELATIVE_ERROR as GAIN_WARN
from . import rows as limits  # the thresholds, each named where it is used
from .rows import as_float, exptimes_of, fmt, inventory_of, table_of, within

log = logging.getLogger(__name__)


def inspect_rows(paths, target, truth, out):
    inv = inventory_of(paths)
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
    p = paths.product("problems")
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
        rn = as_float(header.get("RDNOISE", target.get("read_noise")))
    if not np.isfinite(gain):
        gain = as_float(header.get("GAIN", target.get("gain")))
    return rn, gain


def superbias_rows(paths, target, truth, out):
    path = paths.product("superbias")
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
    rn, gain = _noise_params(inventory_of(paths), p.header, target, "bias")
    # a median of many values is 1.2533 x noisier than their mean; of one or two, it is the mean
    median_factor = method == "median" and n > 2
    factor = 1.2533 if median_factor else 1.0
    if n > 0 and np.isfinite(rn) and np.isfinite(gain) and gain > 0:
        expected = factor * rn / gain / np.sqrt(n)
        ratio = noise / expected
        lo, hi = limits.BIAS_NOISE_RANGE
        flag = within(ratio, lo, hi)
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
            reason = (f"{name} {fmt(value, 4)} +- {fmt(err, 2)} {unit} measured by photon "
                      f"transfer from {int(c['n_bias'])} biases and {int(c['n_pairs'])} flat "
                      f"pairs ({100 * rel:.1f} %); pass within "
                      f"{100 * GAIN_WARN:g} %")
        else:
            flag = "info"
            reason = f"{name} {fmt(value, 4)} {unit} from the {source}"
        if truth is not None:
            reason += f"; the demo's truth is {truth[q]:g} {unit}"
        out.add(q, value, error=err, unit=unit, flag=flag, reason=reason)


def superflat_rows(paths, target, truth, out):
    _camera(paths, truth, out)
    for fields, path in products.instances(paths, "superflat"):
        filt = fields["filter"]
        p = fitsio.read_product(path)
        d = p.data
        ny, nx = d.shape
        centre = d[ny // 4: 3 * ny // 4, nx // 4: 3 * nx // 4]
        norm = float(np.nanmedian(centre))
        out.add(f"flat_norm_{filt}", norm,
                flag="pass" if abs(norm - 1) <= limits.FLAT_NORM_TOL else "warn",
                reason=f"median of the central half of the {filt} superflat is {norm:.4f}; "
                       f"pass within {100 * limits.FLAT_NORM_TOL:g} % of 1 (each flat is "
                       "normalised there)")
        # from a million pixels on, the central half (a quarter of them, with the rim of 2
        # pixels its 5x5 medians reach): a quarter of a million measure the scatter as well,
        # and the median filter, 0.34 s a 1024² flat, is the cost here
        big = d.size >= 2 ** 20
        cut = d[ny // 4 - 2: 3 * ny // 4 + 2, nx // 4 - 2: 3 * nx // 4 + 2] if big else d
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = cut / ndimage.median_filter(np.nan_to_num(cut), size=5)
        if big:
            ratio, cut = ratio[2:-2, 2:-2], cut[2:-2, 2:-2]
        good = np.isfinite(ratio) & (cut > limits.FLAT_RANGE[0]) & (cut < limits.FLAT_RANGE[1])
        p2p = 100 * float(mad_std(ratio[good])) if good.any() else np.nan
        out.add(f"flat_p2p_{filt}", p2p, unit="%",
                flag="pass" if p2p <= limits.FLAT_P2P_WARN else "warn",
                reason=f"pixel-to-pixel rms of the {filt} flat (robust rms of flat / its "
                       f"5x5 median{', central half' if big else ''}) is {fmt(p2p)} %; warn above "
                       f"{limits.FLAT_P2P_WARN:g} %")
        unc_centre = (p.uncertainty[ny // 4: 3 * ny // 4, nx // 4: 3 * nx // 4]
                      if p.uncertainty is not None else np.array([np.nan]))
        if np.isfinite(unc_centre).any():
            unc = 100 * float(np.nanmedian(unc_centre))
            out.add(f"flat_noise_{filt}", unc, unit="%",
                    flag="pass" if unc <= limits.FLAT_NOISE_WARN else "warn",
                    reason=f"the {filt} superflat's own uncertainty is {fmt(unc)} % per "
                           f"pixel (median, central half); it adds to every frame's noise: "
                           f"warn above {limits.FLAT_NOISE_WARN:g} %")
        else:
            n_in = int(p.header.get("NINPUTS", 0))
            out.add(f"flat_noise_{filt}", np.nan, unit="%",
                    reason=f"the {filt} superflat has no uncertainty (made from {n_in} "
                           "flat(s): the noise of fewer than 2 can't be measured), so its "
                           "noise is not in the frames' UNCERT either")
        lo, hi = limits.FLAT_RANGE
        with np.errstate(invalid="ignore"):
            outside = 100 * float(np.mean(~((d >= lo) & (d <= hi))))
        flag = ("fail" if outside > limits.FLAT_OUTLIER_FAIL else
                "warn" if outside > limits.FLAT_OUTLIER_WARN else "pass")
        out.add(f"flat_outliers_{filt}", outside, unit="%", flag=flag,
                reason=f"{outside:.2f} % of the {filt} flat's pixels are below {lo:g}, above "
                       f"{hi:g} or not finite (dead columns, vignetting, no data); warn above "
                       f"{limits.FLAT_OUTLIER_WARN:g} %, fail above {limits.FLAT_OUTLIER_FAIL:g} %")
        if truth is not None and (truth.dir / f"flat_{filt}.fits").is_file():
            true = truth.image(f"flat_{filt}")
            if true.shape == d.shape:
                ok = (true > lo) & np.isfinite(d)
                rms = 100 * float(mad_std(d[ok] / true[ok] - 1))
                out.add(f"flat_vs_truth_{filt}", rms, unit="%",
                        reason=f"robust rms of {filt} flat / true flat - 1: {rms:.3f} % "
                               "(the flat's noise, plus any error in its shape)")
    darks = [(f"{f['temp']}C", p) for f, p in products.instances(paths, "superdark")]
    for name, path in darks + [("all", p) for _, p in products.instances(paths, "superdark_any")]:
        p = fitsio.read_product(path)
        rate = float(np.nanmedian(p.data))
        reason = (f"median dark current of {path.name}: {fmt(rate)} {p.unit or 'e-/s'} "
                  f"({int(p.header.get('NINPUTS', 0))} darks)")
        if truth is not None:
            true = truth.image("dark_current")
            reason += f"; the demo's true median is {fmt(float(np.median(true)))} e-/s"
        out.add(f"dark_rate_{name}", rate, unit=p.unit or "e-/s", reason=reason)


def cosmics_rows(paths, target, truth, out):
    if (tab := table_of(paths, "cosmics")) is None:
        return
    frac = 100 * np.asarray(tab["fraction"], float)          # percent
    files = [str(f) for f in tab["file"]]
    out.add("cr_fraction_median", float(np.median(frac)), unit="%",
            reason=f"median fraction of pixels flagged as cosmic rays over {len(tab)} frames")
    exptimes = exptimes_of(paths)            # the inventory read once, not once a frame
    t = np.array([exptimes.get(f, np.nan) for f in files])
    have_t = np.isfinite(t) & (t > 0)
    if have_t.sum() >= 2:
        rate = float(np.median(frac[have_t] / t[have_t]))     # % per second
        expected = np.where(have_t, limits.CR_FACTOR * rate * t + limits.CR_FLOOR, np.nan)
        basis = (f"{limits.CR_FACTOR:g} x the median rate {fmt(rate * 3600)} %/hour x its exposure "
                 f"time + {limits.CR_FLOOR:g} %")
    else:
        expected = np.full(frac.size, limits.CR_FACTOR * np.median(frac) + limits.CR_FLOOR)
        basis = f"{limits.CR_FACTOR:g} x the median fraction + {limits.CR_FLOOR:g} % (no exposure times)"
    with np.errstate(invalid="ignore"):
        excess = frac / expected
    worst = int(np.nanargmax(excess)) if np.isfinite(excess).any() else int(np.argmax(frac))
    imax = int(np.argmax(frac))
    outliers = [files[i] for i in np.flatnonzero((excess > 1) | (frac > limits.CR_MAX))]
    if outliers:
        flag = "warn"
        reason = (f"{len(outliers)} frame(s) with more cosmic rays than {basis} or above "
                  f"{limits.CR_MAX:g} %: {', '.join(outliers[:4])}; look at their masks in "
                  "03_cosmics (stars taken for cosmic rays?)")
    else:
        flag = "pass"
        reason = (f"the highest fraction {frac[imax]:.3f} % ({files[imax]}); no frame exceeds "
                  f"{basis} (the closest: {files[worst]}, {fmt(excess[worst])} of its limit) "
                  f"or {limits.CR_MAX:g} %")
    out.add("cr_fraction_max", float(frac[imax]), unit="%", flag=flag, reason=reason)
    if truth is not None:
        found, false = [], []
        for f in files:
            stem = fitsio.frame_stem(f)
            tpath = truth.dir / "frames" / f"{stem}_crmask.fits"
            mpath = paths.product("crmask", stem=stem)
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


def calibrate_rows(paths, target, truth, out):
    frames = [p for _, p in products.instances(paths, "calibrated")]
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
            flag="warn" if percent[i] > limits.MASKED_WARN else "pass",
            reason=f"{names[i]} has the most flagged pixels, {percent[i]:.2f} % ({bits or 'none'}); "
                   f"warn above {limits.MASKED_WARN:g} %")
