"""Rectangular widths and pivot wavelengths of HST's narrow- and medium-band filters.

A narrow-band image turns into a line flux through the filter's width: a line of flux F
inside the band adds F / W to the image's f_λ, so ``F = (f_line − f_cont) × W`` (see
`redux_helpers.contsub`). ``W`` is the **rectangular width**, the width of a top-hat of
the filter's peak throughput that lets through as much light,
``W = ∫ T(λ) dλ / max T`` (synphot's ``rectwidth``, IRAF BANDPAR's ``RECTW``). HST
headers carry the pivot wavelength (``PHOTPLAM``) but not this width, so it is looked up
here by instrument, detector and filter (``INSTRUME``/``DETECTOR``/``FILTER``).

Sources (values copied, not computed here):

* **WFC3/UVIS** — WFC3 Instrument Handbook, Table 6.2 "UVIS spectral elements"
  (https://hst-docs.stsci.edu/wfc3ihb/chapter-6-uvis-imaging-with-wfc3/6-5-uvis-spectral-elements),
  the "Pivot λ" and "Width" (passband rectangular width) columns, computed there for
  UVIS chip 1. The values were read from a transcription of that table (SwiftMAST's
  ``HSTFilter.swift``, which cites it), and agree with an independent transcription of
  an earlier edition's Appendix A (LaurethTeX/Clustering ``narrowband-filters.md``:
  F657N 656.7/12.1 nm, F487N 487.1/6.0 nm, F502N 501.0/6.5 nm, F673N 676.6/11.8 nm)
  to the digits given there. Not the same as the ETC tables' "full width at 10 % of
  peak" of the filter alone (F656N 13.9 Å): a different width.
* **ACS/WFC** — ACS Instrument Handbook, Table 5.1 (Section 5.1 "Imaging overview",
  https://hst-docs.stsci.edu/acsihb/chapter-5-imaging/5-1-imaging-overview), "central
  wavelength" and "width", read from a transcription of that table that cites it
  (across-tools' ACS_WFC_FILTER_INFO). For F658N a synphot ``rectwidth`` on the SVO
  throughput curve gives 74.9 Å (PHANGS-HST's filter check, reduction_phangs_hst
  ``hst_filter_checks/get_filters.ipynb``), 4 % under the handbook's 78 Å: the size of
  the uncertainty a filter width brings, and one reason step 10 anchors to MUSE.
* **WFPC2** — not included: its handbook's filter tables could not be read for this
  table, and no value is entered that was not found. A WFPC2 image falls back on
  ``PHOTBW`` (below) with a warning, or takes its width from the manifest.

**Without an entry**, the width is estimated from ``PHOTBW``, the header's "RMS
bandwidth of filter plus detector". Its definition (IRAF SYNPHOT BANDW, synphot
``photbw``) is ``λ̄ √(∫ T ln²(λ/λ̄) dλ/λ / ∫ T dλ/λ)``, which for a narrow band is the
RMS spread of the throughput about its mean, σ_λ. A top-hat of width W has σ_λ =
W / √12, so ``W ≈ √12 × PHOTBW`` (`PHOTBW_TO_WIDTH`). That factor is exact for the
flat-topped, steep-sided profile a rectangular width describes; a filter with wings
has a larger RMS for the same rectangular width, so the estimate errs towards too wide
a filter (too much line flux). For ACS/WFC F658N a drizzled product's PHOTBW is 37.0 Å
(PHANGS-HST's NGC 628 header, reduction_phangs_hst ``hst_filter_checks/headers``) and the
handbook's width 78 Å, a ratio 2.1 rather than 3.46: the estimate can be ~60 % too
wide. Hence the warning, and the advice to give the width or to anchor to MUSE, whose
slope takes any error of W out.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from astropy.utils.exceptions import AstropyUserWarning

#: √12: the rectangular width of a top-hat over its RMS width (see the module's text).
PHOTBW_TO_WIDTH = math.sqrt(12.0)

_WFC3 = "WFC3 IHB Table 6.2 (UVIS chip 1)"
_ACS = "ACS IHB Table 5.1"

#: (INSTRUME, DETECTOR, FILTER) -> (pivot wavelength Å, rectangular width Å, source)
FILTERS: dict[tuple[str, str, str], tuple[float, float, str]] = {
    # WFC3/UVIS narrow bands
    ("WFC3", "UVIS", "F373N"): (3730.2, 49.6, _WFC3),
    ("WFC3", "UVIS", "F469N"): (4688.1, 49.7, _WFC3),
    ("WFC3", "UVIS", "F487N"): (4871.4, 60.4, _WFC3),
    ("WFC3", "UVIS", "F502N"): (5009.6, 65.3, _WFC3),
    ("WFC3", "UVIS", "F631N"): (6304.3, 58.3, _WFC3),
    ("WFC3", "UVIS", "F645N"): (6453.6, 84.2, _WFC3),
    ("WFC3", "UVIS", "F656N"): (6561.4, 17.6, _WFC3),
    ("WFC3", "UVIS", "F657N"): (6566.6, 121.0, _WFC3),
    ("WFC3", "UVIS", "F658N"): (6584.0, 27.6, _WFC3),
    ("WFC3", "UVIS", "F665N"): (6655.9, 131.3, _WFC3),
    ("WFC3", "UVIS", "F673N"): (6765.9, 117.8, _WFC3),
    ("WFC3", "UVIS", "F680N"): (6877.6, 370.5, _WFC3),
    # WFC3/UVIS medium bands (continua beside the lines)
    ("WFC3", "UVIS", "F547M"): (5447.5, 650.0, _WFC3),
    ("WFC3", "UVIS", "F621M"): (6218.9, 609.5, _WFC3),
    ("WFC3", "UVIS", "F689M"): (6876.8, 684.2, _WFC3),
    # ACS/WFC
    ("ACS", "WFC", "F502N"): (5022.0, 57.0, _ACS),
    ("ACS", "WFC", "F550M"): (5580.0, 547.0, _ACS),
    ("ACS", "WFC", "F658N"): (6584.0, 78.0, _ACS),
    ("ACS", "WFC", "F660N"): (6602.0, 40.0, _ACS),
}


@dataclass(frozen=True)
class Width:
    """A filter's rectangular width, and where it came from."""

    width_A: float
    pivot_A: float | None
    source: str          # the table's source, 'PHOTBW', 'manifest' or 'parameter'
    estimated: bool = False


def _key(text) -> str:
    return str(text or "").strip().upper()


def lookup(instrument, detector, filter) -> Width | None:
    """The table's entry for a filter, or None.

    ``instrument`` and ``detector`` are the header's ``INSTRUME`` and ``DETECTOR``
    (case and padding don't matter; a WFC3 ``DETECTOR`` of ``UVIS`` and an ACS one of
    ``WFC``).

    Examples
    --------
    >>> lookup("WFC3", "UVIS", "F656N").width_A
    17.6
    >>> lookup("WFPC2", "", "F656N") is None
    True
    """
    entry = FILTERS.get((_key(instrument), _key(detector), _key(filter)))
    if entry is None:
        return None
    pivot, width, source = entry
    return Width(width, pivot, source)


def filter_width(instrument, detector, filter, *, photbw=None, what="image") -> Width:
    """The rectangular width of a filter: from the table, else estimated from ``PHOTBW``.

    Parameters
    ----------
    instrument, detector, filter : str
        ``INSTRUME``, ``DETECTOR`` and filter name, as the header gives them.
    photbw : float, optional
        The header's ``PHOTBW`` (Å), the filter's RMS bandwidth, for filters the table
        doesn't hold: the width is then ``√12 × PHOTBW`` (a top-hat's), with an
        `~astropy.utils.exceptions.AstropyUserWarning` saying so.
    what : str
        What the image is, for the messages.

    Raises
    ------
    KeyError
        When the table has no entry and no usable ``photbw`` is given; the caller
        names the manifest line to add.
    """
    found = lookup(instrument, detector, filter)
    if found is not None:
        return found
    name = "/".join(p for p in (_key(instrument), _key(detector), _key(filter)) if p)
    if photbw is not None and math.isfinite(float(photbw)) and float(photbw) > 0:
        width = PHOTBW_TO_WIDTH * float(photbw)
        msg = (f"the {what}'s filter {name or '?'} is not in redux_helpers.hst_filters: its "
               f"width is estimated as sqrt(12) x PHOTBW = {width:.1f} A (PHOTBW "
               f"{float(photbw):.2f} A, the RMS width; exact for a top-hat, too wide for a "
               "filter with wings, by up to ~60 %); give bandpasses: {"
               f"{_key(filter) or 'FILTER'}: {{width_A: ...}}}} in the manifest, or anchor "
               "to MUSE, whose slope corrects it")
        warnings.warn(msg, AstropyUserWarning, stacklevel=2)
        return Width(width, None, "PHOTBW", estimated=True)
    msg = f"no width known for {name or 'a filter without a name'}"
    raise KeyError(msg)
