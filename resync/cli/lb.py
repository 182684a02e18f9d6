"""`resync lb ...`: load-balancer membership of instances (lb.yaml) and HAProxy backends.

This module imports click only: `resync --help` stays light (no boto3). The work is done in
resync.lb.command, imported when a command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


@click.group()
def lb() -> None:
    """Load balancers: register/deregister/status of an instance, HAProxy backends."""


def _who(fn: Callable[..., None]) -> Callable[..., None]:
    """The options every membership command takes: the file and the instance."""
    for option in reversed((
        click.option("--config", "config", required=True, type=click.Path(dir_okay=False),
                     help="lb.yaml: the instance's load balancers, DNS records, HAProxy servers"),
        click.option("--self", "use_self", is_flag=True,
                     help="this instance: lb.yaml's `self:` (default: read from IMDSv2)"),
        click.option("--instance", metavar="ID", help="another instance, by id"),
        click.option("--address", metavar="IP",
                     help="its private address (default: asked of EC2 when a record needs it)"),
    )):
        fn = option(fn)
    return fn


def _run(command: str, config: str, use_self: bool, instance: str | None, address: str | None,
         **extra: Any) -> None:
    from rich.console import Console

    from resync.cli.commands import _guard
    from resync.lb.command import Who, run_lb

    who = Who(use_self=use_self, instance=instance, address=address)
    _guard(run_lb)(config, command, who, Console(highlight=False), **extra)


@lb.command()
@_who
def status(config: str, use_self: bool, instance: str | None, address: str | None) -> None:
    """Show the instance's state in every member of lb.yaml (changes nothing)."""
    _run("status", config, use_self, instance, address)


@lb.command()
@_who
def register(config: str, use_self: bool, instance: str | None, address: str | None) -> None:
    """Register the instance in every member, then wait until each sends it traffic."""
    _run("register", config, use_self, instance, address)


@lb.command()
@_who
@click.option("--complete-lifecycle", "hook", metavar="HOOK",
              help="then complete this Auto Scaling terminating lifecycle hook (CONTINUE)")
@click.option("--asg", "group", metavar="NAME",
              help="the hook's Auto Scaling group (default: the instance's, asked of AWS)")
def deregister(config: str, use_self: bool, instance: str | None, address: str | None,
               hook: str | None, group: str | None) -> None:
    """Deregister the instance from every member; return when every drain is over."""
    _run("deregister", config, use_self, instance, address, hook=hook, group=group)
