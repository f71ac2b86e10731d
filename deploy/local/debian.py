"""Tools from Debian's packages (nginx, wrk, chromium), installed once when missing.

These machines run as root with Debian's mirrors reachable; elsewhere the error says what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


class PackageError(RuntimeError):
    pass


def ensure(command: str, package: str | None = None) -> str:
    """The path of `command`, installing Debian's `package` (default: the command's name) if missing."""
    package = package or command
    found = _find(command)
    if found:
        return found
    print(f"[setup] installing {package} from Debian's packages (once; this can take a minute)", file=sys.stderr,
          flush=True)  # fmt: skip
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]):
        try:
            result = subprocess.run(step, capture_output=True, text=True, env=env)
        except FileNotFoundError:
            raise PackageError(f"{command} is missing and apt-get is not available: install {package}") from None
        if result.returncode != 0:
            raise PackageError(f"{' '.join(step)} failed: {result.stderr[-500:]}\nInstall {package}, then run again.")
    found = _find(command)
    if found is None:
        raise PackageError(f"{package} was installed but {command} is in neither PATH, /usr/sbin nor /usr/bin")
    return found


def _find(command: str) -> str | None:
    """On PATH, or in the sbin/bin folders a non-login root shell may leave off it (nginx is in /usr/sbin)."""
    return shutil.which(command) or next(
        (str(path) for folder in ("/usr/sbin", "/usr/bin") if (path := Path(folder) / command).exists()), None
    )
