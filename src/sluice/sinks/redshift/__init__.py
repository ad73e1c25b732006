"""The Redshift sink: its settings, SQL, statement runners (Data API, direct), S3 staging.

Nothing is imported here: ``config`` reads ``settings`` alone, and the drivers the sink
needs (botocore, psycopg) load only when a worker builds one.
"""
