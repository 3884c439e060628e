"""The runner's one kernel: each notebook starts clean, through one client, its garbage gone."""

import json

import nbformat
import pytest

from redux_helpers import runner


def _notebook(path, *cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                 "display_name": "Python 3"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)
    return path


def _outputs(path):
    nb = json.loads(path.read_text())
    return ["".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", [])]


@pytest.mark.notebooks
def test_notebooks_in_one_kernel_start_clean_and_their_garbage_is_collected(tmp_path):
    """Notebook A leaves a variable, a figure and a cycle of objects (watched by a weak
    reference kept in a module); B, run next in the same kernel through the same client,
    finds no variable, no figure, the cycle collected (the reset's collection runs before
    what survives is frozen), and the fingerprint the runner put in its environment."""
    import papermill

    a = _notebook(tmp_path / "a.ipynb",
                  "import sys, types, weakref\n"
                  "import matplotlib\n"
                  "matplotlib.use('agg')\n"
                  "import matplotlib.pyplot as plt\n"
                  "fig = plt.figure()\n"
                  "class Node: pass\n"
                  "n = Node(); n.me = n                      # a cycle: refcounts never free it\n"
                  "probe = types.ModuleType('redux_probe')\n"
                  "probe.ref = weakref.ref(n)\n"
                  "sys.modules['redux_probe'] = probe\n"
                  "left_over = 42")
    b = _notebook(tmp_path / "b.ipynb",
                  "import gc, os, sys\n"
                  "import matplotlib.pyplot as plt\n"
                  "print('left_over' in globals(), len(plt.get_fignums()),\n"
                  "      sys.modules['redux_probe'].ref() is None, gc.get_freeze_count() > 0,\n"
                  "      os.environ['REDUX_FINGERPRINT'])")
    with runner._Kernel(tmp_path) as kernel:
        clients = set()
        for path, fp in ((a, "a:1"), (b, "b:2")):
            kernel.fresh({runner.FINGERPRINT_ENV: fp})
            papermill.execute_notebook(str(path), str(path.with_suffix(".out.ipynb")),
                                       progress_bar=False, kernel_name="python3",
                                       km=kernel.km, request_save_on_cell_execute=False)
            clients.add(id(kernel.km.client()))
    assert runner.FINGERPRINT_ENV == "REDUX_FINGERPRINT"
    assert _outputs(b.with_suffix(".out.ipynb")) == ["False 0 True True b:2\n"]
    assert len(clients) == 1


def test_pages_are_written_by_the_runs_end_and_a_failed_one_stops_it(tmp_path, monkeypatch):
    """The HTML pages render in a thread while the next step runs; all are there when the
    run ends; a page that fails stops the run at the next step (or at the end); a full
    disk is named as such."""
    import errno
    import threading
    import time

    from redux_helpers.errors import ReduxError

    gate = threading.Event()

    def render(nb):
        gate.wait(5)
        if "broken" in nb.name:
            raise ReduxError(f"{nb}: its HTML page could not be made")
        if "full" in nb.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        nb.with_suffix(".html").write_text("page")

    monkeypatch.setattr(runner.notebook_html, "write_html", render)
    with runner._Pages(tmp_path, enabled=True) as pages:
        pages.render("00_inspect", tmp_path / "00_inspect.ipynb")
        pages.check()                    # still rendering: the next step may start
        assert not (tmp_path / "00_inspect.html").exists()
        gate.set()
    assert (tmp_path / "00_inspect.html").read_text() == "page"

    gate.clear()
    with pytest.raises(ReduxError, match="could not be made"):
        with runner._Pages(tmp_path, enabled=True) as pages:
            pages.render("01_superbias", tmp_path / "broken.ipynb")
            gate.set()
            time.sleep(0.3)
            pages.check()                # the next step's start: the run stops here
            raise AssertionError("the failed page did not stop the run")
    with pytest.raises(ReduxError, match="space"):
        with runner._Pages(tmp_path, enabled=True) as pages:
            pages.render("02_superflat", tmp_path / "full.ipynb")
    with runner._Pages(tmp_path, enabled=False) as pages:   # --no-html: nothing rendered
        pages.render("03_cosmics", tmp_path / "03_cosmics.ipynb")
    assert not (tmp_path / "03_cosmics.html").exists()
