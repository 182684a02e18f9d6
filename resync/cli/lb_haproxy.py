"""`resync lb haproxy-config`: a backend section from the live instances, for cron.

With `--write FILE --reload CMD` the file is replaced (atomically) only when its content changes
and `haproxy -c` accepts the new one together with `--check-with` files; then CMD reloads
HAProxy. Exit 0 when nothing changed too, so that cron stays quiet.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("haproxy-config")
@click.option("--config", "config", type=click.Path(dir_okay=False),
              help="lb.yaml (only its aws: region is used here)")
@click.option("--from", "source", required=True, metavar="asg:NAME|elb:NAME|target-group:ARN|tag:K=V")
@click.option("--backend", required=True, help="the backend's name")
@click.option("--port", default=80, show_default=True)
@click.option("--maxconn", default=100, show_default=True)
@click.option("--check-path", default="/health", show_default=True,
              help="option httpchk GET PATH ('' for none)")
@click.option("--errorfile", default="/etc/haproxy/errors/503.http", show_default=True,
              help="errorfile 503 FILE ('' for none)")
@click.option("--write", "target", type=click.Path(dir_okay=False),
              help="replace this file when the backend changed (else print it)")
@click.option("--check-with", "check_with", multiple=True, type=click.Path(dir_okay=False),
              help="other config files haproxy -c must accept the new file with (the main one)")
@click.option("--reload", "reload_cmd", help="run after the file was replaced")
def haproxy_config(config: str | None, source: str, backend: str, port: int, maxconn: int,
                   check_path: str, errorfile: str, target: str | None,
                   check_with: tuple[str, ...], reload_cmd: str | None) -> None:
    """Render an HAProxy backend from the in-service instances; --write replaces a file."""
    from resync.cli.commands import _guard

    _guard(_haproxy_config)(config, source, backend, port, maxconn, check_path, errorfile,
                            target, check_with, reload_cmd)


def _haproxy_config(config: str | None, source: str, backend: str, port: int, maxconn: int,
                    check_path: str, errorfile: str, target: str | None,
                    check_with: tuple[str, ...], reload_cmd: str | None) -> None:
    import json
    import os

    from resync.actions.quoting import argv
    from resync.actions.types import Shell
    from resync.lb.backends import INSTANCES, BackendStyle, DiscoverInstances, Source, render_backend
    from resync.model.errors import ResyncError
    from resync.run.executor import Executor
    from resync.run.journal import MemoryJournal
    from resync.transport.local import LocalHost

    if config:  # the region of lb.yaml, unless the environment already says
        import yaml

        region = ((yaml.safe_load(Path(config).read_text()) or {}).get("aws") or {}).get("region")
        if region:
            os.environ.setdefault("AWS_DEFAULT_REGION", str(region))

    def no_mysql(name: str) -> object:
        raise ResyncError("haproxy-config talks to no database")

    src = Source.parse(source)
    exe = Executor(MemoryJournal("haproxy-config"), hosts=LocalHost, connect=no_mysql)  # type: ignore[arg-type]
    exe.begin("haproxy-config")
    try:
        exe.run([DiscoverInstances(src)])
        instances = json.loads(str(exe.captured[str(INSTANCES)]))
        text = render_backend(backend, instances,
                              BackendStyle(port, maxconn, check_path or None, errorfile or None),
                              src)
        if target is None:
            click.echo(text, nl=False)
            return
        path = Path(target)
        if path.exists() and path.read_text() == text:
            click.echo(f"{path}: unchanged ({len(instances)} server(s))")
            return
        tmp = path.with_name(f".{path.name}.resync-new")
        tmp.write_text(text)
        try:
            files = [a for f in (*check_with, str(tmp)) for a in ("-f", f)]
            exe.run([Shell.line("local", argv("haproxy", "-c", "-q", *files))], prefix="1.")
            os.replace(tmp, path)  # atomic: HAProxy never reads half a file
        finally:
            tmp.unlink(missing_ok=True)
        click.echo(f"{path}: written ({len(instances)} server(s))")
        if reload_cmd:
            exe.run([Shell.line("local", reload_cmd, privileged=True)], prefix="2.")
            click.echo(f"reloaded: {reload_cmd}")
    finally:
        exe.close()
