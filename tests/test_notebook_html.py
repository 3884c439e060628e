"""HTML renderings of executed notebooks: equations from a MathJax beside them, offline."""

from __future__ import annotations

import re

import nbformat
import pytest

from redux_helpers import notebook_html
from redux_helpers.errors import ReduxError


def test_page_loads_mathjax_from_its_own_folder(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(r"The bias: $$\bar b = \frac{1}{N}\sum_i b_i$$"),
                nbformat.v4.new_code_cell("1 + 1")]
    path = tmp_path / "notebooks" / "01_superbias.ipynb"
    path.parent.mkdir()
    nbformat.write(nb, path)
    page = notebook_html.write_html(path)
    text = page.read_text(encoding="utf-8")
    sources = re.findall(r'<script[^>]*src="([^"]+)"', text)
    mathjax = [s for s in sources if "mathjax" in s.lower()]
    assert mathjax == [notebook_html.MATHJAX_URL]                 # one, and not from a CDN
    local = page.parent / mathjax[0].split("?")[0]
    assert local.is_file() and local.stat().st_size > 50_000      # MathJax.js itself
    config = page.parent / "mathjax" / "config" / "TeX-AMS-MML_HTMLorMML-full.js"
    assert config.is_file()                                       # the config the URL names
    assert (page.parent / "mathjax" / "jax" / "output" / "HTML-CSS").is_dir()
    assert r"\frac{1}{N}" in text                                 # the TeX is on the page
    # the copy is made once and trimmed: no translations, no SVG output
    size = sum(p.stat().st_size for p in (page.parent / "mathjax").rglob("*") if p.is_file())
    assert size < 5e6
    stamp = local.stat().st_mtime_ns
    notebook_html.write_html(path)
    assert local.stat().st_mtime_ns == stamp
    assert not list(page.parent.glob(".*tmp*"))


def test_a_broken_nbconvert_is_one_message_naming_the_notebook(tmp_path, monkeypatch):
    """nbconvert without its templates (seen in a venv over the system's packages) raised a
    bare ValueError from the runner; now it is a ReduxError that says the notebook ran, and
    no half page is left."""
    import nbconvert

    def broken(*args, **kwargs):
        raise ValueError("No template sub-directory with name 'lab' found")

    monkeypatch.setattr(nbconvert.HTMLExporter, "from_notebook_node", broken)
    path = tmp_path / "03_cosmics.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), path)
    with pytest.raises(ReduxError) as err:
        notebook_html.write_html(path)
    text = str(err.value)
    assert str(path) in text and "--no-html" in text and "template sub-directory" in text
    assert not path.with_suffix(".html").exists()


def test_page_is_nbconverts_own(tmp_path):
    """Code cells are not run through bleach after pygments (which escaped them): the
    page is still the one nbconvert's HTMLExporter makes, byte for byte, and code with a
    script in a string is shown as text."""
    from nbconvert import HTMLExporter

    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell('label = "<script>alert(1)</script>"  # <b>not bold</b>')
    code.outputs = [nbformat.v4.new_output(
        "display_data", data={"text/html": "<b>bold</b><script>evil()</script>",
                              "text/plain": "bold"})]
    nb.cells = [nbformat.v4.new_markdown_cell("# A title"), code]
    path = tmp_path / "notebooks" / "03_cosmics.ipynb"
    path.parent.mkdir()
    nbformat.write(nb, path)
    ours = notebook_html.write_html(path).read_text(encoding="utf-8")
    theirs, _ = HTMLExporter(mathjax_url=notebook_html.MATHJAX_URL).from_notebook_node(
        nbformat.read(path, as_version=4))
    assert ours == theirs
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in ours and "<script>alert" not in ours
    assert "<b>bold</b>" in ours          # an HTML output as nbconvert leaves it
