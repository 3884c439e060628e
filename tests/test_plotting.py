"""Figures: large images are drawn in blocks that keep one-pixel defects visible."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from redux_helpers import figures, plotting  # noqa: E402


def test_large_image_is_drawn_in_blocks_and_keeps_a_dead_column():
    ny, nx = 1500, 2000
    yy, xx = np.mgrid[:ny, :nx]
    img = 100.0 + 0.01 * xx + 0.02 * yy
    img[:, 777] = np.nan                       # a dead column, one pixel wide
    hot = np.zeros((ny, nx), bool)
    hot[1001, 1501] = True                     # one flagged pixel
    fig, ax = plt.subplots()
    plotting.show_image(ax, img, bad=hot, unit="electron")
    shown = ax.images[0].get_array()
    block = 3                                  # ceil(2000 / 800)
    assert shown.shape == (500, 667)
    # the dead column's block is masked on every row; the flagged pixel's block too
    assert shown.mask[:, 777 // block].all() and shown.mask[1001 // block, 1501 // block]
    assert shown.mask.sum() == 500 + 1         # nothing else: the part-padded last column is not
    # a block's value is the mean of its pixels: the plane at the block's centre
    j, i = 200, 100
    assert abs(shown[j, i] - (100.0 + 0.01 * (3 * i + 1) + 0.02 * (3 * j + 1))) < 1e-9
    # drawn in frame pixels: the extent covers the whole frame, the label says blocks
    x0, x1, y0, y1 = ax.images[0].get_extent()
    assert (x0, y0) == (-0.5, -0.5) and x1 >= nx - 0.5 and y1 == ny - 0.5
    assert "3x3 blocks" in ax.get_xlabel()
    plt.close(fig)


def test_small_image_is_drawn_pixel_for_pixel():
    img = np.arange(50.0 * 40).reshape(40, 50)
    fig, ax = plt.subplots()
    plotting.show_image(ax, img, origin=(10, 20))
    shown = ax.images[0].get_array()
    assert shown.shape == (40, 50) and np.array_equal(shown.data, img)
    assert ax.images[0].get_extent() == [9.5, 59.5, 19.5, 59.5]
    assert ax.get_xlabel() == "x [pixel]"
    plt.close(fig)


def test_qa_zero_point_panel_draws_the_fitted_line_through_the_standards():
    """11's zero-point panel: the line is ZP - k X, the star meets it at airmass 0."""
    from astropy.table import Table

    from redux_helpers.qa import figures

    x = np.array([1.1, 1.6, 2.2])
    std = Table({"filter": ["R"] * 3, "airmass": x, "m_cat": [15.0, 15.2, 15.4],
                 "m_inst": 15.0 - (25.0 - 0.1 * x), "m_inst_err": [0.01] * 3})
    zps = Table({"filter": ["R"], "zp": [25.0], "k": [0.1], "zp_err": [0.004]})
    reg = Table({"file": ["a.fits", "b.fits"], "filter": ["R", "R"], "residual_px": [0.05, 0.31]})
    fig = figures.registration_and_zero_points(reg, std, zps, warn_px=0.25)
    ax_reg, ax_zp = fig.axes
    assert np.allclose(ax_reg.collections[0].get_offsets()[:, 1], [0.05, 0.31])
    assert ax_reg.lines[0].get_ydata()[0] == 0.25                   # the warn line
    line = [ln for ln in ax_zp.lines if len(ln.get_xdata()) == 10][0]
    assert np.allclose(line.get_ydata(), 25.0 - 0.1 * line.get_xdata())
    star = [ln for ln in ax_zp.lines if ln.get_marker() == "*"][0]
    assert star.get_xdata()[0] == 0 and star.get_ydata()[0] == 25.0
    # the standards' points are m_cat - m_inst
    points = ax_zp.containers[0].lines[0]
    assert np.allclose(points.get_ydata(), std["m_cat"] - std["m_inst"])
    assert figures.registration_and_zero_points(None, None, None, warn_px=0.25) is None
    plt.close(fig)


def test_qa_nebulae_figure_moves_each_nebula_from_before_to_after():
    from astropy.table import Table

    from redux_helpers import qa
    from redux_helpers.qa import figures

    neb = Table({"id": [1, 2, 3], "flux_muse": [1.0, 2.0, 4.0], "flux_before": [1.5, 3.0, 6.0],
                 "flux_ours": [1.0, 2.1, 3.9]})
    stats = {"before": qa.comparison_stats(neb, "flux_before", "flux_muse"),
             "after": qa.comparison_stats(neb, "flux_ours", "flux_muse")}
    assert abs(stats["before"]["median"] - 1.5) < 1e-12
    fig = figures.nebulae_figure(neb, stats, unit="erg / (s cm2)")
    moves = [ln for ln in fig.axes[1].lines if len(ln.get_xdata()) == 2 and ln.get_ydata()[0] == 1]
    assert [tuple(np.round(m.get_xdata(), 3)) for m in moves] == [(1.5, 1.0), (1.5, 1.05),
                                                                 (1.5, 0.975)]
    assert "bias +50.0%" in fig.axes[1].get_legend().get_texts()[0].get_text()
    chart = figures.nebulae_chart(neb, unit="erg / (s cm2)")
    assert list(chart.data[0].y) == [1.0, 1.05, 0.975] and chart.data[0].text[2] == "nebula 3"
    plt.close(fig)


def test_registration_figure_puts_each_frame_where_its_transform_moves_the_centre():
    from astropy.table import Table

    from redux_helpers.register import Transform

    reg = Table(rows=[("n_R_1.fits", "R", True, "reference", 0.0, 0.0),
                      ("n_R_2.fits", "R", True, "stars: translation", 0.0, 0.02),
                      ("n_Ha_1.fits", "Ha", True, "stars: similarity", 1.5, 0.04),
                      ("n_Ha_2.fits", "Ha", False, "-", np.nan, np.nan)],
                names=("file", "filter", "used", "method", "rotation_deg", "residual_px"))
    turn = np.deg2rad(1.5)
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    shape = (101, 201)
    c = np.array([100.0, 50.0])
    transforms = {"n_R_1.fits": Transform(), "n_R_2.fits": Transform(np.eye(2), np.array([7.0, -3.0])),
                  "n_Ha_1.fits": Transform(rot, c + np.array([-4.0, 5.0]) - rot @ c)}
    colours = plotting.filter_colours(["R", "Ha"])
    fig, (a, b) = plt.subplots(1, 2)
    figures.registration_shifts(a, reg, transforms, reference="n_R_1.fits", shape=shape,
                                 colours=colours)
    tips = sorted((round(float(t.xy[0]), 6), round(float(t.xy[1]), 6)) for t in a.texts)
    assert tips == [(-4.0, 5.0), (-4.0, 5.0), (7.0, -3.0), (7.0, -3.0)]  # arrow + label each
    labels = sorted(t.get_text() for t in a.texts if t.get_text())
    assert labels == ["Ha_1 (+1.50 deg)", "R_2"]          # the common prefix 'n_' dropped
    assert "names after 'n_'" in a.get_title()
    figures.registration_residuals(b, reg, colours=colours)
    widths = [p.get_width() for p in b.patches]
    assert widths == pytest.approx([0.0, 0.02, 0.04, 0.0])  # the left-out frame: no bar
    assert b.patches[3].get_facecolor()[:3] == pytest.approx((0.8, 0.8, 0.8))
    assert [t.get_text() for t in b.texts][3] == " LEFT OUT"
    plt.close(fig)


def test_scale_figures_show_the_used_stars_the_line_emitter_and_each_estimate():
    ratio = np.array([0.080, 0.081, 0.079, 0.20, 0.07])
    flux_r = np.array([1000.0, 800.0, 900.0, 500.0, 5.0])
    used = np.array([True, True, True, False, False])
    bright = np.array([True, True, True, True, False])
    fig, (a, b, c) = plt.subplots(1, 3)
    figures.scale_star_ratios(a, flux_r=flux_r, ratio=ratio, ratio_err=np.full(5, 0.001), used=used,
                              bright=bright, scale=0.08, scale_err=0.0005, source="stars",
                              scatter=0.001, truth=0.08, snr_min=20, filters=("Ha", "R"))
    lo, hi = a.get_ylim()
    assert (lo, hi) == pytest.approx((0.08 * 0.75, 0.08 * 1.25))     # 8 x scatter < 25 %
    triangle = [ln for ln in a.lines if ln.get_marker() == "^"][0]
    assert triangle.get_ydata()[0] == pytest.approx(hi * 0.98)         # the emitter, at the top
    texts = [t.get_text() for t in a.get_legend().get_texts()]
    assert "3 stars used" in texts and any("1 above the top" in t for t in texts)
    figures.scale_flux_flux(b, flux_r=flux_r, flux_ha=ratio * flux_r, used=used, scale=0.08,
                            filters=("Ha", "R"), unit="e-/s")
    assert len(b.lines[1].get_xdata()) == 3                             # the used stars
    figures.scale_estimates(c, {"stars": {"scale": 0.08, "scale_err": 0.0005},
                                "image": {"scale": 0.079, "scale_err": 0.0004}},
                            scale=0.08, scale_err=0.0005, source="stars")
    assert [t.get_text() for t in c.get_xticklabels()] == ["stars", "image"]
    assert c.get_title() == "the ways to the scale"
    plt.close(fig)
