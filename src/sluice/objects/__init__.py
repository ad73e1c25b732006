"""Rows that live in S3 objects an event notification names (AppsFlyer Data Locker).

``layout`` (pure) tells a Data Locker object from a marker; ``csvstream`` (pure) turns gzip
CSV bytes into rows incrementally; ``s3read`` streams an object with bounded memory;
``rows`` maps a CSV row through the table mapping; ``loader`` drives one announcing
message's objects through the pipeline's loader and says how to settle it; ``report``
sends the rows that did not fit to the DLQ (the per-object error report).
"""
