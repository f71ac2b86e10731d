"""`python -m service`: serve with the settings from the environment."""

from __future__ import annotations

import os
import sys
import tempfile

from sanic import Sanic
from sanic.worker.loader import AppLoader

from . import manager
from .app import create_app
from .config import ConfigError, Settings


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
