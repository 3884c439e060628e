"""The ``redux`` command.

::

    redux run TARGET [--manifest FILE] [--products DIR] [--only 00,01] [--from 03] [-p NAME=VALUE]
              [--changed]
    redux batch [TARGET ...] [--all] [--workers N] [--scheduler ADDRESS] [--force]
                [--params FILE] [-p NAME=VALUE] [--only ...] [--from ...]
    redux demo [--size N] [--seed S] [--root DIR]
    redux targets [--manifest FILE]

A problem with the input ends the command with one message naming the file or key
and what to do, and exit status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .errors import ReduxError
from .products import path as product_path

log = logging.getLogger("redux")


def default_manifest() -> str:
    """``./data_manifest.yaml`` if there is one, else the repository's."""
    here = Path("data_manifest.yaml")
    if here.is_file():
        return str(here)
    return str(Path(__file__).resolve().parent.parent / "data_manifest.yaml")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="redux", description="Reduce a night of CCD frames "
                                "with the redux notebook chain.")
    p.add_argument("--version", action="version", version=f"redux {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the notebook chain for one target")
    run.add_argument("target", help="a target in the manifest (e.g. demo)")
    run.add_argument("--manifest", default=None, help="manifest file (default: "
                     "./data_manifest.yaml, else the repository's)")
    run.add_argument("--products", default="products", help="products folder "
                     "(default: ./products); this target's go to PRODUCTS/TARGET/")
    group = run.add_mutually_exclusive_group()
    group.add_argument("--only", help="run only these steps, e.g. 00,01")
    group.add_argument("--from", dest="start", help="run from this step on, e.g. 03")
    run.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                     help="a notebook parameter (repeatable), e.g. -p sigma=2.5")
    run.add_argument("--no-html", action="store_true", help="don't render notebooks to HTML")
    run.add_argument("--changed", action="store_true", help="skip the steps that are up to "
                     "date (inputs, parameters, notebook and package unchanged)")

    batch = sub.add_parser("batch", help="run many targets at once on Dask, rerunning only "
                           "what changed")
    batch.add_argument("targets", nargs="*", help="targets in the manifest")
    batch.add_argument("--all", action="store_true", help="every target of the manifest")
    batch.add_argument("--workers", type=int, default=2, help="worker processes of the local "
                       "cluster (default 2; one target runs on one worker)")
    batch.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786 (then "
                       "--workers is the cluster's business)")
    batch.add_argument("--force", action="store_true", help="run every step, even up to date")
    batch.add_argument("--params", default=None, metavar="FILE", help="YAML of notebook "
                       "parameters: name: value for all, targets: {name: {...}} for some")
    for a in ("--manifest", "--products", "--only", "--from", "-p", "--no-html"):
        _copy_option(run, batch, a)

    demo = sub.add_parser("demo", help="make the synthetic demo night")
    demo.add_argument("--size", type=int, default=1024, help="image size in pixels")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--root", default=None, help="folder (default: demo_data/demo)")

    tg = sub.add_parser("targets", help="list the targets of a manifest")
    tg.add_argument("--manifest", default=None)
    return p


def _copy_option(src, dst, flag):
    """Give ``dst`` the option ``flag`` of ``src`` (same name, help and default)."""
    for action in src._actions:
        if flag in action.option_strings:
            kwargs = {"dest": action.dest, "default": action.default, "help": action.help}
            if action.nargs == 0:
                kwargs["action"] = "store_true"
            elif isinstance(action.default, list):
                kwargs["action"] = "append"
                kwargs["metavar"] = action.metavar
            dst.add_argument(*action.option_strings, **kwargs)
            return
    raise ValueError(flag)


def _batch(args) -> int:
    from . import batch, report
    from .runner import parse_param

    if args.scheduler is None and args.workers < 1:
        msg = f"--workers {args.workers}: a local cluster needs at least 1 worker process"
        raise ReduxError(msg)
    manifest = args.manifest or default_manifest()
    names = batch.choose_targets(manifest, args.targets, all_targets=args.all)
    common, per = batch.read_params_file(args.params) if args.params else ({}, {})
    common.update(dict(parse_param(t) for t in args.param))
    where = f"the scheduler at {args.scheduler}" if args.scheduler else \
        f"a local cluster of {args.workers} worker process(es)"
    print(f"redux {__version__}: batch of {len(names)} target(s) from {manifest} on {where}",
          flush=True)

    def event(target, step, state, info):
        if state == "finished":
            s = info
            what = (f"FAILED at {s.failed}: {s.reason}" if s.failed else
                    f"done: {len(s.ran)} step(s) run, {len(s.skipped)} up to date")
            print(f"[{target}] {what} ({s.seconds:.0f} s) on {s.worker}", flush=True)
        elif state == "done":
            print(f"[{target}] {step} done in {info:.1f} s", flush=True)
        elif state == "start":
            print(f"[{target}] {step} ...", flush=True)
        elif state == "note":
            print(f"[{target}]     {info}", flush=True)

    summaries = batch.run_batch(names, manifest=manifest, products=args.products,
                                workers=args.workers, scheduler=args.scheduler,
                                force=args.force, params=common, per_target=per,
                                only=args.only, start=args.start, html=not args.no_html,
                                on_event=event)
    index = report.write_index(Path(args.products).resolve(), summaries)
    print()
    print(batch.summary_table(summaries))
    if not any(s.ran for s in summaries) and all(s.ok for s in summaries):
        print("everything was up to date: nothing was run (--force runs it again)")
    print(f"index of the reports: {index}")
    failed = [s.target for s in summaries if not s.ok]
    if failed:
        print(f"redux: error: {len(failed)} of {len(summaries)} target(s) failed: "
              f"{', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _run(args) -> int:
    from .runner import parse_param, run_target

    params = dict(parse_param(t) for t in args.param)
    out = Path(args.products).resolve() / args.target
    beat = _Heartbeat()

    def report(step, state, info):
        if state == "start":
            print(f"  {step} ...", flush=True)
            beat.start(step, out / step)
            return
        beat.stop()
        if state == "skipped":
            print(f"  {step} up to date", flush=True)
        elif state == "note":
            print(f"      {info}", flush=True)
        else:
            print(f"  {step} done in {info:.1f} s", flush=True)

    manifest = args.manifest or default_manifest()
    print(f"redux {__version__}: target '{args.target}' from {manifest}", flush=True)
    try:
        results = run_target(args.target, manifest=manifest, products=args.products,
                             only=args.only, start=args.start, params=params,
                             html=not args.no_html, on_step=report, skip_current=args.changed)
    finally:
        beat.stop()
    ran = [r for r in results if not r.skipped]
    total = sum(r.seconds for r in ran)
    print(f"ran {len(ran)} step(s) in {total:.1f} s"
          + (f" ({len(results) - len(ran)} up to date)" if len(ran) < len(results) else "")
          + f"; products in {out}, executed notebooks in {out / 'notebooks'}")
    qa_report = product_path(lambda step: out / step, "report")
    if any(r.step == "11_qa" for r in results) and qa_report.is_file():
        print(f"open the QA report first: {qa_report}")
    return 0


class _Heartbeat:
    """While a step runs, a line every ``every`` seconds: how long, how many files so far.

    A notebook run by papermill prints nothing to the terminal until it ends, and 03 on
    a large night takes minutes; the step's folder filling up is the progress a user
    can see from outside.
    """

    def __init__(self, every=30.0):
        self.every, self._stop, self._thread = every, None, None

    def start(self, step, folder):
        import threading
        import time

        self.stop()
        stop, t0 = threading.Event(), time.perf_counter()

        def beat():
            while not stop.wait(self.every):
                n = sum(1 for p in folder.glob("*") if p.is_file()) if folder.is_dir() else 0
                print(f"      {step}: {time.perf_counter() - t0:.0f} s so far, "
                      f"{n} file(s) written", flush=True)

        self._stop, self._thread = stop, threading.Thread(target=beat, daemon=True)
        self._thread.start()

    def stop(self):
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
            self._stop = self._thread = None


def _demo(args) -> int:
    from . import demo

    if not 64 <= args.size <= 8192:
        msg = f"--size {args.size}: a demo night is 64 to 8192 pixels on a side"
        raise ReduxError(msg)

    root = Path(args.root) if args.root else demo.default_root()
    demo.ensure_demo(root, demo.DemoConfig(size=args.size, seed=args.seed))
    print(f"demo night in {root / 'raw'}, truth in {root / 'truth'}")
    return 0


def _targets(args) -> int:
    from .manifest import load_target, target_names

    manifest = args.manifest or default_manifest()
    for name in target_names(manifest):
        t = load_target(name, manifest, check_paths=False)
        print(f"{name:16s} {t.get('description', '')}")
    return 0


def main(argv=None) -> int:
    """Entry point of the ``redux`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="redux: %(message)s")
    try:
        return {"run": _run, "batch": _batch, "demo": _demo,
                "targets": _targets}[args.command](args)
    except ReduxError as exc:
        print(f"redux: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("redux: interrupted; finished products are kept, none is half-written",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
