"""What both benchmark scripts print about the code and the machine they measured."""

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def version_line(loads):
    """Which redux_helpers was measured, and how busy the machine was."""
    git = ["git", "-C", str(HERE.parent)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "-uno", "redux_helpers"],
                           capture_output=True, text=True).stdout.strip()
    return (f"redux_helpers at {head.stdout.strip() or '?'}{' + uncommitted' if dirty else ''}; "
            f"1-min load average before the runs {min(loads):.1f}-{max(loads):.1f}, "
            f"{os.cpu_count()} CPUs")


def interleaved(names, repeat, run, *, label="", loads=None):
    """Run each of ``names`` ``repeat`` times, interleaved (a busy spell hits all alike).

    ``run(name)`` returns a dict with wall, cpu and rss_mb; kept per name are the least
    wall and CPU time and the largest memory. The load average before each run is
    appended to ``loads``.
    """
    runs = {v: [] for v in names}
    for _ in range(repeat):
        for v in names:
            load = os.getloadavg()[0]
            if loads is not None:
                loads.append(load)
            runs[v].append(run(v))
            print(f"# {label}{v}: {runs[v][-1]}, load before {load:.2f}", file=sys.stderr)
    return {v: dict(rs[0], wall=min(r["wall"] for r in rs), cpu=min(r["cpu"] for r in rs),
                    rss_mb=max(r["rss_mb"] for r in rs)) for v, rs in runs.items()}


def run_child(script, what, *args, echo_stderr=False):
    """Run ``script --child what *args`` in a fresh process; return the JSON of its last line.

    A fresh process per measured run: its time and peak memory are its own (Linux
    carries a parent's RSS high-water mark into a forked child, not into a new one).
    """
    cmd = [sys.executable, str(Path(script).resolve()), "--child", what, *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"{what} failed:\n{p.stderr}")
    if echo_stderr and p.stderr.strip():
        print(p.stderr.strip(), file=sys.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])
