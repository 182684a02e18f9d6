"""Verify the data without a long lock: every user table checksummed in primary-key chunks on
primary and replica, both at one binlog position at a time (see step.py)."""

from resync.steps.verify.step import (
    VerifyData,
    checksum_rows,
    compare_actions,
    describe,
    verify_step_id,
)

__all__ = ["VerifyData", "checksum_rows", "compare_actions", "describe", "verify_step_id"]
