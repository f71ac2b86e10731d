"""The documented client example works against a real server."""

from __future__ import annotations

import subprocess
import sys
import threading

from .harness import ROOT


def test_the_watch_example_follows_a_stream_live(server, signup) -> None:
    ann = signup("Ann")
    command = [sys.executable, str(ROOT / "docs/examples/watch.py"), server.url, ann.token, "contacts"]
    watcher = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    written: list[str] = []
    stop = threading.Event()

    def write() -> None:  # until one is seen: the example subscribes a moment after it starts
        while not stop.wait(0.3):
            written.append(ann.post("/contacts", json={"name": "Watched"}).json()["id"])

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    timer = threading.Timer(30, watcher.kill)  # a deadline for readline
    timer.start()
    try:
        line = watcher.stdout.readline()  # type: ignore[union-attr]
    finally:
        stop.set()
        timer.cancel()
        watcher.kill()
        writer.join()  # every write's id is known before the line is checked
    op, contact_id, _ = line.split(" ", 2)
    assert op == "insert" and contact_id in written


NODE_WATCHER = """
import { Feed } from "./feed.mjs";
const [url, token] = process.argv.slice(2);
const feed = new Feed({ token, url, onUnauthorized: () => process.exit(2) });
feed.subscribe("c", "contacts", {}, {
  event(frame) { console.log(frame.op, frame.id); },
  live() { console.log("live"); },
});
feed.start();
"""


def test_feed_js_is_a_module_that_follows_a_stream_outside_the_dashboard(server, signup, tmp_path) -> None:
    """The browser client needs nothing of the dashboard: Node (with its WebSocket) runs it as is."""
    ann = signup("Ann")
    (tmp_path / "feed.mjs").write_text((ROOT / "handlers/static/feed.js").read_text())
    (tmp_path / "watch.mjs").write_text(NODE_WATCHER)
    script = str(tmp_path / "watch.mjs")
    command = ["node", "--experimental-websocket", "--no-warnings", script, server.ws_url, ann.token]
    watcher = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    timer = threading.Timer(30, watcher.kill)
    timer.start()
    try:
        assert watcher.stdout.readline().strip() == "live"  # type: ignore[union-attr]
        contact = ann.post("/contacts", json={"name": "Seen from Node"}).json()
        assert watcher.stdout.readline().split() == ["insert", contact["id"]]  # type: ignore[union-attr]
    finally:
        timer.cancel()
        watcher.kill()
