"""Display boilerplate for the notebooks: images, histograms, profiles, thumbnails.

Nothing here changes data or does science; these functions only draw. They exist so
that every figure of the suite looks the same and a student can read it: images with a
sensible stretch (zscale or percentiles), a colour bar labelled with the unit, axes in
pixels with the origin at the lower left (as FITS and DS9 show it), histograms on a log
scale where the tail matters, before/after pairs at the same stretch.

Every function draws on the axes it is given (or makes a figure) and returns the axes
or the figure, so a notebook can add a line, a marker or a title of its own.
"""

from __future__ import annotations

import logging
import math
import warnings

import matplotlib.pyplot as plt
import numpy as np
from astropy.visualization import PercentileInterval, ZScaleInterval
from matplotlib.colors import Normalize, to_rgb
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from . import skywcs

log = logging.getLogger(__name__)

STRETCHES = ("zscale", "percentile")
#: Colour of masked (and NaN) pixels in images.
MASK_COLOR = "tab:red"
#: Colours of mask bits in `show_bitmask`, in bit order.
BIT_COLORS = ("tab:purple", "tab:orange", "tab:brown", "tab:red", "tab:green",
              "tab:blue", "tab:gray", "tab:olive", "tab:cyan", "tab:pink")


#: One colour per filter, the same in every notebook: the hue of the band's light where
#: it has one, so a student reads R as orange and Halpha as red in 02, 05, 07 and 11.
FILTER_COLORS = {"U": "tab:purple", "B": "tab:blue", "V": "tab:green", "R": "tab:orange",
                 "I": "tab:brown", "HA": "tab:red", "H-ALPHA": "tab:red", "HALPHA": "tab:red",
                 "U'": "tab:purple", "G": "tab:green", "R'": "tab:orange", "I'": "tab:brown",
                 "Z": "tab:gray", "OIII": "tab:cyan", "SII": "tab:pink"}
_OTHER_COLORS = ("tab:olive", "tab:cyan", "tab:pink", "tab:gray", "tab:purple", "tab:blue")


def filter_colours(filters) -> dict:
    """Filter name -> colour, the same for a name in every figure of the suite.

    Known bands take `FILTER_COLORS` (case and spaces ignored); others take colours of
    their own in sorted order, so two notebooks showing the same filters agree.

    >>> filter_colours(["Ha", "R", "Clear"])
    {'Ha': 'tab:red', 'R': 'tab:orange', 'Clear': 'tab:olive'}
    """
    filters = list(dict.fromkeys(str(f) for f in filters))
    out, others = {}, []
    for f in filters:
        key = f.strip().upper().replace(" ", "")
        if key in FILTER_COLORS:
            out[f] = FILTER_COLORS[key]
        else:
            others.append(f)
    for i, f in enumerate(sorted(others)):
        out[f] = _OTHER_COLORS[i % len(_OTHER_COLORS)]
    return {f: out[f] for f in filters}


def image_norm(data, *, stretch="zscale", percentile=99.5):
    """The display limits of an image, as a linear `matplotlib.colors.Normalize`.

    Linear between limits chosen by astropy's intervals (zscale, percentile). A linear
    astropy ``ImageNormalize`` gives the same colours, but a colour bar of one is drawn on
    a function scale that calls it for every tick and label (most of a colour bar's cost):
    an 8-panel figure of images with colour bars drew in 0.63 s instead of 0.73 s.

    Parameters
    ----------
    data : array or sequence of arrays
        The pixel values the limits are computed from; NaN and infinite values are
        ignored. Several arrays (e.g. a before and an after image) share one stretch.
    stretch : {'zscale', 'percentile'}
        ``'zscale'`` (IRAF's choice of limits around the sky level, good for faint
        detail) or ``'percentile'`` (the central ``percentile`` per cent of values,
        good for images with a wide range such as flats and dark current).
    percentile : float
        Per cent of the values kept between the limits for ``stretch='percentile'``.

    Returns
    -------
    `~matplotlib.colors.Normalize`
        A linear normalisation between the chosen limits.
    """
    if stretch not in STRETCHES:
        msg = f"stretch must be one of {STRETCHES}, got {stretch!r}"
        raise ValueError(msg)
    arrays = [np.asarray(a).ravel() for a in (data if isinstance(data, (list, tuple)) else [data])]
    # limits from at most ~2^20 values, every step-th: a percentile of three 2048² models
    # from 1 M of their 12 M values is the same to a small part of the range, 10x faster
    step = max(1, -(-sum(a.size for a in arrays) // 2 ** 20))
    values = np.concatenate([a[::step].astype(float) for a in arrays])
    values = values[np.isfinite(values)]
    if values.size == 0:
        log.warning("image has no finite values; showing it between 0 and 1")
        return Normalize(vmin=0.0, vmax=1.0)
    interval = ZScaleInterval() if stretch == "zscale" else PercentileInterval(percentile)
    vmin, vmax = interval.get_limits(values)
    if not vmax > vmin:
        vmin, vmax = float(values.min()), float(values.max())
        if not vmax > vmin:
            vmin, vmax = vmin - 0.5, vmax + 0.5
    return Normalize(vmin=float(vmin), vmax=float(vmax))


def binned_for_display(data, bad, max_pixels):
    """(values, bad, block): an image in blocks of ``block`` x ``block`` pixels.

    A block's value is the mean of its good pixels; a block is bad if any of its pixels
    is, so that a single dead column or hot pixel stays visible in a shrunk image
    (matplotlib's own shrinking would drop most of them). Blocks at the far edges may
    be short: the mean of the pixels they hold.

    >>> import numpy as np
    >>> img = np.arange(16.0).reshape(4, 4)
    >>> bad = np.zeros((4, 4), bool); bad[0, 1] = True
    >>> v, b, block = binned_for_display(img, bad, max_pixels=2)
    >>> v.tolist(), b.tolist(), block
    ([[3.0, 4.5], [10.5, 12.5]], [[True, False], [False, False]], 2)
    """
    ny, nx = data.shape
    block = max(1, math.ceil(max(ny, nx) / max_pixels))
    if block == 1:
        return data, bad, 1
    # pixels per block (the last row and column of blocks may be short)
    area = np.outer(np.minimum(block, ny - np.arange(0, ny, block)),
                    np.minimum(block, nx - np.arange(0, nx, block)))
    if bad.any():
        n_bad = _block_sums(bad.view(np.uint8), block, np.int32)
        total = _block_sums(np.where(bad, np.zeros((), data.dtype), data), block, np.float64)
    else:
        n_bad = np.zeros(area.shape, np.int32)
        total = _block_sums(data, block, np.float64)
    n = area - n_bad
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
    return mean, (n_bad > 0) | (n == 0), block


def _block_sums(a, block, dtype):
    """Sums of ``a`` over blocks of ``block`` x ``block`` (short at the far edges), as ``dtype``.

    Added one offset within the block at a time, as strided views: one pass over the
    image and no copy of it (a 2048² float32 frame in blocks of 3: 9 ms, against 60 ms
    for padding, reshaping and summing in float64).
    """
    ny, nx = a.shape
    rows = np.zeros((-(-ny // block), nx), dtype)
    for k in range(block):
        part = a[k::block]
        rows[:len(part)] += part
    out = np.zeros((rows.shape[0], -(-nx // block)), dtype)
    for k in range(block):
        part = rows[:, k::block]
        out[:, :part.shape[1]] += part
    return out


def show_image(ax, data, *, title="", unit="", stretch="zscale", cmap="gray", bad=None,
               norm=None, percentile=99.5, origin=(0, 0), colorbar=True, max_pixels=800):
    """Draw an image in pixel coordinates with a colour bar labelled with its unit.

    An image larger than ``max_pixels`` on a side is drawn in blocks
    (`binned_for_display`): the mean of each block, and a block with any masked pixel
    in `MASK_COLOR`, so a one-pixel bad column stays visible; the x label says so. A
    figure of a 2048^2 frame is then drawn from 0.5 M values, not 4 M.

    Parameters
    ----------
    ax : `~matplotlib.axes.Axes`
        Where to draw.
    data : 2-D array
        The image; NaN pixels are drawn in `MASK_COLOR`.
    title : str
        Axes title.
    unit : str
        The unit of the values (``'ADU'``, ``'electron'``, ...), written on the colour bar.
    stretch : {'zscale', 'percentile'}
        How display limits are chosen (see `image_norm`); ignored when ``norm`` is given.
    cmap : str
        Matplotlib colour map.
    bad : bool array, optional
        Pixels to draw in `MASK_COLOR` instead of their value.
    norm : `~matplotlib.colors.Normalize`, optional
        Display limits to use (e.g. shared with another image).
    percentile : float
        See `image_norm`.
    origin : (int, int)
        Pixel (x, y) of the lower-left pixel of ``data``, so that a cut-out is drawn with
        the coordinates of the frame it was cut from.
    colorbar : bool
        Draw a colour bar.
    max_pixels : int
        Largest number of values per side drawn; a larger image is drawn in blocks.

    Returns
    -------
    `~matplotlib.axes.Axes`
        ``ax``, with the image drawn.
    """
    data = np.asarray(data)
    if data.dtype.kind != "f":   # a float32 frame is drawn as it is, not copied to float64
        data = data.astype(float)
    if data.ndim != 2:
        msg = f"show_image draws 2-D images; got an array of shape {data.shape}"
        raise ValueError(msg)
    bad = ~np.isfinite(data) if bad is None else ~np.isfinite(data) | np.asarray(bad, bool)
    shown, shown_bad, block = binned_for_display(data, bad, max_pixels)
    if norm is None:
        norm = image_norm(shown[~shown_bad] if (~shown_bad).any() else shown, stretch=stretch,
                          percentile=percentile)
    colours = plt.get_cmap(cmap).with_extremes(bad=MASK_COLOR)
    ny, nx = shown.shape[0] * block, shown.shape[1] * block
    x0, y0 = origin
    extent = (x0 - 0.5, x0 + nx - 0.5, y0 - 0.5, y0 + ny - 0.5)
    im = ax.imshow(np.ma.masked_array(shown, shown_bad), origin="lower", cmap=colours,
                   norm=norm, extent=extent, interpolation="nearest")
    ax.set_xlabel("x [pixel]" + (f"  (drawn in {block}x{block} blocks)" if block > 1 else ""))
    ax.set_ylabel("y [pixel]")
    for axis in (ax.xaxis, ax.yaxis):   # whole pixels, as many ticks as fit
        axis.set_major_locator(MaxNLocator(nbins="auto", integer=True))
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label=unit, fraction=0.046, pad=0.04)
    return ax


def show_pair(before, after, *, titles=("before", "after"), unit="", stretch="zscale",
              cmap="gray", masks=(None, None), origin=(0, 0), percentile=99.5,
              reference="both", figsize=(11.0, 4.8)):
    """Two images side by side at the SAME stretch, so differences are real.

    Parameters
    ----------
    before, after : 2-D arrays
        Images of the same quantity and unit.
    titles : (str, str)
        Titles of the two panels.
    unit : str
        Unit of both images, written on both colour bars.
    stretch, cmap, percentile, origin
        See `show_image`.
    masks : (bool array or None, bool array or None)
        Pixels to draw in `MASK_COLOR` in each panel; they don't set the limits.
    reference : {'both', 'before', 'after'}
        Which image sets the common display limits. ``'after'`` suits a correction that
        removes extreme values (dead columns, a bias level) from the ``before`` image.
    figsize : (float, float)
        Figure size in inches.

    Returns
    -------
    fig, axes : `~matplotlib.figure.Figure`, array of two `~matplotlib.axes.Axes`
    """
    if reference not in ("both", "before", "after"):
        msg = f"reference must be 'both', 'before' or 'after', got {reference!r}"
        raise ValueError(msg)
    shown = []
    for name, img, m in zip(("before", "after"), (before, after), masks, strict=True):
        if reference in ("both", name):
            img = np.asarray(img, dtype=float)
            shown.append(img if m is None else img[~np.asarray(m, bool)])
    norm = image_norm(shown, stretch=stretch, percentile=percentile)
    fig, axes = plt.subplots(1, 2, figsize=figsize, layout="constrained")
    for ax, img, title, m in zip(axes, (before, after), titles, masks, strict=True):
        show_image(ax, img, title=title, unit=unit, cmap=cmap, bad=m, norm=norm,
                   origin=origin)
    return fig, axes


def histogram(ax, values, *, bins=100, log=True, xlabel="", ylabel="number of pixels",
              label=None, range=None, color=None):
    """Histogram of pixel values (NaN and infinite values left out).

    Parameters
    ----------
    ax : `~matplotlib.axes.Axes`
        Where to draw.
    values : array
        Any shape; flattened.
    bins : int or sequence
        Number of bins, or their edges.
    log : bool
        Logarithmic count axis, so that a tail of rare values (cosmic rays, hot pixels)
        is visible next to the peak.
    xlabel, ylabel : str
        Axis labels; put the unit in ``xlabel`` (``'value [ADU]'``).
    label : str, optional
        Legend entry (a legend is drawn when given).
    range : (float, float), optional
        Lower and upper edge of the bins.
    color : str, optional
        Line colour.

    Returns
    -------
    `~matplotlib.axes.Axes`
        ``ax``.
    """
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    ax.hist(v, bins=bins, range=range, histtype="step", lw=1.5, label=label, color=color)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if label is not None:
        ax.legend()
    return ax


def row_profile(ax, image, row, *, width=1, xlabel="x [pixel]", ylabel="", label=None,
                shade=None, color=None):
    """Values along one row of an image (or the median of ``width`` rows around it).

    Parameters
    ----------
    ax : `~matplotlib.axes.Axes`
        Where to draw.
    image : 2-D array
        The image.
    row : int
        The row (0-based ``y``) to draw.
    width : int
        Number of rows, centred on ``row``, whose median is drawn (1: the row itself);
        a median of many rows shows column structure without the pixel noise.
    xlabel, ylabel, label, color : str
        As in `histogram` (put the unit in ``ylabel`` here).
    shade : dict, optional
        ``{name: (x_first, x_last)}`` column ranges to shade and name, e.g. the overscan.

    Returns ``ax``.
    """
    image = np.asarray(image, dtype=float)
    y0 = max(0, int(row) - width // 2)
    y1 = min(image.shape[0], y0 + max(1, int(width)))
    if y1 - y0 > 1:
        with warnings.catch_warnings():   # an all-NaN column (a masked one) stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            values = np.nanmedian(image[y0:y1], axis=0)
    else:
        values = image[y0]
    ax.plot(np.arange(values.size), values, lw=1, label=label, color=color,
            drawstyle="steps-mid")
    for i, (name, (xa, xb)) in enumerate((shade or {}).items()):
        ax.axvspan(xa - 0.5, xb + 0.5, color=BIT_COLORS[i % len(BIT_COLORS)], alpha=0.15,
                   label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if label is not None or shade:
        ax.legend()
    return ax


def thumbnail_grid(images, *, unit="", ncols=3, stretch="zscale", cmap="gray",
                   panel_size=3.4, percentile=99.5):
    """Small images side by side, each at its own stretch, titled with its label.

    Parameters
    ----------
    images : dict
        Label -> 2-D array, drawn in this order.
    unit : str
        Unit written on every colour bar.
    ncols : int
        Panels per row.
    stretch, cmap, percentile
        See `show_image`; every panel gets its own limits.
    panel_size : float
        Width of one panel in inches.

    Returns
    -------
    `~matplotlib.figure.Figure`
    """
    n = len(images)
    if n == 0:
        msg = "thumbnail_grid needs at least one image"
        raise ValueError(msg)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols * 1.2,
                                                    panel_size * nrows),
                             layout="constrained", squeeze=False)
    for ax, (label, img) in zip(axes.flat[:n], images.items(), strict=True):
        show_image(ax, img, title=label, unit=unit, stretch=stretch, cmap=cmap,
                   percentile=percentile)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig


def show_bitmask(ax, mask, *, bits, title="", origin=(0, 0), max_pixels=300):
    """Draw a bitmask: each named bit that is set somewhere in its own colour.

    A mask larger than ``max_pixels`` on a side is drawn in blocks, each block showing
    every bit set in any of its pixels, so that a single flagged pixel stays visible.

    Parameters
    ----------
    ax : `~matplotlib.axes.Axes`
        Where to draw.
    mask : 2-D integer array
        The bitmask (0 = clean pixel, drawn white).
    bits : dict
        Bit name -> bit value (e.g. ``{name: value for name, (value, _) in
        redux_helpers.masks.BITS.items()}``). Where several bits are set, the later
        one in this order is drawn.
    title : str
        Axes title.
    origin : (int, int)
        See `show_image`.
    max_pixels : int
        Largest number of screen pixels per side before blocks are drawn.

    Returns
    -------
    `~matplotlib.axes.Axes`
        ``ax``; the legend names each bit drawn and how many pixels have it.
    """
    mask = np.asarray(mask).astype(np.int64)
    ny, nx = mask.shape
    block = max(1, math.ceil(max(ny, nx) / max_pixels))
    shown = np.pad(mask, ((0, -ny % block), (0, -nx % block)))
    if block > 1:
        shown = shown.reshape(shown.shape[0] // block, block, shown.shape[1] // block, block)
        shown = np.bitwise_or.reduce(np.bitwise_or.reduce(shown, axis=3), axis=1)
    rgb = np.ones(shown.shape + (3,))
    handles = []
    for i, (name, value) in enumerate(bits.items()):
        n_set = int(np.sum((mask & int(value)) > 0))
        if not n_set:
            continue
        colour = to_rgb(BIT_COLORS[i % len(BIT_COLORS)])
        rgb[(shown & int(value)) > 0] = colour
        handles.append(Patch(color=colour, label=f"{name} ({n_set} px)"))
    ny, nx = (shown.shape[0] * block, shown.shape[1] * block)
    x0, y0 = origin
    ax.imshow(rgb, origin="lower", extent=(x0 - 0.5, x0 + nx - 0.5, y0 - 0.5, y0 + ny - 0.5),
              interpolation="nearest")
    ax.set_xlabel("x [pixel]")
    ax.set_ylabel("y [pixel]")
    if title:
        ax.set_title(title)
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                  borderaxespad=0.0, title="set bits")
    else:
        ax.text(0.5, 0.5, "no pixel flagged", transform=ax.transAxes, ha="center")
    return ax


def compass(ax, wcs, *, size=0.12, corner=(0.85, 0.12), color="gold"):
    """Draw north (N) and east (E) arrows in the corner of an image drawn by `show_image`.

    The arrows point along +Dec and +RA as the image's WCS maps them at its centre, so
    a rotated image (an HST or MUSE grid) shows which way is north. ``size`` and
    ``corner`` are fractions of the axes.
    """
    ny, nx = wcs.pixel_shape[::-1] if wcs.pixel_shape else (1, 1)
    x0, y0 = (nx - 1) / 2, (ny - 1) / 2
    ra, dec = wcs.celestial.pixel_to_world_values(x0, y0)
    step = skywcs.pixel_scale_arcsec(wcs) / 3600.0 * 10  # degrees
    tail = ax.transAxes.transform(corner)
    for name, (dra, ddec) in (("N", (0.0, step)), ("E", (step / math.cos(math.radians(dec)), 0.0))):
        x1, y1 = wcs.celestial.world_to_pixel_values(ra + dra, dec + ddec)
        d = np.array([x1 - x0, y1 - y0], float)
        d /= np.hypot(*d)
        end = ax.transAxes.inverted().transform(tail) + size * d
        ax.annotate("", xy=end, xytext=corner, xycoords="axes fraction",
                    arrowprops={"arrowstyle": "->", "color": color, "lw": 1.5})
        ax.text(*(end + 0.04 * d), name, transform=ax.transAxes, color=color,
                ha="center", va="center", fontsize=9, fontweight="bold")
    return ax

