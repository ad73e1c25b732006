"""The supervisor's view of its children's metrics: scrape each one, serve them together.

Each child serves its own registry on 127.0.0.1 and every series already carries a
``worker`` label, so merging is a union of samples under one HELP/TYPE per family:
``sum by (outcome) (sluice_messages_total)`` then gives the host's totals in PromQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

SCRAPE_TIMEOUT = 2.0


@dataclass(frozen=True)
class ChildEndpoint:
    worker: str
    url: str  # http://127.0.0.1:<port>/metrics


@dataclass(frozen=True)
class ChildScrape:
    worker: str
    families: tuple[Metric, ...]
    error: str | None = None


@dataclass(frozen=True)
class FleetFigures:
    """What the supervisor needs from its children: work done and how late they are."""

    processed: dict[str, float]  # worker -> messages deleted from the queue so far
    oldest_age: float | None  # the oldest held message across children (s), None if none held
    held: int
    dead_letter_send_failures: int = 0  # summed over the children scraped
    degraded: tuple[str, ...] = ()  # workers whose dead-letter sends are failing now

    @classmethod
    def of(cls, scrapes: Iterable[ChildScrape]) -> FleetFigures:
        processed: dict[str, float] = {}
        ages: list[float] = []
        held = 0
        failures = 0
        degraded: list[str] = []
        for scrape in scrapes:
            for family in scrape.families:
                for sample in family.samples:
                    if sample.name == "sluice_messages_total":
                        if sample.labels.get("outcome") == "deleted":
                            processed[scrape.worker] = sample.value
                    elif sample.name == "sluice_oldest_message_age_seconds" and sample.value > 0:
                        ages.append(sample.value)
                    elif sample.name == "sluice_messages_held":
                        held += int(sample.value)
                    elif sample.name == "sluice_dead_letter_send_failures_total":
                        failures += int(sample.value)
                    elif sample.name == "sluice_dead_letter_degraded" and sample.value > 0:
                        degraded.append(scrape.worker)
        return cls(processed, max(ages) if ages else None, held, failures, tuple(degraded))


async def scrape_children(
    session: aiohttp.ClientSession, children: Sequence[ChildEndpoint]
) -> list[ChildScrape]:
    return list(await asyncio.gather(*(_scrape(session, child) for child in children)))


async def _scrape(session: aiohttp.ClientSession, child: ChildEndpoint) -> ChildScrape:
    try:
        timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)
        async with session.get(child.url, timeout=timeout) as response:
            response.raise_for_status()
            text = await response.text()
        return ChildScrape(child.worker, tuple(text_string_to_metric_families(text)))
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        # A child still starting, or just killed: its series are missing from this scrape.
        return ChildScrape(child.worker, (), f"{type(exc).__name__}: {exc}")


def merge(scrapes: Iterable[ChildScrape]) -> list[Metric]:
    merged: dict[str, Metric] = {}
    for scrape in scrapes:
        for family in scrape.families:
            into = merged.get(family.name)
            if into is None:
                into = Metric(family.name, family.documentation, family.type, family.unit)
                merged[family.name] = into
            into.samples.extend(family.samples)
    return list(merged.values())


@dataclass(frozen=True)
class SupervisorFigures:
    desired: int
    running: int
    restarts: int
    scale_events: dict[str, int]  # direction -> count


class _Snapshot(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def render(scrapes: Sequence[ChildScrape], own: SupervisorFigures) -> bytes:
    """Children's families merged, then the supervisor's own."""
    families = merge(scrapes)
    workers = GaugeMetricFamily("sluice_supervisor_workers", "Worker processes.", labels=["state"])
    workers.add_metric(["desired"], own.desired)
    workers.add_metric(["running"], own.running)
    families.append(workers)
    restarts = CounterMetricFamily(
        "sluice_supervisor_restarts", "Worker processes restarted after an exit."
    )
    restarts.add_metric([], own.restarts)
    families.append(restarts)
    scaled = CounterMetricFamily(
        "sluice_supervisor_scale_events", "Scaling actions taken.", labels=["direction"]
    )
    for direction, count in sorted(own.scale_events.items()):
        scaled.add_metric([direction], count)
    families.append(scaled)
    up = GaugeMetricFamily(
        "sluice_supervisor_child_up", "1 when the child's /metrics answered.", labels=["worker"]
    )
    for scrape in scrapes:
        up.add_metric([scrape.worker], 0.0 if scrape.error else 1.0)
    families.append(up)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(families))
    return generate_latest(registry)
