"""The recipient keeps its own keys: the donor's key files (and the runbook's
copy.keep_on_recipient) are never copied, whatever the method, and the recipient's own are put
back from its old datadir after the copy, before it starts, owner and mode as they were."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from support import line_no, runbook_error
from test_render import make_plan

from resync.actions.types import Composite, Leaf, Shell
from resync.model.keys import OLD_DATADIR
from resync.plan.build import Plan
from resync.steps.base import Step
from resync.steps.copy.commands import (
    KEPT,
    KEY_FILES,
    CopySpec,
    copy_notes,
    excludes_for,
    exclusion_notes,
    restore_kept,
)
from resync.steps.copy.ebs.swap import KEPT_ASIDE

SITE_KEY = "ssl/site-key.pem"
KEEP = ("compress: none}", f"compress: none, keep_on_recipient: [{SITE_KEY}, my.key]}}")


def spec(**overrides: object) -> CopySpec:
    base = CopySpec(donor="d", recipient="r", donor_datadir="/d", recipient_datadir="/r",
                    listen_address="10.0.0.2", port=7878, owner="mysql:mysql",
                    excludes=excludes_for("mysql"))
    return CopySpec(**{**base.__dict__, **overrides})


@pytest.mark.parametrize("flavor", ["mysql", "mariadb"])
def test_the_key_files_are_never_copied_and_the_plan_says_why(flavor: str) -> None:
    excludes = excludes_for(flavor)
    assert {f"./{name}" for name in KEY_FILES} <= set(excludes)
    assert set(KEY_FILES) == {"ca.pem", "ca-key.pem", "server-cert.pem", "server-key.pem",
                              "client-cert.pem", "client-key.pem", "private_key.pem",
                              "public_key.pem"}
    note = next(n for n in exclusion_notes(excludes) if "ca-key.pem" in n)
    assert note.startswith("not copied: ca.pem ca-key.pem server-cert.pem server-key.pem ")
    assert "two servers never share private keys; the recipient keeps its own" in note


def test_keep_on_recipient_is_excluded_listed_and_kept() -> None:
    excludes = excludes_for("mariadb", ("./*.log",), (SITE_KEY, "server-key.pem"))
    assert excludes[-2:] == ("./*.log", f"./{SITE_KEY}"), "a key file is not listed twice"
    s = spec(excludes=excludes, keep_on_recipient=(SITE_KEY, "server-key.pem"))
    assert s.kept == (*KEY_FILES, SITE_KEY)
    notes = copy_notes(s)
    assert f"not copied: {SITE_KEY} — the runbook's copy.keep_on_recipient: the recipient " \
           "keeps its own" in notes
    assert "not copied: *.log — the runbook's copy.exclude" in notes
    assert notes[-1].startswith(f"kept on r: its own {' '.join(KEY_FILES)} {SITE_KEY} — put back "
                                "from its old datadir after the copy, owner and mode as they were")


@pytest.mark.parametrize("path", ["/etc/mysql/key.pem", "../key.pem", "ssl/../../key.pem",
                                  "./key.pem", "ssl//key.pem", "ssl/", "*.pem", "key[12].pem", ""])
def test_keep_on_recipient_paths_are_plain_relative_paths(tmp_path: Path, path: str) -> None:
    text = (Path(__file__).resolve().parents[2] / "runbooks/rebuild-replica.yaml").read_text()
    assert text.count(KEEP[0]) == 1
    bad = tmp_path / "rb.yaml"
    bad.write_text(text.replace(KEEP[0], f"compress: none, keep_on_recipient: ['{path}']}}"))
    error = str(runbook_error(bad))
    assert f"keep_on_recipient: '{path}' is not a file path relative to the datadir" in error
    assert f"rb.yaml:{line_no(text, KEEP[0])}: copy: " in error, "the copy section's line"


# -- the plan of every method puts the recipient's own back before it starts -----------------------

def _leaves(step: Step) -> list[Leaf]:
    out: list[Leaf] = []
    for action in step.plan():
        out += list(action.parts()) if isinstance(action, Composite) else [action]  # type: ignore[list-item]
    return out


def _restores(plan: Plan, recipient: str) -> tuple[int, int, Shell]:
    """(index of the step that restores, index of the recipient's start, the restore action)."""
    keys = [s.key for s in plan.steps]
    for i, step in enumerate(plan.steps):
        for leaf in _leaves(step):
            if isinstance(leaf, Shell) and leaf.into == KEPT:
                start = next(k for k in keys if k.startswith("start-service:")
                             and recipient in k.split(":", 1)[1].split("+"))
                return i, keys.index(start), leaf
    raise AssertionError("no action puts the recipient's own files back")


@pytest.mark.parametrize("name, edit, recipient", [
    ("rebuild-replica", KEEP, "db2"),
    ("rebuild-replica", ("method: stream", "method: ssh"), "db2"),
    ("rebuild-old-primary", None, "db1"),
    ("rebuild-replica-ebs", ("  method: ebs\n", f"  method: ebs\n  keep_on_recipient: [{SITE_KEY}]\n"),
     "db2"),
    ("rebuild-replica-hot", ("method: mariabackup ", f"keep_on_recipient: [{SITE_KEY}]\n  "
                                                     "method: mariabackup "), "db2"),
], ids=["stream", "ssh", "seed", "ebs-copy", "hot"])
def test_every_method_restores_after_the_copy_and_before_the_start(
        name: str, edit: tuple[str, str] | None, recipient: str) -> None:
    plan = make_plan(name, edit=edit)
    at, start, restore = _restores(plan, recipient)
    assert plan.steps[at].key.startswith("copy-datadir:") and at < start
    leaves = _leaves(plan.steps[at])
    assert leaves.index(restore) > max(i for i, leaf in enumerate(leaves)
                                       if "tar -x" in leaf.render() or "mbstream -x" in
                                       leaf.render() or "chown -R" in leaf.render())
    assert restore.host == recipient and restore.privileged
    text = restore.render()
    assert f"s=<{OLD_DATADIR}>; " in text and "cp -a --parents" in text
    if edit is not None and SITE_KEY in edit[1]:
        assert f"public_key.pem {SITE_KEY}" in text
        assert any(n.startswith(f"kept on {recipient}: its own ") and SITE_KEY in n
                   for n in plan.steps[at].notes), "the plan lists what stays"


def test_mode_swap_keeps_them_aside_before_the_old_volume_goes_and_restores_them() -> None:
    plan = make_plan("rebuild-replica-ebs", edit=("    mode: copy ", "    mode: swap "))
    swap = next(s for s in plan.steps if s.key == "ebs-swap:db2")
    texts = [leaf.render() for leaf in _leaves(swap)]
    aside = next(i for i, t in enumerate(texts) if "mkdir -m 0700 --" in t)
    umount = next(i for i, t in enumerate(texts) if "then umount " in t)
    removed = next(i for i, t in enumerate(texts) if "-exec rm -rf" in t)
    restored = next(i for i, t in enumerate(texts) if "printf '%s '" in t and i != aside)
    assert aside < umount < removed < restored
    kept_aside = "<recipient.ebs.old.mount_target>.resync-kept-<run_id>"
    assert kept_aside in texts[aside] and "!= <recipient.ebs.device> ]" in texts[aside], \
        "copied aside only while the old filesystem is mounted (a repeat keeps its copy)"
    assert texts[restored].startswith(f"set -euo pipefail; s={kept_aside}; t=/data/mysql;")
    assert "./server-key.pem" in texts[removed], "the donor's keys are deleted from the new volume"
    assert swap.notes[0].startswith("kept on db2: its own ca.pem ") and "old volume" in swap.notes[0]
    gone = f"rm -rf -- {kept_aside}"
    assert gone in [a.render() for a in swap.undo_plan() if isinstance(a, Leaf)]
    release = plan.steps[-1]
    assert gone in [a.render() for a in release.plan() if isinstance(a, Leaf)], \
        "the copy aside goes at the end of the run"
    assert len(KEPT_ASIDE) == 3


# -- the restore itself, for real on this machine -----------------------------------------------

def test_the_restore_puts_back_what_the_recipient_had_as_it_was(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    (old / "ssl").mkdir(parents=True)
    new.mkdir()
    (old / "ssl").chmod(0o750)
    (old / "server-key.pem").write_text("the recipient's own key")
    (old / "server-key.pem").chmod(0o600)
    (old / SITE_KEY).write_text("the site's key")
    (old / SITE_KEY).chmod(0o640)
    (old / "ibdata1").write_text("old data: not restored")
    owner = (1234, 2345) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    os.chown(old / "server-key.pem", *owner)
    s = spec(recipient_datadir=str(new), keep_on_recipient=(SITE_KEY,))
    action = restore_kept(s)
    for _ in range(2):  # safe to repeat
        done = subprocess.run(["bash", "-o", "pipefail", "-c",
                               action.bind({str(OLD_DATADIR): str(old)})],
                              capture_output=True, text=True, check=True)
        assert done.stdout.split() == ["server-key.pem", SITE_KEY]
    key = new / "server-key.pem"
    assert key.read_text() == "the recipient's own key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and (key.stat().st_uid,
                                                          key.stat().st_gid) == owner
    assert (new / SITE_KEY).read_text() == "the site's key"
    assert stat.S_IMODE((new / SITE_KEY).stat().st_mode) == 0o640
    assert stat.S_IMODE((new / "ssl").stat().st_mode) == 0o750
    assert not (new / "ca.pem").exists(), "it had none: MySQL makes its own at start"
    assert not (new / "ibdata1").exists()


def test_nothing_is_put_back_without_an_old_datadir(tmp_path: Path) -> None:
    new = tmp_path / "new"
    new.mkdir()
    action = restore_kept(spec(recipient_datadir=str(new)))
    done = subprocess.run(["bash", "-o", "pipefail", "-c",
                           action.bind({str(OLD_DATADIR): str(tmp_path / "none")})],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "" and "nothing to keep" in done.stderr
    assert list(new.iterdir()) == []
