"""redux helper package: the tested code under the redux notebooks.

The notebooks in ``notebooks/`` keep the arithmetic and the choices of each step;
this package keeps what is reusable, fiddly or must be right.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("redux")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from .errors import ReduxError  # noqa: E402

__all__ = ["ReduxError", "__version__"]
