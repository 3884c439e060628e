"""The catalogue as DS9 regions and as plotly bubble charts, in memory.

`ds9_regions` gives the region file's text, `bubble_charts` the two figures; the notebook
writes them (`fitsio.write_text`, `fitsio.write_html_figure`): nothing here touches disk.
"""

from __future__ import annotations

import math

import numpy as np
from astropy import units as u

from ..errors import ReduxError
from ..skywcs import celestial_wcs, pixel_scale_arcsec, world_of


def ds9_regions(table, *, wcs=None) -> str:
    """The text of a DS9 region file: one circle of radius ``r_eq`` per region, labelled with its id.

    Sky circles (ICRS, radius in arcsec) with a ``wcs`` (centres from ``ra``/``dec``
    when the table has them), else image circles (DS9 counts pixels from 1; the
    ``regions`` package converts).
    """
    try:
        from regions import CirclePixelRegion, CircleSkyRegion, PixCoord, Regions
    except ImportError:
        msg = "ds9_regions needs the 'regions' package: pip install regions"
        raise ReduxError(msg) from None
    from astropy.coordinates import SkyCoord

    ids = [str(int(i)) for i in table["id"]]
    radius = np.asarray(table["r_eq_px"], float)
    x, y = np.asarray(table["x"], float), np.asarray(table["y"], float)
    if wcs is not None:
        w = celestial_wcs(wcs, required=True)
        if "ra" in table.colnames and "dec" in table.colnames:
            ra, dec = np.asarray(table["ra"], float), np.asarray(table["dec"], float)
        else:
            ra, dec = world_of(w, x, y)
        scale = pixel_scale_arcsec(w)
        shapes = [CircleSkyRegion(SkyCoord(a, d, unit="deg", frame="icrs"), r * scale * u.arcsec)
                  for a, d, r in zip(ra, dec, radius, strict=True)]
    else:
        shapes = [CirclePixelRegion(PixCoord(a, b), r)
                  for a, b, r in zip(x, y, radius, strict=True)]
    if len(shapes) > 1:
        for shape, label in zip(shapes, ids, strict=True):
            shape.meta["text"] = label
    text = Regions(shapes).serialize(format="ds9") if shapes else \
        "# Region file format: DS9 astropy/regions\n# no regions\n"
    if len(shapes) == 1:
        # regions moves metadata shared by all regions to a 'global' line, which DS9
        # doesn't apply to labels: put the one label on its circle instead
        text = text.rstrip("\n") + f" # text={{{ids[0]}}}\n"
    return text


def bubble_charts(table, *, title=""):
    """Interactive charts of the regions: a 2-D map and a 3-D one with log L upwards.

    Marker diameters are proportional to ``sqrt(luminosity)`` (so areas to L), or to
    ``sqrt(flux)`` without luminosities, with a floor of 3 px so faint regions stay
    visible; colour is the deprojected galactocentric radius (kpc, else pixels) with
    a colour bar. Positions are RA/Dec (RA increasing to the left, equal angular
    scales) when the table has them, else pixels. ``fitsio.write_html_figure`` writes
    each as a standalone HTML file (plotly.js included, ~5 MB).

    Returns
    -------
    fig_2d, fig_3d : `plotly.graph_objects.Figure`
    """
    import plotly.graph_objects as go

    cols = table.colnames
    sky = "ra" in cols and "dec" in cols
    xk, yk = ("ra", "dec") if sky else ("x", "y")
    xs, ys = np.asarray(table[xk], float), np.asarray(table[yk], float)
    size_key = next(k for k in ("luminosity", "flux_cgs", "flux") if k in cols)
    values = np.asarray(table[size_key], float)
    sizes = _bubble_sizes(values)
    colour_key = next((k for k in ("r_gal_kpc", "r_gal_px") if k in cols), None)
    colour = np.asarray(table[colour_key], float) if colour_key else None
    unit_of = {k: str(table[k].unit) if table[k].unit else "" for k in cols}
    hover = _hover(table, unit_of)
    marker = {"size": sizes, "sizemode": "diameter", "line": {"width": 0.5, "color": "black"},
              "opacity": 0.8}
    if colour is not None:
        marker.update(color=colour, colorscale="Viridis", showscale=True,
                      colorbar={"title": {"text": f"{colour_key} ({unit_of[colour_key]})"},
                                # 1e-14, not plotly's SI "10f"
                                "exponentformat": "power"})
    axis_x, axis_y = ("RA (deg)", "Dec (deg)") if sky else ("x (pixel)", "y (pixel)")
    fig2 = go.Figure(go.Scatter(x=xs, y=ys, mode="markers", marker=marker, text=hover,
                                hoverinfo="text", name="HII regions"))
    fig2.update_layout(title=title or f"{len(xs)} HII regions", xaxis_title=axis_x,
                       yaxis_title=axis_y, template="plotly_white")
    ratio = 1.0 / math.cos(math.radians(float(np.nanmedian(ys)))) if sky and len(ys) else 1.0
    fig2.update_yaxes(scaleanchor="x", scaleratio=ratio)
    if sky:
        fig2.update_xaxes(autorange="reversed")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(values > 0, np.log10(values), np.nan)
    marker3 = {**marker, "size": sizes / 2.0}
    marker3.pop("sizemode")
    fig3 = go.Figure(go.Scatter3d(x=xs, y=ys, z=z, mode="markers", marker=marker3,
                                  text=hover, hoverinfo="text", name="HII regions"))
    z_title = f"log10 {size_key} ({unit_of[size_key]})"
    fig3.update_layout(title=title or f"{len(xs)} HII regions", template="plotly_white",
                       scene={"xaxis": {"title": {"text": axis_x},
                                        "autorange": "reversed" if sky else True},
                              "yaxis": {"title": {"text": axis_y}},
                              "zaxis": {"title": {"text": z_title}}})
    return fig2, fig3


def _bubble_sizes(values, biggest=40.0, smallest=3.0):
    """Marker diameters proportional to sqrt(value), the largest ``biggest`` px."""
    positive = np.where(np.isfinite(values) & (values > 0), values, 0.0)
    top = positive.max() if positive.size else 0.0
    if top <= 0:
        return np.full(values.shape, smallest)
    return np.maximum(biggest * np.sqrt(positive / top), smallest)


def _hover(table, unit_of):
    """One hover text per region: id, flux, luminosity, radius."""
    keys = ["flux", "flux_cgs", "luminosity", "r_gal_kpc", "r_gal_px", "r_eq_pc"]
    shown = [k for k in keys if k in table.colnames]
    texts = []
    for row in table:
        parts = [f"id {row['id']}"]
        parts += [f"{k} = {float(row[k]):.3g} {unit_of[k]}" for k in shown]
        texts.append("<br>".join(parts))
    return texts
