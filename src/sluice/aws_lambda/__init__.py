"""Sluice as an AWS Lambda function behind an SQS event source mapping (docs/lambda.md).

Set the function's handler to ``sluice.aws_lambda.handler``.
"""

from sluice.aws_lambda.handler import handler

__all__ = ["handler"]
