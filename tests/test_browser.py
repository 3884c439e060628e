"""The interactive charts open in a real browser: headless Chromium renders what 09 writes.

Debian's ``chromium`` package is installed by ``.ci/run``, not by the tests; where it is
absent these tests are skipped, saying so. Chromium loads each standalone HTML file
(plotly.js inside, no network), runs its scripts, and dumps the DOM it built: the 2-D
chart must have drawn one SVG point per region, the 3-D chart a WebGL canvas.
"""

import re
import shutil
import subprocess

import numpy as np
import pytest

from redux_helpers import demo, fitsio, hii

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="Debian's chromium is not installed (.ci/run installs it)")


def _dom(path):
    """The page's DOM after its scripts ran (headless, software WebGL)."""
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                        "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                        "--virtual-time-budget=8000", "--dump-dom", path.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@pytest.fixture(scope="module")
def charts(tmp_path_factory):
    """Bubble charts of 6 synthetic HII regions, as 09 writes them."""
    rng = np.random.default_rng(5)
    shape, noise = (200, 200), 0.02
    image = np.zeros(shape)
    xs, ys = [40.3, 80.7, 120.2, 160.9, 60.4, 140.6], [50.2, 150.8, 60.1, 140.4, 100.3, 100.7]
    demo.gauss_stamps(image, xs, ys, [40, 80, 120, 160, 60, 100], 2.0)
    image += rng.normal(0, noise, shape)
    _, regions = hii.find_regions(image, np.full(shape, noise))
    wcs = demo.make_wcs(demo.GALAXY["ra"], demo.GALAXY["dec"], (100.5, 100.5))
    cat = hii.catalogue(regions, wcs=wcs, galaxy=demo.GALAXY,
                        flux_per_rate=demo.HALPHA_CGS_PER_RATE)
    out = tmp_path_factory.mktemp("charts")
    for fig, name in zip(hii.bubble_charts(cat, title="test"), ("bubbles_2d.html", "bubbles_3d.html"),
                         strict=True):
        fitsio.write_html_figure(fig, out / name)
    return cat, out


def test_the_2d_chart_draws_one_point_per_region(charts):
    cat, out = charts
    assert len(cat) == 6
    dom = _dom(out / "bubbles_2d.html")
    assert 'class="main-svg"' in dom                   # plotly drew its figure
    assert len(re.findall(r'class="point"', dom)) == len(cat)
    assert "colorbar" in dom                           # colour = galactocentric radius


def test_the_3d_chart_draws_a_webgl_scene(charts):
    _, out = charts
    dom = _dom(out / "bubbles_3d.html")
    assert 'class="gl-container"' in dom
    sizes = re.findall(r'<canvas width="(\d+)" height="(\d+)"', dom)
    assert sizes and all(int(w) > 100 and int(h) > 100 for w, h in sizes)


def test_the_qa_report_draws_its_chart_and_shows_its_figure(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go
    from astropy.table import Table

    from redux_helpers import qa, report

    table = Table(rows=[("07_stack", "registration_residual_max", 0.5, np.nan, "px", "warn",
                         "worst 0.5 px > 0.25 px")], names=qa.COLUMNS)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 2, 3], [1, 4, 9])
    chart = go.Figure(go.Scatter(x=[1, 2, 3, 4], y=[3, 1, 2, 5], mode="markers"))
    path = report.write_report(tmp_path / "report.html", target_name="night", qa_table=table,
                               figures=[("a parabola", fig)], charts=[("four points", chart)],
                               notebooks=[])
    plt.close(fig)
    dom = _dom(path)
    assert 'class="main-svg"' in dom                   # plotly.js (inline, once) drew it
    assert len(re.findall(r'class="point"', dom)) == 4
    assert len(re.findall(r'<img src="data:image/png;base64,', dom)) == 1


@pytest.mark.notebooks
def test_the_chain_report_renders(demo_chain):
    """11's own report of the demo chain: its figures show and its nebula chart draws."""
    path = demo_chain.products / "11_qa" / "report.html"
    dom = _dom(path)
    n_nebulae = demo_chain.truth["space"]["n_nebulae"]
    assert 'class="main-svg"' in dom
    # two traces (before and after anchoring), one SVG point per nebula each
    assert len(re.findall(r'class="point"', dom)) == 2 * n_nebulae
    assert len(re.findall(r'<img src="data:image/png;base64,', dom)) >= 3
    assert "overall: PASS" in dom
