"""Many webhook deliveries at once, from a process of its own, as a sender outside the
operator would send them: for the tests' flood of deliveries to ModelSyncs that do not
exist. Loopback only; a fixed count, a fixed concurrency and a deadline.

    python -m tests.support.hookflood PORT NAMESPACE COUNT CONCURRENCY DEADLINE [UNTIL]

sends COUNT deliveries, cycling through the providers, each signed (or carrying the
token) as `TOKEN` would sign it, to `/hooks/<provider>/NAMESPACE/ghost-<i>` and
`/hooks/<provider>/ghost-<i>/prod` in turn; with UNTIL (a file's path), it goes on
past COUNT until that file exists (at most MAX_TIMES times COUNT, and DEADLINE always
ends it), so that a test can keep the flood up while it waits on something else;
prints one JSON line: {"statuses": {"401": 5000}, "sent": 5000, "seconds": 4.2,
"unanswered": 0}.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp

TOKEN = "s3cr3t-webhook-token"
MARKER = "ghost-"  # in every route: what names no ModelSync
MAX_TIMES = 20  # with UNTIL: at most this many times COUNT deliveries
BODY = json.dumps({"ref": "refs/heads/main", "repository": {"clone_url": "x"}}).encode()


def _headers(provider: str) -> dict[str, str]:
    digest = hmac.new(TOKEN.encode(), BODY, hashlib.sha256).hexdigest()
    return {
        "github": {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={digest}"},
        "gitlab": {"X-Gitlab-Token": TOKEN},
        "gitea": {"X-Gitea-Signature": digest},
        "generic": {"X-Modelsync-Signature": f"sha256={digest}"},
    }[provider]


def route(i: int, namespace: str) -> tuple[str, dict[str, str]]:
    """The i-th delivery's path and headers: an unknown name in a namespace that exists,
    then a namespace that does not."""
    provider = ("github", "gitlab", "gitea", "generic")[i % 4]
    where = f"{namespace}/{MARKER}{i}" if i % 2 == 0 else f"{MARKER}{i}/prod"
    return f"/hooks/{provider}/{where}", {"Content-Type": "application/json", **_headers(provider)}


async def flood(
    port: int, namespace: str, count: int, concurrency: int, deadline: float, until: Path | None
) -> dict[str, object]:
    statuses: Counter[str] = Counter()
    sent = 0

    def more(i: int) -> bool:
        if i < count:
            return True
        return until is not None and i < MAX_TIMES * count and not until.exists()

    todo = itertools.takewhile(more, itertools.count())
    start = time.monotonic()
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=deadline)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def sender() -> None:
            nonlocal sent
            for i in todo:
                sent += 1
                path, headers = route(i, namespace)
                try:
                    async with session.post(
                        f"http://127.0.0.1:{port}{path}", data=BODY, headers=headers
                    ) as answer:
                        await answer.read()
                        statuses[str(answer.status)] += 1
                except (aiohttp.ClientError, TimeoutError) as error:
                    statuses[type(error).__name__] += 1

        try:
            async with asyncio.timeout(deadline):
                await asyncio.gather(*(sender() for _ in range(concurrency)))
        except TimeoutError:
            pass
    answered = sum(statuses.values())
    return {
        "statuses": dict(statuses),
        "sent": sent,
        "seconds": round(time.monotonic() - start, 2),
        "unanswered": sent - answered,
    }


def main(argv: list[str]) -> int:
    port, namespace, count, concurrency, deadline, *until = argv
    result = asyncio.run(
        flood(
            int(port),
            namespace,
            int(count),
            int(concurrency),
            float(deadline),
            Path(until[0]) if until else None,
        )
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
