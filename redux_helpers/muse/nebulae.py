"""PHANGS-style nebulae: `read_nebulae` (the mask and its catalogue) and `nebula_sums` (any image added up nebula by nebula)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import Table
from scipy import ndimage

from ..errors import ReduxError
from .images import BACKGROUND, ID_COLUMNS, Image
from .reading import _celestial_wcs, _find_ext, _open

log = logging.getLogger(__name__)

def read_nebulae(mask_path, catalog_path=None) -> tuple[Image, Table | None]:
    """A PHANGS-style nebula mask and, optionally, its catalogue.

    Parameters
    ----------
    mask_path : str or `~pathlib.Path`
        An image of nebula ids with a celestial WCS. Ids are integers >= 0; NaN and
        negative values (PHANGS writes -1) are background.
    catalog_path : str or `~pathlib.Path`, optional
        An ECSV or FITS table with a column of the mask's ids (`ID_COLUMNS`: PHANGS'
        ``region_ID``, or ``id``). Catalogue ids missing from the mask are logged as a
        warning.

    Returns
    -------
    labels : `Image`
        ``data`` int64 ids, `BACKGROUND` (-1) outside nebulae; ``unit`` '', no error.
    catalog : `~astropy.table.Table` or None
        The catalogue as read; ``catalog.meta['id_column']`` names its id column.
    """
    path = Path(mask_path)
    what = "nebula mask"
    with _open(path, what) as hdul:
        hdu = _find_ext(hdul, None, path, what)
        raw = np.asarray(hdu.data, dtype=np.float64)
        header = hdu.header.copy()
    if raw.ndim != 2:
        msg = f"{path}: the {what} is {raw.ndim}-D; expected a 2-D image of nebula ids"
        raise ReduxError(msg)
    wcs = _celestial_wcs(header, path, what)
    fin = np.isfinite(raw)
    if np.any(raw[fin] != np.round(raw[fin])):
        msg = (f"{path}: the {what} holds non-integer values; expected nebula ids (integers "
               ">= 0, background -1 or NaN) — is it a flux map?")
        raise ReduxError(msg)
    labels = np.where(fin & (raw >= 0), raw, BACKGROUND).astype(np.int64)
    ids = np.unique(labels[labels >= 0])
    log.info("%s: %d nebulae, %d of %d pixels in a nebula", path, ids.size,
             int((labels >= 0).sum()), labels.size)
    image = Image(data=labels, uncertainty=None, wcs=wcs, unit="", path=path, header=header)
    if catalog_path is None:
        return image, None
    cpath = Path(catalog_path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", u.UnitsWarning)
            table = Table.read(cpath)
    except FileNotFoundError:
        msg = f"{cpath}: nebula catalogue not found; check the manifest's 'muse:' entry"
        raise ReduxError(msg) from None
    except Exception as exc:  # noqa: BLE001 - Table.read raises many kinds
        msg = f"{cpath}: the nebula catalogue can't be read as ECSV or FITS ({exc})"
        raise ReduxError(msg) from None
    col = next((c for c in ID_COLUMNS if c in table.colnames), None)
    if col is None:
        lower = {c.lower(): c for c in table.colnames}
        col = next((lower[c.lower()] for c in ID_COLUMNS if c.lower() in lower), None)
    if col is None:
        msg = (f"{cpath}: the nebula catalogue has no id column ({' or '.join(ID_COLUMNS[:3])}) "
               f"naming the mask's nebulae; its columns are {table.colnames}")
        raise ReduxError(msg)
    table.meta["id_column"] = col
    cat_ids = np.asarray(table[col])
    missing = np.setdiff1d(cat_ids, ids)
    if missing.size:
        log.warning("%s: %d of %d catalogue ids (%s) are not in the mask %s", cpath,
                    missing.size, cat_ids.size, ", ".join(map(str, missing[:10]))
                    + (", ..." if missing.size > 10 else ""), path.name)
    unlisted = np.setdiff1d(ids, cat_ids)
    if unlisted.size:
        log.info("%s: %d nebulae of the mask are not in the catalogue", path, unlisted.size)
    return image, table


def nebula_sums(image_data, labels, *, uncertainty=None) -> Table:
    """Sum an image nebula by nebula.

    Parameters
    ----------
    image_data : `~numpy.ndarray` or `Image`
        On the labels' grid (regrid it first).
    labels : `~numpy.ndarray` or `Image`
        Nebula ids >= 0, background < 0 (from `read_nebulae`; a float mask straight
        from the file works too, NaN being background).
    uncertainty : `~numpy.ndarray`, optional
        1-sigma error of the image (taken from an `Image` when not given).

    Returns
    -------
    `~astropy.table.Table`
        One row per id present in ``labels``: ``id``, ``npix``, ``flux`` (the sum of
        the finite pixels), ``n_bad`` (NaN pixels in the nebula) and, with an error,
        ``flux_err`` (quadrature sum over the finite pixels). ``flux`` carries the
        image's unit when it is an `Image`.
    """
    unit = None
    if isinstance(image_data, Image):
        unit = image_data.unit or None
        uncertainty = image_data.uncertainty if uncertainty is None else uncertainty
        image_data = image_data.data
    labels = labels.data if isinstance(labels, Image) else labels
    data = np.asarray(image_data, dtype=np.float64)
    labels = np.asarray(labels)
    if labels.dtype.kind == "f":  # a mask as read by fits.getdata: NaN/negative = background
        with np.errstate(invalid="ignore"):
            labels = np.where(np.isfinite(labels) & (labels >= 0), labels, BACKGROUND)
        labels = labels.astype(np.int64)
    if data.shape != labels.shape:
        msg = (f"nebula_sums: the image {data.shape} and the nebula mask {labels.shape} "
               "differ in shape; regrid the image onto the mask's grid first")
        raise ReduxError(msg)
    ids = np.unique(labels[labels >= 0])
    lab = np.where(labels >= 0, labels, -1)
    fin = np.isfinite(data)
    flux = ndimage.sum_labels(np.where(fin, data, 0.0), lab, ids)
    npix = ndimage.sum_labels(np.ones(data.shape), lab, ids).astype(np.int64)
    nbad = ndimage.sum_labels(~fin, lab, ids).astype(np.int64)
    table = Table({"id": ids, "npix": npix, "flux": flux, "n_bad": nbad})
    if unit:
        table["flux"].unit = unit
    if uncertainty is not None:
        err = np.asarray(uncertainty, dtype=np.float64)
        ok = fin & np.isfinite(err)
        table["flux_err"] = np.sqrt(ndimage.sum_labels(np.where(ok, err**2, 0.0), lab, ids))
        if unit:
            table["flux_err"].unit = unit
    return table
