"""The copy's shell pipelines: the relay carries the stream method, ssh the other; both ends
always report what they carried, the receiving relay lets in only the donor with the run's token,
and every runbook value stays one shell word."""

from __future__ import annotations

import shlex

import pytest

from resync.model.errors import ResyncError
from resync.steps.copy import relay
from resync.steps.copy.commands import (
    CONNECTORS,
    LISTENERS,
    PROBED,
    CopySpec,
    bandwidth_probe,
    excludes_for,
    pick,
    receiver,
    relay_prelude,
    sender,
)
from resync.steps.copy.pipeline import end_report


def spec(**overrides: object) -> CopySpec:
    base = CopySpec(donor="d", recipient="r", donor_datadir="/d", recipient_datadir="/r",
                    listen_address="10.0.0.2", port=7878, owner="mysql:mysql",
                    excludes=excludes_for("mariadb"), donor_address="10.0.0.1")
    return CopySpec(**{**base.__dict__, **overrides})


def test_pick_wants_python3_where_the_tools_were_probed() -> None:
    assert pick({PROBED, "python3", "pv"}, LISTENERS, "h", "receive") == "python3"
    with pytest.raises(ResyncError, match=r"db2 has no python3 .* apt-get install python3"):
        pick({PROBED, "pv", "ssh"}, CONNECTORS, "db2", "send")


def test_pick_assumes_python3_where_nothing_was_probed() -> None:
    """A plan without --detect: the preflight's tools check asks each host before any change."""
    assert pick({"ssh", "pv"}, LISTENERS, "h", "receive") == "python3"


@pytest.mark.parametrize("overrides", [
    {}, {"compress": "zstd"}, {"compress": "lz4"}, {"rate_limit_mb_per_s": 50.0},
    {"digest": "sha256"},
])
def test_stream_ends_relay_count_and_checksum(overrides: dict[str, object]) -> None:
    s = spec(**overrides)
    recv, send = receiver(s), sender(s)
    assert recv is not None
    digest = s.digest
    assert (f"python3 {relay.PATH} receive 10.0.0.2 7878 {digest} --token-sha256 "
            "<copy.token_sha256> --peer 10.0.0.1 --timeout 30 | ") in recv.render()
    assert send.render().endswith(f" | python3 {relay.PATH} send 10.0.0.2 7878 {digest} --token "
                                  "/run/resync-relay/<copy.token_sha256> --source 10.0.0.1")
    for end in (recv.render(), send.render()):
        assert "--totals" in end and "tee" not in end and "openssl" not in end and "nc " not in end
        assert end.startswith(": resync-copy-run <run_id>; set -euo pipefail; ")
    if s.compress != "none":
        assert f"{s.compress} -q -d -c | tar -x" in recv.render()
        assert f"| {s.compress} -q -1" in send.render()
    if s.rate_limit_mb_per_s:
        assert "| pv -q -L 50000000 | python3" in send.render()


def test_the_relay_is_written_on_both_hosts_recipient_first_then_the_token_made() -> None:
    *installs, token = relay_prelude(spec())
    assert [i.host for i in installs] == ["r", "d"]
    assert all(i.privileged and i.render() == relay.install(i.host).render() for i in installs)
    assert (token.host, token.privileged, token.into) == ("d", True, relay.TOKEN_SHA256)
    assert token.render() == f"python3 {relay.PATH} token /run/resync-relay"
    assert relay_prelude(spec(method="ssh")) == ()


def test_the_ends_are_bound_to_the_token_made_just_before() -> None:
    """The receiver gets the token's sha256 (a verifier, no secret), the sender the file named
    by it; a run fills both with the value the donor printed."""
    recv, send = receiver(spec()), sender(spec())
    assert recv is not None
    captured = {str(relay.TOKEN_SHA256): "ab" * 32, "run_id": "r1"}
    assert f"--token-sha256 {'ab' * 32} --peer 10.0.0.1" in recv.bind(captured)
    assert f"--token /run/resync-relay/{'ab' * 32} --source 10.0.0.1" in send.bind(captured)
    assert "--peer" not in (receiver(spec(donor_address="")) or recv).render()


def test_ssh_method_has_no_listener_no_relay_and_runs_the_receiving_half_remotely() -> None:
    s = spec(method="ssh", ssh_target="admin@10.0.0.2", ssh_options=("-i", "/k"), ssh_sudo=True,
             compress="zstd")
    assert receiver(s) is None
    line = sender(s).render()
    assert "| zstd -q -1 -T0 -c | ssh -o BatchMode=yes -c aes128-gcm@openssh.com -i /k " \
           "admin@10.0.0.2 " in line
    remote = shlex.split(shlex.split(line.split("admin@10.0.0.2 ", 1)[1])[0])
    assert remote[:3] == ["sudo", "-n", "bash"]
    assert remote[4] == ("set -euo pipefail; zstd -q -d -c | tar -x -f - --totals --no-same-owner "
                         "-C /r; chown -R mysql:mysql /r")
    assert relay.PATH not in line and "openssl" not in line, "ssh authenticates: counts suffice"


def test_the_bandwidth_probe_goes_through_the_relay() -> None:
    recv, send = bandwidth_probe(spec(recipient_datadir="/srv/mysql"), 1000)
    assert recv is not None
    assert recv.render() == (f"set -uo pipefail; python3 {relay.PATH} receive 10.0.0.2 7878 crc32"
                             " --token-sha256 <probe.token_sha256> --peer 10.0.0.1 --timeout 30"
                             " > /srv/.resync-probe.$$; rc=$?; rm -f /srv/.resync-probe.$$; exit $rc")
    assert send.render() == (f"set -euo pipefail; head -c 1000 /dev/zero | python3 {relay.PATH} "
                             "send 10.0.0.2 7878 crc32 --token /run/resync-relay/<probe.token_sha256>"
                             " --source 10.0.0.1")
    none, ssh = bandwidth_probe(spec(method="ssh", ssh_target="t"), 1000)
    assert none is None and relay.PATH not in ssh.render() and "cat > //.resync-probe.$$" in ssh.render()


# -- what each end reports, as the controller reads it --------------------------------------------

RELAYED_OUT = ("tar: Total bytes written: 10240 (10KiB, 1.2GiB/s)\n"
               "RESYNC sent bytes=4711 crc32=0a1b2c3d\n")


def test_end_reports() -> None:
    assert end_report(RELAYED_OUT, True, True) == "tar=10240 wire=4711 crc32=0a1b2c3d"
    received = "Total bytes read: 10240 (10KiB, 1GiB/s)\nRESYNC received bytes=4711 crc32=0a1b2c3d\n"
    assert end_report(received, False, True) == "tar=10240 wire=4711 crc32=0a1b2c3d"
    assert end_report(RELAYED_OUT, True, False) == "tar=10240"
    assert end_report(RELAYED_OUT, False, True) == "", "the receiver's report is not the sender's"
    assert end_report("RESYNC sent bytes=4711 crc32=0a1b2c3d\n", True, True) == "", "tar said nothing"
    assert end_report("Total bytes written: 10240\n", True, True) == "", "the relay said nothing"


# -- addresses are shell-quoted (a runbook's address is data, never shell code) -------------------

ODD_ADDRESS = "db-1.example.internal; touch /tmp/pwned"


@pytest.mark.parametrize("address", ["10.0.0.2", "fd00::2", "db1.example.internal", ODD_ADDRESS])
def test_the_relay_quotes_the_addresses(address: str) -> None:
    from resync.actions.types import Shell

    captured = {str(relay.TOKEN_SHA256): "ab" * 32}
    recv = Shell.line("h", *relay.receive(address, 7878, "crc32", peer=address, timeout=30))
    assert shlex.split(recv.bind(captured)) == [
        "python3", relay.PATH, "receive", address, "7878", "crc32", "--token-sha256", "ab" * 32,
        "--peer", address, "--timeout", "30"]
    send = Shell.line("h", *relay.send(address, 7878, "crc32", source=address))
    assert shlex.split(send.bind(captured)) == [
        "python3", relay.PATH, "send", address, "7878", "crc32", "--token",
        f"/run/resync-relay/{'ab' * 32}", "--source", address]


def test_an_odd_address_stays_one_word_in_the_whole_copy_pipeline() -> None:
    s = spec(listen_address=ODD_ADDRESS, donor_address=ODD_ADDRESS)
    recv = receiver(s)
    assert recv is not None
    assert f"receive '{ODD_ADDRESS}' 7878" in recv.render()
    assert f"--peer '{ODD_ADDRESS}' --timeout" in recv.render()
    assert f"send '{ODD_ADDRESS}' 7878" in sender(s).render()
    assert sender(s).render().endswith(f"--source '{ODD_ADDRESS}'")


def test_an_unknown_digest_is_refused() -> None:
    with pytest.raises(ValueError, match="crc32, sha256"):
        relay.send("h", 1, "md5", source="")


def test_ssh_reachability_probe_captures_into_the_key() -> None:
    from resync.model.keys import Key
    from resync.steps.copy.commands import ssh_reachability

    s = spec(method="ssh", ssh_target="admin@db 1", ssh_options=("-i", "/k k"))
    probe = ssh_reachability(s, Key("preflight.d.ssh_probe"))
    assert (probe.host, probe.into, probe.check, probe.privileged) == (
        "d", Key("preflight.d.ssh_probe"), False, True)
    words = shlex.split(probe.render())
    assert words[:9] == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-i", "/k k",
                         "admin@db 1", "true"]
    assert probe.render().endswith("2>&1 && echo RESYNC-SSH-OK")


def test_stop_leftovers_stops_this_runs_ends_and_no_other_runs() -> None:
    """The tag is matched with its `;`: run `r1` does not stop run `r12`'s ends."""
    import subprocess
    import threading
    import time

    from resync.steps.copy.commands import stop_leftovers, tagged

    ends = {run: subprocess.Popen(["bash", "-c", tagged("h", "sleep 60; true").bind({"run_id": run})],
                                  start_new_session=True) for run in ("r1", "r12")}
    reaped = threading.Thread(target=ends["r1"].wait)  # as init reaps a killed run's orphans
    reaped.start()
    try:
        time.sleep(0.2)
        subprocess.run(["bash", "-c", stop_leftovers("h").bind({"run_id": "r1"})], check=True,
                       timeout=30)
        reaped.join(timeout=10)
        assert ends["r1"].returncode not in (None, 0)
        assert ends["r12"].poll() is None, "another run's end is left alone"
    finally:
        for end in ends.values():
            end.kill()
            end.wait()


def test_the_probe_and_the_copy_have_a_token_each() -> None:
    """A run's values are captured once each (its journal's plan is filled with them): the
    preflight's probe verifies its own token, the copy its own."""
    from resync.actions.types import Composite, Shell
    from resync.steps.copy.pipeline import BandwidthProbe, CopyDatadir

    probe = [p for p in BandwidthProbe(spec(), 1000).parts() if isinstance(p, Shell)]
    copy = CopyDatadir(spec(), stall_timeout=1, listen_timeout=1).plan()
    copy_ends = next(a for a in copy if isinstance(a, Composite)).parts()
    for parts, key in ((probe, relay.PROBE_TOKEN_SHA256), (copy_ends, relay.TOKEN_SHA256)):
        made = [p for p in parts if isinstance(p, Shell) and p.into is not None
                and "token /run" in p.render()]
        assert [p.into for p in made] == [key]
        users = [p for p in parts if isinstance(p, Shell) and f"<{key}>" in p.render()]
        assert len(users) == 2, "the receiver and the sender"
