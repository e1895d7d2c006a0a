"""The floor of any httpx-based poller: fetch every feed with a bare httpx client.

`bench/poll` runs this beside the real pollers: GET each URL (conditional with the
ETag and Last-Modified kept from the last run), read the body to its end, count
its `<item>`s; no parsing, no storing, no scheduling. Storywatch polls through
httpx (fixed by its design), so this is what its polling could cost at best on
the machine. Run: `python bench/httpx_floor.py URLS_FILE STATE_FILE [CONCURRENCY]`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import httpx

PER_CLIENT = 8
"""Connections per client, as Storywatch's `SlotClients`: httpcore examines every pooled
connection whenever a request starts or ends, so one 64-connection pool costs far more."""


async def poll(urls: list[str], state: dict[str, list[str | int | None]],
               concurrency: int) -> None:
    limits = httpx.Limits(max_connections=PER_CLIENT, max_keepalive_connections=PER_CLIENT)
    clients = [httpx.AsyncClient(limits=limits, timeout=30)
               for _ in range(-(-concurrency // PER_CLIENT))]
    queue = list(reversed(urls))

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            url = queue.pop()
            etag, modified, items = state.get(url, [None, None, 0])
            headers = {k: str(v) for k, v in (("If-None-Match", etag),
                                              ("If-Modified-Since", modified)) if v}
            async with client.stream("GET", url, headers=headers) as answer:
                body = b"".join([chunk async for chunk in answer.aiter_raw()])
            if answer.status_code == 200:
                state[url] = [answer.headers.get("etag"), answer.headers.get("last-modified"),
                              body.count(b"<item>")]
            elif answer.status_code != 304:
                state[url] = [None, None, items]

    await asyncio.gather(*(worker(clients[i // PER_CLIENT]) for i in range(concurrency)))
    for client in clients:
        await client.aclose()


def main() -> None:
    urls = Path(sys.argv[1]).read_text().split()
    path = Path(sys.argv[2])
    state = json.loads(path.read_text()) if path.exists() else {}
    asyncio.run(poll(urls, state, int(sys.argv[3]) if len(sys.argv) > 3 else 64))
    path.write_text(json.dumps(state))


if __name__ == "__main__":
    main()
