"""Executed notebooks as HTML pages that show their equations offline.

nbconvert's pages load MathJax from a CDN: on a machine without internet (a lab's
teaching room, a cluster's node) every equation shows as raw ``$$...$$``. Here each
page loads MathJax 2.7 from a copy beside it (``notebooks/mathjax/``, about 3 MB, taken
once per products folder from the `jupyter_server_mathjax` package, the copy Jupyter's
own servers use), so a target's folder stays readable wherever it is moved or opened.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .atomic import write_text
from .errors import ReduxError

#: The MathJax configuration nbconvert's own default asks for, from the local copy.
MATHJAX_URL = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
#: Parts of MathJax a page of TeX in HTML-CSS never loads: translations, the
#: accessibility extensions, the SVG output (9 of its 12 MB).
_NOT_NEEDED = ("localization", "a11y", "SVG")


def mathjax_source() -> Path:
    """The folder of MathJax's files in the installed `jupyter_server_mathjax`."""
    import jupyter_server_mathjax

    return Path(jupyter_server_mathjax.__file__).parent / "static"


def ensure_mathjax(folder) -> Path:
    """Copy MathJax into ``folder/mathjax`` unless it is there; return that folder.

    The copy is made under a temporary name and renamed, so a page never finds half
    of it.
    """
    dest = Path(folder) / "mathjax"
    if (dest / "MathJax.js").is_file():
        return dest
    tmp = Path(folder) / ".mathjax.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(mathjax_source(), tmp, ignore=shutil.ignore_patterns(*_NOT_NEEDED))
    tmp.replace(dest)
    return dest


def write_html(notebook) -> Path:
    """Render an executed notebook to ``<notebook>.html`` beside it, written whole.

    A failure of the rendering itself (nbconvert's templates missing from a broken
    install, the MathJax package absent) is a `ReduxError` that says the notebook ran and
    how to go on; a full disk stays an `OSError` for the runner to name.
    """
    import nbformat

    notebook = Path(notebook)
    try:
        from nbconvert import HTMLExporter

        ensure_mathjax(notebook.parent)
        nb = nbformat.read(notebook, as_version=4)
        exporter = HTMLExporter(mathjax_url=MATHJAX_URL, filters=_filters(nb))
        body, _ = exporter.from_notebook_node(nb)
    except OSError:
        raise
    except Exception as exc:
        raise ReduxError(
            f"{notebook}: the notebook ran and is saved, but its HTML page could not be "
            f"made ({type(exc).__name__}: {exc}); run again with --no-html, or repair "
            "the install (pip install --force-reinstall nbconvert jupyter_server_mathjax)"
        ) from None
    out = notebook.with_suffix(".html")
    write_text(out, body)
    return out


class _Highlighted(str):
    """Code as pygments made it HTML: every character of the source escaped."""


def _filters(nb) -> dict:
    """nbconvert's ``highlight_code`` and ``clean_html`` filters, the second skipping code
    the first highlighted.

    nbconvert runs bleach's sanitizer over each code cell after pygments has highlighted
    it: 40 % of a page's rendering (09 on the demo: 1.3 of 3.0 s), for HTML that pygments
    writes from escaped text and class names alone, and the sanitizer leaves as it is.
    Outputs and markdown go through nbconvert's filters as before: the page is the same,
    byte for byte (tests/test_notebook_html.py).
    """
    from nbconvert.filters.highlight import Highlight2HTML
    from nbconvert.filters.strings import clean_html

    info = nb.metadata.get("language_info", {})
    highlight = Highlight2HTML(pygments_lexer=info.get("pygments_lexer", info.get("name")))

    def highlight_code(source, language=None, metadata=None):
        return _Highlighted(highlight(source, language, metadata))

    def clean(element):
        return str(element) if isinstance(element, _Highlighted) else clean_html(element)

    return {"highlight_code": highlight_code, "clean_html": clean}
