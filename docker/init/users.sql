-- Users resync and the integration suite need, created on BOTH servers (MySQL 8.4 and MariaDB).
-- Development-only passwords (see README.md). Not binlogged: db2 creates its own copies, and
-- replaying db1's CREATE USER on db2 would stop replication (error 1396).
SET SESSION sql_log_bin = 0;
CREATE USER 'resync'@'%' IDENTIFIED BY 'resync-dev-password';
GRANT ALL PRIVILEGES ON *.* TO 'resync'@'%' WITH GRANT OPTION;
CREATE USER 'repl'@'%' IDENTIFIED BY 'repl-dev-password';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
SET SESSION sql_log_bin = 1;
