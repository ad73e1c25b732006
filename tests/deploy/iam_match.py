"""Whether a list of Allow statements permits one request: enough of IAM's evaluation to check
the policies in the pack against the requests the code makes, nothing more.

Covers Action and Resource with IAM's wildcards (`*` and `?`; actions case-insensitive) and
the condition operators the pack uses (StringEquals, StringLike). A condition key the request
does not carry makes its statement not apply, as in IAM. Deny, NotAction, NotResource and
other operators raise: a policy using them needs a real evaluator.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _wildcard(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def _condition_holds(condition: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    for operator, tests in condition.items():
        if operator not in ("StringEquals", "StringLike"):
            raise AssertionError(f"the matcher does not know the operator {operator}")
        for key, expected in tests.items():
            if key not in context:
                return False
            values = _as_list(expected)
            if operator == "StringEquals" and context[key] not in values:
                return False
            if operator == "StringLike" and not any(_wildcard(v, context[key]) for v in values):
                return False
    return True


def allows(
    statements: Iterable[Mapping[str, Any]],
    action: str,
    resource: str,
    context: Mapping[str, str] | None = None,
) -> bool:
    """True when some statement allows `action` on `resource` with the request's `context`."""
    for statement in statements:
        if statement["Effect"] != "Allow" or {"NotAction", "NotResource"} & set(statement):
            raise AssertionError(f"the matcher handles Allow/Action/Resource only: {statement}")
        if not any(_wildcard(a, action, ignore_case=True) for a in _as_list(statement["Action"])):
            continue
        if not any(_wildcard(r, resource) for r in _as_list(statement["Resource"])):
            continue
        if _condition_holds(statement.get("Condition", {}), context or {}):
            return True
    return False


def s3_object_arn(url: str) -> str:
    """arn:aws:s3:::bucket/key of s3://bucket/key."""
    assert url.startswith("s3://"), url
    return "arn:aws:s3:::" + url.removeprefix("s3://")


def s3_bucket_and_key(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key
