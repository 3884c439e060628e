"""The QA table of one target: every step's collector, in the chain's order."""

from __future__ import annotations

import logging
from pathlib import Path

from astropy.table import Table

from ..errors import FrameError
from ..targets import demo_truth
from .calibration import calibrate_rows, cosmics_rows, inspect_rows, superbias_rows, superflat_rows
from .frames import background_rows, badpix_rows, stack_rows
from .rows import COLUMNS, FLAGS, Rows
from .science import halpha_muse_rows, hii_rows, photometry_rows

log = logging.getLogger(__name__)

COLLECTORS = (
    ("00_inspect", inspect_rows),
    ("01_superbias", superbias_rows),
    ("02_superflat", superflat_rows),
    ("03_cosmics", cosmics_rows),
    ("04_calibrate", calibrate_rows),
    ("05_background", background_rows),
    ("06_badpix", badpix_rows),
    ("07_stack", stack_rows),
    ("08_photometry", photometry_rows),
    ("09_hii_regions", hii_rows),
    ("10_halpha_muse", halpha_muse_rows),
)


def collect(paths, target) -> Table:
    """The QA table of one target: a row per metric from every step that left products.

    Parameters
    ----------
    paths : `redux_helpers.targets.Paths`
        Where the target's products are (``paths.step('01_superbias')`` etc.).
    target : `redux_helpers.manifest.Target`
        The target's settings (read noise, gain, filters) and, for the demo, its truth.

    Returns
    -------
    `~astropy.table.Table`
        Columns ``step``, ``metric``, ``value``, ``error`` (NaN if none), ``unit``,
        ``flag`` ('pass', 'warn', 'fail' or 'info') and ``reason``; the module docstring
        lists the thresholds behind the flags.
    """
    try:
        truth = demo_truth(target)
    except FileNotFoundError:          # a demo target whose night is not made yet
        truth = None
    out = Rows()
    for step, collector in COLLECTORS:
        folder = paths.step(step)
        if not folder.is_dir():
            continue
        out.step = step
        try:
            collector(paths, target, truth, out)
        except (OSError, ValueError, KeyError, FrameError) as exc:
            log.warning("%s: products could not be read: %s", step, exc)
            out.add("products_readable", 0, flag="fail",
                    reason=f"a product of {step} could not be read ({type(exc).__name__}: "
                           f"{exc}); re-run {step}")
    table = Table(rows=out.rows or None, names=COLUMNS,
                  dtype=(str, str, float, float, str, str, str))
    table["value"].info.format = ".5g"
    table["error"].info.format = ".3g"
    table.meta["comment"] = ("redux QA: one row per metric; flags pass/warn/fail/info, "
                             "thresholds in each reason")
    table.meta["target"] = target.name
    return table


def flags_summary(table) -> dict:
    """Counts of each flag and the worst one: ``{'pass': n, ..., 'worst': 'warn', 'n': N}``.

    The order of concern is info < pass < warn < fail; a table with no rows has
    worst 'info' (nothing was judged).

    >>> t = Table({"flag": ["pass", "warn", "info", "pass"]})
    >>> s = flags_summary(t)
    >>> s["pass"], s["warn"], s["fail"], s["worst"]
    (2, 1, 0, 'warn')
    """
    flags = [str(f) for f in table["flag"]] if len(table) else []
    unknown = sorted(set(flags) - set(FLAGS))
    if unknown:
        msg = f"unknown flag(s) {', '.join(unknown)} in the QA table; flags are {', '.join(FLAGS)}"
        raise ValueError(msg)
    counts = {f: flags.count(f) for f in FLAGS}
    worst = max(flags, key=FLAGS.index) if flags else "info"
    return {**counts, "worst": worst, "n": len(flags)}



def qa_path(paths) -> Path:
    """Where step 11 writes the QA table (``11_qa/qa.ecsv``)."""
    return paths.product("qa")
