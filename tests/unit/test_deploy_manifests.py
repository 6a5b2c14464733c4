"""The deployment files, checked without a container engine or a cluster.

- ``docker-compose.yml`` against the Compose Specification's JSON schema, with
  check-jsonschema (its vendored ``compose-spec`` schema, formats checked).
- ``deploy/kubernetes/*.yaml`` against the Kubernetes OpenAPI schemas of the oldest and the
  newest version we support, strict (unknown fields are errors), with kubernetes-validate.
- The KEDA ScaledObjects against the ScaledObject CRD's schema, as the typed models of
  ``cloudcoil.models.keda`` (generated from KEDA's CRDs); a round trip must give the
  manifest back, so an unknown or mistyped field fails too.
- And what no schema knows: every pool in ``workers/`` has its compose service, Deployment,
  ScaledObject and systemd instance; every command parses with the ``tdauto`` CLI; every
  ``TDAUTO_*`` name is a setting; KEDA watches exactly the lists kombu writes for the pool.
"""

from __future__ import annotations

import configparser
import copy
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication
from kombu.transport.redis import Channel

from tdauto.app import celery_config
from tdauto.cli import main as cli
from tdauto.engine.executions import queue_for
from tdauto.redis_url import parse as parse_redis_url
from tdauto.resources.pools import load_pool
from tdauto.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "kubernetes"
SYSTEMD = ROOT / "deploy" / "systemd"
POOLS = sorted(p.stem for p in (ROOT / "workers").glob("*.py") if p.stem != "__init__")
K8S_VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]
"""Oldest Kubernetes we claim (docs/deployment.md) and the newest the validator knows."""


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in k8s_docs() if d["kind"] == kind]


def by_name(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs}


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((SYSTEMD / name).read_text())
    return parser


def parse_cli(argv: list[str]) -> click.Context:
    """Parse ``tdauto argv`` as the CLI would, down to the leaf command, without running it
    (click raises UsageError for an unknown command, option or pool)."""
    ctx = click.Context(cli, info_name="tdauto")
    command: click.Command = cli
    args = list(argv)
    while isinstance(command, click.Group):
        if not args:
            raise click.UsageError("no command given")
        name, *args = args
        sub = command.get_command(ctx, name)
        if sub is None:
            raise click.UsageError(f"no such command {name!r}")
        if isinstance(sub, click.Group):
            ctx = click.Context(sub, info_name=name, parent=ctx)
        else:
            ctx = sub.make_context(name, args, parent=ctx)
        command = sub
    return ctx


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- schemas ---------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification(tmp_path: Path) -> None:
    result = check_jsonschema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr

    # and the check has teeth: a misspelt key and an unknown depends_on condition are refused
    broken = compose()
    broken["services"]["beat"]["stop_grace_periode"] = "30s"
    broken["services"]["worker-cpu"]["depends_on"]["redis"]["condition"] = "service_up"
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = check_jsonschema(path)
    assert result.returncode == 1, result.stdout
    assert "stop_grace_periode" in result.stdout
    assert "service_up" in result.stdout


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_match_the_kubernetes_schemas(version: str) -> None:
    checked = []
    for name, doc in k8s_docs():
        if doc["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: checked against KEDA's schema below
        kubernetes_validate.validate(doc, version, strict=True)
        checked.append(f"{name}:{doc['kind']}")
    assert len(checked) >= 10, checked

    deployment = copy.deepcopy(by_name(k8s_kind("Deployment"))["tdauto-worker-cpu"])
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 600
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, version, strict=True)


def test_keda_scaled_objects_match_the_scaledobject_crd() -> None:
    objects = k8s_kind("ScaledObject")
    assert objects
    for doc in objects:
        model = ScaledObject.model_validate(doc)
        # no field dropped as unknown, none coerced from another type
        assert model.model_dump(mode="json", by_alias=True, exclude_unset=True) == doc

    bad = copy.deepcopy(objects[0])
    bad["spec"]["triggers"][0]["metdata"] = bad["spec"]["triggers"][0].pop("metadata")
    with pytest.raises(ValueError, match="metadata"):
        ScaledObject.model_validate(bad)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


# --- what the schemas cannot know -----------------------------------------------------------


def test_every_tdauto_variable_named_in_deployment_files_is_a_setting() -> None:
    known = {f"TDAUTO_{name.upper()}" for name in Settings.model_fields}
    files = [COMPOSE, ROOT / "Dockerfile", ROOT / "docs" / "deployment.md"]
    files += [p for p in (ROOT / "deploy").rglob("*") if p.is_file()]
    named: dict[str, set[str]] = {}
    for path in files:
        for match in re.findall(r"TDAUTO_[A-Z0-9_]+", path.read_text()):
            if not match.endswith("_"):  # TDAUTO_CONCURRENCY_<POOL> in prose
                named.setdefault(match, set()).add(str(path.relative_to(ROOT)))
    unknown = {name: files for name, files in named.items() if name not in known}
    assert not unknown, f"not settings (tdauto/settings.py): {unknown}"
    assert len(named) > 10


def test_compose_runs_each_pool_beats_and_flower_as_the_issue_asks() -> None:
    services = compose()["services"]
    redis = services["redis"]
    command = redis["command"]
    assert "--appendonly" in command and command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert redis["healthcheck"]["test"][-1] == "ping"
    assert services["beat"]["deploy"]["replicas"] == 2
    for pool in POOLS:
        service = services[f"worker-{pool}"]
        assert service["command"] == ["worker", pool]
        assert service["deploy"]["replicas"] >= 1
        assert service["stop_grace_period"] == "10m"
    tdauto = [s for name, s in services.items() if name != "redis"]
    for service in tdauto:
        assert service["depends_on"] == {"redis": {"condition": "service_healthy"}}
        assert "TDAUTO_HOST" not in service["environment"]  # replicas need their own names
        parse_cli(service["command"])
    flower = services["flower"]
    assert {"TDAUTO_FLOWER_USER", "TDAUTO_FLOWER_PASSWORD"} <= set(flower["environment"])
    assert "tdauto-data:/data" in flower["volumes"]


def test_kubernetes_has_a_deployment_and_scaled_object_per_pool() -> None:
    deployments = by_name(k8s_kind("Deployment"))
    scaled = by_name(k8s_kind("ScaledObject"))
    options = celery_config(Settings(broker_url="redis://x:6379/0"))["broker_transport_options"]
    for pool in POOLS:
        name = f"tdauto-worker-{pool}"
        pod = deployments[name]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["args"] == ["worker", pool]
        parse_cli(container["args"])
        assert pod["terminationGracePeriodSeconds"] >= 300
        env = {e["name"]: e for e in container.get("env", [])}
        assert env["TDAUTO_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"

        so = scaled[name]
        assert so["spec"]["scaleTargetRef"]["name"] == name
        assert so["spec"]["minReplicaCount"] >= 1  # pools also consume tdauto.control
        queue = queue_for(load_pool(pool).resource_class)
        # exactly the lists kombu's Redis transport writes for this queue (app.py's steps)
        expected = [queue if step == 0 else f"{queue}{Channel.sep}{step}"
                    for step in options["priority_steps"]]
        triggers = so["spec"]["triggers"]
        assert [t["metadata"]["listName"] for t in triggers] == expected
        assert all(t["type"] == "redis" for t in triggers)
        formula = so["spec"]["advanced"]["scalingModifiers"]["formula"]
        assert sorted(re.findall(r"\w+", formula)) == sorted(t["name"] for t in triggers)

    beat = deployments["tdauto-beat"]
    assert beat["spec"]["replicas"] == 2
    parse_cli(beat["spec"]["template"]["spec"]["containers"][0]["args"])
    flower = deployments["tdauto-flower"]["spec"]["template"]["spec"]
    parse_cli(flower["containers"][0]["args"])
    refs = [r.get("secretRef", {}).get("name") for r in flower["containers"][0]["envFrom"]]
    secret = by_name(k8s_kind("Secret"))["tdauto-flower"]
    assert secret["metadata"]["name"] in refs
    assert {"TDAUTO_FLOWER_USER", "TDAUTO_FLOWER_PASSWORD"} <= set(secret["stringData"])
    claims = {v.get("persistentVolumeClaim", {}).get("claimName") for v in flower["volumes"]}
    assert "tdauto-flower" in by_name(k8s_kind("PersistentVolumeClaim")).keys() & claims
    assert k8s_kind("StatefulSet")[0]["spec"]["template"]["spec"]["containers"][0]["args"][:2] == [
        "--appendonly", "yes"]


def exec_start(parser: configparser.ConfigParser) -> list[str]:
    argv = shlex.split(parser["Service"]["ExecStart"])
    assert Path(argv[0]).name == "tdauto", argv
    return argv[1:]


def test_systemd_units_run_cli_commands_with_a_warm_shutdown() -> None:
    worker = unit("tdauto-worker@.service")
    for pool in POOLS:
        argv = [a.replace("%i", pool) for a in exec_start(worker)]
        assert argv == ["worker", pool]
        parse_cli(argv)
    service = worker["Service"]
    assert service["KillSignal"] == "SIGTERM" and service["KillMode"] == "mixed"
    assert service["TimeoutStopSec"] == "10min"
    for name in ("tdauto-worker@.service", "tdauto-beat.service", "tdauto-flower.service"):
        parser = unit(name)
        assert parser["Service"]["EnvironmentFile"] == "/etc/tdauto/env"
        assert parser["Install"]["WantedBy"] == "tdauto.target"
        parse_cli([a.replace("%i", "cpu") for a in exec_start(parser)])
    assert exec_start(unit("tdauto-beat.service")) == ["beat"]
    assert exec_start(unit("tdauto-flower.service")) == ["flower"]
    env = (SYSTEMD / "env.example").read_text()
    assert "TDAUTO_FLOWER_PASSWORD=" in env and "TDAUTO_BROKER_URL=redis://" in env


def secret_ref(env: dict[str, Any], name: str) -> tuple[str, str]:
    ref = env[name]["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def test_compose_redis_needs_the_password_every_tdauto_service_has() -> None:
    services = compose()["services"]
    command = services["redis"]["command"]
    password = command[command.index("--requirepass") + 1]
    # When .env has no REDIS_PASSWORD, compose stops with the message (":?"), not a Redis
    # without a password
    assert password.startswith("${REDIS_PASSWORD:?")
    assert services["redis"]["environment"]["REDISCLI_AUTH"] == password  # health check
    for name, service in services.items():
        if name == "redis":
            continue
        url = service["environment"]["TDAUTO_BROKER_URL"]
        assert url == f"redis://:{password}@redis:6379/0", name
        assert parse_redis_url(url.replace(password, "hex")).password == "hex"


def test_kubernetes_redis_password_comes_from_the_secret_everywhere() -> None:
    secret = by_name(k8s_kind("Secret"))["tdauto-redis"]
    assert set(secret["stringData"]) == {"password"}
    redis = k8s_kind("StatefulSet")[0]["spec"]["template"]["spec"]["containers"][0]
    args = redis["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDISCLI_AUTH)"
    env = {e["name"]: e for e in redis["env"]}
    assert secret_ref(env, "REDISCLI_AUTH") == ("tdauto-redis", "password")
    assert "TDAUTO_BROKER_URL" not in k8s_kind("ConfigMap")[0]["data"]
    deployments = k8s_kind("Deployment")
    assert len(deployments) == len(POOLS) + 2  # the pools, beat, flower
    for deployment in deployments:
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        names = [e["name"] for e in container["env"]]
        env = {e["name"]: e for e in container["env"]}
        assert secret_ref(env, "REDIS_PASSWORD") == ("tdauto-redis", "password")
        # $(REDIS_PASSWORD) is expanded only when that variable comes first
        assert names.index("REDIS_PASSWORD") < names.index("TDAUTO_BROKER_URL")
        url = env["TDAUTO_BROKER_URL"]["value"]
        assert url == "redis://:$(REDIS_PASSWORD)@redis:6379/0"
        assert parse_redis_url(url.replace("$(REDIS_PASSWORD)", "hex")).where() == "redis:6379"

    # KEDA reads the same key for each of its triggers
    auth = by_name(k8s_kind("TriggerAuthentication"))["tdauto-redis"]
    model = TriggerAuthentication.model_validate(auth)
    assert model.model_dump(mode="json", by_alias=True, exclude_unset=True) == auth
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "tdauto-redis", "key": "password"}
    ]
    for scaled in k8s_kind("ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["authenticationRef"] == {"name": "tdauto-redis"}


def test_cli_parser_rejects_what_it_should() -> None:
    """The helper above really parses: an unknown pool or option is a usage error."""
    with pytest.raises(click.UsageError):
        parse_cli(["worker", "gpu"])
    with pytest.raises(click.UsageError):
        parse_cli(["beat", "--no-such-option"])
