"""Message sources: the SQS edge and its in-memory twin for unit tests."""
