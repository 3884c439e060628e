"""Figures of one step each, drawn on the axes a notebook gives (`plotting` has the general ones).

* 07 — `registration_shifts` (where each frame's centre lands), `registration_residuals`
  (each transform's residual per star, and its method);
* 09 — `scale_star_ratios` (each star's Hα/continuum flux ratio against its magnitude),
  `scale_flux_flux` (the same stars' fluxes against each other), `scale_estimates`
  (the ways to the continuum scale, and the one used).

Nothing here changes data; each function returns its axes.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.lines import Line2D

from . import fitsio


def registration_shifts(ax, registration, transforms, *, reference, shape, colours):
    """Where each registered frame's centre lands on the reference grid: an arrow a frame.

    ``registration`` is 07's table (``file``, ``filter``, ``used``, ``method``,
    ``rotation_deg``), ``transforms`` each used frame's `register.Transform` by file,
    ``reference`` the reference's file name, ``shape`` its grid, ``colours`` a colour per
    filter. Labels drop the file names' common prefix, named in the title.
    """
    used = registration[registration["used"]]
    short = [fitsio.frame_stem(f) for f in used["file"]]
    prefix = os.path.commonprefix(short)
    centre = (np.array(shape[::-1]) - 1) / 2  # (x, y) of the frame centre
    moves = [np.subtract(transforms[r["file"]].apply(*centre), centre) for r in used]
    for r, name, (mx, my) in zip(used, short, moves, strict=True):
        if r["file"] == reference:
            continue
        colour = colours[r["filter"]]
        ax.annotate("", xy=(mx, my), xytext=(0, 0),
                    arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.5})
        ax.plot(mx, my, "o", ms=4, color=colour)
        turned = f" ({r['rotation_deg']:+.2f} deg)" if "similarity" in r["method"] else ""
        away = np.array([mx, my]) / max(np.hypot(mx, my), 1e-6)  # label beyond the tip
        ax.annotate(f"{name[len(prefix):]}{turned}", (mx, my), fontsize=8, color=colour,
                    xytext=(14 * away[0], 14 * away[1] - 3), textcoords="offset points",
                    ha="left" if away[0] >= 0 else "right")
    ax.plot(0, 0, "k*", ms=12)
    reach = max([1.0] + [float(np.hypot(*m)) for m in moves]) * 1.4
    ax.set_xlim(-reach, reach)
    ax.set_ylim(-reach, reach)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.set_xlabel("shift in x [pixel]")
    ax.set_ylabel("shift in y [pixel]")
    ax.set_title("where each frame's centre lands" + (f" (names after '{prefix}')" if prefix else ""))
    ax.legend(handles=[Line2D([], [], color=c, label=f"filter {f}") for f, c in colours.items()]
              + [Line2D([], [], color="k", marker="*", ls="", ms=10, label="reference")],
              loc="lower right", fontsize=9)
    return ax


def registration_residuals(ax, registration, *, colours):
    """Each frame's residual per star as a bar, labelled with its method or LEFT OUT."""
    ypos = np.arange(len(registration))
    res = np.nan_to_num(np.asarray(registration["residual_px"], float), nan=0.0)
    ax.barh(ypos, res, color=[colours[f] if u else "0.8" for f, u in
                              zip(registration["filter"], registration["used"], strict=True)])
    for i, r in enumerate(registration):
        label = r["method"] if r["used"] else "LEFT OUT"
        ax.text(max(res[i], 0) + 0.002, i, f" {label}", va="center", fontsize=8)
    ax.set_yticks(ypos, [fitsio.frame_stem(f) for f in registration["file"]], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(0.05, 1.6 * float(res.max(initial=0.0))))
    ax.set_xlabel("residual per star [pixel]")
    ax.set_title("how well each transform fits its stars, and the method")
    return ax


def scale_star_ratios(ax, *, flux_r, ratio, ratio_err, used, bright, scale, scale_err, source,
                      scatter=0.0, measured=None, truth=None, snr_min, filters):
    """Each star's flux ratio (Hα / continuum) against its continuum magnitude.

    ``used`` stars (blue) gave the scale; ``bright`` ones not used were rejected (red
    crosses; a triangle at the top when the ratio is off the axis: a line emitter);
    the others are too faint (grey, clipped to the axis). ``scale`` is the one used
    (black), from ``source``; ``measured`` the stars' own (dashed, when the scale came
    from the manifest); ``truth`` the demo's (green). ``filters`` = (Hα, continuum).
    """
    ha_filt, cont_filt = filters
    used, bright = np.asarray(used, bool), np.asarray(bright, bool)
    ratio, ratio_err = np.asarray(ratio, float), np.asarray(ratio_err, float)
    rejected = bright & ~used
    faint = np.isfinite(ratio) & ~bright
    flux_r = np.asarray(flux_r, float)
    mag_r = -2.5 * np.log10(np.where(flux_r > 0, flux_r, np.nan))
    spread = max(0.25, 8 * (scatter / scale if scatter else 0.03))
    top, bottom = scale * (1 + spread), scale * (1 - spread)
    ax.axhspan(scale - scatter, scale + scatter, color="tab:blue", alpha=0.12,
               label="star-to-star scatter")
    ax.errorbar(mag_r[faint], np.clip(ratio[faint], bottom, top), yerr=ratio_err[faint], fmt=".",
                color="0.6", ms=4, elinewidth=0.5, label=f"S/N below {snr_min:g} (not used)")
    ax.errorbar(mag_r[used], ratio[used], yerr=ratio_err[used], fmt="o", color="tab:blue", ms=5,
                label=f"{int(used.sum())} stars used")
    above = rejected & (ratio > top)
    ax.plot(mag_r[rejected & ~above], ratio[rejected & ~above], "x", color="tab:red", ms=9, mew=2,
            label=f"{int(rejected.sum())} rejected ({int(above.sum())} above the top: line emitters)")
    ax.plot(mag_r[above], np.full(above.sum(), top * 0.98), "^", color="tab:red", ms=8)
    ax.axhline(scale, color="k", lw=1.5, label=f"s = {scale:.4f} +- {scale_err:.4f} ({source})")
    if source == "manifest" and measured is not None:
        ax.axhline(measured, color="tab:blue", ls="--", label=f"stars: {measured:.4f}")
    if truth is not None:
        ax.axhline(truth, color="tab:green", ls=":", lw=2, label=f"truth {truth}")
    ax.set_ylim(bottom, top)
    ax.set_xlabel(f"{cont_filt} instrumental magnitude, -2.5 log10(flux) [brighter to the left]")
    ax.set_ylabel(f"flux in {ha_filt} / flux in {cont_filt}")
    ax.set_title("each star's flux ratio: the continuum scale s")
    ax.legend(fontsize=8, loc="lower left", ncol=2)
    ax.grid(alpha=0.3)
    return ax


def scale_flux_flux(ax, *, flux_r, flux_ha, used, scale, filters, unit):
    """The same stars' Hα flux against their continuum flux, with the line Hα = s R."""
    ha_filt, cont_filt = filters
    flux_r, flux_ha, used = np.asarray(flux_r, float), np.asarray(flux_ha, float), np.asarray(used, bool)
    ok = np.isfinite(flux_r) & np.isfinite(flux_ha) & (flux_r > 0) & (flux_ha > 0)
    ax.loglog(flux_r[ok & ~used], flux_ha[ok & ~used], ".", color="0.6", label="not used")
    ax.loglog(flux_r[ok & used], flux_ha[ok & used], "o", color="tab:blue", ms=5, label="used")
    if ok.any():
        grid = np.geomspace(flux_r[ok].min(), flux_r[ok].max(), 10)
        ax.loglog(grid, scale * grid, "k-", label=f"{ha_filt} = s x {cont_filt}")
    ax.set_xlabel(f"flux in {cont_filt} [{unit}]")
    ax.set_ylabel(f"flux in {ha_filt} [{unit}]")
    ax.set_title("the same stars: Halpha against R")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return ax


def scale_estimates(ax, estimates, *, scale, scale_err, source, truth=None):
    """Each estimate of the continuum scale with its error, and the one used (grey band)."""
    names = list(estimates)
    ax.axhspan(scale - scale_err, scale + scale_err, color="0.85",
               label=f"used: {scale:.4f} +- {scale_err:.4f} ({source})")
    for i, name in enumerate(names):
        est = estimates[name]
        ax.errorbar(i, est["scale"], yerr=est["scale_err"], fmt="o", ms=7, capsize=5,
                    color={"stars": "tab:blue", "image": "tab:orange"}.get(name, "tab:purple"))
    if truth is not None:
        ax.axhline(truth, color="tab:green", ls=":", lw=2, label=f"truth {truth}")
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("continuum scale s")
    ax.set_title("three ways to the scale" if len(names) == 3 else "the ways to the scale")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3, axis="y")
    return ax
