"""`resync schedule RUNBOOK [--install]`: the systemd timer + service that start a run in each of
the runbook's windows, and the equivalent crontab line.

Without --install it prints them. With --install it writes the two units into --unit-dir
(atomically: a temporary file renamed over the old one) and, when it does not exist yet, the
environment file with the runbook's `*_env` names and empty values, mode 0600: resync never
writes a secret, the operator fills them in. It does not run systemctl: it prints the command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console

    from resync.window.schedule import ScheduleFiles

DEFAULT_UNIT_DIR = "/etc/systemd/system"
DEFAULT_ENV_DIR = "/etc/resync"


@click.command("schedule")
@click.argument("runbook", type=click.Path(dir_okay=False))
@click.option("--install", is_flag=True, help="write the units (and the environment file, if "
                                               "missing) instead of printing them")
@click.option("--unit-dir", "unit_dir", type=click.Path(file_okay=False),
              default=DEFAULT_UNIT_DIR, show_default=True, help="where --install writes the units")
@click.option("--env-file", "env_file", type=click.Path(dir_okay=False),
              help=f"the runbook's *_env variables (default: {DEFAULT_ENV_DIR}/<name>.env)")
@click.option("--workdir", type=click.Path(file_okay=False),
              help="the runs' working directory: journals go to its resync-journal/ (default: "
                   "the current directory)")
def schedule(runbook: str, install: bool, unit_dir: str, env_file: str | None,
             workdir: str | None) -> None:
    """Print (or --install) a systemd timer + service for the runbook's window, and the crontab
    line that does the same."""
    from resync.cli.commands import _guard

    _guard(_schedule)(runbook, install, unit_dir, env_file, workdir)


def resync_command() -> list[str]:
    """How the units start this very resync: the `resync` script beside this interpreter (a
    virtualenv's), else the interpreter with -m resync."""
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "resync"
    return [str(script)] if script.exists() else [sys.executable, "-m", "resync"]


def _schedule(runbook: str, install: bool, unit_dir: str, env_file: str | None,
              workdir: str | None) -> None:
    from pathlib import Path

    from resync.cli.commands import _console, _load
    from resync.cli.window import _settings
    from resync.window.schedule import schedule_files

    loaded = _load(runbook)
    _settings(loaded)
    env = Path(env_file or f"{DEFAULT_ENV_DIR}/{loaded.model.name}.env").absolute()
    files = schedule_files(loaded, resync=resync_command(), workdir=Path(workdir or ".").resolve(),
                           env_file=env)
    console = _console()
    if install:
        install_files(files, Path(unit_dir), console)
        return
    for title, text in ((f"{unit_dir}/{files.name}.timer", files.timer),
                        (f"{unit_dir}/{files.name}.service", files.service),
                        (f"{files.env_file} (mode 0600: fill in the values)", files.env_text()),
                        ("crontab line (instead of the timer)", files.crontab)):
        console.rule(title)
        click.echo(text, nl=False)
    console.rule()
    console.print(f"write them with: resync schedule {runbook} --install", soft_wrap=True)


def install_files(files: ScheduleFiles, unit_dir: Path, console: Console) -> None:
    import os

    from rich.markup import escape

    from resync.model.errors import BadInputError
    from resync.run.journal import atomic_write

    if not unit_dir.is_dir():
        raise BadInputError(f"--unit-dir {unit_dir} is not a directory")
    try:
        for suffix, text in (("timer", files.timer), ("service", files.service)):
            path = unit_dir / f"{files.name}.{suffix}"
            atomic_write(path, text, 0o644)
            console.print(f"wrote {escape(str(path))}")
        env = files.env_file
        if env.exists():
            os.chmod(env, 0o600)
            have = {line.split("=", 1)[0].strip() for line in env.read_text().splitlines()
                    if "=" in line and not line.lstrip().startswith("#")}
            missing = [n for n in files.env_names if n not in have]
            console.print(f"kept {escape(str(env))} (mode set to 0600)" +
                          (f"; it lacks: {', '.join(missing)}" if missing else ""))
        else:
            env.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(env, files.env_text(), 0o600)
            console.print(f"wrote {escape(str(env))} (mode 0600): fill in "
                          f"{', '.join(files.env_names) or 'nothing'}")
    except OSError as exc:
        raise BadInputError(f"cannot write {exc.filename}: {exc.strerror}") from None
    console.print(f"then: systemctl daemon-reload && systemctl enable --now {files.name}.timer",
                  soft_wrap=True)
