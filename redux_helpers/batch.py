"""Many targets at once, on Dask: one target's chain is one task; failures stay apart.

``redux batch`` gives each target's chain (`runner.run_target`, with its incremental
reruns) to a Dask cluster as one task: a local cluster of worker processes started for
the batch, or an existing one given by its scheduler's address (a cluster on an HPC
system started with ``dask-jobqueue``, or ``dask scheduler`` and ``dask worker`` by
hand). Dask is the engine astronomers already run on such systems; a task here is
coarse (minutes), so what it brings is placement, isolation of failures and the same
command on a laptop and a cluster, not fine-grained scheduling.

* A target's failure is caught inside its task and comes back as its summary (the
  failing step and the message), so it never stops the others. A worker that dies
  (killed, out of memory) fails its target at once, reported the same way: the task
  has ``retries=0`` and the local cluster's scheduler ``allowed-failures: 0``, so Dask
  does not run it again elsewhere unseen (an existing scheduler keeps its own setting;
  ``distributed.scheduler.allowed-failures: 0`` in its Dask config does the same). The
  notebook kernel of a dead worker dies with it (see `redux_helpers.runner`).
* Progress: each task puts (target, step, state, seconds) on a Dask ``Queue``; the
  command prints them as they come.
* Steps whose fingerprint is unchanged are skipped (`redux_helpers.fingerprint`):
  a second run does nothing and says so; a changed parameter re-runs only the steps
  downstream of it; ``force`` runs everything.
* The workers must see the same files (products, raw data, notebooks) and have redux
  installed: true of a laptop and of a cluster on a shared file system.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from .errors import ReduxError
from .manifest import load_target, target_names

log = logging.getLogger(__name__)

QUEUE = "redux-progress"


@dataclass
class TargetSummary:
    """What a batch did with one target."""

    target: str
    ran: list = field(default_factory=list)        # steps run
    skipped: list = field(default_factory=list)    # steps up to date
    failed: str = ""                               # the step that failed, if any
    reason: str = ""
    seconds: float = 0.0
    worker: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed


def read_params_file(path) -> tuple[dict, dict]:
    """A YAML file of batch parameters: ``{name: value}`` for every target, and
    ``targets: {target: {name: value}}`` for some. Returns (common, per_target)."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        msg = f"{path}: can't read the parameters file ({exc})"
        raise ReduxError(msg) from None
    if not isinstance(doc, dict):
        msg = f"{path}: a parameters file is a mapping name: value (and targets: {{...}})"
        raise ReduxError(msg)
    per = doc.pop("targets", None) or {}
    if not isinstance(per, dict) or not all(isinstance(v, dict) for v in per.values()):
        msg = f"{path}: 'targets:' maps a target name to its parameters {{name: value}}"
        raise ReduxError(msg)
    return doc, per


def _run_one(name, manifest, products, params, only, start, force, html):
    """One target's chain, on a worker: never raises, returns a `TargetSummary` dict."""
    import socket

    from distributed import Queue, get_worker

    from .runner import run_target

    try:
        queue = Queue(QUEUE)
    except Exception:          # noqa: BLE001 - progress is a nicety; the run is what counts
        queue = None
    summary = TargetSummary(name)
    try:
        summary.worker = get_worker().address
    except ValueError:
        summary.worker = socket.gethostname()
    current = {}

    def on_step(step, state, seconds):
        current["step"] = step
        (summary.skipped if state == "skipped" else summary.ran if state == "done"
         else []).append(step)
        if queue is not None:
            try:
                queue.put((name, step, state,
                           seconds if state == "note" else round(seconds, 1)))
            except Exception:  # noqa: BLE001
                pass

    t0 = time.perf_counter()
    try:
        run_target(name, manifest=manifest, products=products, params=params, only=only,
                   start=start, html=html, on_step=on_step, skip_current=not force)
    except ReduxError as exc:
        summary.failed = current.get("step", "setup")
        summary.reason = " ".join(line.strip() for line in str(exc).splitlines())
    except Exception as exc:   # noqa: BLE001 - one target's bug must not stop the batch
        summary.failed = current.get("step", "setup")
        summary.reason = f"{type(exc).__name__}: {exc}"
    summary.seconds = time.perf_counter() - t0
    return asdict(summary)


def choose_targets(manifest, names=(), *, all_targets=False) -> list[str]:
    """The targets of a batch, checked against the manifest before anything starts."""
    known = target_names(manifest)
    if all_targets:
        if names:
            msg = "give target names or --all, not both"
            raise ReduxError(msg)
        return list(known)
    if not names:
        msg = "name the targets to run (or --all for every target of the manifest)"
        raise ReduxError(msg)
    for n in names:
        load_target(n, manifest)       # unknown name, missing folder: refused now
    return list(dict.fromkeys(names))


def run_batch(names, *, manifest, products="products", workers=2, scheduler=None,
              force=False, params=None, per_target=None, only=None, start=None, html=True,
              on_event=None) -> list[TargetSummary]:
    """Run each target's chain as one Dask task; return one summary per target.

    Parameters
    ----------
    names : list of str
        The targets (checked with `choose_targets` first).
    workers : int
        Worker processes of the local cluster (ignored with ``scheduler``).
    scheduler : str, optional
        Address of an existing Dask scheduler (``tcp://host:8786``).
    force : bool
        Run every step, up to date or not.
    params, per_target : dict
        Notebook parameters for every target, and per target (these win).
    on_event : callable, optional
        Called with (target, step, state, seconds) as progress arrives, and with
        (target, None, 'finished', summary) when a target is done.
    """
    from distributed import Client, LocalCluster, Queue

    from .runner import available_steps, check_parameters, declared_parameters

    manifest = str(Path(manifest).resolve())
    products = str(Path(products).resolve())
    per_target = per_target or {}
    unknown = set(per_target) - set(names)
    if unknown:
        msg = f"parameters given for targets not in this batch: {', '.join(sorted(unknown))}"
        raise ReduxError(msg)
    declared = {s: declared_parameters(s) for s in available_steps()}
    merged = {}
    for n in names:
        t = load_target(n, manifest)
        merged[n] = {**(params or {}), **per_target.get(n, {})}
        check_parameters({**(t.get("params") or {}), **merged[n]}, declared)
    # a closing cluster logs its connections' ends as errors: not news for a user
    for name in ("distributed", "tornado"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            msg = f"no Dask scheduler answers at {scheduler} ({exc}); start one, or leave --scheduler out"
            raise ReduxError(msg) from None
    else:
        # allowed_failures=0: a task whose worker died is failed at once, not run again
        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=logging.ERROR,
                               scheduler_kwargs={"allowed_failures": 0})
        client = Client(cluster)
    try:
        queue = Queue(QUEUE, client=client)
        futures = {client.submit(_run_one, n, manifest, products, merged[n], only, start, force,
                                 html, key=f"redux-{n}-{time.time_ns()}", pure=False,
                                 retries=0): n
                   for n in names}
        summaries = {}
        remaining = dict(futures)
        while remaining:
            _drain(queue, on_event)
            finished = [f for f in remaining if f.done()]
            if not finished:
                time.sleep(0.3)
                continue
            for fut in finished:
                name = remaining.pop(fut)
                try:
                    s = TargetSummary(**fut.result())
                except Exception as exc:   # noqa: BLE001 - a worker died, the task was lost
                    s = TargetSummary(name, failed="worker", reason=_lost(exc))
                summaries[name] = s
                _drain(queue, on_event)
                if on_event:
                    on_event(name, None, "finished", s)
        return [summaries[n] for n in names]
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _lost(exc) -> str:
    """Why a target's task came back without a summary, in one sentence."""
    if type(exc).__name__ == "KilledWorker":
        return ("the worker process running it died (killed, or out of memory); it was not "
                "run again: run the batch again to redo it (finished steps are kept)")
    return f"{type(exc).__name__}: {exc}"


def _drain(queue, on_event):
    """Pass on every progress message waiting in the queue (without waiting)."""
    try:
        items = queue.get(batch=True)
    except Exception:   # noqa: BLE001 - the scheduler is gone: nothing more will come
        return
    for item in items:
        if on_event:
            on_event(*item)


def summary_table(summaries) -> str:
    """The batch's end: one line per target (steps run, skipped, failed, time, reason)."""
    rows = [("target", "status", "run", "up to date", "time", "reason")]
    for s in summaries:
        # the reason without its step (in the status) or folders (the file's name stays)
        reason = re.sub(r"(?:/[^\s/:;,()']+)+/", "", s.reason.removeprefix(f"{s.failed}: "))
        reason = reason if len(reason) <= 150 else reason[:149] + "…"
        rows.append((s.target, "ok" if s.ok else f"FAILED ({s.failed})", str(len(s.ran)),
                     str(len(s.skipped)), f"{s.seconds:.0f} s", reason))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)
