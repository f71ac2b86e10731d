"""`python -m service`: serve with the settings from the environment."""

from __future__ import annotations

import signal
import sys
from typing import Any


def _stop_early(signum: int, frame: Any) -> None:
    """Until Sanic installs its own handlers, a SIGTERM ends the start: as PID 1 (a container without
    an init) a signal with no handler is dropped, and the service went on to serve. Raised, it lets
    multiprocessing's exit handlers stop any helper process already started."""
    raise SystemExit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop_early)  # first: the imports below take most of a second

import os  # noqa: E402
import tempfile  # noqa: E402

from sanic import Sanic  # noqa: E402
from sanic.worker.loader import AppLoader  # noqa: E402

from . import manager  # noqa: E402
from .app import create_app  # noqa: E402
from .config import ConfigError, Settings  # noqa: E402


def main() -> int:
    try:
        settings = Settings.from_env()
        if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # Each worker is a process: their metrics are merged through files in this folder.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="murmuration-metrics-")
        loader = AppLoader(factory=create_app)
        app = loader.load()  # reads the catalog: a bad CATALOG_PATH stops here, named
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    app.prepare(host=settings.host, port=settings.port, workers=settings.workers, access_log=False, motd=False)
    url = f"http://{settings.host}:{settings.port}"
    print(f"murmuration listening on {url} ({settings.workers} worker(s)): the dashboard is {url}/, "
          f"the API docs {url}/docs", flush=True)  # fmt: skip
    manager.install()
    Sanic.serve(primary=app, app_loader=loader)
    return 0


if __name__ == "__main__":
    sys.exit(main())
