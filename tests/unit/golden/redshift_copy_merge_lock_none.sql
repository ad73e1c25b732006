CREATE TEMP TABLE "sluice_staging" (
  "event_time" TIMESTAMP,
  "note" VARCHAR(32),
  "dedupe_key" VARCHAR(64),
  "message_id" VARCHAR(128),
  "sent_at" TIMESTAMP,
  "raw_event" SUPER
);

COPY "sluice_staging" ("event_time", "note", "dedupe_key", "message_id", "sent_at", "raw_event") FROM 's3://bucket/staging/w1/2026/11/28/abc/manifest.json' IAM_ROLE 'arn:aws:iam::123456789012:role/sluice-copy' MANIFEST FORMAT AS JSON 'auto ignorecase' GZIP TIMEFORMAT 'auto' MAXERROR 0 COMPUPDATE OFF STATUPDATE OFF;

INSERT INTO "analytics"."events" ("event_time", "note", "dedupe_key", "message_id", "sent_at", "raw_event") SELECT "event_time", "note", "dedupe_key", "message_id", "sent_at", "raw_event" FROM (SELECT "event_time", "note", "dedupe_key", "message_id", "sent_at", "raw_event", ROW_NUMBER() OVER (PARTITION BY "dedupe_key" ORDER BY "message_id") AS "sluice_rank" FROM "sluice_staging") AS sluice_new WHERE sluice_new."sluice_rank" = 1 AND NOT EXISTS (SELECT 1 FROM "analytics"."events" AS sluice_old WHERE sluice_old."dedupe_key" = sluice_new."dedupe_key");

DROP TABLE "sluice_staging";
