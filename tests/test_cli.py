"""The `redux` command on bad input: one clear message, exit status 2, no traceback."""

import subprocess
import sys

import pytest

from tests.conftest import REPO, write_manifest


def redux(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "redux_helpers.cli", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_manifest_with_unknown_key(tmp_path):
    (tmp_path / "raw").mkdir()
    m = write_manifest(tmp_path / "m.yaml", {"night": {"raw_dir": "raw", "gian": 1.5}})
    r = redux("run", "night", "--manifest", str(m), "--products", str(tmp_path / "p"))
    assert r.returncode == 2
    assert "unknown key 'targets.night.gian' (did you mean 'gain'?)" in r.stderr
    assert str(m) in r.stderr and "Traceback" not in r.stderr


def test_manifest_with_missing_folder(tmp_path):
    m = write_manifest(tmp_path / "m.yaml", {"night": {"raw_dir": "no/such/folder"}})
    r = redux("run", "night", "--manifest", str(m))
    assert r.returncode == 2 and "no/such/folder, which does not exist" in r.stderr
    assert "Traceback" not in r.stderr


def test_unknown_notebook_parameter_is_refused_before_running(tmp_path):
    (tmp_path / "raw").mkdir()
    m = write_manifest(tmp_path / "m.yaml", {"night": {"raw_dir": "raw"}})
    r = redux("run", "night", "--manifest", str(m), "--products", str(tmp_path / "p"),
              "-p", "sigam=2.5")
    assert r.returncode == 2
    assert "unknown notebook parameter 'sigam' (did you mean 'sigma'?)" in r.stderr
    assert not (tmp_path / "p" / "night" / "notebooks" / "00_inspect.ipynb").exists()
    r = redux("run", "night", "--manifest", str(m), "-p", "sigma=high")
    assert r.returncode == 2 and "parameter 'sigma' should be float" in r.stderr


def test_bad_step_selection_and_unknown_target(tmp_path):
    (tmp_path / "raw").mkdir()
    m = write_manifest(tmp_path / "m.yaml", {"night": {"raw_dir": "raw"}})
    r = redux("run", "night", "--manifest", str(m), "--only", "00,42")
    assert r.returncode == 2 and "no step numbered 42" in r.stderr
    r = redux("run", "nite", "--manifest", str(m))
    assert r.returncode == 2 and "did you mean 'night'" in r.stderr


def test_targets_lists_the_repository_manifest():
    """`redux targets` lists every target of the manifest, in its order, and only those."""
    from redux_helpers.manifest import read_manifest

    r = redux("targets", cwd=REPO)
    assert r.returncode == 0
    names = [line.split()[0] for line in r.stdout.splitlines() if line.strip()]
    assert names == list(read_manifest(REPO / "data_manifest.yaml")["targets"])


def test_a_target_without_raw_frames_cannot_run_the_raw_steps(tmp_path):
    """A target of reduced images only (stacks:) starts at 08; asking for 00 is refused."""
    img = tmp_path / "r.fits"
    img.write_bytes(b"")
    m = write_manifest(tmp_path / "m.yaml", {"coadds": {"stacks": {"R": "r.fits"}}})
    r = redux("run", "coadds", "--manifest", str(m), "--products", str(tmp_path / "p"),
              "--only", "00,08")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "has no raw_dir: 00_inspect needs raw frames; run from 08 on" in r.stderr
    assert not (tmp_path / "p" / "coadds" / "notebooks").exists()


def test_a_long_step_says_how_far_it_has_got(tmp_path, capsys):
    """While a notebook runs, the terminal hears from it: time so far, files written."""
    import time

    from redux_helpers.cli import _Heartbeat

    folder = tmp_path / "03_cosmics"
    folder.mkdir()
    beat = _Heartbeat(every=0.2)
    beat.start("03_cosmics", folder)
    for name in ("a_crmask.fits", "b_crmask.fits"):
        (folder / name).write_bytes(b"x")
    time.sleep(0.5)
    beat.stop()
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "so far" in ln]
    assert lines and lines[-1].strip().startswith("03_cosmics:")
    assert lines[-1].endswith("2 file(s) written")
    time.sleep(0.3)
    assert "so far" not in capsys.readouterr().out            # stopped means silent


def test_the_runner_skips_rfc3987s_grammar():
    """papermill's jsonschema would compile rfc3987_syntax's grammar (1 s, 23 MB) per run."""
    code = ("import sys, redux_helpers.runner, papermill, jsonschema; "
            "print(sys.modules.get('rfc3987_syntax', 'absent'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, cwd=REPO)
    assert r.returncode == 0 and r.stdout.strip() in ("None", "absent"), r.stdout + r.stderr


@pytest.mark.notebooks
def test_the_redux_command_never_imports_astropy(rotated_demo, tmp_path):
    """A run of 00 on a night whose flats saturate: the command prints 00's problems
    (read in the kernel) and its own process imports neither astropy nor scipy (35-40 MB
    and 0.4 s of every run and batch worker)."""
    import shutil

    from astropy.io import fits

    root, _ = rotated_demo
    raw = tmp_path / "raw"
    shutil.copytree(root / "raw", raw)
    for p in sorted(raw.glob("*flat*R*"))[:1]:        # one R flat saturated: a warning
        with fits.open(p, mode="update") as h:
            h[0].data[:] = 65535
    m = write_manifest(tmp_path / "m.yaml", {"night": {"raw_dir": str(raw)}})
    code = ("import sys\n"
            "from redux_helpers import cli\n"
            f"rc = cli.main(['run', 'night', '--manifest', {str(m)!r}, '--products', "
            f"{str(tmp_path / 'out')!r}, '--only', '00', '--no-html'])\n"
            "print('RC', rc, sorted({n.split('.')[0] for n in sys.modules} & {'astropy', 'scipy'}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, cwd=REPO)
    assert "RC 0 []" in r.stdout, r.stdout + r.stderr
    assert "saturat" in r.stdout.lower(), r.stdout
