"""QA collectors of the frame steps, 05-07: sky, bad pixels, registration and stacks."""

from __future__ import annotations

import logging
import math

import numpy as np
from astropy.io import fits

from .. import fitsio, masks, products
from ..background import rate_outliers
from . import rows as limits  # the thresholds, each named where it is used
from .rows import as_float, fmt, inventory_of, table_of, within

log = logging.getLogger(__name__)


def background_rows(paths, target, truth, out):
    folder = paths.step("05_background")
    if (tab := table_of(paths, "background")) is None:
        return
    inv = inventory_of(paths)
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
                exptime = as_float(hdul[0].header.get("EXPTIME"))
            ok = (mask == 0) & np.isfinite(unc)
            if ok.any():
                ratios.append(float(r["sky_rms"]) / float(np.median(unc[ok])))
            rn = np.nan
            if inv is not None and "read_noise" in inv.colnames:
                hit = inv[inv["file"] == str(r["file"])]
                rn = float(hit["read_noise"][0]) if len(hit) else float(
                    np.nanmedian(np.asarray(inv["read_noise"], float)))
            if not np.isfinite(rn):
                rn = as_float(target.get("read_noise"))
            sky_e = {"electron": float(r["sky"]), "electron/s": float(r["sky"]) * exptime}.get(bunit)
            if sky_e is not None and np.isfinite(rn) and sky_e > 0:
                scale = 1.0 if bunit == "electron" else exptime
                poisson.append(float(r["sky_rms"]) * scale / math.sqrt(sky_e + rn ** 2))
        for name, values, (lo, hi), said, why in (
                ("uncert", ratios, limits.UNCERT_RANGE,
                 f"the sky's measured scatter ({fmt(rms)} {unit} median) is {{v:.3f}} x the median "
                 "UNCERT of the frames", "the uncertainty plane describes the real noise"),
                ("poisson", poisson, limits.POISSON_RANGE,
                 "the sky's scatter is {v:.3f} x sqrt(sky + read noise^2) in electrons (photon and "
                 "read noise alone)", "flat-field, dark and bias noise add a little")):
            if values:
                v = float(np.median(values))
                out.add(f"sky_noise_vs_{name}_{filt}", v, flag=within(v, lo, hi),
                        reason=f"{filt}: {said.format(v=v)}; pass within {lo:g}-{hi:g} ({why})")
        _sky_scatter(filt, sel, out)
        out.add(f"sky_rms_{filt}", rms, unit=unit,
                reason=f"median scatter of the {filt} sky after subtraction, per frame"
                       + ("" if poisson else " (frames not in electrons: no photon-noise "
                          "comparison)"))
        if truth is not None and filt in truth["sky_rate"]:
            true = float(truth["sky_rate"][filt])
            out.add(f"sky_rate_vs_truth_{filt}", 100 * (rate / true - 1), unit="%",
                    reason=f"{filt}: median sky rate {fmt(rate, 5)} vs the demo's true "
                           f"{true:g} e-/s per pixel")


def _sky_scatter(filt, sel, out):
    """Fail a filter whose frames' sky rates disagree by more than ``SKY_SCATTER_FAIL`` %."""
    lights = sel[np.array([str(t) for t in sel["frametype"]]) == "light"] \
        if "frametype" in sel.colnames else sel
    if len(lights) < 2:
        return
    names = [str(f) for f in lights["file"]]
    rates = np.asarray(lights["sky_rate"], float)
    odd = rate_outliers(names, rates, max_scatter=limits.SKY_SCATTER_FAIL / 100)
    spread = 100 * float(np.max(np.abs(rates / np.median(rates) - 1)))
    if odd:
        methods = dict(zip(names, (str(m) for m in lights["method"]), strict=True)) \
            if "method" in lights.colnames else {}
        why = "; ".join(f"{k} ({methods.get(k, '?')}): {v}" for k, v in odd.items())
        out.add(f"sky_rate_scatter_{filt}", spread, unit="%", flag="fail",
                reason=f"{filt}: {len(odd)} of {len(names)} light frames' sky rates disagree "
                       f"with the others: {why}; fail above {limits.SKY_SCATTER_FAIL:g} % (a sky "
                       "wrong in 05, or a sky that changed through the night: look at the "
                       "frames named)")
    else:
        out.add(f"sky_rate_scatter_{filt}", spread, unit="%", flag="pass",
                reason=f"{filt}: the {len(names)} light frames' sky rates are within "
                       f"{spread:.1f} % of their median; fail if one is more than "
                       f"{limits.SKY_SCATTER_FAIL:g} % from the others'")


def badpix_rows(paths, target, truth, out):
    path = paths.product("badpix")
    if path.is_file():
        bpm = fits.getdata(path).astype(np.uint16)
        frac = 100 * float(np.mean(bpm > 0))
        bits = ", ".join(f"{b} {int(masks.has(bpm, b).sum())}"
                         for b in masks.BITS if masks.has(bpm, b).any())
        flag = "fail" if frac > limits.BADPIX_FAIL else "warn" if frac > limits.BADPIX_WARN else "pass"
        out.add("bad_pixel_fraction", frac, unit="%", flag=flag,
                reason=f"{frac:.2f} % of the chip is flagged in badpix.fits "
                       f"({bits or 'nothing'} pixels); warn above {limits.BADPIX_WARN:g} %, fail "
                       f"above {limits.BADPIX_FAIL:g} %")
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
    for _, fpath in products.instances(paths, "repaired"):
        h = fits.getheader(fpath)
        if "NREPAIR" in h:
            repaired.append(int(h["NREPAIR"]))
    if repaired:
        out.add("repaired_median", float(np.median(repaired)), unit="pixels",
                reason=f"median number of pixels interpolated per frame over {len(repaired)} "
                       "frames (they stay flagged REPAIRED)")


def stack_rows(paths, target, truth, out):
    folder = paths.step("07_stack")
    path = paths.product("registration")
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
            flag = "fail" if worst > limits.REG_FAIL else "warn" if worst > limits.REG_WARN else "pass"
            out.add("registration_residual_max", worst, unit="px", flag=flag,
                    reason=f"worst registration residual {worst:.3f} px ({names[i]}, "
                           f"{method[i]}); warn above {limits.REG_WARN:g} px (stars blurred in the "
                           f"stack), fail above {limits.REG_FAIL:g} px")
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
    for filt, spath in products.stacks_in(folder).items():   # FILTER from the header
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
                flag="pass" if depth >= limits.MIN_DEPTH else "warn",
                reason=f"{depth} frames combined in {spath.name}{extra}; warn below "
                       f"{limits.MIN_DEPTH} (no outlier rejection possible)")
        if "REJFRAC" in h:
            _rejection(filt, spath, 100 * float(h["REJFRAC"]),
                       {f: p for f, p in rejected.items() if filters_of.get(f) == filt}, out)


def _rejection(filt, spath, percent, per_frame, out):
    """Fail a stack that rejected more than ``REJECT_FAIL`` % of its values; name the frames."""
    worst = sorted(per_frame.items(), key=lambda kv: -kv[1])[:3]
    named = ", ".join(f"{f} {p:.1f} %" for f, p in worst) if worst else "no per-frame table"
    if percent > limits.REJECT_FAIL:
        out.add(f"stack_rejected_{filt}", percent, unit="%", flag="fail",
                reason=f"{spath.name} rejected {percent:.2f} % of its values; most from "
                       f"{named}: a frame that disagrees with the others over much of the "
                       f"grid (a wrong sky in 05, a wrong flat, clouds); fail above "
                       f"{limits.REJECT_FAIL:g} %")
    else:
        out.add(f"stack_rejected_{filt}", percent, unit="%", flag="pass",
                reason=f"{spath.name} rejected {percent:.3f} % of its values (most from "
                       f"{named}); fail above {limits.REJECT_FAIL:g} %")


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
