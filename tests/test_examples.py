"""The documented client example works against a real server."""

from __future__ import annotations

import json
import subprocess
import sys

from .harness import ROOT, wait_for


def test_the_watch_example_prints_events_and_resumes_from_a_cursor(server, signup, db) -> None:
    ann = signup("Ann")
    command = [sys.executable, str(ROOT / "docs/examples/watch.py"), "--url", server.ws_url, f"--token={ann.token}",
               "--stream", "contacts", "--count", "1"]  # fmt: skip
    watcher = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    wait_for(lambda: db.connections.count_documents({}) > 0, what="the example to connect")
    contact = ann.post("/contacts", json={"name": "Watched"}).json()
    out, _ = watcher.communicate(timeout=30)
    event = json.loads(out.splitlines()[0])
    assert (event["op"], event["id"]) == ("insert", contact["id"])
    later = ann.post("/contacts", json={"name": "Missed"}).json()
    resumed = subprocess.run([*command, "--since", event["cursor"]], capture_output=True, text=True, timeout=30)
    assert json.loads(resumed.stdout.splitlines()[0])["id"] == later["id"]
