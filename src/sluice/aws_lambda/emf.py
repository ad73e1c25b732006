"""One CloudWatch Embedded Metric Format line per invocation. Pure.

CloudWatch Logs turns a JSON log line with an ``_aws`` block into metrics without any API
call (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).
The line carries this invocation's counts as metrics in the ``Sluice`` namespace, by
``FunctionName``, and the worker's stats line (``workerId``, ``messagesProcessed``,
``messagesFailed``, ... since the container started) as plain fields, so the queries written
for the worker's stats line read it too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sluice.errors import FailureReason
from sluice.observe.stats import WorkerCounters

NAMESPACE = "Sluice"
DIMENSION = "FunctionName"


@dataclass(frozen=True)
class Counts:
    """What the counters held at one moment: subtract two to get one invocation's."""

    received: int = 0
    inserted: int = 0
    duplicates_in_batch: int = 0
    duplicates_in_target: int = 0
    ignored: int = 0
    load_failures: int = 0
    dead_letter_send_failures: int = 0
    dead_lettered: tuple[tuple[FailureReason, int], ...] = ()
    left_to_redrive: tuple[tuple[FailureReason, int], ...] = ()

    @classmethod
    def of(cls, c: WorkerCounters) -> Counts:
        return cls(
            c.received,
            c.inserted,
            c.duplicates_in_batch,
            c.duplicates_in_target,
            c.ignored,
            c.load_failures,
            c.dead_letter_send_failures,
            tuple(sorted(c.dead_lettered.items(), key=lambda kv: kv[0].value)),
            tuple(sorted(c.left_to_redrive.items(), key=lambda kv: kv[0].value)),
        )

    def since(self, before: Counts) -> Counts:
        def minus(
            now: tuple[tuple[FailureReason, int], ...], then: tuple[tuple[FailureReason, int], ...]
        ) -> tuple[tuple[FailureReason, int], ...]:
            left = Counter(dict(now))
            left.subtract(Counter(dict(then)))
            return tuple(sorted(((r, n) for r, n in left.items() if n), key=lambda kv: kv[0].value))

        return Counts(
            self.received - before.received,
            self.inserted - before.inserted,
            self.duplicates_in_batch - before.duplicates_in_batch,
            self.duplicates_in_target - before.duplicates_in_target,
            self.ignored - before.ignored,
            self.load_failures - before.load_failures,
            self.dead_letter_send_failures - before.dead_letter_send_failures,
            minus(self.dead_lettered, before.dead_lettered),
            minus(self.left_to_redrive, before.left_to_redrive),
        )


@dataclass(frozen=True)
class InvocationReport:
    """One invocation's outcome: its counts, what it hands back, why, and how long it took."""

    counts: Counts
    batch_item_failures: int
    not_reached: int  # records left for lack of time before the deadline
    seconds: float


def metric_values(report: InvocationReport) -> dict[str, tuple[float, str]]:
    """Metric name -> (value, unit). Dead letters by reason are one metric per reason (a
    dimension could hold only one reason per line)."""
    c = report.counts
    values: dict[str, tuple[float, str]] = {
        "Received": (c.received, "Count"),
        "Inserted": (c.inserted, "Count"),
        "Duplicates": (c.duplicates_in_batch + c.duplicates_in_target, "Count"),
        "DuplicatesInBatch": (c.duplicates_in_batch, "Count"),
        "DuplicatesInTarget": (c.duplicates_in_target, "Count"),
        "Ignored": (c.ignored, "Count"),
        "DeadLettered": (sum(n for _, n in c.dead_lettered), "Count"),
        "LeftToRedrive": (sum(n for _, n in c.left_to_redrive), "Count"),
        "DeadLetterSendFailures": (c.dead_letter_send_failures, "Count"),
        "LoadFailures": (c.load_failures, "Count"),
        "BatchItemFailures": (report.batch_item_failures, "Count"),
        "NotReachedBeforeDeadline": (report.not_reached, "Count"),
        "InvocationSeconds": (round(report.seconds, 3), "Seconds"),
    }
    for reason, n in c.dead_lettered:
        values[f"DeadLettered.{reason.value}"] = (n, "Count")
    return values


def emf_document(
    report: InvocationReport,
    *,
    function_name: str,
    request_id: str,
    timestamp_ms: int,
    stats: dict[str, object],
) -> dict[str, object]:
    """The line's JSON object: ``_aws`` metadata, the metric values, the stats line fields."""
    values = metric_values(report)
    document: dict[str, object] = {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [[DIMENSION]],
                    "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in values.items()],
                }
            ],
        },
        DIMENSION: function_name,
        "event": "invocation",
        "requestId": request_id,
        **stats,
    }
    document.update({name: value for name, (value, _) in values.items()})
    return document
