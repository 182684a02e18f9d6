"""HAProxy backends from instances: the --from sources, the rendered section, stable output."""

from __future__ import annotations

import pytest

from resync.lb.backends import BackendStyle, DiscoverInstances, Source, render_backend
from resync.model.errors import BadInputError


@pytest.mark.parametrize("text", ["asg:web", "elb:web-elb", "tag:role=web",
                                  "target-group:arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/w/1"])
def test_sources_parse(text: str) -> None:
    source = Source.parse(text)
    assert f"{source.kind}:{source.value}" == text


@pytest.mark.parametrize("text", ["web", "asg:", "dns:web", "tag:role"])
def test_bad_sources_are_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(BadInputError, match=r"asg:NAME|tag:KEY=VALUE"):
        Source.parse(text)


def test_backend_has_check_maxconn_and_the_503_page_per_server() -> None:
    text = render_backend("web", [["i-1", "10.0.0.5"], ["i-2", "10.0.0.6"]],
                          BackendStyle(port=8080, maxconn=50), Source("asg", "web"))
    assert "backend web\n" in text
    assert "    option httpchk GET /health\n" in text
    assert "    errorfile 503 /etc/haproxy/errors/503.http\n" in text
    assert "    server i-1 10.0.0.5:8080 check maxconn 50\n" in text
    assert "    server i-2 10.0.0.6:8080 check maxconn 50\n" in text


def test_an_empty_fleet_is_said_so_and_serves_the_503_page() -> None:
    text = render_backend("web", [], BackendStyle(check_path=None, errorfile=None),
                          Source("tag", "role=web"))
    assert "no instance in service" in text and "server " not in text
    assert "httpchk" not in text and "errorfile" not in text


def test_the_plan_text_names_every_aws_call() -> None:
    assert DiscoverInstances(Source("asg", "web")).render().startswith(
        "autoscaling describe_auto_scaling_groups AutoScalingGroupNames=[web]")
    assert "Filters=[tag:role=web, instance-state-name=running]" in \
        DiscoverInstances(Source("tag", "role=web")).render()
