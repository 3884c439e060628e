"""Reading raw frames and products, and writing products whole.

Raw files are only ever opened for reading. Every product is written to a temporary
name beside its final one and renamed when complete, so an interrupted run leaves
either the old product or the new one, never half of one.

Products follow the data contract: the image in the primary HDU with ``BUNIT``,
``UNCERT`` (a standard deviation) and ``MASK`` (a ``uint16`` bitmask, see
`redux_helpers.masks`) extensions, readable by `astropy.nddata.CCDData.read`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.utils.exceptions import AstropyUserWarning

from . import headers, masks
from .atomic import atomic_path, write_text  # noqa: F401 - products are written through them
from .errors import FrameError

log = logging.getLogger(__name__)

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")
ADVICE = "move it out of the raw folder or list it under 'exclude:' for this target in the manifest"


def is_fits_name(path) -> bool:
    """True for the file names the suite treats as FITS frames."""
    name = Path(path).name.lower()
    return any(name.endswith(s) for s in FITS_SUFFIXES)


def frame_stem(path) -> str:
    """The name of a raw frame's products: its path below the raw folder, without suffix.

    Frames are known by their path below ``raw_dir`` (the inventory's ``file``), so two
    frames of the same name in two subfolders get two products; the folders become part
    of the name, joined by ``__``.

    >>> frame_stem("ngc_R_001.fits.gz")
    'ngc_R_001'
    >>> frame_stem("night2/ngc_R_001.fits")
    'night2__ngc_R_001'
    """
    parts = Path(path).parts
    name = parts[-1] if parts else str(path)
    for suffix in sorted(FITS_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    else:
        name = Path(name).stem
    return "__".join([*parts[:-1], name])


def _whole_bytes(path: Path) -> bytes:
    """A gzip-compressed file decompressed to its end, where gzip checks its CRC and length.

    astropy reads a ``.fits.gz`` only as far as it needs and never sees a bad CRC; reading
    it whole finds damage anywhere in it. Raises `FrameError`.
    """
    import gzip
    import zlib

    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as exc:
        msg = f"{path} is damaged: its gzip stream fails its check ({exc}); {ADVICE}"
        raise FrameError(msg) from None


def verify_file(path):
    """Read a raw file whole once, so that damage anywhere in it is found now.

    (A file's ``CHECKSUM``/``DATASUM`` keywords are checked by `open_fits` on every
    read.) Raises `FrameError`.
    """
    open_fits(path, whole=True).close()


@contextlib.contextmanager
def unreadable_as(error, path, *, what="", advice=ADVICE):
    """Turn a missing or unreadable file, inside the block, into ``error`` naming it.

    The message names ``path`` (and ``what`` it was meant to be) and ends with ``advice``.
    """
    about = f" ({what})" if what else ""
    try:
        yield
    except FileNotFoundError:
        msg = f"{path}: file not found{about}; check the path"
        raise error(msg) from None
    except (OSError, TypeError, ValueError) as exc:
        msg = f"{path} is not a readable FITS file{about} ({exc}); {advice}"
        raise error(msg) from None


def open_fits(path, *, whole=False) -> fits.HDUList:
    """Open a FITS file read-only, turning every kind of unreadable file into a `FrameError`.

    A truncated file (shorter than its header promises) and a file that is not FITS
    at all both raise, naming the file and what to do; so does an HDU whose ``DATASUM``
    fails (damaged pixels). With ``whole``, a compressed file is decompressed to its end
    first (its CRC checked), once.

    The checks are made on the file itself, not by catching astropy's warnings: frames
    are read in threads (`parallel.each`), and Python's warning filters and records are
    shared by all threads, so one thread's warning could be counted for another's file.
    """
    path = Path(path)
    source, size = path, None
    if whole and path.name.lower().endswith(".gz") and path.is_file():
        data = _whole_bytes(path)
        source, size = io.BytesIO(data), len(data)
    elif not path.name.lower().endswith(".gz") and path.is_file():
        size = path.stat().st_size
    with unreadable_as(FrameError, path), warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)  # shown only; checked below
        hdul = fits.open(source, mode="readonly", memmap=False, lazy_load_hdus=False)
    try:
        problem = _damage(hdul, size)
    except (OSError, TypeError, ValueError) as exc:
        problem = f"is not a readable FITS file ({exc})"
    if problem:
        hdul.close()
        raise FrameError(f"{path} {problem}; {ADVICE}")
    if image_hdu_index(hdul) is None:
        hdul.close()
        msg = f"{path} holds no image; {ADVICE}"
        raise FrameError(msg)
    return hdul


def _damage(hdul, size):
    """What is wrong with an opened file ('is truncated (...)', 'is damaged (...)'), or ''.

    Truncated: the last HDU's data (padded to 2880 bytes, as the standard has it) ends
    beyond the file's ``size`` (None: unknown, e.g. a compressed file read lazily) — the
    test astropy makes when it warns. Damaged: an HDU with a ``DATASUM`` whose pixels no
    longer give it. A failed ``CHECKSUM`` alone is usually a header edited by software
    after the file was written, which does not harm the data, so it is not checked.
    """
    if size is not None:
        end = max(info["datLoc"] + info["datSpan"] for info in
                  (hdul.fileinfo(i) for i in range(len(hdul))))
        if end > size:
            return (f"is truncated (actual file length ({size}) is smaller than the expected "
                    f"size ({end}))")
    for i, hdu in enumerate(hdul):
        if "DATASUM" in hdu.header and hdu.verify_datasum() == 0:
            return f"is damaged (the DATASUM of HDU {i} fails)"
    return ""


def image_hdu_index(hdul) -> int | None:
    """Index of the first HDU that holds a 2-D image (primary, else an extension)."""
    for i, hdu in enumerate(hdul):
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) \
                and hdu.header.get("NAXIS", 0) == 2:
            return i
    return None


def apply_overrides(header: fits.Header, overrides: dict | None) -> fits.Header:
    """Return a copy of ``header`` with manifest keyword overrides applied."""
    header = header.copy()
    for key, value in (overrides or {}).items():
        header[str(key).upper()] = value
    return header


def read_header(path, overrides: dict | None = None) -> fits.Header:
    """The header of a frame's image HDU, with keyword overrides applied."""
    with open_fits(path) as hdul:
        return apply_overrides(hdul[image_hdu_index(hdul)].header, overrides)


def read_frame(path, overrides: dict | None = None, dtype=np.float32, *, whole=False):
    """Read a frame's image and header (``whole``: see `open_fits`).

    Returns
    -------
    data : `~numpy.ndarray`
        The image, scaled by ``BZERO``/``BSCALE`` and with a ``PEDESTAL`` added (see
        `headers.pedestal`), as ``dtype``.
    header : `~astropy.io.fits.Header`
        Its header with keyword overrides applied.
    """
    with open_fits(path, whole=whole) as hdul:
        hdu = hdul[image_hdu_index(hdul)]
        try:
            data = np.asarray(hdu.data, dtype=dtype)
        except (TypeError, ValueError, OSError) as exc:
            msg = f"{path}: its image can't be read ({exc}); {ADVICE}"
            raise FrameError(msg) from None
        header = apply_overrides(hdu.header, overrides)
        offset = headers.pedestal(header)
        if offset:
            data = data + np.asarray(offset, dtype)
        return data, header


def write_html_figure(fig, path) -> Path:
    """Write a plotly figure as a standalone HTML page (plotly.js included), whole."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.write_html(str(tmp), include_plotlyjs=True, full_html=True, auto_open=False)
    return path


def ccd_hdulist(data, header=None, *, uncertainty=None, mask=None, unit="electron",
                mask_header=None) -> fits.HDUList:
    """Build the HDU list of a product: primary image, ``UNCERT`` and ``MASK``.

    The ``MASK`` header names its bits (``MASKB0 = 'BAD'``, ...; `masks.header`) unless
    ``mask_header`` is given.
    """
    header = fits.Header() if header is None else header.copy()
    for key in ("BZERO", "BSCALE", "BLANK"):
        header.remove(key, ignore_missing=True)
    header["BUNIT"] = str(unit)
    hdus = [fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=header)]
    if uncertainty is not None:
        uh = fits.Header()
        uh["UTYPE"] = ("StdDevUncertainty", "one standard deviation")
        uh["BUNIT"] = str(unit)
        hdus.append(fits.ImageHDU(np.asarray(uncertainty, dtype=np.float32), header=uh,
                                  name="UNCERT"))
    if mask is not None:
        hdus.append(fits.ImageHDU(np.asarray(mask, dtype=np.uint16), name="MASK",
                                  header=masks.header() if mask_header is None else mask_header))
    return fits.HDUList(hdus)


def write_ccd(path, data, header=None, *, uncertainty=None, mask=None, unit="electron",
              mask_header=None) -> Path:
    """Write an image product whole: data, ``UNCERT`` and ``MASK`` (see `ccd_hdulist`)."""
    hdul = ccd_hdulist(data, header, uncertainty=uncertainty, mask=mask, unit=unit,
                       mask_header=mask_header)
    with atomic_path(path) as tmp:
        hdul.writeto(tmp)
    log.info("wrote %s", path)
    return Path(path)


@dataclass
class Product:
    """An image product as redux reads it back: the ``MASK`` keeps its named bits."""

    data: np.ndarray
    uncertainty: np.ndarray | None
    mask: np.ndarray | None      # uint16 bitmask (see redux_helpers.masks)
    header: fits.Header
    unit: str


def write_mask(path, mask, header=None) -> Path:
    """Write a boolean or integer mask image whole (uint8 for booleans).

    Its ``BUNIT`` is empty (dimensionless), so `~astropy.nddata.CCDData.read` opens it.
    """
    mask = np.asarray(mask)
    data = mask.astype(np.uint8) if mask.dtype == bool else mask
    header = fits.Header() if header is None else header.copy()
    for key in ("BZERO", "BSCALE", "BLANK"):
        header.remove(key, ignore_missing=True)
    header["BUNIT"] = ("", "dimensionless: flags, not a quantity")
    with atomic_path(path) as tmp:
        fits.PrimaryHDU(data, header=header).writeto(tmp)
    log.info("wrote %s", path)
    return Path(path)


def read_product(path) -> Product:
    """Read a product written by `write_ccd`, keeping the bitmask (CCDData makes it bool)."""
    path = Path(path)
    if not path.is_file():
        msg = (f"{path} not found: it is made by an earlier notebook of the chain; "
               "run that notebook first (or `redux run TARGET --only NN`)")
        raise FrameError(msg)
    with fits.open(path) as hdul:
        return Product(
            data=hdul[0].data.astype(np.float32),
            uncertainty=hdul["UNCERT"].data.astype(np.float32) if "UNCERT" in hdul else None,
            mask=hdul["MASK"].data.astype(np.uint16) if "MASK" in hdul else None,
            header=hdul[0].header.copy(), unit=hdul[0].header.get("BUNIT", ""))


def read_ccd(path) -> CCDData:
    """Read a product as a `~astropy.nddata.CCDData` (its mask becomes boolean)."""
    p = read_product(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        return CCDData(p.data, unit=p.unit or "adu", meta=p.header, mask=p.mask,
                       uncertainty=None if p.uncertainty is None
                       else StdDevUncertainty(p.uncertainty))


def write_table(table, path) -> Path:
    """Write an astropy table as ECSV, whole."""
    with atomic_path(path) as tmp:
        table.write(tmp, format="ascii.ecsv", overwrite=True)
    log.info("wrote %s", path)
    return Path(path)


def read_table(path):
    """Read an ECSV product table, saying which notebook makes it if it is missing."""
    from astropy.table import Table

    path = Path(path)
    if not path.is_file():
        msg = (f"{path} not found: it is made by an earlier notebook of the chain; "
               "run that notebook first")
        raise FrameError(msg)
    table = Table.read(path, format="ascii.ecsv")
    for name in table.colnames:          # ECSV reads an empty text cell back as masked
        col = table[name]
        if col.dtype.kind in "US" and getattr(col, "mask", None) is not None:
            table[name] = col.filled("")
    return Table(table, masked=False)
