-- db2 only: replicate from db1 (same host network: 127.0.0.1:33061), GTID from db2's slave_pos.
-- master.info persists, so the slave threads start again whenever db2 starts.
CHANGE MASTER TO
  MASTER_HOST = '127.0.0.1', MASTER_PORT = 33061,
  MASTER_USER = 'repl', MASTER_PASSWORD = 'repl-dev-password',
  MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 2;
START SLAVE;
