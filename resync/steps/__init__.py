"""Step families: preflight, replication, locking, services, datadir, copy, verify."""
