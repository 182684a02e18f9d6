"""The runbook's `copy.ebs` section: defaults, ids, device names, volume limits."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from resync.model.ebs import EbsSettings, EbsVolumeSettings, attach_names


def test_defaults_follow_the_roadmap() -> None:
    ebs = EbsSettings()
    assert (ebs.donor_volume, ebs.donor_instance, ebs.recipient_instance) == ("auto",) * 3
    assert (ebs.device, ebs.mode, ebs.timeout) == ("/dev/sdf", "copy", 7200)
    assert (ebs.freeze, ebs.keep_snapshot, ebs.prewarm) == (False, False, False)
    assert ebs.volume == EbsVolumeSettings(type="gp3")


def test_the_roadmap_example_loads() -> None:
    ebs = EbsSettings.model_validate({
        "donor_volume": "vol-0123456789abcdef0", "donor_instance": "i-0123456789abcdef0",
        "recipient_instance": "i-0fedcba9876543210", "device": "/dev/xvdg", "mode": "swap",
        "volume": {"type": "gp3", "iops": 3000, "throughput": 125}, "freeze": True,
        "keep_snapshot": True, "prewarm": True, "timeout": 600})
    assert ebs.volume.iops == 3000 and ebs.mode == "swap"
    assert ebs.attach_names == ("/dev/sdg", "/dev/xvdg")


@pytest.mark.parametrize("doc", [
    {"donor_volume": "vol-XYZ"}, {"donor_volume": "vol-0123; rm -rf /"},
    {"donor_volume": "0123456789abcdef0"}, {"donor_instance": "i-12"},
    {"recipient_instance": "vol-0123456789abcdef0"}, {"device": "/dev/sda"},
    {"device": "/dev/sdq"}, {"device": "/dev/nvme1n1"}, {"device": "sdf"}, {"mode": "move"},
    {"timeout": 0}, {"size": 10}, {"volume": {"type": "gp3", "size": 1}},
    {"donor_instance": "i-0123456789abcdef0", "recipient_instance": "i-0123456789abcdef0"},
])
def test_refused(doc: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EbsSettings.model_validate(doc)


@pytest.mark.parametrize("volume", [
    {"type": "gp3", "iops": 2999}, {"type": "gp3", "iops": 90000},
    {"type": "gp3", "throughput": 100}, {"type": "gp3", "throughput": 2001, "iops": 16000},
    {"type": "gp3", "throughput": 1000},  # needs 4000 iops, the baseline is 3000
    {"type": "gp3", "iops": 4000, "throughput": 1001},
    {"type": "gp2", "iops": 3000}, {"type": "io1", "throughput": 200}, {"type": "io2"},
    {"type": "io1", "iops": 70000}, {"type": "st1", "iops": 500}, {"type": "gp4"},
])
def test_volume_limits(volume: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EbsVolumeSettings.model_validate(volume)


@pytest.mark.parametrize("volume", [
    {"type": "gp3", "iops": 16000, "throughput": 1000}, {"type": "gp3", "throughput": 750},
    {"type": "gp3", "iops": 80000, "throughput": 2000}, {"type": "io2", "iops": 64000},
    {"type": "gp2"}, {"type": "st1"},
])
def test_volume_accepted(volume: dict[str, Any]) -> None:
    EbsVolumeSettings.model_validate(volume)


def test_literal_password_refused() -> None:
    with pytest.raises(ValidationError, match="password_env"):
        EbsSettings.model_validate({"password": "x"})


def test_attach_names_both_spellings() -> None:
    assert attach_names("/dev/sdf") == attach_names("/dev/xvdf") == ("/dev/sdf", "/dev/xvdf")
