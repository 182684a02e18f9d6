-- db2 only: replicate from db1 (same host network: 127.0.0.1:33061) with GTID auto-positioning.
-- MySQL 8.4 has no CHANGE MASTER / START SLAVE any more. repl uses caching_sha2_password, so
-- without TLS the replica must fetch the source's RSA key (GET_SOURCE_PUBLIC_KEY).
CHANGE REPLICATION SOURCE TO
  SOURCE_HOST = '127.0.0.1', SOURCE_PORT = 33061,
  SOURCE_USER = 'repl', SOURCE_PASSWORD = 'repl-dev-password',
  SOURCE_AUTO_POSITION = 1, GET_SOURCE_PUBLIC_KEY = 1,
  SOURCE_CONNECT_RETRY = 2, SOURCE_RETRY_COUNT = 10000;
START REPLICA;
