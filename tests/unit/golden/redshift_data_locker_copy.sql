CREATE TEMP TABLE "sluice_object" (
  "c1" VARCHAR(65535),
  "c2" VARCHAR(65535),
  "c3" VARCHAR(65535),
  "c4" VARCHAR(65535),
  "c5" VARCHAR(65535),
  "c6" VARCHAR(65535),
  "c7" VARCHAR(65535),
  "c8" VARCHAR(65535),
  "c9" VARCHAR(65535),
  "c10" VARCHAR(65535),
  "c11" VARCHAR(65535),
  "c12" VARCHAR(65535),
  "c13" VARCHAR(65535),
  "c14" VARCHAR(65535),
  "c15" VARCHAR(65535),
  "c16" VARCHAR(65535),
  "c17" VARCHAR(65535),
  "c18" VARCHAR(65535),
  "c19" VARCHAR(65535),
  "c20" VARCHAR(65535),
  "c21" VARCHAR(65535),
  "c22" VARCHAR(65535),
  "c23" VARCHAR(65535),
  "c24" VARCHAR(65535),
  "c25" VARCHAR(65535),
  "c26" VARCHAR(65535),
  "c27" VARCHAR(65535),
  "c28" VARCHAR(65535),
  "c29" VARCHAR(65535),
  "c30" VARCHAR(65535),
  "c31" VARCHAR(65535),
  "c32" VARCHAR(65535),
  "c33" VARCHAR(65535),
  "c34" VARCHAR(65535),
  "c35" VARCHAR(65535),
  "c36" VARCHAR(65535),
  "c37" VARCHAR(65535),
  "c38" VARCHAR(65535),
  "c39" VARCHAR(65535),
  "c40" VARCHAR(65535),
  "c41" VARCHAR(65535)
);

COPY "sluice_object" ("c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9", "c10", "c11", "c12", "c13", "c14", "c15", "c16", "c17", "c18", "c19", "c20", "c21", "c22", "c23", "c24", "c25", "c26", "c27", "c28", "c29", "c30", "c31", "c32", "c33", "c34", "c35", "c36", "c37", "c38", "c39", "c40", "c41") FROM 's3://staging/sluice/w-1/2024/05/01/0b5e/manifest.json' IAM_ROLE 'arn:aws:iam::123456789012:role/sluice-copy' MANIFEST CSV GZIP IGNOREHEADER 1 NULL AS 'sluice:null:7d1f' MAXERROR 0 COMPUPDATE OFF STATUPDATE OFF;

CREATE TEMP TABLE "sluice_staging" (
  "appsflyer_id" VARCHAR(128),
  "event_name" VARCHAR(256),
  "event_time" TIMESTAMP,
  "event_value" SUPER,
  "event_revenue" DECIMAL(20,6),
  "event_revenue_currency" VARCHAR(16),
  "event_revenue_usd" DECIMAL(20,6),
  "media_source" VARCHAR(256),
  "campaign" VARCHAR(512),
  "af_channel" VARCHAR(256),
  "platform" VARCHAR(32),
  "app_id" VARCHAR(256),
  "customer_user_id" VARCHAR(256),
  "idfa" VARCHAR(64),
  "idfv" VARCHAR(64),
  "advertising_id" VARCHAR(64),
  "country_code" VARCHAR(8),
  "install_time" TIMESTAMP,
  "os_version" VARCHAR(64),
  "sdk_version" VARCHAR(64),
  "is_retargeting" BOOLEAN,
  "is_primary_attribution" BOOLEAN,
  "dedupe_key" VARCHAR(64),
  "message_id" VARCHAR(128),
  "sent_at" TIMESTAMP,
  "raw_event" SUPER
);

INSERT INTO "sluice_staging" ("appsflyer_id", "event_name", "event_time", "event_value", "event_revenue", "event_revenue_currency", "event_revenue_usd", "media_source", "campaign", "af_channel", "platform", "app_id", "customer_user_id", "idfa", "idfv", "advertising_id", "country_code", "install_time", "os_version", "sdk_version", "is_retargeting", "is_primary_attribution", "dedupe_key", "message_id", "sent_at", "raw_event") SELECT sluice_row."c27", sluice_row."c5", CAST(NULLIF(sluice_row."c4", '') AS TIMESTAMP), JSON_PARSE(NULLIF(sluice_row."c6", '')), CAST(NULLIF(sluice_row."c7", '') AS DECIMAL(20,6)), sluice_row."c8", CAST(NULLIF(sluice_row."c9", '') AS DECIMAL(20,6)), sluice_row."c13", sluice_row."c16", sluice_row."c14", sluice_row."c32", sluice_row."c37", sluice_row."c30", sluice_row."c29", sluice_row."c31", sluice_row."c28", sluice_row."c21", CAST(NULLIF(sluice_row."c3", '') AS TIMESTAMP), sluice_row."c34", sluice_row."c36", CASE WHEN sluice_row."c39" = '' THEN NULL ELSE LOWER(sluice_row."c39") IN ('true', 't', 'yes', 'y', '1') END, CASE WHEN sluice_row."c40" = '' THEN NULL ELSE LOWER(sluice_row."c40") IN ('true', 't', 'yes', 'y', '1') END, SHA2(sluice_row.sluice_json, 256), 'm-1#0:copy', NULL, JSON_PARSE(sluice_row.sluice_json) FROM (SELECT "sluice_object".*, '{"Ad":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c19", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Adset":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c18", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Advertising ID":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c28", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","App ID":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c37", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","App Name":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c38", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","App Version":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c35", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","AppsFlyer ID":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c27", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Attributed Touch Time":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c2", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Attributed Touch Type":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c1", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Campaign":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c16", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Campaign ID":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c17", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Channel":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c14", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","City":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c23", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Country Code":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c21", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Customer User ID":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c30", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Device Type":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c33", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Event Name":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c5", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Event Revenue":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c7", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Event Revenue Currency":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c8", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Event Revenue USD":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c9", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Event Source":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c10", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Event Time":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c4", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Event Value":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c6", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","IDFA":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c29", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","IDFV":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c31", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","IP":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c24", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Install Time":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c3", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Is Primary Attribution":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c40", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Is Receipt Validated":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c11", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Is Retargeting":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c39", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Keywords":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c15", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Language":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c26", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Media Source":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c13", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","OS Version":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c34", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Partner":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c12", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Platform":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c32", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","Region":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c20", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","SDK Version":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c36", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","State":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c22", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","User Agent":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c41", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '","WIFI":"' || REPLACE(REPLACE(REPLACE(REPLACE(REPLACE("c25", '\\', '\\\\'), '"', '\\"'), CHR(10), '\\n'), CHR(13), '\\r'), CHR(9), '\\t') || '"}' AS sluice_json FROM "sluice_object") AS sluice_row WHERE 1 / CASE WHEN NOT (sluice_row.sluice_json ~ '[[:cntrl:]]') AND OCTET_LENGTH(sluice_row."c27") <= 128 AND OCTET_LENGTH(sluice_row."c5") <= 256 AND sluice_row."c4" ~ '^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,6})?$' AND (sluice_row."c6" = '' OR (sluice_row."c6" ~ '^[{[]' AND sluice_row."c6" ~ '[]}]$')) AND (sluice_row."c7" = '' OR sluice_row."c7" ~ '^-?[0-9]{1,14}([.][0-9]{1,6})?$') AND OCTET_LENGTH(sluice_row."c8") <= 16 AND (sluice_row."c9" = '' OR sluice_row."c9" ~ '^-?[0-9]{1,14}([.][0-9]{1,6})?$') AND OCTET_LENGTH(sluice_row."c13") <= 256 AND OCTET_LENGTH(sluice_row."c16") <= 512 AND OCTET_LENGTH(sluice_row."c14") <= 256 AND OCTET_LENGTH(sluice_row."c32") <= 32 AND OCTET_LENGTH(sluice_row."c37") <= 256 AND OCTET_LENGTH(sluice_row."c30") <= 256 AND OCTET_LENGTH(sluice_row."c29") <= 64 AND OCTET_LENGTH(sluice_row."c31") <= 64 AND OCTET_LENGTH(sluice_row."c28") <= 64 AND OCTET_LENGTH(sluice_row."c21") <= 8 AND (sluice_row."c3" = '' OR sluice_row."c3" ~ '^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,6})?$') AND OCTET_LENGTH(sluice_row."c34") <= 64 AND OCTET_LENGTH(sluice_row."c36") <= 64 AND (sluice_row."c39" = '' OR LOWER(sluice_row."c39") IN ('true', 't', 'yes', 'y', '1', 'false', 'f', 'no', 'n', '0')) AND (sluice_row."c40" = '' OR LOWER(sluice_row."c40") IN ('true', 't', 'yes', 'y', '1', 'false', 'f', 'no', 'n', '0')) THEN 1 ELSE 0 END = 1;

INSERT INTO "appsflyer_events" ("appsflyer_id", "event_name", "event_time", "event_value", "event_revenue", "event_revenue_currency", "event_revenue_usd", "media_source", "campaign", "af_channel", "platform", "app_id", "customer_user_id", "idfa", "idfv", "advertising_id", "country_code", "install_time", "os_version", "sdk_version", "is_retargeting", "is_primary_attribution", "dedupe_key", "message_id", "sent_at", "raw_event") SELECT "appsflyer_id", "event_name", "event_time", "event_value", "event_revenue", "event_revenue_currency", "event_revenue_usd", "media_source", "campaign", "af_channel", "platform", "app_id", "customer_user_id", "idfa", "idfv", "advertising_id", "country_code", "install_time", "os_version", "sdk_version", "is_retargeting", "is_primary_attribution", "dedupe_key", "message_id", "sent_at", "raw_event" FROM (SELECT "appsflyer_id", "event_name", "event_time", "event_value", "event_revenue", "event_revenue_currency", "event_revenue_usd", "media_source", "campaign", "af_channel", "platform", "app_id", "customer_user_id", "idfa", "idfv", "advertising_id", "country_code", "install_time", "os_version", "sdk_version", "is_retargeting", "is_primary_attribution", "dedupe_key", "message_id", "sent_at", "raw_event", ROW_NUMBER() OVER (PARTITION BY "dedupe_key" ORDER BY "message_id") AS "sluice_rank" FROM "sluice_staging") AS sluice_new WHERE sluice_new."sluice_rank" = 1 AND NOT EXISTS (SELECT 1 FROM "appsflyer_events" AS sluice_old WHERE sluice_old."dedupe_key" = sluice_new."dedupe_key");

DROP TABLE "sluice_staging";

DROP TABLE "sluice_object";
