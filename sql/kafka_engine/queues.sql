-- PRODUCTION VARIANT, for a ClickHouse server (not chDB): ClickHouse consumes the topics itself.
--
-- Instead of running `tokenpools sink run`, a server can read Kafka with its
-- Kafka table engine: one queue table per topic (JSONAsString: each record is
-- kept whole in `raw`), and the materialized views of views.sql parse,
-- validate and move the records into the same raw tables the sink writes
-- (sql/migrations). Records that fail validation land in kafka_dead_letters.
--
-- Apply after the migrations, with the placeholders filled in, e.g.
--   KAFKA_BROKERS=kafka-0:9092 TOPIC_PREFIX=tokenpools. \
--   envsubst < sql/kafka_engine/queues.sql | clickhouse-client -d tokenpools --multiquery
--   clickhouse-client -d tokenpools --multiquery < sql/kafka_engine/views.sql
-- (TOPIC_PREFIX is "<namespace>.tokenpools." when topics are namespaced.)
-- Placeholders are operator settings; nothing here is built from user input.
--
-- Delivery: the Kafka engine commits after a block reaches the tables, so a
-- server crash can re-deliver a block; the raw tables' ReplacingMergeTree keys
-- and FINAL in the named queries keep the numbers exact, as with the sink.
CREATE TABLE IF NOT EXISTS requests_queue (raw String)
ENGINE = Kafka
SETTINGS kafka_broker_list = '${KAFKA_BROKERS}', kafka_topic_list = '${TOPIC_PREFIX}requests',
         kafka_group_name = 'tokenpools-clickhouse-requests', kafka_format = 'JSONAsString',
         kafka_num_consumers = 1, kafka_max_block_size = 65536;

CREATE TABLE IF NOT EXISTS engine_queue (raw String)
ENGINE = Kafka
SETTINGS kafka_broker_list = '${KAFKA_BROKERS}', kafka_topic_list = '${TOPIC_PREFIX}engine',
         kafka_group_name = 'tokenpools-clickhouse-engine', kafka_format = 'JSONAsString';

CREATE TABLE IF NOT EXISTS state_queue (raw String)
ENGINE = Kafka
SETTINGS kafka_broker_list = '${KAFKA_BROKERS}', kafka_topic_list = '${TOPIC_PREFIX}state',
         kafka_group_name = 'tokenpools-clickhouse-state', kafka_format = 'JSONAsString';

CREATE TABLE IF NOT EXISTS limits_queue (raw String)
ENGINE = Kafka
SETTINGS kafka_broker_list = '${KAFKA_BROKERS}', kafka_topic_list = '${TOPIC_PREFIX}limits',
         kafka_group_name = 'tokenpools-clickhouse-limits', kafka_format = 'JSONAsString';

CREATE TABLE IF NOT EXISTS scaling_queue (raw String)
ENGINE = Kafka
SETTINGS kafka_broker_list = '${KAFKA_BROKERS}', kafka_topic_list = '${TOPIC_PREFIX}scaling',
         kafka_group_name = 'tokenpools-clickhouse-scaling', kafka_format = 'JSONAsString';
