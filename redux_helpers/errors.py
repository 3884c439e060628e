"""The one exception type a user sees.

Every problem with the user's input (a file, a header keyword, a manifest key, a
notebook parameter) is raised as `ReduxError` with a message that names the file or
key and says what to do. The command line prints that message and exits non-zero;
anything else reaching the top is a bug in redux.
"""


class ReduxError(Exception):
    """A problem with the input that the user can fix; the message says how."""


class ManifestError(ReduxError):
    """A problem in ``data_manifest.yaml`` (unknown key, wrong type, missing folder)."""


class FrameError(ReduxError):
    """A raw frame that can't be used (unreadable, missing keyword, wrong shape)."""
