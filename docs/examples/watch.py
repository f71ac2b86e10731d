"""Watch a Murmuration stream from the terminal, resuming with the last cursor after any drop.

    python docs/examples/watch.py --token TOKEN --stream documents
    python docs/examples/watch.py --token TOKEN --stream presence --params '{"document": "<id>"}'

Prints one JSON event per line. Needs only the `websockets` library.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

import websockets


async def watch(url: str, token: str, stream: str, params: dict, since: str | None, count: int | None) -> None:
    seen = 0
    while True:
        try:
            async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                frame = {"type": "subscribe", "id": "w", "stream": stream, "params": params}
                if since:
                    frame["since"] = since  # replays exactly what was missed, then goes live
                await ws.send(json.dumps(frame))
                async for raw in ws:
                    message = json.loads(raw)
                    if message["type"] == "subscribed" and message.get("cursor"):
                        # The stream's position when the subscription began: a drop before the first
                        # event resumes from here, so nothing written meanwhile is missed.
                        since = since or message["cursor"]
                    elif message["type"] == "event":
                        since = message["cursor"]
                        print(json.dumps(message), flush=True)
                        seen += 1
                        if count is not None and seen >= count:
                            return
                    elif message["type"] == "error":
                        if message["code"] == "cursor_expired":
                            since = None  # too far behind: start again from now (reload state by REST)
                            break
                        sys.exit(f"refused: {message['code']}: {message['message']}")
        except (OSError, websockets.ConnectionClosed) as error:
            print(f"# disconnected ({error}); resuming from {since}", file=sys.stderr)
            await asyncio.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8000/ws")
    parser.add_argument("--token", default=os.environ.get("MURMURATION_TOKEN"), help="or MURMURATION_TOKEN")
    parser.add_argument("--stream", default="documents")
    parser.add_argument("--params", default="{}", help='JSON object, e.g. \'{"id": "..."}\'')
    parser.add_argument("--since", help="resume after this cursor")
    parser.add_argument("--count", type=int, help="exit after this many events")
    args = parser.parse_args()
    if not args.token:
        parser.error("give --token=TOKEN or set MURMURATION_TOKEN")
    asyncio.run(watch(args.url, args.token, args.stream, json.loads(args.params), args.since, args.count))


if __name__ == "__main__":
    main()
