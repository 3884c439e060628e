"""Throughput of ``redux batch`` with 1 and 2 workers, and where a batch's time goes.

The batch: N small demo galaxies (256 x 256 demo nights, seeds 11, 12, ...; made once in
``_work/batch/`` with a manifest ``_work/batch/manifest.yaml`` whose entries have the keys
of ``galaxy_a`` in the repository's manifest, paths moved there), run through a fixed
subset of the chain (default ``--steps 00,01,02,03,04``, the calibration; the whole chain
takes ~165 s per target here). Each configuration (``--workers 1 2``) runs in its own
process: ``batch.run_batch(names, force=True, html=False, only=STEPS, workers=W)`` into a
fresh products folder. Measured: the batch's wall time (throughput = targets per minute,
speed-up = wall(1) / wall(W)), the CPU time of that process and of all its descendants
(scheduler, Dask workers, notebook kernels), each target's task time, its per-step seconds
(``.redux/<step>.json``) and, from the executed notebooks' papermill metadata, each step's
time inside its code cells, in its set-up cell (imports, ``open_target``) and outside the
cells (kernel start and shutdown, papermill, notebook saves).

Where the time goes, each part measured apart (not guessed):

* per notebook: papermill, with the runner's arguments, on trivial notebooks: ``bare``
  (one parameters cell; also with ``shutdown_kernel="immediate"``), ``redux`` (plus
  ``import redux_helpers``), ``skeleton-NN`` (step NN's notebook with every code cell cut
  down to its imports, ``pass`` if none; markdown kept): ``--repeat`` runs each,
  interleaved, in one process (papermill imported once, as in a Dask worker);
* imports in a fresh interpreter (``python -X importtime``) of the union of the steps'
  import lines, by top-level package; ``import papermill`` and ``import nbconvert`` with
  and without the optional ``rfc3987_syntax`` (blocked in ``sys.modules``);
* I/O: every product of each step of one target read and written once (FITS through
  astropy, other files as bytes, notebooks through nbformat), the raw night read once
  (page cache warm, as in the batch); papermill's notebook saves replayed on the executed
  notebooks (with ``request_save_on_cell_execute``, its default and the runner's, it writes
  the whole notebook before and after every cell);
* the up-to-date check: each batch again without ``force`` (nothing runs: pure overhead),
  also with ``rfc3987_syntax`` blocked in the batch's process and on the workers (a Dask
  worker preload); ``run_target(skip_current=True)`` in one process with its parts timed,
  and with ``declared_parameters`` cached per process (keyed on path, mtime and size);
* Dask: ``LocalCluster`` start and close; importing papermill and the runner on a fresh worker;
* HTML: ``runner._write_html`` of each executed notebook of one target (the batches run
  with ``html=False``, as ``--no-html``).

The proposed cuts are prototyped here by monkeypatching, never by editing the package:
``--cuts`` batches (default on; ``--no-cuts``) run each configuration again with
``rfc3987_syntax`` blocked and papermill saving the notebook once, at the end
(``request_save_on_cell_execute=False``), in the batch's process and on the workers; and
one target through ``run_target`` with and without the second alone (``--ab-repeat``).

    python benchmarks/bench_batch.py                   # 8 targets, 00-04, workers 1 and 2
    python benchmarks/bench_batch.py --targets 2 --steps 00 --repeat 2 --ab-repeat 1   # a try
"""

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import run_child, version_line

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SIZE = 256
FIRST_SEED = 11
#: a Dask worker preload (text) that makes ``import rfc3987_syntax`` fail, as if the
#: optional package were not installed: jsonschema then has no "iri" format checker
BLOCK_RFC3987 = "import sys; sys.modules['rfc3987_syntax'] = None"
#: both cuts (a preload runs before any task): no rfc3987_syntax, and papermill writes the
#: executed notebook once at the end instead of before and after every cell
CUTS = (BLOCK_RFC3987 + "; import functools, papermill; papermill.execute_notebook = "
        "functools.partial(papermill.execute_notebook, request_save_on_cell_execute=False)")
RUNNER_ARGS = {"progress_bar": False, "kernel_name": "python3",
               "extra_arguments": ["--IPKernelApp.log_level=ERROR"]}   # as runner.run_target


def names_of(n):
    return [f"gal_{FIRST_SEED + i}" for i in range(n)]


def rusage():
    """(CPU seconds of this process, of its reaped descendants; peak RSS MB of each)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return (s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime, s.ru_maxrss / 1024,
            c.ru_maxrss / 1024)


def quiet():
    import logging
    import warnings

    warnings.simplefilter("ignore")
    for name in ("distributed", "tornado", "asyncio", "traitlets", "papermill"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


# ---- the targets ---------------------------------------------------------------------------
def child_make(args):
    """The demo nights and the manifest (made once; `ensure_demo` keeps identical ones)."""
    import yaml

    from redux_helpers import demo

    work = Path(args.work)
    doc = yaml.safe_load((REPO / "data_manifest.yaml").read_text())
    proto = doc["targets"]["galaxy_a"]
    targets, made = {}, []
    t0 = time.perf_counter()
    for i, name in enumerate(names_of(args.targets)):
        seed = FIRST_SEED + i
        t = time.perf_counter()
        before = (work / name / "truth" / "truth.json").is_file()
        demo.ensure_demo(work / name, demo.DemoConfig(size=SIZE, seed=seed))
        if not before:
            made.append((name, round(time.perf_counter() - t, 1)))
        # galaxy_a's keys, its paths moved from demo_data/galaxy_a/ to this folder
        text = json.dumps(proto).replace("demo_data/galaxy_a/", f"{name}/")
        entry = json.loads(text)
        entry["description"] = f"a small demo galaxy for bench_batch.py (seed {seed})"
        entry["demo"] = {"size": SIZE, "seed": seed}
        targets[name] = entry
    manifest = work / "manifest.yaml"
    body = yaml.safe_dump({"defaults": doc.get("defaults") or {}, "targets": targets},
                          sort_keys=False)
    if not manifest.is_file() or manifest.read_text() != body:
        manifest.write_text(body)
    raw = work / names_of(1)[0] / "raw"
    print(json.dumps({"make_s": time.perf_counter() - t0, "made": made,
                      "raw_frames": len(list(raw.glob("*.fits"))),
                      "raw_mb": sum(p.stat().st_size for p in raw.glob("*.fits")) / 2**20}))


# ---- the batch -----------------------------------------------------------------------------
def child_batch(args):
    """One ``run_batch`` (``force`` unless ``--rerun``); print its figures as JSON."""
    quiet()
    if args.block_rfc3987 or args.cuts:   # here (run_batch imports papermill) and on workers
        import dask

        sys.modules["rfc3987_syntax"] = None
        dask.config.set({"distributed.worker.preload": [CUTS if args.cuts else BLOCK_RFC3987]})
    from redux_helpers import batch, fingerprint
    from redux_helpers.runner import plan_steps

    names = names_of(args.targets)
    products = Path(args.products)
    steps = plan_steps(only=args.steps)
    events = []
    t0 = time.perf_counter()

    def on_event(target, step, state, info):
        events.append((round(time.perf_counter() - t0, 2), target, step, state))

    c0 = rusage()
    t0 = time.perf_counter()
    summaries = batch.run_batch(names, manifest=Path(args.work) / "manifest.yaml",
                                products=products, workers=args.nworkers, force=not args.rerun,
                                params=json.loads(args.params) or None, only=args.steps,
                                html=False, on_event=on_event)
    wall = time.perf_counter() - t0
    c1 = rusage()
    bad = [f"{s.target}: {s.failed}: {s.reason}" for s in summaries if not s.ok]
    if bad:
        sys.exit("batch failed:\n" + "\n".join(bad))
    targets = []
    for s in summaries:
        recs = {st: fingerprint.read_record(products / s.target, st) for st in steps}
        first = min((t for t, n, _, st in events if n == s.target and st in ("start", "skipped")),
                    default=None)
        end = next((t for t, n, _, st in events if n == s.target and st == "finished"), None)
        targets.append({"target": s.target, "seconds": s.seconds, "worker": s.worker,
                        "ran": s.ran, "skipped": s.skipped, "first_event": first,
                        "finished_event": end,
                        "steps": {st: r["seconds"] for st, r in recs.items()
                                  if r and st in s.ran},
                        "cells": {st: cell_times(products / s.target / "notebooks" / f"{st}.ipynb")
                                  for st in s.ran}})
    print(json.dumps({"wall": wall, "cpu_self": c1[0] - c0[0], "cpu_children": c1[1] - c0[1],
                      "rss_self_mb": c1[2], "rss_children_mb": c1[3], "steps": steps,
                      "targets": targets, "n_events": len(events)}))


def cell_times(notebook):
    """From an executed notebook's papermill metadata: seconds in all code cells, in the
    set-up cell (the first with imports: imports, open_target, small reads) and their count."""
    nb = json.loads(Path(notebook).read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    dur = [(c.get("metadata", {}).get("papermill", {}).get("duration") or 0.0) for c in code]
    setup = next((d for c, d in zip(code, dur, strict=True)
                  if import_lines("".join(c["source"]))), 0.0)
    return {"cells": sum(dur), "setup": setup, "n": len(code)}


def _import_runner():
    """On a fresh Dask worker: what the first task pays to import the runner."""
    t = time.perf_counter()
    import papermill  # noqa: F401

    from redux_helpers import runner  # noqa: F401
    return time.perf_counter() - t


def child_cluster(args):
    """``LocalCluster`` as `run_batch` makes it: start, first import on the workers, close."""
    import logging

    quiet()
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=args.nworkers, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    client = Client(cluster)
    t1 = time.perf_counter()
    imports = list(client.run(_import_runner).values())
    t2 = time.perf_counter()
    client.close()
    cluster.close()
    t3 = time.perf_counter()
    print(json.dumps({"start": t1 - t0, "import_runner": imports, "import_wall": t2 - t1,
                      "close": t3 - t2}))


# ---- the up-to-date check, in one process --------------------------------------------------
def cached_declared_parameters(runner):
    """The proposed cut: `declared_parameters` cached per process on (path, mtime, size)."""
    import copy
    import functools

    import papermill

    @functools.lru_cache(maxsize=64)
    def inspect(path, mtime_ns, size):
        return papermill.inspect_notebook(path)

    def declared_parameters(step, folder=None):
        path = Path(folder or runner.notebooks_dir()) / f"{step}.ipynb"
        st = path.stat()
        return copy.deepcopy(inspect(str(path), st.st_mtime_ns, st.st_size))

    return declared_parameters


def child_check(args):
    """``run_target(skip_current=True)`` of every (current) target; its parts timed."""
    quiet()
    import papermill  # noqa: F401

    from redux_helpers import fingerprint, runner

    names = names_of(args.targets)
    manifest = Path(args.work) / "manifest.yaml"
    spent = {}

    def timed(mod, attr, label):
        fn = getattr(mod, attr)

        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t
        setattr(mod, attr, wrapper)

    original = runner.declared_parameters
    timed(runner, "load_target", "load_target (manifest)")
    timed(runner, "open_target", "open_target (demo present?)")
    timed(runner, "declared_parameters", "declared_parameters x12")
    timed(fingerprint, "target_digest", "target_digest (stat raw + files)")
    timed(fingerprint, "step_fingerprint", "step_fingerprint (notebook digests)")
    timed(fingerprint, "is_current", "is_current (record + products)")

    def one_pass():
        spent.clear()
        per = []
        for n in names:
            t = time.perf_counter()
            res = runner.run_target(n, manifest=manifest, products=args.products,
                                    only=args.steps, html=False, skip_current=True)
            per.append(time.perf_counter() - t)
            if not all(r.skipped for r in res):
                sys.exit(f"{n}: not current: {[r.step for r in res if not r.skipped]}")
        return {"per_target": per, "parts": {k: v / len(names) for k, v in spent.items()}}

    t = time.perf_counter()
    one_pass()                                # the first: package digest, imports
    first = time.perf_counter() - t
    plain = one_pass()
    runner.declared_parameters = cached_declared_parameters(runner)
    timed(runner, "declared_parameters", "declared_parameters x12")
    cached = one_pass()
    # declared_parameters of the 12 notebooks alone, repeated
    steps = runner.available_steps()
    reps = 20
    t = time.perf_counter()
    for _ in range(reps):
        for s in steps:
            original(s)
    t_plain = (time.perf_counter() - t) / reps
    fast = cached_declared_parameters(runner)
    t = time.perf_counter()
    for _ in range(reps):
        for s in steps:
            fast(s)
    t_cached = (time.perf_counter() - t) / reps
    same = all(fast(s) == original(s) for s in steps)
    print(json.dumps({"first_pass": first, "plain": plain, "cached": cached,
                      "declared_12_plain": t_plain, "declared_12_cached": t_cached,
                      "cached_same": same}))


# ---- per-notebook overhead: papermill on trivial notebooks ---------------------------------
def import_lines(source):
    """The top-level import statements of a cell (continuation lines joined), and
    top-level ``with`` blocks holding only imports and ``warnings.`` calls (the notebooks'
    ``with warnings.catch_warnings(): ... from tqdm.auto import tqdm``)."""
    out, cur, depth = [], None, 0
    lines = source.splitlines()
    for i, line in enumerate(lines):
        if cur is None and line.startswith("with "):
            body = []
            for x in lines[i + 1:]:
                if not x.startswith((" ", "\t")):
                    break
                body.append(x)
            if body and all(x.strip().startswith(("import ", "from ", "warnings."))
                            for x in body):
                out.append("\n".join([line, *body]))
            continue
        if cur is None and line.startswith(("import ", "from ")):
            cur, depth = [line], line.count("(") - line.count(")")
        elif cur is not None:
            cur.append(line)
            depth += line.count("(") - line.count(")")
        if cur is not None and depth <= 0 and not cur[-1].rstrip().endswith("\\"):
            out.append("\n".join(cur))
            cur = None
    return out


def make_trivial(folder, steps):
    """bare, redux and one skeleton per step, written to ``folder``."""
    import nbformat

    from redux_helpers.runner import notebooks_dir

    folder.mkdir(parents=True, exist_ok=True)
    params = nbformat.v4.new_code_cell('target: str = "demo"\nmanifest: str = "x"\n'
                                       'products: str = "x"')
    params.metadata["tags"] = ["parameters"]
    spec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    made = {}
    for name, extra in (("bare", []), ("redux", ["import redux_helpers"])):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = spec
        nb.cells = [params] + [nbformat.v4.new_code_cell(x) for x in extra]
        nbformat.write(nb, folder / f"{name}.ipynb")
        made[name] = {"cells": len(nb.cells), "code_cells": len(nb.cells), "imports": len(extra)}
    for step in steps:
        nb = nbformat.read(notebooks_dir() / f"{step}.ipynb", as_version=4)
        n_imports = 0
        for c in nb.cells:
            if c.cell_type == "code":
                c.outputs, c.execution_count = [], None
                if "parameters" not in (c.metadata.get("tags") or []):
                    lines = import_lines(c.source)
                    n_imports += len(lines)
                    c.source = "\n".join(lines) or "pass"
        nbformat.write(nb, folder / f"skeleton-{step[:2]}.ipynb")
        made[f"skeleton-{step[:2]}"] = {"cells": len(nb.cells), "imports": n_imports,
                                        "code_cells": sum(c.cell_type == "code"
                                                          for c in nb.cells)}
    return made


def child_papermill(args):
    """Each trivial notebook ``--repeat`` times, interleaved, through papermill."""
    quiet()
    import papermill

    from redux_helpers.runner import notebooks_dir, plan_steps

    steps = plan_steps(only=args.steps)
    folder = Path(args.work) / "trivial"
    made = make_trivial(folder, steps)
    values = {"target": names_of(1)[0], "manifest": str(Path(args.work) / "manifest.yaml"),
              "products": str(Path(args.work) / "trivial" / "products")}
    variants = {v: (v, {}) for v in made}
    # the kernel killed once the notebook is done instead of asked to shut down
    variants["bare, immediate shutdown"] = ("bare", {"shutdown_kernel": "immediate"})
    made["bare, immediate shutdown"] = made["bare"]
    runs = {v: [] for v in variants}
    in_cells = {v: [] for v in variants}
    for _ in range(args.repeat):
        for v, (nb, extra) in variants.items():
            out = folder / f"out-{nb}.ipynb"
            t = time.perf_counter()
            papermill.execute_notebook(str(folder / f"{nb}.ipynb"), str(out), parameters=values,
                                       cwd=str(notebooks_dir()), **RUNNER_ARGS, **extra)
            runs[v].append(time.perf_counter() - t)
            in_cells[v].append(cell_times(out)["cells"])
            print(f"# papermill {v}: {runs[v][-1]:.2f} s, load {os.getloadavg()[0]:.2f}",
                  file=sys.stderr)
    print(json.dumps({"runs": runs, "in_cells": in_cells, "made": made}))


# ---- I/O and HTML --------------------------------------------------------------------------
def child_io(args):
    """Read and write once every product of each step of one target; read the raw night."""
    quiet()
    import nbformat
    import numpy as np
    from astropy.io import fits

    from redux_helpers import fingerprint
    from redux_helpers.runner import plan_steps

    name = names_of(1)[0]
    root = Path(args.products) / name
    scratch = Path(args.work) / "io_scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    out = {}
    for step in plan_steps(only=args.steps):
        rec = fingerprint.read_record(root, step)
        t_read = t_write = 0.0
        nbytes = 0
        for i, rel in enumerate(rec["products"]):
            p = root / rel
            nbytes += p.stat().st_size
            dst = scratch / f"{i}{p.suffix}"
            if p.suffix in (".fits", ".fz"):
                t = time.perf_counter()
                with fits.open(p, memmap=False) as h:
                    for hdu in h:
                        _ = hdu.data
                    t_read += time.perf_counter() - t
                    t = time.perf_counter()
                    h.writeto(dst, overwrite=True)
                    t_write += time.perf_counter() - t
            elif p.suffix == ".ipynb":
                t = time.perf_counter()
                nb = nbformat.read(p, as_version=4)
                t_read += time.perf_counter() - t
                t = time.perf_counter()
                nbformat.write(nb, dst)
                t_write += time.perf_counter() - t
            else:
                t = time.perf_counter()
                data = p.read_bytes()
                t_read += time.perf_counter() - t
                t = time.perf_counter()
                dst.write_bytes(data)
                t_write += time.perf_counter() - t
        out[step] = {"files": len(rec["products"]), "mb": nbytes / 2**20, "read": t_read,
                     "write": t_write, "saves": replay_saves(root / "notebooks" / f"{step}.ipynb",
                                                             scratch / "replay.ipynb")}
    shutil.rmtree(scratch)
    raw = sorted((Path(args.work) / name / "raw").glob("*.fits"))
    t = time.perf_counter()
    for p in raw:
        np.asarray(fits.getdata(p))
    print(json.dumps({"steps": out, "raw_read": time.perf_counter() - t, "raw_files": len(raw)}))


def replay_saves(executed, scratch):
    """papermill's saves of a run, replayed on the executed notebook: (n, seconds).

    With ``request_save_on_cell_execute`` (its default, the runner's) papermill writes
    the whole notebook at the start, before and after every cell (markdown too) and at
    the end; the cells' outputs arrive one cell at a time. Without it: once, at the end.
    """
    import copy

    import nbformat
    from papermill.iorw import write_ipynb

    done = nbformat.read(executed, as_version=4)
    nb = copy.deepcopy(done)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = []
    t = time.perf_counter()
    write_ipynb(nb, str(scratch))
    for i in range(len(nb.cells)):
        write_ipynb(nb, str(scratch))
        nb.cells[i] = done.cells[i]
        write_ipynb(nb, str(scratch))
    write_ipynb(nb, str(scratch))
    per_cell = time.perf_counter() - t
    t = time.perf_counter()
    write_ipynb(nb, str(scratch))
    return {"n": 2 * len(nb.cells) + 2, "seconds": per_cell, "one": time.perf_counter() - t}


def child_ab(args):
    """The runner's papermill call with per-cell saves (as now) and with one save at the end.

    One target's steps through `runner.run_target` in this process, the two variants
    interleaved ``--repeat`` times, each into a fresh products folder.
    """
    quiet()
    import functools

    import nbformat
    import papermill

    from redux_helpers import runner

    name = names_of(1)[0]
    manifest = Path(args.work) / "manifest.yaml"
    products = Path(args.work) / "ab_products"
    as_now = papermill.execute_notebook
    variants = {"per-cell saves": as_now,
                "one save": functools.partial(as_now, request_save_on_cell_execute=False)}
    runs = {v: [] for v in variants}
    for _ in range(args.repeat):
        for v, fn in variants.items():
            shutil.rmtree(products, ignore_errors=True)
            papermill.execute_notebook = fn
            t = time.perf_counter()
            res = runner.run_target(name, manifest=manifest, products=products, only=args.steps,
                                    html=False)
            wall = time.perf_counter() - t
            outputs = sum(len(c.get("outputs", [])) for r in res
                          for c in nbformat.read(r.notebook, as_version=4).cells)
            runs[v].append({"wall": wall, "steps": {r.step: r.seconds for r in res},
                            "outputs": outputs})
            print(f"# ab {v}: {wall:.1f} s, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    papermill.execute_notebook = as_now
    shutil.rmtree(products, ignore_errors=True)
    print(json.dumps(runs))


def child_html(args):
    """`runner._write_html` of each executed notebook of one target (copies)."""
    quiet()
    from redux_helpers import runner

    src = Path(args.products) / names_of(1)[0] / "notebooks"
    dst = Path(args.work) / "html"
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    t = time.perf_counter()
    import nbconvert  # noqa: F401
    t_import = time.perf_counter() - t
    out = {}
    for step in runner.plan_steps(only=args.steps):
        nb = dst / f"{step}.ipynb"
        shutil.copy(src / f"{step}.ipynb", nb)
        t = time.perf_counter()
        runner._write_html(nb)
        out[step] = {"seconds": time.perf_counter() - t,
                     "html_mb": nb.with_suffix(".html").stat().st_size / 2**20,
                     "ipynb_mb": nb.stat().st_size / 2**20}
    first = next(iter(out))
    t = time.perf_counter()                   # the first one again, warm
    runner._write_html(dst / f"{first}.ipynb")
    print(json.dumps({"import_nbconvert": t_import, "steps": out,
                      "first_again": time.perf_counter() - t}))


# ---- imports in a fresh interpreter (the parent; standard library only) --------------------
def steps_import_lines(steps):
    """The union of the steps' top-level import lines, in order."""
    lines = []
    for step in steps:
        nb = json.loads((REPO / "notebooks" / f"{step}.ipynb").read_text())
        for c in nb["cells"]:
            if c["cell_type"] == "code":
                for x in import_lines("".join(c["source"])):
                    if x not in lines:
                        lines.append(x)
    return lines


def import_profile(code):
    """``python -X importtime -c code``: seconds by top-level package (self times summed)."""
    p = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                       text=True, cwd=REPO)
    by_pkg, total = {}, 0.0
    for line in p.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            pkg = m[4].split(".")[0]
            by_pkg[pkg] = by_pkg.get(pkg, 0.0) + int(m[1]) / 1e6
            if len(m[3]) == 1:
                total += int(m[2]) / 1e6
    return total, by_pkg


def interpreter_runs(code, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                       capture_output=True)
        times.append(time.perf_counter() - t)
    return times


# ---- the report ----------------------------------------------------------------------------
def med(xs):
    return statistics.median(xs) if xs else float("nan")


def report(args, made, batches, reruns, clusters, check, pm, io, html, imports, loads, t_all,
           blocked, ab, cut):
    steps = batches[args.workers[0]]["steps"]
    n = args.targets
    walls = {w: b["wall"] for w, b in batches.items()}
    w1 = walls.get(1)
    print(f"### Throughput: {n} targets, steps {', '.join(s[:2] for s in steps)}, html=False, "
          "force=True\n")
    print("| workers | wall (s) | targets / min | speed-up | task time, sum over targets (s) | "
          "busiest worker's tasks (s) | wall − busiest worker (s) | CPU, all processes (s) | "
          "CPU / wall | largest process (MB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    configs = {str(w): b for w, b in batches.items()} | {f"{w} + cuts": c for w, c in cut.items()}
    for w, b in configs.items():
        per_worker = {}
        for t in b["targets"]:
            per_worker[t["worker"]] = per_worker.get(t["worker"], 0.0) + t["seconds"]
        busiest = max(per_worker.values())
        cpu = b["cpu_self"] + b["cpu_children"]
        speed = f"{w1 / b['wall']:.2f}" if w1 else "—"
        print(f"| {w} | {b['wall']:.1f} | {60 * n / b['wall']:.2f} | {speed} | "
              f"{sum(t['seconds'] for t in b['targets']):.1f} | {busiest:.1f} | "
              f"{b['wall'] - busiest:.1f} | {cpu:.1f} | {cpu / b['wall']:.2f} | "
              f"{max(b['rss_self_mb'], b['rss_children_mb']):.0f} |")
    print()
    # per step: in the batch, outside the cells / set-up cell / other cells
    print("### Per notebook: where a step's time goes (medians over the targets, from the "
          "executed notebooks' cell durations)\n")
    print("| step | workers | step (s) | outside the cells: kernel start + stop, papermill, "
          "saves (s) | set-up cell: imports, open_target (s) | other cells: compute + I/O (s) "
          "| I/O measured apart (s) | overhead share (outside + set-up) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    tot = {w: {"step": 0.0, "outside": 0.0, "setup": 0.0} for w in configs}
    for s in steps:
        i = io["steps"][s]
        for w, b in configs.items():
            rows = [(t["steps"][s], t["cells"][s]) for t in b["targets"] if s in t["steps"]]
            step = med([r[0] for r in rows])
            outside = med([r[0] - r[1]["cells"] for r in rows])
            setup = med([r[1]["setup"] for r in rows])
            rest = med([r[1]["cells"] - r[1]["setup"] for r in rows])
            for k, v in (("step", step), ("outside", outside), ("setup", setup)):
                tot[w][k] += v
            print(f"| {s} | {w} | {step:.2f} | {outside:.2f} | {setup:.2f} | {rest:.2f} | "
                  f"{i['read'] + i['write']:.3f} ({i['files']} files, {i['mb']:.1f} MB) | "
                  f"{(outside + setup) / step:.0%} |")
    for w, t in tot.items():
        print(f"| all {len(steps)} | {w} | {t['step']:.2f} | {t['outside']:.2f} | "
              f"{t['setup']:.2f} | {t['step'] - t['outside'] - t['setup']:.2f} | | "
              f"{(t['outside'] + t['setup']) / t['step']:.0%} |")
    print(f"\nraw night read once ({io['raw_files']} frames, {made['raw_mb']:.1f} MB): "
          f"{io['raw_read']:.3f} s")
    print(f"\n### Trivial notebooks through papermill ({args.repeat} runs each, interleaved; "
          "the runner's arguments)\n")
    print("| notebook | code cells | wall (s): median (min–max) | in its cells (s), median |")
    print("|---|---:|---:|---:|")
    for v, r in pm["runs"].items():
        print(f"| {v} | {pm['made'][v]['code_cells']} | {med(r):.2f} ({min(r):.2f}–{max(r):.2f}) "
              f"| {med(pm['in_cells'][v]):.2f} |")
    # per target, outside the steps
    print("\n### Per target and per batch, outside the notebooks\n")
    print("| configuration | per target: task − its steps (s) | first progress event (s) |")
    print("|---|---:|---:|")
    for w, b in batches.items():
        extra = [t["seconds"] - sum(t["steps"].values()) for t in b["targets"]]
        first = min(t["first_event"] for t in b["targets"] if t["first_event"] is not None)
        print(f"| batch, {w} worker(s), force | {med(extra):.2f} (max {max(extra):.2f}) | "
              f"{first:.1f} |")
    print()
    print("| what | seconds |")
    print("|---|---:|")
    for w, c in clusters.items():
        print(f"| LocalCluster({w} worker(s)) start / close | {c['start']:.2f} / {c['close']:.2f} |")
        print(f"| import papermill + runner on a fresh worker ({w} at once) | "
              f"{max(c['import_runner']):.2f} |")
    for w, r in reruns.items():
        for label, x in (("", r), (", rfc3987_syntax blocked", blocked[w])):
            tasks = [t["seconds"] for t in x["targets"]]
            print(f"| rerun, nothing to do, {w} worker(s){label}: whole batch (median task) | "
                  f"{x['wall']:.2f} ({med(tasks):.2f}) |")
    print(f"| run_target check of a current target, one process (first pass, all targets) | "
          f"{med(check['plain']['per_target']):.3f} ({check['first_pass']:.2f}) |")
    for k, v in check["plain"]["parts"].items():
        print(f"| … of which {k} | {v:.3f} |")
    print(f"| declared_parameters of the 12 notebooks: plain / cached | "
          f"{check['declared_12_plain']:.4f} / {check['declared_12_cached']:.5f} |")
    print(f"| run_target check with the cache (per target) | "
          f"{med(check['cached']['per_target']):.3f} |")
    first_html = next(iter(html["steps"]))
    print(f"| HTML of the {len(html['steps'])} executed notebooks (import nbconvert "
          f"{html['import_nbconvert']:.2f} s once) | "
          f"{sum(h['seconds'] for h in html['steps'].values()):.2f} |")
    print("| … per notebook: " + ", ".join(f"{s[:2]} {h['seconds']:.2f}"
                                           for s, h in html["steps"].items())
          + f" ({first_html[:2]} again, warm: {html['first_again']:.2f}) | |")
    # imports
    total, by_pkg = imports["profile"]
    top = sorted(by_pkg.items(), key=lambda kv: -kv[1])[:10]
    print(f"\nImports of the steps' import lines in a fresh interpreter "
          f"({len(imports['lines'])} lines): `-X importtime` total {total:.2f} s; "
          f"`python -c` with them {med(imports['with']):.2f} s, `python -c pass` "
          f"{med(imports['bare']):.2f} s (medians of {len(imports['with'])}); by package: "
          + ", ".join(f"{k} {v:.2f}" for k, v in top))
    for mod in ("papermill", "nbconvert"):
        print(f"`python -c 'import {mod}'`: {med(imports[mod]):.2f} s; with rfc3987_syntax "
              f"blocked {med(imports[mod + '-blocked']):.2f} s")
    print("\n### papermill's notebook saves (the executed notebooks of "
          f"{names_of(1)[0]})\n")
    print("| step | saves per run | their time, replayed (s) | one save (s) |")
    print("|---|---:|---:|---:|")
    for s, i in io["steps"].items():
        sv = i["saves"]
        print(f"| {s} | {sv['n']} | {sv['seconds']:.2f} | {sv['one']:.3f} |")
    print(f"| all | | {sum(i['saves']['seconds'] for i in io['steps'].values()):.2f} | |")
    if ab:
        print(f"\nOne target ({names_of(1)[0]}) through `run_target`, {args.ab_repeat} "
              "interleaved runs each (least; per step least over runs):\n")
        print("| papermill | target (s) | " + " | ".join(s[:2] for s in steps) + " | outputs |")
        print("|---|---:|" + "---:|" * len(steps) + "---:|")
        for v, rs in ab.items():
            print(f"| {v} | {min(r['wall'] for r in rs):.2f} | "
                  + " | ".join(f"{min(r['steps'][s] for r in rs):.2f}" for s in steps)
                  + f" | {rs[0]['outputs']} |")
    print(f"\n{version_line(loads)}; total run time {time.perf_counter() - t_all:.0f} s "
          f"(demo nights made in this run: {made['made'] or 'none'})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", type=int, default=8, help="demo targets (seeds 11, 12, ...)")
    ap.add_argument("--steps", "--only", dest="steps", default="00,01,02,03,04",
                    help="the steps each target runs (default 00,01,02,03,04)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                    help="the configurations: Dask worker processes (default 1 2)")
    ap.add_argument("--repeat", type=int, default=5,
                    help="runs of each trivial notebook and of each interpreter start")
    ap.add_argument("--no-cuts", action="store_true",
                    help="leave out the batches with the proposed cuts prototyped")
    ap.add_argument("--ab-repeat", type=int, default=2,
                    help="runs of one target with per-cell and with one notebook save (0: none)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a notebook parameter for every target of the batches (JSON value: "
                         "3, 2.5, true; anything else a string)")
    ap.add_argument("--work", type=Path, default=HERE / "_work" / "batch")
    # for the child processes
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--products", help=argparse.SUPPRESS)
    ap.add_argument("--nworkers", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--rerun", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--block-rfc3987", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cuts", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return {"make": child_make, "batch": child_batch, "cluster": child_cluster,
                "check": child_check, "papermill": child_papermill, "io": child_io,
                "html": child_html, "ab": child_ab}[args.child](args)

    t_all = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    params = {}
    for p in args.param:
        k, v = p.split("=", 1)
        try:
            params[k] = json.loads(v)            # numbers, true/false; else a string
        except ValueError:
            params[k] = v
    common = ["--work", args.work, "--targets", args.targets, "--steps", args.steps]
    loads = []

    def spawn(what, *extra):
        loads.append(os.getloadavg()[0])
        t = time.perf_counter()
        r = run_child(__file__, what, *common, *extra)
        print(f"# {what} {' '.join(map(str, extra))}: {time.perf_counter() - t:.1f} s, "
              f"load before {loads[-1]:.2f}", file=sys.stderr)
        return r

    made = spawn("make")
    batches, reruns, clusters = {}, {}, {}
    for w in args.workers:
        products = args.work / f"products_w{w}"
        shutil.rmtree(products, ignore_errors=True)
        batches[w] = spawn("batch", "--nworkers", w, "--products", products,
                           "--params", json.dumps(params))
    cut = {}
    for w in [] if args.no_cuts else args.workers:
        products = args.work / f"products_w{w}_cuts"
        shutil.rmtree(products, ignore_errors=True)
        cut[w] = spawn("batch", "--nworkers", w, "--products", products,
                       "--params", json.dumps(params), "--cuts")
    for w in args.workers:
        reruns[w] = spawn("batch", "--nworkers", w, "--products", args.work / f"products_w{w}",
                          "--params", json.dumps(params), "--rerun")
        if any(t["ran"] for t in reruns[w]["targets"]):
            sys.exit(f"the rerun with {w} worker(s) ran steps: {reruns[w]['targets']}")
    blocked = {}
    for w in args.workers:
        blocked[w] = spawn("batch", "--nworkers", w, "--products", args.work / f"products_w{w}",
                           "--params", json.dumps(params), "--rerun", "--block-rfc3987")
    for w in args.workers:
        clusters[w] = spawn("cluster", "--nworkers", w)
    first = args.work / f"products_w{args.workers[0]}"
    check = spawn("check", "--products", first)
    io = spawn("io", "--products", first)
    html = spawn("html", "--products", first)
    pm = spawn("papermill", "--repeat", args.repeat)
    ab = spawn("ab", "--repeat", args.ab_repeat) if args.ab_repeat else None
    steps = batches[args.workers[0]]["steps"]
    lines = steps_import_lines(steps)
    code = "\n".join(lines)
    loads.append(os.getloadavg()[0])
    imports = {"lines": lines, "profile": import_profile(code),
               "with": interpreter_runs(code, args.repeat),
               "bare": interpreter_runs("pass", args.repeat)}
    block = BLOCK_RFC3987 + "; "
    for mod in ("papermill", "nbconvert"):
        imports[mod] = interpreter_runs(f"import {mod}", args.repeat)
        imports[f"{mod}-blocked"] = interpreter_runs(f"{block}import {mod}", args.repeat)
    (args.work / "last_run.json").write_text(json.dumps(
        {"made": made, "batches": batches, "reruns": reruns, "clusters": clusters,
         "check": check, "papermill": pm, "io": io, "html": html, "imports": imports,
         "blocked": blocked, "ab": ab, "cut": cut, "loads": loads}, indent=1))
    report(args, made, batches, reruns, clusters, check, pm, io, html, imports, loads, t_all,
           blocked, ab, cut)


if __name__ == "__main__":
    main()
