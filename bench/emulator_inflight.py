"""The SQS emulator's CPU per message as the number of messages in flight grows.

A client receives 10 at a time on 8 long polls and holds up to H messages in flight (deleting
the oldest batch beyond that), as a worker holds a filling batch and the loads in flight. It
prints the rate and the emulator's own CPU per message, for fauxqs as published and with the
in-flight index preloaded (src/sluice/local/fauxqs_inflight.mjs).

Usage: python bench/emulator_inflight.py [--messages N] [--held H ...]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import emulator_label, process_cpu_seconds  # noqa: E402
from bench.throughput import fill  # noqa: E402
from sluice.local.emulator import EMULATOR_CREDENTIALS, running_emulator  # noqa: E402
from sluice.model import ReceivedMessage  # noqa: E402
from sluice.sources.sqs import SqsQueue, sqs_client  # noqa: E402


async def drain_holding(endpoint: str, url: str, messages: int, held: int) -> None:
    async with sqs_client("us-east-1", endpoint, 12, EMULATOR_CREDENTIALS) as client:
        queue = SqsQueue(client, url)
        holding: collections.deque[list[ReceivedMessage]] = collections.deque()
        in_flight = taken = 0

        async def loop() -> None:
            nonlocal in_flight, taken
            while taken < messages:
                got = await queue.receive(10, 1, 300)
                if not got:
                    continue
                holding.append(got)
                in_flight += len(got)
                taken += len(got)
                while in_flight > held:
                    oldest = holding.popleft()
                    in_flight -= len(oldest)
                    await queue.delete(oldest)

        await asyncio.gather(*(loop() for _ in range(8)))
        while holding:
            await queue.delete(holding.popleft())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--held", type=int, nargs="+", default=[0, 20_000, 50_000])
    args = parser.parse_args()
    print(f"messages per run: {args.messages:,}; 8 long polls of 10; held = messages in flight")
    for stock in (True, False):
        with running_emulator(index_in_flight=not stock) as emulator:
            for held in args.held:
                url = asyncio.run(fill(emulator.endpoint, args.messages, seed=held + 1))
                before = process_cpu_seconds(emulator.pid)
                started = time.monotonic()
                asyncio.run(drain_holding(emulator.endpoint, url, args.messages, held))
                wall = time.monotonic() - started
                cpu = process_cpu_seconds(emulator.pid) - before
                print(
                    f"{emulator_label(stock):26} held {held:>7,}: {args.messages / wall:8,.0f} "
                    f"msg/s, emulator {cpu / args.messages * 1e6:6.1f} CPU us/msg"
                )


if __name__ == "__main__":
    main()
