"""The figures of 11's QA page: registration, zero points, the MUSE comparison.

Each function takes the tables the steps wrote and returns a figure (matplotlib, or a
plotly chart for the report); none reads or writes a file.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .. import fitsio, plotting


def registration_and_zero_points(reg, std, zps, *, warn_px):
    """07's registration residual per frame and 08's zero-point fit per filter, side by side.

    ``reg`` is 07's registration table (or None), ``std`` 08's standards and ``zps`` its
    zero points (or None / empty). Returns the figure, or None when there is nothing to draw.
    """
    zps = [] if zps is None or std is None else zps
    n_panels = int(reg is not None) + len(zps)   # the registration, then one filter a panel
    if not n_panels:
        return None
    fig, axes = plt.subplots(1, n_panels, figsize=(4.8 * n_panels + 1, 4), squeeze=False)
    axes = list(axes[0])
    if reg is not None:
        registration_panel(axes.pop(0), reg, warn_px=warn_px)
    colours = plotting.filter_colours(zps["filter"]) if len(zps) else {}
    for z in zps:   # each filter on its own axis, from airmass 0, where the line meets the zero point
        zero_point_panel(axes.pop(0), std[std["filter"] == z["filter"]], z, colour=colours[z["filter"]])
    fig.tight_layout()
    return fig


def registration_panel(ax, reg, *, warn_px):
    """Each frame's registration residual (px), coloured by filter, with the warn line."""
    colours = plotting.filter_colours(reg["filter"])
    for filt in sorted(set(reg["filter"])):
        sel = reg["filter"] == filt
        ax.scatter(np.flatnonzero(sel), reg["residual_px"][sel], color=colours[filt], label=filt)
    ax.axhline(warn_px, color="gold", ls="--", label="warn")
    ax.set_xticks(range(len(reg)), [fitsio.frame_stem(f)[-22:] for f in reg["file"]], rotation=60,
                  ha="right", fontsize=7)
    ax.set_ylabel("registration residual [px]")
    ax.set_title("07: how well each frame lined up")
    ax.legend(fontsize=8)


def zero_point_panel(ax, std, z, *, colour):
    """One filter's standards, m_cat - m_inst against airmass, and the fitted line ZP - k X."""
    d = std["m_cat"] - std["m_inst"]
    ax.errorbar(std["airmass"], d, yerr=std["m_inst_err"], fmt="o", ms=4, color=colour,
                label="standard stars")
    xx = np.linspace(0, 1.1 * np.max(std["airmass"]), 10)
    ax.plot(xx, z["zp"] - z["k"] * xx, color=colour, label=f"slope: k = {z['k']:.3f} mag/airmass")
    ax.plot(0, z["zp"], "k*", ms=11, label=f"airmass 0: ZP = {z['zp']:.3f} ± {z['zp_err']:.3f}")
    ax.set_xlim(-0.05, xx[-1])
    ax.set_xlabel("airmass")
    ax.set_ylabel("m_catalogue − m_instrumental [mag]")
    ax.set_title(f"08: zero point and extinction, {z['filter']}")
    ax.legend(fontsize=8, loc="lower left")


def nebulae_figure(neb, stats, *, unit=""):
    """10's nebulae: our flux against MUSE's before and after anchoring, and each ratio's move.

    ``stats`` holds `qa.comparison_stats` of ``'before'`` and ``'after'``.
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
    ax = axes[0]
    lim = [np.nanmin(neb["flux_muse"]) * 0.7, np.nanmax(neb["flux_muse"]) * 1.4]
    ax.loglog(neb["flux_muse"], neb["flux_before"], "o", color="0.6", label="before anchoring")
    ax.loglog(neb["flux_muse"], neb["flux_ours"], "o", color="tab:red", label="after anchoring")
    ax.plot(lim, lim, "k:", label="equal")
    ax.set_xlabel(f"MUSE [{unit}]")
    ax.set_ylabel(f"ours [{unit}]")
    ax.legend(fontsize=8)
    ax.set_title("each nebula's Hα flux")
    ax = axes[1]   # each nebula moved by anchoring: from its ratio before (top) to after (bottom)
    ratios = {key: np.asarray(neb[col] / neb["flux_muse"], float)
              for key, col in (("before", "flux_before"), ("after", "flux_ours"))}
    for b, a in zip(ratios["before"], ratios["after"], strict=True):
        ax.plot([b, a], [1, 0], color="0.8", lw=0.8, zorder=1)
    for key, colour, level in (("before", "0.5", 1), ("after", "tab:red", 0)):
        s = stats[key]
        ax.scatter(ratios[key], np.full(len(neb), level), color=colour, s=22, zorder=2,
                   label=f"{key}: bias {s['median'] - 1:+.1%}, scatter {s['scatter']:.1%}")
    ax.axvline(1, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks([0, 1], ["after", "before"])
    ax.set_ylim(-0.5, 1.8)
    ax.set_xlabel("ours / MUSE (log scale; 1 = agreement)")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"{stats['after']['n']} nebulae: each line is one nebula")
    fig.tight_layout()
    return fig


def nebulae_chart(neb, *, unit=""):
    """The same ratios as a plotly chart (hover gives each nebula's id), for the report."""
    import plotly.graph_objects as go

    hover = [f"nebula {i}" for i in neb["id"]]
    chart = go.Figure()
    for col, name, colour, size in (("flux_ours", "after anchoring", "crimson", 8),
                                    ("flux_before", "before anchoring", "gray", 6)):
        chart.add_trace(go.Scatter(x=list(neb["flux_muse"]), y=list(neb[col] / neb["flux_muse"]),
                                   mode="markers", name=name, text=hover,
                                   marker={"color": colour, "size": size}))
    chart.update_layout(xaxis={"type": "log", "title": f"MUSE flux [{unit}]",
                               "exponentformat": "power"},   # 10^-14, not plotly's SI "10f"
                        yaxis={"title": "ours / MUSE"}, height=420,
                        title="Hα flux of each nebula, ours / MUSE (hover for the nebula's id)")
    return chart


def anchor_fit_figure(fit):
    """10's anchoring fit: MUSE against our image in bins, and the fitted line."""
    m = fit.meta
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(fit["image"], fit["muse"], yerr=fit["muse_err"], fmt="o", ms=4, color="tab:red",
                label="bin medians")
    xx = np.array([np.min(fit["image"]), np.max(fit["image"])])
    ax.plot(xx, m["offset"] + m["slope"] * xx, color="tab:blue",
            label=f"MUSE = {m['offset']:.3g} + {m['slope']:.3f} × image")
    ax.set_xlabel(f"image [{m.get('unit', '')} per spaxel]")
    ax.set_ylabel("MUSE")
    ax.set_title("10: the anchoring fit")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
