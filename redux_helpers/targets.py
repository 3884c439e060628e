"""A target as a notebook sees it: validated settings, raw folder, product folders.

`open_target` is the first call of every notebook: it validates the manifest and says
where each step's products go (``<products>/<target>/<NN_step>/``; the file names are
`redux_helpers.products`'). It reads and writes nothing else: the demo night is made by
an explicit call, `make_demo_night` (``redux run`` and notebook 00 make it).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from .errors import ReduxError
from .manifest import Target, load_target
from .products import STEPS, path, stack_file, stacks_in

log = logging.getLogger(__name__)

__all__ = ["STEPS", "Paths", "demo_truth", "make_demo_night", "open_target", "stack_path"]


class Paths:
    """Where a target's products live."""

    def __init__(self, products, target_name):
        self.root = Path(products).resolve() / target_name

    def step(self, step: str, *, create=False) -> Path:
        """The folder of one step's products, e.g. ``paths.step('01_superbias')``.

        Writers make the folder when they write (`fitsio.atomic_path`); asking for a
        path creates nothing unless ``create``.
        """
        if step not in STEPS:
            msg = f"unknown step '{step}'; steps are {', '.join(STEPS)}"
            raise ValueError(msg)
        p = self.root / step
        if create:
            p.mkdir(parents=True, exist_ok=True)
        return p

    def empty(self, step: str):
        """Remove what an earlier run of ``step`` left in its folder (the folder stays)."""
        folder = self.step(step)
        if not folder.is_dir():
            return
        for p in folder.iterdir():
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        log.info("emptied %s", folder)

    def product(self, key, **fields) -> Path:
        """Where product ``key`` of `redux_helpers.products.PRODUCTS` is, e.g.
        ``paths.product('stack', filter='R')`` or ``paths.product('crmask', stem=stem)``."""
        return path(self, key, **fields)

    def latest_frame(self, file, keys=("repaired", "sky_subtracted")) -> Path | None:
        """A raw frame's newest product among ``keys`` (06's, else 05's by default), or None.

        ``file`` is the raw frame's name as the inventory gives it (with or without its
        FITS suffix); the first of ``keys`` whose file exists wins.
        """
        from .fitsio import frame_stem

        stem = frame_stem(file)
        for key in keys:
            p = self.product(key, stem=stem)
            if p.is_file():
                return p
        return None

    def stacks(self, step: str) -> dict[str, Path]:
        """The stacks in a step's folder (07's or 08's), by the filter their headers name."""
        return stacks_in(self.step(step))

    @property
    def inventory(self) -> Path:
        return self.product("inventory")


def open_target(name, manifest, products="products", *, step=None):
    """Validate ``manifest`` and return (target, paths).

    A notebook names its ``step``: that step's folder is emptied, so that it holds what
    this run of the step makes and only that (a product an earlier run made under
    another name, e.g. for a filter since renamed, can't be read as this run's).

    Parameters
    ----------
    name : str
        A target in the manifest.
    manifest : path-like
        The manifest (``data_manifest.yaml``).
    products : path-like
        The products folder; this target's products go to ``products/name/``.
    step : str, optional
        The step about to run (e.g. ``'05_background'``), whose folder is emptied.
    """
    target = load_target(name, manifest)
    paths = Paths(products, name)
    if step is not None:
        paths.empty(step)
    return target, paths


def make_demo_night(target: Target) -> Path | None:
    """Make a demo target's night (raw frames and truth) unless it is there; None for others.

    A demo target's ``raw_dir`` must end in ``/raw``: the truth is written beside it.
    Returns the demo's folder (the parent of ``raw_dir``).
    """
    if "demo" not in target.settings:
        return None
    if target.raw_dir is None or target.raw_dir.name != "raw":
        msg = (f"{target.manifest}: demo target '{target.name}' needs raw_dir ending in "
               "'/raw' (the truth is written beside it)")
        raise ReduxError(msg)
    from . import demo

    return demo.ensure_demo(target.raw_dir.parent, target.settings["demo"])


def demo_truth(target: Target):
    """The demo's truth for a demo target, else None (real nights have no truth)."""
    if "demo" not in target.settings:
        return None
    from . import demo

    return demo.Truth(target.raw_dir.parent)


def stack_path(target: Target, paths: Paths, filt: str, *, after: str = "09_hii_regions"):
    """The best stack of one filter that exists before step ``after``, or None.

    In order: 08's calibrated copy (with ``PHOTZP``/``PHOTFLAM`` in its header), 07's
    stack, the manifest's ``stacks: {filter: file}`` (already reduced images, e.g. a
    survey's coadds). A step only looks at products of the steps before it.
    """
    order = STEPS.index(after)
    for step in ("08_photometry", "07_stack"):
        if STEPS.index(step) < order:
            p = stack_file(paths.step(step), filt)
            if p.is_file():
                return p
    given = (target.get("stacks") or {}).get(filt)   # made absolute by load_target
    if given:
        p = Path(given)
        if not p.is_file():
            msg = f"{target.manifest}: stacks: {filt}: {p} does not exist; fix the path"
            raise ReduxError(msg)
        return p
    return None
