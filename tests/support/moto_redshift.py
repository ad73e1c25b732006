"""moto server (S3, Redshift Data API) with the statement life cycle the Data API has.

Run as a process: ``python -m tests.support.moto_redshift PORT``. moto 5.x's redshift-data
keeps every statement STARTED for ever and has no BatchExecuteStatement; this launcher adds,
before starting moto's own server, and only in that process:

- ``BatchExecuteStatement``: one statement whose ``SubStatements`` are the SQLs (``id:1``...);
- a life cycle: a statement is STARTED for its first ``describes_before_done`` describes
  (default 1, so clients must poll), then FINISHED, unless a rule says otherwise;
- rules a test sets by sending the SQL ``--sluice-test {json}`` through ExecuteStatement:
  ``{"rules": [{"match": REGEX, "status": "FAILED"|"STARTED", "error": TEXT,
  "rows": N, "records": [[...]], "times": T}], "describes_before_done": K}``; the first
  rule whose regex matches a (sub-)statement decides its status, error text, ResultRows and
  the records GetStatementResult returns. A rule with ``times`` decides that many
  statements, then is dropped (a conflict that clears: FAILED once, then FINISHED).
  ``--sluice-test history`` returns every statement received so far, one record
  ``[sql, parameters-json]`` each, in order.

Nothing runs any SQL: what is checked through this server is the request flow, not results.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from moto.redshiftdata import models, responses
from moto.server import main

_STATE: dict[str, Any] = {"rules": [], "describes_before_done": 1, "history": []}
_CONTROL = "--sluice-test "


def _rule(sql: str) -> dict[str, Any]:
    for rule in _STATE["rules"]:
        if re.search(rule["match"], sql):
            if "times" in rule:
                rule["times"] -= 1
                if rule["times"] <= 0:
                    _STATE["rules"].remove(rule)
            return dict(rule)
    return {}


class _Life:
    def __init__(self, sqls: list[str]) -> None:
        self.sqls = sqls
        self.describes = 0


_LIVES: dict[str, _Life] = {}
_RESULTS: dict[str, list[list[dict[str, Any]]]] = {}


def _control(statement: models.Statement, sql: str) -> None:
    command = sql[len(_CONTROL) :].strip()
    if command == "history":
        _RESULTS[statement.id] = [
            [{"stringValue": text}, {"stringValue": params}] for text, params in _STATE["history"]
        ]
    else:
        _STATE.update(json.loads(command))
        _RESULTS[statement.id] = []
    statement.status = "FINISHED"


_original_execute = models.RedshiftDataAPIServiceBackend.execute_statement


def execute_statement(self: Any, **kwargs: Any) -> models.Statement:
    statement = _original_execute(self, **kwargs)
    sql = str(kwargs["sql"])
    if sql.startswith(_CONTROL):
        _control(statement, sql)
        return statement
    _STATE["history"].append((sql, json.dumps(kwargs.get("parameters") or [])))
    _LIVES[statement.id] = _Life([sql])
    return statement


def batch_execute_statement(self: Any, sqls: list[str], **kwargs: Any) -> models.Statement:
    statement = _original_execute(self, sql="\n;\n".join(sqls), parameters=[], **kwargs)
    for sql in sqls:
        _STATE["history"].append((sql, "batch"))
    _LIVES[statement.id] = _Life(list(sqls))
    return statement


_original_describe = models.RedshiftDataAPIServiceBackend.describe_statement


def describe_statement(self: Any, statement_id: str) -> models.Statement:
    statement = _original_describe(self, statement_id)
    life = _LIVES.get(statement.id)
    if life is None or statement.status not in ("STARTED", "SUBMITTED"):
        return statement
    life.describes += 1
    if life.describes <= _STATE["describes_before_done"]:
        return statement
    subs, status, error = [], "FINISHED", ""
    for index, sql in enumerate(life.sqls, start=1):
        rule = _rule(sql)
        sub_status = rule.get("status", "FINISHED") if status == "FINISHED" else "ABORTED"
        if sub_status != "FINISHED" and status == "FINISHED":
            status, error = sub_status, rule.get("error", "")
        subs.append(
            {
                "Id": f"{statement.id}:{index}",
                "QueryString": sql,
                "Status": sub_status,
                "Error": rule.get("error", "") if sub_status == "FAILED" else "",
                "ResultRows": rule.get("rows", 0),
                "HasResultSet": "records" in rule,
            }
        )
        if "records" in rule:
            _RESULTS[statement.id] = rule["records"]
    statement.status = status
    statement.sub_statements = subs if len(life.sqls) > 1 else []
    statement.result_rows = subs[0]["ResultRows"] if len(subs) == 1 else -1
    if error:
        statement.error = error  # read by the patched __iter__ below
    return statement


_original_iter = models.Statement.__iter__


def statement_iter(self: Any) -> Any:
    yield from _original_iter(self)
    if getattr(self, "error", ""):
        yield "Error", self.error


def get_statement_result(self: Any, statement_id: str) -> models.StatementResult:
    _original_describe(self, statement_id)  # raises for an unknown id
    records = _RESULTS.get(statement_id, [])
    return models.StatementResult([], records, len(records))


def batch_execute_statement_response(self: Any) -> Any:
    statement = self.redshiftdata_backend.batch_execute_statement(
        sqls=self._get_param("Sqls"),
        cluster_identifier=self._get_param("ClusterIdentifier"),
        database=self._get_param("Database"),
        db_user=self._get_param("DbUser"),
        secret_arn=self._get_param("SecretArn"),
    )
    body = {"Id": statement.id, "CreatedAt": statement.created_at, "Database": statement.database}
    return 200, {}, json.dumps(body)


models.RedshiftDataAPIServiceBackend.execute_statement = execute_statement  # type: ignore[method-assign]
models.RedshiftDataAPIServiceBackend.batch_execute_statement = batch_execute_statement  # type: ignore[attr-defined]
models.RedshiftDataAPIServiceBackend.describe_statement = describe_statement  # type: ignore[method-assign]
models.RedshiftDataAPIServiceBackend.get_statement_result = get_statement_result  # type: ignore[method-assign]
models.Statement.__iter__ = statement_iter  # type: ignore[method-assign]
responses.RedshiftDataAPIServiceResponse.batch_execute_statement = batch_execute_statement_response  # type: ignore[attr-defined]

if __name__ == "__main__":
    main(["-p", sys.argv[1], "-H", "127.0.0.1"])
