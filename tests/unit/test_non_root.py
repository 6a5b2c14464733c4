"""Every shipped way of running tdauto runs it as an unprivileged user (docs/security.md,
"Running as a non-root user"): the image, the Kubernetes pods and the systemd units."""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PODS = ("beat", "flower", "worker-cpu", "worker-memory", "worker-storage", "redis")
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))


def test_the_image_ends_as_an_unprivileged_user() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in lines if re.match(r"USER\s", line)]
    assert users and users[-1] not in {"root", "0"}, "the image's last USER must not be root"
    assert any("--uid 10001" in line for line in lines)


def _workloads(name: str) -> list[dict[str, Any]]:
    docs = yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / f"{name}.yaml").read_text())
    return [d for d in docs if d and d["kind"] in {"Deployment", "StatefulSet"}]


@pytest.mark.parametrize("name", PODS)
def test_every_pod_runs_as_non_root_without_privileges(name: str) -> None:
    workloads = _workloads(name)
    assert workloads, f"{name}.yaml has no Deployment or StatefulSet"
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        for container in pod["containers"]:
            context = container.get("securityContext", {})
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert context["capabilities"]["drop"] == ["ALL"], container["name"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_every_systemd_unit_runs_as_tdauto_with_no_new_privileges(unit: Path) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit.read_text())
    service = parser["Service"]
    assert service["User"] == "tdauto"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] in {"full", "strict"}
