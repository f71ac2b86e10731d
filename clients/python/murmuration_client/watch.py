"""Follow a Murmuration stream from the terminal: one JSON event per line, resumed after any drop.

python -m murmuration_client --url http://127.0.0.1:8000 --token TOKEN --stream documents
python -m murmuration_client --stream presence --params '{"document": "<id>"}' --since CURSOR
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
from typing import Any

from .client import Client
from .errors import CursorExpired, MurmurationError


async def watch(url: str, token: str, stream: str, params: dict[str, Any], since: str | None,
                count: int | None) -> None:  # fmt: skip
    seen = 0
    async with Client(url, token) as client:
        while True:
            try:
                async for event in client.subscribe(stream, params, since):
                    print(json.dumps(dataclasses.asdict(event)), flush=True)
                    seen += 1
                    if count is not None and seen >= count:
                        return
            except CursorExpired:
                # A watcher has no state to reload: it says where the gap is and goes on from now.
                print(f"# cursor {since} expired: events were missed; following from now", file=sys.stderr)
                since = None


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("MURMURATION_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("MURMURATION_TOKEN"), help="or MURMURATION_TOKEN")
    parser.add_argument("--stream", default="documents")
    parser.add_argument("--params", default="{}", help='a JSON object, e.g. \'{"id": "..."}\'')
    parser.add_argument("--since", help="start after this cursor")
    parser.add_argument("--count", type=int, help="exit after this many events")
    args = parser.parse_args()
    if not args.token:
        parser.error("give --token=TOKEN or set MURMURATION_TOKEN")
    try:
        params = json.loads(args.params)
    except ValueError:
        parser.error(f"--params is not JSON: {args.params}")
    if not isinstance(params, dict):
        parser.error("--params must be a JSON object")
    if args.count is not None and args.count < 1:
        parser.error("--count must be 1 or more")
    logging.basicConfig(format="# %(message)s", level=logging.WARNING)  # reconnects, on stderr
    try:
        asyncio.run(watch(args.url, args.token, args.stream, params, args.since, args.count))
    except (MurmurationError, ValueError) as error:
        sys.exit(f"murmuration: {error}")
    except KeyboardInterrupt:
        pass
