"""What both benchmark scripts print about the code and the machine they measured."""

import os
import subprocess
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
