LOCK "analytics"."events";

CREATE TEMP TABLE "sluice_staging" (
  "event_time" TIMESTAMP,
  "note" VARCHAR(32),
  "dedupe_key" VARCHAR(64),
  "message_id" VARCHAR(128),
  "sent_at" TIMESTAMP,
  "raw_event" SUPER
);

INSERT INTO "sluice_staging" ("event_time", "note", "dedupe_key", "message_id", "sent_at", "raw_event") VALUES (CAST('2024-05-01 12:34:56.789000' AS TIMESTAMP), 'it''s', 'k1', 'm1', NULL, JSON_PARSE('{"a":1}')), (CAST('2024-05-01 12:34:56.789000' AS TIMESTAMP), NULL, 'k2', 'm2', NULL, JSON_PARSE('{"a":1}'));

INSERT INTO "analytics"."events" ("event_time", "note", "dedupe_key", "message_id", "sent_at", "raw_event") SELECT "event_time", "note", "dedupe_key", "message_id", "sent_at", "raw_event" FROM (SELECT "event_time", "note", "dedupe_key", "message_id", "sent_at", "raw_event", ROW_NUMBER() OVER (PARTITION BY "dedupe_key" ORDER BY "message_id") AS "sluice_rank" FROM "sluice_staging") AS sluice_new WHERE sluice_new."sluice_rank" = 1 AND NOT EXISTS (SELECT 1 FROM "analytics"."events" AS sluice_old WHERE sluice_old."dedupe_key" = sluice_new."dedupe_key");

DROP TABLE "sluice_staging";
