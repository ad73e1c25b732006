"""Wire an ObjectLoader from the settings: an S3 client (opened on first use), the DLQ for
the error report, and the limits. The S3 endpoint is ``AWS_ENDPOINT_URL_S3``, as for the
Redshift staging bucket."""

from __future__ import annotations

from typing import Any

import structlog

from sluice.config import Settings
from sluice.mapping import TableMapping
from sluice.objects.loader import ObjectLimits, ObjectLoader
from sluice.objects.parquet import ParquetLimits
from sluice.objects.report import ErrorReport
from sluice.objects.s3read import S3ObjectReader
from sluice.sinks.redshift.build import AwsClients
from sluice.sources.base import DeadLetterTarget


class ClosingObjectLoader(ObjectLoader):
    """An ObjectLoader that owns its S3 client."""

    def __init__(self, clients: AwsClients, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients = clients

    async def close(self) -> None:
        await self._clients.close()


def build_object_loader(
    settings: Settings,
    mapping: TableMapping,
    dead_letters: DeadLetterTarget | None,
    credentials: dict[str, str] | None = None,
) -> ClosingObjectLoader:
    log = structlog.get_logger("sluice.objects").bind(worker=settings.worker_id)
    clients = AwsClients(settings.aws_region, credentials, pool=4, read_timeout=60)
    endpoint = settings.redshift.s3_endpoint_url

    async def s3_client() -> Any:
        return await clients.get("s3", endpoint)

    return ClosingObjectLoader(
        clients,
        S3ObjectReader(s3_client),
        mapping,
        ErrorReport(dead_letters, log),
        log,
        ObjectLimits(
            rows_per_load=settings.batch_max_rows,
            parquet=ParquetLimits(rows_per_slice=min(settings.batch_max_rows, 10_000)),
        ),
        # Capability as data: the warehouse's profile, the role its COPY reads S3 with, and
        # the S3 staging its loads use, where the manifest naming the object is written
        # (without one, COPY would take the object's key as a prefix).
        copy_from_s3=bool(
            settings.profile is not None
            and settings.profile.copies_s3_objects
            and settings.redshift.iam_role
            and settings.redshift.copy
        ),
    )
