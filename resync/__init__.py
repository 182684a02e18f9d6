"""resync: rebuild one MySQL/MariaDB server of a primary-replica pair from the other."""

__version__ = "0.1.0"
