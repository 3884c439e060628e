"""``redux batch`` on a real Dask cluster: isolated failures, incremental reruns, kills.

A Dask scheduler and two workers are started as separate processes on loopback, as a
survey team's cluster would be (there, by ``dask-jobqueue`` or by hand). The batch is
three small demo galaxies, one with a truncated frame, run through steps 00-01 (the
chain's mechanics are the same for every step; the science of each step is tested
elsewhere). Then: a second run does nothing; a changed parameter re-runs only its step;
the same batch on a local cluster; a run killed mid-step, then completed.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from redux_helpers import batch, cli, fingerprint
from tests.conftest import REPO, write_manifest

pytestmark = pytest.mark.notebooks

STEPS = "00,01"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def galaxies(tmp_path_factory):
    """A manifest of three 256 x 256 demo galaxies (seeds 2, 3; 4 with a truncated frame)."""
    work = tmp_path_factory.mktemp("batch")
    targets = {}
    for name, seed, broken in (("gal_a", 2, False), ("gal_b", 3, False), ("gal_c", 4, True)):
        demo = {"size": 256, "seed": seed, **({"broken": True} if broken else {})}
        targets[name] = {"raw_dir": str(work / name / "raw"), "demo": demo,
                         "standards": str(work / name / "standards.ecsv")}
    return work, write_manifest(work / "m.yaml", targets)


@pytest.fixture(scope="module")
def cluster(galaxies):
    """``dask scheduler`` and two ``dask worker`` processes on loopback."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                               "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    for _ in range(2):
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker",
                                       address, "--nthreads", "1", "--nworkers", "1",
                                       "--no-dashboard"],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    from distributed import Client

    with Client(address, timeout="30s") as c:
        c.wait_for_workers(2, timeout=60)
    yield address
    for p in procs[::-1]:
        p.terminate()
    for p in procs:
        p.wait(timeout=30)


def _batch(capsys, *args):
    status = cli.main(["batch", *args])
    out = capsys.readouterr()
    return status, out.out, out.err


def _mtimes(folder: Path):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_batch_on_a_cluster_isolates_failures_and_reruns_only_what_changed(galaxies, cluster,
                                                                           capsys):
    work, manifest = galaxies
    products = work / "products"
    args = ["gal_a", "gal_b", "gal_c", "--manifest", str(manifest), "--products",
            str(products), "--scheduler", cluster, "--only", STEPS, "--no-html"]
    status, out, err = _batch(capsys, *args)
    assert status == 1 and "1 of 3 target(s) failed: gal_c" in err
    # the failure, with its reason, in the summary; the two good galaxies complete
    row = next(line for line in out.splitlines() if line.startswith("gal_c "))
    assert "FAILED (00_inspect)" in row and "ngc_demo_R_004.fits" in row and "truncated" in row
    for name in ("gal_a", "gal_b"):
        assert (products / name / "01_superbias" / "superbias.fits").is_file()
        for step in ("00_inspect", "01_superbias"):
            assert fingerprint.read_record(products / name, step)["fingerprint"]
    assert not (products / "gal_c" / "01_superbias").exists()
    # the batch used both workers of the cluster
    workers = {line.rsplit(" on ", 1)[1] for line in out.splitlines()
               if line.startswith("[gal_") and " on tcp://" in line}
    assert len(workers) == 2
    index = (products / "index.html").read_text()
    assert "gal_a" in index and "FAILED at 00_inspect" in index

    # a second run: nothing to do for the good ones, and it says so; no file touched
    before = _mtimes(products / "gal_a") | _mtimes(products / "gal_b")
    status, out, _ = _batch(capsys, *args)
    assert status == 1
    for name in ("gal_a", "gal_b"):
        line = next(x for x in out.splitlines() if x.startswith(f"{name} "))
        assert line.split()[1:4] == ["ok", "0", "2"]
    assert (_mtimes(products / "gal_a") | _mtimes(products / "gal_b")) == before

    # one parameter of 01 changed for gal_a only (gal_c left out): 01 of gal_a runs, nothing else
    params = work / "params.yaml"
    params.write_text(yaml_dump({"targets": {"gal_a": {"sigma": 2.5}}}))
    status, out, _ = _batch(capsys, *args[:2], *args[3:], "--params", str(params))
    assert status == 0
    rows = {x.split()[0]: x.split()[1:4] for x in out.splitlines() if x.startswith("gal_")}
    assert rows == {"gal_a": ["ok", "1", "1"], "gal_b": ["ok", "0", "2"]}
    assert "[gal_a] 01_superbias done" in out and "[gal_a] 00_inspect done" not in out
    assert "[gal_b] 0" not in out


def yaml_dump(doc):
    import yaml

    return yaml.safe_dump(doc)


def test_the_same_batch_on_a_local_cluster(galaxies, capsys):
    work, manifest = galaxies
    products = work / "local"
    status, out, err = _batch(capsys, "gal_a", "gal_b", "--manifest", str(manifest),
                              "--products", str(products), "--workers", "2", "--only", "00",
                              "--no-html")
    assert status == 0, err
    assert "a local cluster of 2 worker process(es)" in out
    for name in ("gal_a", "gal_b"):
        assert (products / name / "00_inspect" / "inventory.ecsv").is_file()
    # `redux run --changed` reads the same records: nothing to do
    assert cli.main(["run", "gal_a", "--manifest", str(manifest), "--products", str(products),
                     "--only", "00", "--changed", "--no-html"]) == 0
    out = capsys.readouterr().out
    assert "00_inspect up to date" in out and "ran 0 step(s)" in out


def test_unknown_target_and_parameter_are_refused_before_anything_runs(galaxies, capsys):
    work, manifest = galaxies
    status, _, err = _batch(capsys, "gal_a", "gal_z", "--manifest", str(manifest),
                            "--products", str(work / "x"))
    assert status == 2 and "gal_z" in err and not (work / "x").exists()
    params = work / "bad.yaml"
    params.write_text("sigam: 2.5\n")
    status, _, err = _batch(capsys, "gal_a", "--manifest", str(manifest), "--products",
                            str(work / "x"), "--params", str(params))
    assert status == 2 and "unknown notebook parameter 'sigam'" in err


def test_a_killed_run_leaves_no_half_product_and_the_next_completes_it(galaxies, tmp_path):
    """Kill ``redux run`` while 01 runs; the next batch skips 00 and does 01 again."""
    work, manifest = galaxies
    products = tmp_path / "products"
    cmd = [sys.executable, "-m", "redux_helpers.cli", "run", "gal_b", "--manifest",
           str(manifest), "--products", str(products), "--only", "00,01", "--no-html"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    root = products / "gal_b"
    for line in p.stdout:                        # the runner says "01_superbias ..." as it starts
        if line.strip().startswith("01_superbias ..."):
            break
    assert p.poll() is None, "the run ended before 01 started"
    time.sleep(0.8)                              # into 01 (its cells take 2 s or more)
    import psutil

    family = [p.pid, *(c.pid for c in psutil.Process(p.pid).children(recursive=True))]
    for pid in family:                           # the run and its notebook kernel, at once
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    p.wait()
    assert not fingerprint.record_path(root, "01_superbias").exists()
    assert not (root / "01_superbias" / "superbias.fits").exists() or \
        fingerprint.read_record(root, "01_superbias") is None
    summaries = batch.run_batch(["gal_b"], manifest=manifest, products=products, workers=1,
                                only="00,01", html=False)
    s = summaries[0]
    assert s.ok and s.skipped == ["00_inspect"] and s.ran == ["01_superbias"]
    assert not list(root.rglob(".*.tmp*")) and not list(root.rglob(".*.running.ipynb"))
    assert fingerprint.is_current(root, "01_superbias",
                                  fingerprint.read_record(root, "01_superbias")["fingerprint"])
