"""Run the notebook chain for one target through papermill.

Each step is a numbered notebook in ``notebooks/``. The runner executes the steps in
order with the target's parameters, keeps every executed notebook (and an HTML
rendering) in ``<products>/<target>/notebooks/``, and stops at the first failure with
the notebook's own error message.

Parameters are checked before anything runs: papermill only warns about a name a
notebook doesn't declare, so a typo (``sigam=2``) would run with the default; here a
name that no notebook of the run declares is refused.

A notebook's kernel dies within a second of the process that started it (a ``redux run``
or a batch worker, even one killed with -9): jupyter_client gives the kernel its parent's
pid (``JPY_PARENT_PID``) and ipykernel's parent poller ends the kernel when its parent
changes, so no orphaned kernel writes on into products nobody holds the lock of
(tests/test_bad_input.py kills a batch worker and checks it).
"""

from __future__ import annotations

import difflib
import errno
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import fingerprint, notebook_html
from .errors import ReduxError
from .lock import products_lock
from .manifest import load_target
from .provenance import FINGERPRINT_ENV
from .targets import STEPS, make_demo_night

# papermill reads notebooks with nbformat, which imports jsonschema, which imports
# rfc3987_syntax where it is installed (jupyterlab's jupyter_events brings it): that
# compiles a grammar at import, 1.0 s and 23 MB in every process that runs notebooks,
# to check IRI formats a notebook's schema never asks for. Marked absent here, jsonschema
# leaves that one format unchecked (papermill's import: 1.29 -> 0.31 s).
sys.modules.setdefault("rfc3987_syntax", None)

log = logging.getLogger(__name__)

#: Error types raised by redux for bad input: their message is all the user needs.
USER_ERRORS = {"ReduxError", "FrameError", "ManifestError"}
#: The first step that can run without raw frames (from stacks given in the manifest).
FIRST_WITHOUT_RAW = "08_photometry"
#: Parameters every notebook declares and the runner always sets.
COMMON = ("target", "manifest", "products")


def notebooks_dir() -> Path:
    """The folder of the numbered notebooks (``REDUX_NOTEBOOKS`` overrides it)."""
    env = os.environ.get("REDUX_NOTEBOOKS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "notebooks"


def available_steps(folder=None) -> list[str]:
    """The steps whose notebooks exist, in chain order."""
    folder = Path(folder or notebooks_dir())
    return [s for s in STEPS if (folder / f"{s}.ipynb").is_file()]


def plan_steps(*, only=None, start=None, folder=None) -> list[str]:
    """The steps to run: all available, or ``only`` these numbers, or ``start`` onwards.

    >>> plan_steps(only="00,01", folder=notebooks_dir())
    ['00_inspect', '01_superbias']
    """
    steps = available_steps(folder)
    if not steps:
        msg = f"no notebooks found in {folder or notebooks_dir()}"
        raise ReduxError(msg)
    numbers = {s[:2]: s for s in steps}
    if only:
        wanted = [x.strip().zfill(2) for x in str(only).split(",") if x.strip()]
        unknown = [w for w in wanted if w not in numbers]
        if unknown:
            msg = (f"--only {only}: no step numbered {', '.join(unknown)}; "
                   f"steps are {', '.join(numbers)}")
            raise ReduxError(msg)
        return [numbers[w] for w in sorted(wanted)]
    if start:
        first = str(start).strip().zfill(2)
        if first not in numbers:
            msg = f"--from {start}: no step numbered {first}; steps are {', '.join(numbers)}"
            raise ReduxError(msg)
        return [s for s in steps if s[:2] >= first]
    return steps


def declared_parameters(step, folder=None) -> dict:
    """The parameters a step's notebook declares: name -> papermill's description."""
    import papermill

    path = Path(folder or notebooks_dir()) / f"{step}.ipynb"
    return papermill.inspect_notebook(str(path))


def parse_param(text: str):
    """'name=value' -> (name, value), the value read as YAML ('3' -> 3, 'true' -> True)."""
    if "=" not in text:
        msg = f"parameter '{text}' should look like NAME=VALUE (e.g. sigma=2.5)"
        raise ReduxError(msg)
    name, value = text.split("=", 1)
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return name.strip(), parsed


_TYPES = {"float": (int, float), "int": (int,), "str": (str,), "bool": (bool,),
          "list": (list,), "dict": (dict,)}


def check_parameters(params: dict, declared: dict[str, dict]) -> dict[str, dict]:
    """Refuse names no notebook declares and values of the wrong type.

    ``declared`` maps step -> papermill's parameter description. Returns, per step,
    the parameters that step declares.
    """
    known = {}
    for step, decl in declared.items():
        for name, info in decl.items():
            known.setdefault(name, (step, info))
    for name, value in params.items():
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            msg = (f"unknown notebook parameter '{name}'{hint}: no notebook declares it; "
                   f"the parameters are: {', '.join(sorted(known))}")
            raise ReduxError(msg)
        step, info = known[name]
        tname = str(info.get("inferred_type_name", "None"))
        ok = _TYPES.get(tname)
        bad_bool = isinstance(value, bool) and tname in ("int", "float")
        if ok and (not isinstance(value, ok) or bad_bool):
            msg = (f"parameter '{name}' should be {tname} ({step} declares "
                   f"{name}: {tname} = {info.get('default')}), got {value!r}")
            raise ReduxError(msg)
    return {step: {k: v for k, v in params.items() if k in decl}
            for step, decl in declared.items()}


@dataclass
class StepResult:
    step: str
    seconds: float
    notebook: Path
    skipped: bool = False     # up to date: its fingerprint had not changed


def run_target(target_name, *, manifest, products="products", only=None, start=None,
               params=None, folder=None, html=True, on_step=None,
               skip_current=False) -> list[StepResult]:
    """Run a target's chain; return what ran. Raises `ReduxError` on any failure.

    Every finished step leaves a fingerprint of what it was made from
    (`redux_helpers.fingerprint`); with ``skip_current`` a step whose fingerprint is
    unchanged and whose products are all there is not run again (``redux batch``; a
    ``--force`` runs everything).

    Parameters
    ----------
    target_name : str
        A target in ``manifest``.
    manifest, products : path-like
        The manifest, and the folder under which ``<target>/`` products go.
    only, start : str, optional
        Run only these step numbers ('00,01'), or from this one ('03').
    params : dict, optional
        Notebook parameters; they override the target's ``params:`` in the manifest.
    on_step : callable, optional
        Called with (step, 'start' | 'done' | 'skipped', seconds) for progress reports,
        and with (step, 'note', text) for each line a finished step has to say in the
        terminal (00's problems).
    skip_current : bool
        Leave out the steps that are up to date.
    """
    folder = Path(folder or notebooks_dir())
    manifest = Path(manifest).resolve()
    products = Path(products).resolve()
    target = load_target(target_name, manifest)
    raw = target.raw_dir.resolve() if target.raw_dir else None
    if raw and (products == raw or raw in products.parents or products in raw.parents):
        where = "around" if products in raw.parents else "inside"
        msg = (f"products folder {products} is {where} the raw folder {raw} (paths compared "
               "with symlinks resolved): raw data is never written, and products must never be "
               "read as raw frames; choose another --products")
        raise ReduxError(msg)
    if raw and raw.is_dir():
        from .products import check_not_products

        check_not_products(raw)          # before a kernel starts, not in 00
    given = sorted(set(COMMON) & set(params or {}))
    if given:
        msg = (f"-p {given[0]}=... can't be set: the command line sets {', '.join(COMMON)} "
               "itself; use the target's name, --manifest and --products instead")
        raise ReduxError(msg)
    steps = plan_steps(only=only, start=start, folder=folder)
    if target.raw_dir is None:
        # a target of already reduced images (stacks:, hst:, muse:) starts at 08
        raw_steps = [s for s in steps if s < FIRST_WITHOUT_RAW]
        if raw_steps and (only or start):
            verb = "needs" if len(raw_steps) == 1 else "need"
            msg = (f"target '{target_name}' has no raw_dir: {', '.join(raw_steps)} {verb} raw "
                   f"frames; run from {FIRST_WITHOUT_RAW[:2]} on")
            raise ReduxError(msg)
        steps = [s for s in steps if s >= FIRST_WITHOUT_RAW]
        if not steps:
            msg = f"target '{target_name}' has no raw_dir and no step to run from 08 on"
            raise ReduxError(msg)
    merged = {**(target.get("params") or {}), **(params or {})}
    # checked against every notebook of the chain: a target's manifest parameters (e.g.
    # min_frames for 01-02) must not stop a run of later steps alone; a typo still does
    everywhere = check_parameters(merged, {s: declared_parameters(s, folder)
                                           for s in available_steps(folder)})
    per_step = {s: everywhere[s] for s in steps}
    root = products / target_name
    outdir = root / "notebooks"
    _make_folder(outdir)
    notes: list[str] = []
    with products_lock(root, notes=notes):
        for note in notes:
            if on_step:
                on_step("", "note", note)
        return _run_steps(target, steps, per_step, root=root, outdir=outdir, folder=folder,
                          manifest=manifest, products=products, html=html, on_step=on_step,
                          skip_current=skip_current)


def _make_folder(path: Path):
    """Make a products folder, or say in one sentence why it can't be made."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        bad = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), path)
        msg = f"products folder: {bad} exists and is a file, not a folder; choose another --products"
        raise ReduxError(msg) from None
    except NotADirectoryError:
        bad = next((p for p in path.parents if p.exists() and not p.is_dir()), path)
        msg = f"products folder: {bad} is a file, not a folder; choose another --products"
        raise ReduxError(msg) from None
    except PermissionError:
        msg = (f"products folder {path} can't be made: permission denied; choose a folder you "
               "can write into with --products")
        raise ReduxError(msg) from None
    except OSError as exc:          # a read-only file system (EROFS), a full disk, ...
        msg = (f"products folder {path} can't be made: {exc.strerror}; choose another "
               "with --products")
        raise ReduxError(msg) from None
    if not os.access(path, os.W_OK | os.X_OK):
        msg = f"products folder {path} is not writable; choose another with --products"
        raise ReduxError(msg)


def _no_space(where: Path, step: str) -> ReduxError:
    """A full disk, in one sentence with the folder and the space it has."""
    try:
        free = shutil.disk_usage(where).free / 1e6
    except OSError:
        free = float("nan")
    msg = (f"{step}: no space left on the device of {where} ({free:.1f} MB free): free some "
           "space or choose another --products; the step's products were not kept, and the "
           "products of the steps before it are whole")
    return ReduxError(msg)


def _run_steps(target, steps, per_step, *, root, outdir, folder, manifest, products, html,
               on_step, skip_current):
    """The steps of `run_target`, under its lock, in one kernel."""
    target_name = target.name
    if "demo" in target.settings:    # made before its files are fingerprinted
        from . import demo

        making = target.raw_dir is not None and not demo.is_current(target.raw_dir.parent,
                                                                    target.settings["demo"])
        t0 = time.perf_counter()
        if making and on_step:
            on_step("setup", "note", f"making the demo night in {target.raw_dir.parent} "
                                     "(first use; a few seconds)")
        make_demo_night(target)
        if making and on_step:
            on_step("setup", "note", f"demo night made in {time.perf_counter() - t0:.0f} s")
    run = _Run(target_name=target_name, target_fp=fingerprint.target_digest(target),
               chain=available_steps(folder), per_step=per_step, root=root, outdir=outdir,
               folder=folder, manifest=manifest, products=products, html=html,
               on_step=on_step, skip_current=skip_current)
    with _Kernel(folder) as kernel, _Pages(root, enabled=html) as pages:
        return [_run_step(run, step, kernel, pages) for step in steps]


@dataclass
class _Run:
    """What every step of one `_run_steps` call shares; ``fps`` fills as steps run."""

    target_name: str
    target_fp: str
    chain: list
    per_step: dict
    root: Path
    outdir: Path
    folder: Path
    manifest: Path
    products: Path
    html: bool
    on_step: object
    skip_current: bool
    fps: dict = field(default_factory=dict)


def _run_step(run, step, kernel, pages):
    """One step of `_run_steps`: its fingerprint, its notebook run in ``kernel``, its record
    (and its HTML page, which ``pages`` renders while the next step runs)."""
    root, on_step = run.root, run.on_step
    fps = run.fps
    fps[step] = _step_fingerprint(run, step)
    out = run.outdir / f"{step}.ipynb"
    if run.skip_current and fingerprint.is_current(root, step, fps[step]):
        if on_step:
            on_step(step, "skipped", 0.0)
        return StepResult(step, 0.0, out, skipped=True)
    fingerprint.forget(root, step)
    fingerprint.clean_stale(root, step)
    if on_step:
        on_step(step, "start", 0.0)
    tmp = run.outdir / f".{step}.running.ipynb"
    t0 = time.perf_counter()
    pages.check()      # a page that failed stops the run here, as it would have before
    _execute(run, step, kernel, tmp=tmp, out=out)
    try:
        os.replace(tmp, out)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise _no_space(root, step) from None
        raise
    dt = time.perf_counter() - t0
    pages.render(step, out)
    fingerprint.write_record(root, step, fingerprint=fps[step], seconds=dt)
    if on_step:
        on_step(step, "done", dt)
        for line in kernel.step_notes(root, step):
            on_step(step, "note", line)
    return StepResult(step, dt, out)


def _step_fingerprint(run, step):
    """The step's fingerprint: its notebook, parameters, target and the step before's."""
    chain, root = run.chain, run.root
    before = chain[chain.index(step) - 1] if chain.index(step) else None
    upstream = run.fps.get(before) or ((fingerprint.read_record(root, before) or {})
                                       .get("fingerprint") if before else "")
    return fingerprint.step_fingerprint(
        step, notebook=run.folder / f"{step}.ipynb", params=run.per_step[step],
        target=run.target_fp, upstream=upstream)


class _Pages:
    """The executed notebooks' HTML pages (`notebook_html.write_html`), rendered in a
    thread of the ``redux`` command while the kernel runs the next step.

    The command only waits on the kernel meanwhile, so the rendering (0.7-1.3 s a demo
    notebook, nbconvert's templates) overlaps the next notebook instead of adding to the
    run (12 notebooks of the demo: ~8 s). A page that fails stops the run before the next
    step starts (`check`), or at the end; all pages are written, whole, when the run ends.
    """

    def __init__(self, root, *, enabled):
        self.root, self.enabled = root, enabled
        self.pending = []        # (step, future)
        self.pool = None

    def __enter__(self):
        if self.enabled:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="redux-html")
        return self

    def render(self, step, notebook):
        if self.pool is not None:
            self.pending.append((step, self.pool.submit(notebook_html.write_html, notebook)))

    def check(self, *, wait=False):
        """Raise the error of the first page that failed (``wait``: of any, once all end)."""
        for step, future in list(self.pending):
            if not (wait or future.done()):
                continue
            self.pending.remove((step, future))
            exc = future.exception()
            if exc is None:
                continue
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise _no_space(self.root, step) from None
            raise exc

    def __exit__(self, *exc):
        if self.pool is None:
            return False
        self.pool.shutdown(wait=True)
        if exc[0] is None:
            self.check(wait=True)
        return False


def _execute(run, step, kernel, *, tmp, out):
    """Run the step's notebook into ``tmp``; a failure becomes one `ReduxError` saying why
    (the failed notebook kept as ``out``)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    root, folder, fps = run.root, run.folder, run.fps
    values = {"target": run.target_name, "manifest": str(run.manifest),
              "products": str(run.products), **run.per_step[step]}
    try:
        # a clean namespace, and the fingerprint `provenance.stamp` writes in headers
        kernel.fresh({FINGERPRINT_ENV: f"{step}:{fps[step]}"})
        papermill.execute_notebook(str(folder / f"{step}.ipynb"), str(tmp),
                                   parameters=values, cwd=str(folder),
                                   progress_bar=False, kernel_name="python3", km=kernel.km,
                                   # one save at the end, not two per cell: 3 s a
                                   # target (benchmarks/bench_batch.py); a failed
                                   # cell's notebook is still written
                                   request_save_on_cell_execute=False)
    except PapermillExecutionError as exc:
        if exc.ename == "OSError" and "No space left" in str(exc.evalue):
            tmp.unlink(missing_ok=True)
            raise _no_space(root, step) from None
        _keep(tmp, out)
        if exc.ename in USER_ERRORS:
            msg = f"{step}: {exc.evalue}"
        else:
            msg = (f"{step} failed: {exc.ename}: {exc.evalue}\n"
                   f"the executed notebook, with the full traceback, is {out}")
        raise ReduxError(msg) from None
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise _no_space(root, step) from None
        msg = f"{step} could not be run: {type(exc).__name__}: {exc}"
        raise ReduxError(msg) from None
    except (RuntimeError, ValueError) as exc:   # the kernel could not run it
        _keep(tmp, out)
        msg = f"{step} could not be run: {type(exc).__name__}: {exc}"
        raise ReduxError(msg) from None


#: Code run in the kernel after a notebook's namespace is emptied: the memory the notebook
#: freed goes back to the system (`parallel.give_back_memory`). On the 2048² night the
#: kernel's peak went from 1665 to 1453 MB with this alone.
_TRIM = ("import redux_helpers.parallel as _p\n"
         "_p.give_back_memory()\n"
         "del _p")


class _Kernel:
    """One Jupyter kernel for all the notebooks of a run, each given a clean namespace.

    Starting a kernel and importing astropy, photutils and matplotlib in it took 2.5–3 s
    a notebook, a fifth of a small target's run. A notebook runs here as in a kernel of
    its own: `fresh` empties the namespace before it (``%reset -f``: no variable of the
    notebook before is left, while the modules it imported stay imported), closes any
    figure, forgets the masters `masters.load_masters` kept (112 MB for a 2048² night's
    superbias and two superflats; reading them again costs a notebook ~0.1 s) and gives
    the freed memory back (`_TRIM`); the notebooks change no other global state (each
    sets the helpers' log level itself). The kernel starts in the notebooks' folder, as
    papermill's ``cwd``.
    """

    def __init__(self, folder):
        self.folder = folder
        self.km = None
        self.kc = None

    def __enter__(self):
        from jupyter_client import KernelManager

        self.km = KernelManager(kernel_name="python3")
        # the kernel warns on every start that it talks over local TCP; that is not news
        # for a user, nor that it was interrupted on shutdown
        self.km.start_kernel(cwd=str(self.folder),
                             extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
        # one client, connected once, for the resets and for papermill's every notebook:
        # a new client misses the kernel's first broadcast message and waits 0.2 s for it
        # (jupyter_client's wait_for_ready), twice a notebook; and papermill leaves the
        # clients it makes on a manager it was given connected, each buffering what the
        # kernel says to the end of the run
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)
        self.km.client = lambda **_: self.kc
        self.kc.start_channels = lambda *_, **__: None    # started already, for good
        return self

    def fresh(self, environ):
        """An empty namespace, no open figure, and ``environ`` in the kernel's os.environ."""
        # %reset also drops the module dunders a new kernel has; multiprocessing's spawn
        # and forkserver read __main__.__spec__, so they are put back. The reset collects
        # garbage before it empties the namespace, so once more after it; what survives
        # (the modules and their state, 230 000 objects by the last step) is then frozen:
        # left out of every later collection, each of which took 0.1 s more to scan them
        # (an object frozen is still freed when nothing refers to it any more)
        code = ("get_ipython().run_line_magic('reset', '-f')\n"
                "globals().update(__spec__=None, __loader__=None, __package__=None,\n"
                "                 __doc__='Automatically created module for IPython "
                "interactive environment')\n"
                "import os as _os, sys as _sys\n"
                f"_os.environ.update({dict(environ)!r})\n"
                "if 'matplotlib.pyplot' in _sys.modules:\n"
                "    _sys.modules['matplotlib.pyplot'].close('all')\n"
                "if 'redux_helpers.masters' in _sys.modules:\n"
                "    _sys.modules['redux_helpers.masters'].clear_cache()\n"
                "import gc as _gc\n"
                "_gc.collect()\n"
                "_gc.freeze()\n"
                "del _os, _sys, _gc\n"
                f"{_TRIM}\n")
        failed = self._run(code)
        if failed is not None:
            msg = f"the kernel could not be reset: {failed}"
            raise RuntimeError(msg)

    def _run(self, code, printed=None):
        """Run ``code`` in the kernel, its standard output appended to ``printed``; None,
        or the error's text when it raised."""
        def keep(msg):
            if (printed is not None and msg["msg_type"] == "stream"
                    and msg["content"].get("name") == "stdout"):
                printed.append(msg["content"]["text"])

        reply = self.kc.execute_interactive(code, timeout=120, store_history=False,
                                            output_hook=keep)
        content = reply["content"]
        return None if content["status"] == "ok" else content.get("evalue", "")

    def step_notes(self, root, step):
        """What a finished step has to say in the terminal: 00's problems, in a few lines
        (`inventory.problem_notes`). Read in the kernel, which has astropy imported
        already: the ``redux`` command itself never imports it (35-40 MB, 0.4 s)."""
        if step != "00_inspect":
            return []
        code = ("import json as _json\n"
                "from redux_helpers.inventory import problem_notes as _notes\n"
                f"print(_json.dumps(_notes({str(root)!r})))\n"
                "del _json, _notes\n")
        printed = []
        failed = self._run(code, printed)
        if failed is not None:
            return [f"(the notes of {step} could not be read: {failed})"]
        return json.loads("".join(printed) or "[]")

    def __exit__(self, *exc):
        if self.kc is not None:
            self.kc.stop_channels()
        if self.km is not None and self.km.has_kernel:
            self.km.shutdown_kernel(now=True)
        return False


def _keep(tmp: Path, out: Path):
    """Keep a failed run's executed notebook (it holds the traceback) as the step's."""
    if tmp.exists():
        os.replace(tmp, out)
