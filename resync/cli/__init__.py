"""The command line: commands and exit codes, plan rendering, the terminal UI."""

from resync.cli.commands import main

__all__ = ["main"]
