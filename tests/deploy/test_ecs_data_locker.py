"""deploy/ecs/sluice.yaml with the Data Locker parameters: off by default; the Rules refuse a
prefix or key without a bucket; the task role allows the requests the object reader makes
(recorded from `S3ObjectReader`) and nothing outside the prefix; the COPY policy allows what
Redshift does for the COPY statement `object_copy` writes (read the one-entry manifest the
sink stages, get the object it names, list nothing); both equal the statements in
deploy/iam/."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from sluice.model import ObjectRef
from sluice.objects.s3read import ReadPolicy, S3ObjectReader
from sluice.sinks.redshift.object_copy import CopyForm, CsvObject, copy_object_sql
from sluice.sinks.redshift.staging import S3Stager, StagingLocation
from tests.deploy.cfn import Stack
from tests.deploy.iam_match import allows, s3_bucket_and_key, s3_object_arn
from tests.deploy.pack import DEPLOY, ECS_TEMPLATE, load_cfn
from tests.deploy.test_ecs_sinks import (
    DATA_LOCKER,
    KMS_KEY_ARN,
    SCENARIOS,
    STAGING,
    actions_of,
    container_of,
    stack,
    task_policy,
)

OBJECT = ObjectRef(
    bucket=DATA_LOCKER["DataLockerBucket"],
    key="data-locker/t=installs/dt=2024-05-01/h=3/part-00000.gz",
    etag="9b2cf535f27731c974343645a3985328",
)
OUTSIDE = [  # objects neither role may read
    "s3://acme-data-locker/other/t=installs/part-00000.gz",
    "s3://acme-data-locker/data-locker",  # the prefix without its slash
    "s3://another-bucket/data-locker/t=installs/part-00000.gz",
    f"s3://{STAGING['StagingBucket']}/{STAGING['StagingPrefix']}/w/2024/05/01/u/data.json.gz",
]
VIA_S3 = {"kms:ViaService": "s3.ap-south-1.amazonaws.com"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_cfn(ECS_TEMPLATE)


def copy_policy(s: Stack) -> list[dict[str, Any]] | None:
    """The COPY policy's statements as the stack would create them, or None if not created."""
    resource = s.template["Resources"]["DataLockerCopyPolicy"]
    if not s.condition(resource["Condition"]):
        return None
    return s.eval(resource["Properties"])["PolicyDocument"]["Statement"]


class RecordingS3:
    """Serves one object's bytes and records each request (operation, parameters)."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.requests: list[tuple[str, dict[str, str]]] = []

    async def head_object(self, **request: str) -> dict[str, Any]:
        self.requests.append(("HeadObject", request))
        return {"ContentLength": len(self.body)}

    async def get_object(self, **request: str) -> dict[str, Any]:
        self.requests.append(("GetObject", request))
        start, _, end = request.get("Range", "bytes=0-").removeprefix("bytes=").partition("-")
        return {"Body": _Body(self.body[int(start) : int(end) + 1 if end else None])}


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    async def read(self, size: int) -> bytes:
        chunk, self._data = self._data[:size], self._data[size:]
        return chunk

    def close(self) -> None:
        pass


def reader_requests() -> list[tuple[str, dict[str, str]]]:
    """What the object reader asks S3 for one object: its size (HEAD, no size in the
    notification), a ranged read (Parquet's footer), a whole streamed read."""
    s3 = RecordingS3(b"Event Time,AppsFlyer ID\n" * 4000)

    async def client() -> RecordingS3:
        return s3

    async def read() -> None:
        reader = S3ObjectReader(client, ReadPolicy(chunk_bytes=4096))
        size = await reader.size_of(OBJECT)
        await reader.read_range(OBJECT, size - 100, size)
        async for _ in reader.chunks(OBJECT):
            pass

    asyncio.run(read())
    return s3.requests


# IAM authorises each S3 operation by one action (HeadObject by s3:GetObject).
S3_ACTION = {"GetObject": "s3:GetObject", "HeadObject": "s3:GetObject"}


def test_off_by_default(template: dict[str, Any]) -> None:
    for name in ("DataLockerBucket", "DataLockerPrefix", "DataLockerKmsKeyArn"):
        assert template["Parameters"][name]["Default"] == ""
    for scenario in ("redshift-cluster-copy", "postgres"):
        s = stack(template, scenario)
        assert "s3:GetObject" not in actions_of(task_policy(s))
        assert copy_policy(s) is None
        names = {e["Name"] for e in container_of(s)["Environment"]}
        assert "SLUICE_MAPPING_FILE" not in names


@pytest.mark.parametrize(
    ("overrides", "rule"),
    [
        ({"DataLockerPrefix": "data-locker/"}, "DataLockerPrefixNeedsItsBucket"),
        ({"DataLockerKmsKeyArn": KMS_KEY_ARN}, "DataLockerKeyNeedsItsBucket"),
    ],
)
def test_rules_refuse_a_prefix_or_key_without_a_bucket(
    template: dict[str, Any], overrides: dict[str, str], rule: str
) -> None:
    assert stack(template, "redshift-cluster-copy", **overrides).failed_rules() == [rule]


@pytest.mark.parametrize(
    ("prefix", "accepted"),
    [
        ("", True),  # the whole bucket
        ("data-locker/", True),
        ("appsflyer/data-locker-hourly/", True),
        ("data-locker", False),  # would also match data-locker-old/...
        ("/data-locker/", False),
        ("data*/", False),  # a wildcard would widen the grant
    ],
)
def test_prefix_pattern(template: dict[str, Any], prefix: str, accepted: bool) -> None:
    pattern = template["Parameters"]["DataLockerPrefix"]["AllowedPattern"]
    assert (re.fullmatch(pattern, prefix) is not None) is accepted


@pytest.mark.parametrize("scenario", sorted(s for s in SCENARIOS if "datalocker" in s))
def test_task_role_allows_the_reads_of_the_object_reader_and_stops_at_the_prefix(
    template: dict[str, Any], scenario: str
) -> None:
    statements = task_policy(stack(template, scenario))
    requests = reader_requests()
    assert {op for op, _ in requests} == {"HeadObject", "GetObject"}
    assert any("Range" in r and "IfMatch" in r for op, r in requests if op == "GetObject")
    for operation, request in requests:
        arn = f"arn:aws:s3:::{request['Bucket']}/{request['Key']}"
        assert allows(statements, S3_ACTION[operation], arn), (operation, request)
    for url in OUTSIDE:
        assert not allows(statements, "s3:GetObject", s3_object_arn(url)), url
    listing = {"s3:prefix": OBJECT.key}
    assert not allows(statements, "s3:ListBucket", "arn:aws:s3:::acme-data-locker", listing)
    kms = allows(statements, "kms:Decrypt", KMS_KEY_ARN, VIA_S3)
    assert kms is scenario.endswith("kms")
    assert not allows(statements, "kms:Decrypt", KMS_KEY_ARN)  # only through S3


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_copy_policy_exists_only_where_redshift_copies_objects(
    template: dict[str, Any], scenario: str
) -> None:
    s = stack(template, scenario)
    container = {e["Name"]: e["Value"] for e in container_of(s)["Environment"]}
    copies_objects = "datalocker" in scenario and "SLUICE_REDSHIFT_IAM_ROLE" in container
    assert (copy_policy(s) is not None) is copies_objects
    output = template["Outputs"]["DataLockerCopyPolicyArn"]
    assert output["Condition"] == template["Resources"]["DataLockerCopyPolicy"]["Condition"]


class RecordingPuts:
    """An S3 client that keeps what is put (the staged manifest)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    async def put_object(self, Bucket: str, Key: str, Body: Any, **_: Any) -> dict[str, Any]:
        self.objects[f"s3://{Bucket}/{Key}"] = Body.read()
        return {}


def object_copy_requests() -> tuple[str, list[str]]:
    """The manifest URL the COPY of ``OBJECT`` reads, and the object URLs that manifest
    names, as the sink writes them (``S3Stager.stage_manifest``, ``copy_object_sql``)."""
    s3 = RecordingPuts()

    async def client() -> RecordingPuts:
        return s3

    location = StagingLocation(STAGING["StagingBucket"], STAGING["StagingPrefix"])
    staged = asyncio.run(S3Stager(client, location, "w-1").stage_manifest([OBJECT.url]))
    source = CsvObject(OBJECT.url, ("Event Time", "AppsFlyer ID"), CopyForm.CSV_GZIP, "m#0", None)
    sql = copy_object_sql(source, staged.manifest_url, STAGING["CopyRoleArn"], 2)
    (url,) = re.findall(r"FROM '(s3://[^']+)' IAM_ROLE '[^']+' MANIFEST ", sql)
    entries = json.loads(s3.objects[url])["entries"]
    assert all(entry["mandatory"] is True for entry in entries)
    return url, [entry["url"] for entry in entries]


def rendered_copy_role_policy() -> list[dict[str, Any]]:
    """deploy/iam/copy-role-policy.json with this stack's staging and Data Locker values."""
    text = (DEPLOY / "iam" / "copy-role-policy.json").read_text()
    values = {
        **STAGING,
        **DATA_LOCKER,
        "DataLockerKmsKeyArn": KMS_KEY_ARN,
        "DataLockerRegion": "ap-south-1",
    }
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    assert "{{" not in text
    return list(json.loads(text)["Statement"])


@pytest.mark.parametrize(
    "scenario", ["redshift-cluster-copy-datalocker", "redshift-serverless-copy-datalocker-kms"]
)
def test_copy_policy_allows_what_copy_of_an_object_does(
    template: dict[str, Any], scenario: str
) -> None:
    """The COPY reads a one-entry manifest under the staging prefix (which the COPY role's
    staging statements already allow), then gets the object it names: no listing of the
    Data Locker bucket, since a manifest names exact keys, not a prefix."""
    statements = copy_policy(stack(template, scenario))
    assert statements is not None
    manifest, objects = object_copy_requests()
    assert objects == [OBJECT.url]
    assert manifest.startswith(f"s3://{STAGING['StagingBucket']}/{STAGING['StagingPrefix']}/")
    assert allows(rendered_copy_role_policy(), "s3:GetObject", s3_object_arn(manifest))
    for url in objects:
        assert allows(statements, "s3:GetObject", s3_object_arn(url))
    bucket, key = s3_bucket_and_key(OBJECT.url)
    for listing in ({"s3:prefix": key}, {"s3:prefix": ""}, {}):
        assert not allows(statements, "s3:ListBucket", f"arn:aws:s3:::{bucket}", listing)
        assert not allows(
            rendered_copy_role_policy(), "s3:ListBucket", f"arn:aws:s3:::{bucket}", listing
        )
    for outside in OUTSIDE:
        assert not allows(statements, "s3:GetObject", s3_object_arn(outside)), outside
    assert allows(statements, "kms:Decrypt", KMS_KEY_ARN, VIA_S3) is scenario.endswith("kms")
    assert actions_of(statements) <= {"s3:GetObject", "kms:Decrypt"}


def test_whole_bucket_when_the_prefix_is_empty(template: dict[str, Any]) -> None:
    s = stack(template, "redshift-cluster-copy-datalocker", DataLockerPrefix="")
    assert s.failed_rules() == []
    anywhere = "s3://acme-data-locker/t=installs/part-00000.gz"
    assert allows(task_policy(s), "s3:GetObject", s3_object_arn(anywhere))
    copy = copy_policy(s)
    assert copy is not None
    assert allows(copy, "s3:GetObject", s3_object_arn(anywhere))
    assert "s3:ListBucket" not in actions_of(copy)  # the manifest names the key


def test_copy_policy_is_the_iam_folder_policy(template: dict[str, Any]) -> None:
    """deploy/iam/copy-role-policy.json holds the same Data Locker statements (and the
    staging ones, which the stack leaves to whoever made the COPY role)."""
    document = json.loads((DEPLOY / "iam" / "copy-role-policy.json").read_text())
    in_file = {st["Sid"]: actions_of([st]) for st in document["Statement"]}
    statements = copy_policy(stack(template, "redshift-serverless-copy-datalocker-kms"))
    assert statements is not None
    in_template = {st["Sid"]: actions_of([st]) for st in statements}
    assert {sid: in_file[sid] for sid in in_template if sid in in_file} == in_template
    assert set(in_file) - set(in_template) == {"ReadStagedBatches", "ListStagingPrefix"}
