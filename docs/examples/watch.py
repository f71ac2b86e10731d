"""Follow a stream live with the Python client, which reconnects and resumes from its cursor for you.

    pip install ./clients/python
    python docs/examples/watch.py http://127.0.0.1:8000 TOKEN documents

The same, with JSON lines, `--since` and `--count`: `python -m murmuration_client --help`.
"""

import asyncio
import sys

from murmuration_client import Client


async def follow(url: str, token: str, stream: str) -> None:
    async with Client(url, token) as client:
        async for event in client.subscribe(stream):
            print(event.op, event.id, event.data, flush=True)


if __name__ == "__main__":
    asyncio.run(follow(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "documents"))
