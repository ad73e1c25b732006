"""Local stand-ins for AWS: the fauxqs SQS emulator, started and stopped for demos and tests."""
