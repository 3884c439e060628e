"""Figures: large images are drawn in blocks that keep one-pixel defects visible."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from redux_helpers import plotting  # noqa: E402


def test_large_image_is_drawn_in_blocks_and_keeps_a_dead_column():
    ny, nx = 1500, 2000
    yy, xx = np.mgrid[:ny, :nx]
    img = 100.0 + 0.01 * xx + 0.02 * yy
    img[:, 777] = np.nan                       # a dead column, one pixel wide
    hot = np.zeros((ny, nx), bool)
    hot[1001, 1501] = True                     # one flagged pixel
    fig, ax = plt.subplots()
    plotting.show_image(ax, img, mask=hot, unit="electron")
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
