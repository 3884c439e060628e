"""Quality assessment: one table of metrics from every step, each with a flag and a reason.

`collect` reads what each step of a target's chain wrote (headers, tables, images) and
returns one row per metric: the step, a short name, the value with its error and unit,
a flag and one sentence saying why. A step whose products are missing adds no rows, so
a target that starts at 08 gets the rows of 08 onwards. A product that is there but
can't be read adds one ``fail`` row naming it.

Flags
-----
``pass``
    Within the threshold given in the reason.
``warn``
    Outside it: the product may still be usable, but look at the step's notebook.
``fail``
    The product is not usable as it is (e.g. a fifth of a flat is unusable).
``info``
    A number worth knowing with no threshold, or a comparison with the demo's truth.

Thresholds (each reason sentence states the one it used)
--------------------------------------------------------
========================  ==============================================================
00 problems               warn if the inventory listed any problem, fail if one is an
                          error (the chain can't go on)
01 superbias noise        pass within 0.8-1.25 x the expected read noise / gain / sqrt(N)
                          (x 1.2533 for a median of 3 or more), measured from differences of
                          neighbouring rows, which cancel the fixed pattern
02 gain, read noise       info when the headers or the manifest give them; measured
                          (photon transfer): pass if the relative error is at most 5 %
02 flat normalisation     pass if the median of the central half is within 1 % of 1
02 flat pixel-to-pixel    warn above 3 % (robust rms of flat / its 5x5 median)
02 flat noise             warn if the flat's own uncertainty is above 1 % per pixel
                          (info when it has none: made from a single flat)
02 flat outliers          warn if more than 2 % of pixels are < 0.5 or > 1.5 (or NaN),
                          fail above 25 %
03 cosmic rays            warn if a frame's CR fraction exceeds 5 x (median CR rate per
                          second x its exposure time) + 0.05 %, or 1 % of the frame
04 masked pixels          warn if a frame has more than 5 % of its pixels flagged
05 sky noise / UNCERT     pass within 0.85-1.2: the uncertainty plane is honest
05 sky noise / Poisson    pass within 0.9-1.3 x sqrt(sky + read noise^2) (frames in e-)
05 sky rate scatter       fail if a frame's sky rate (sky / exposure time) differs from
                          the median of the other frames of its filter by more than 20 %
                          (the frames named): a sky wrong in 05, or a sky that changed
06 bad pixels             warn above 2 %, fail above 10 % of the chip
07 registration residual  warn above 0.25 px (worst frame), fail above 1 px
07 frames left out        warn if any frame was left out of a stack
07 stack depth            warn if fewer than 3 frames (no outlier rejection possible)
07 stack rejection        fail if a stack rejected more than 5 % of its values
                          (``REJFRAC``), naming the frames with the most rejected
08 zero point             warn if its error is above 0.05 mag or none was measured
08 extinction             warn if k was not fitted (taken as given) or its error > 0.05
08 standards              warn with fewer than 3 used, or more than 20 % rejected
08 fit rms                warn above 0.05 mag
09 continuum scale        warn if its relative error is above 5 %
09 HII regions            warn if none was found
10 anchoring              warn if abs(slope - 1) > 0.2 or fewer than 5 bins
10 nebulae ours / MUSE    warn if abs(median ratio - 1) > 0.05; scatter warns above
                          twice what the flux errors explain
========================  ==============================================================

On the demo night, rows flagged ``info`` compare results with the truth the demo wrote
(``redux_helpers.targets.demo_truth``).

Where things are
----------------
==============  ===========================================================================
``table``       `collect` (the table), `flags_summary`, `qa_path`
``rows``        the flags, the columns, the thresholds above, the row collector
``calibration`` one collector per step of 00-04
``frames``      one collector per step of 05-07
``science``     one collector per step of 08-10; `nebula_comparison`, `comparison_stats`
==============  ===========================================================================
"""

from .rows import *  # noqa: F403 - the thresholds, FLAGS and COLUMNS
from .rows import COLUMNS, FLAGS
from .science import comparison_stats, nebula_comparison
from .table import COLLECTORS, collect, flags_summary, qa_path

__all__ = ["COLLECTORS", "COLUMNS", "FLAGS", "collect", "comparison_stats", "flags_summary",
           "nebula_comparison", "qa_path"]
