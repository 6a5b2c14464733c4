"""The deployment actions on temporary release directories, called as the engine calls them,
and a whole run of ``examples/deploy.yaml`` whose verify fails and rolls back by itself."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from tdauto.actions import REGISTRY
from tdauto.actions.registry import load_plugins
from tdauto.actions.releases import App, key_suffix, opened, write_record
from tdauto.engine.runtime import Runtime
from tdauto.errors import ActionError, PathNotAllowed
from tdauto.models import ExecutionStatus, Task
from tdauto.settings import Settings
from tdauto.store.files import FileStore
from tests.support import actions
from tests.support.actions import context, run
from tests.unit.test_dispatch import Recorder
from tests.unit.test_engine import drive, trigger

S = ExecutionStatus
REPO = Path(__file__).resolve().parents[2]


CHECK_ALLOW = ["tar", "test", "grep", "false"]  # what examples/deploy.yaml and these tests run


@pytest.fixture
def say_and_exit(work: Path) -> Path:
    """A check program that prints its first argument and exits with its second."""
    path = work / "say-and-exit"
    path.write_text('#!/bin/sh\necho "$1"\nexit "$2"\n')
    path.chmod(0o755)
    return path


@pytest.fixture
def settings(tmp_path: Path, work: Path, say_and_exit: Path) -> Settings:
    load_plugins([])
    return Settings(
        data_dir=tmp_path / "data",
        allowed_paths=[tmp_path / "data", work],
        check_allow=[*CHECK_ALLOW, str(say_and_exit)],
    )


@pytest.fixture
def app(work: Path) -> App:
    return App(work / "app")


store = actions.store  # the fixture: a FileStore on the settings fixture's data path

make_ctx = partial(actions.make_ctx, task_name="deploy")


def make_tar(path: Path, files: dict[str, str], prefix: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def site(version: str, healthy: bool = True) -> dict[str, str]:
    files = {"VERSION": version, "bin/start.sh": "#!/bin/sh\n"}
    if healthy:
        files["index.html"] = f"<h1>{version}</h1>"
    return files


class Deployer:
    """Deploys versions of one app, each from its own execution."""

    def __init__(self, settings: Settings, store: FileStore, work: Path, app: App) -> None:
        self.settings, self.store, self.work, self.app = settings, store, work, app
        self.count = 0

    def __call__(self, version: str, **params: Any) -> dict[str, Any]:
        self.count += 1
        artifact = make_tar(self.work / "artifacts" / f"{version}.tar.gz", site(version))
        ctx = make_ctx(self.settings, self.store, f"deploy-{self.count}")
        base = {"artifact": str(artifact), "app_dir": str(self.app.root)}
        return run("deploy", ctx, base | params)


@pytest.fixture
def deployer(settings: Settings, store: FileStore, work: Path, app: App) -> Deployer:
    return Deployer(settings, store, work, app)


def live_version(app: App) -> str:
    return (app.current_link / "VERSION").read_text()


# --- validate ---------------------------------------------------------------------------------


def test_validate_accepts_a_good_artifact(settings, store, work):
    artifact = make_tar(work / "v1.tar.gz", site("1.0"))
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    out = run(
        "validate",
        make_ctx(settings, store),
        {
            "artifact": str(artifact),
            "sha256": digest.upper(),
            "check": ["tar", "-tzf", "{artifact}"],
        },
    )
    assert out["artifact"] == str(artifact) and out["format"] == "tar"
    assert (out["sha256"], out["members"], out["bytes"]) == (digest, 3, artifact.stat().st_size)
    assert out["check"]["argv"] == ["tar", "-tzf", str(artifact)]
    assert out["check"]["returncode"] == 0


def test_validate_accepts_a_directory(settings, store, work):
    (work / "build").mkdir()
    (work / "build" / "index.html").write_text("hi")
    out = run("validate", make_ctx(settings, store), {"artifact": str(work / "build")})
    assert (out["format"], out["bytes"], out["sha256"]) == ("directory", 2, None)


@pytest.mark.parametrize(
    ("params", "kind", "message"),
    [
        ({"sha256": "0" * 64}, "integrity", "expected 0000"),
        ({"check": ["SAY", "broken build", "3"]}, "validate", "exited with 3: broken build"),
        ({"check": ["false"]}, "validate", "exited with 1"),
    ],
)
def test_validate_refuses(settings, store, work, say_and_exit, params, kind, message):
    artifact = make_tar(work / "v1.tar.gz", site("1.0"))
    if "check" in params:  # SAY: the program that prints and exits as told
        params = {"check": [str(say_and_exit) if a == "SAY" else a for a in params["check"]]}
    with pytest.raises(ActionError, match=message) as caught:
        run("validate", make_ctx(settings, store), {"artifact": str(artifact), **params})
    assert caught.value.kind == kind


def test_validate_refuses_a_missing_artifact(settings, store, work):
    with pytest.raises(ActionError, match="does not exist") as caught:
        run("validate", make_ctx(settings, store), {"artifact": str(work / "nope.tar.gz")})
    assert caught.value.kind == "not_found"


def test_validate_refuses_an_archive_with_a_member_leading_out(settings, store, work):
    artifact = make_tar(work / "evil.tar.gz", {"../../escape.txt": "x"})
    with pytest.raises(ActionError, match="unsafe member") as caught:
        run("validate", make_ctx(settings, store), {"artifact": str(artifact)})
    assert caught.value.kind == "unsafe"


# --- deploy -----------------------------------------------------------------------------------


def test_deploy_a_tarball_makes_a_release_and_switches_current(deployer, app):
    first = deployer("1.0")
    assert first["previous"] is None and first["reused"] is False
    assert first["path"] == str(app.release_path(first["release"]))
    assert os.readlink(app.current_link) == f"releases/{first['release']}"  # relative link
    assert live_version(app) == "1.0"
    assert os.access(app.current_link / "bin" / "start.sh", os.X_OK)

    second = deployer("2.0")
    assert second["previous"] == first["release"] and second["pruned"] == []
    assert live_version(app) == "2.0"
    assert app.releases() == [first["release"], second["release"]]
    name, suffix = second["release"].rsplit("-", 1)
    assert len(name) == 16 and name.endswith("Z") and suffix == key_suffix("deploy-2:0")
    assert sorted(p.name for p in app.root.iterdir()) == [".tdauto", "current", "releases"]


def test_deploy_a_directory_keeps_inner_links_and_refuses_links_out(
    settings, store, work, app, outside
):
    build = work / "build"
    (build / "static").mkdir(parents=True)
    (build / "index.html").write_text("<h1>dir</h1>")
    (build / "static" / "home.html").symlink_to("../index.html")
    params = {"artifact": str(build), "app_dir": str(app.root), "release_id": "v1"}
    out = run("deploy", make_ctx(settings, store), params)
    release = Path(out["path"])
    assert out["release"] == "v1" and (release / "static" / "home.html").is_symlink()
    assert (app.current_link / "static" / "home.html").read_text() == "<h1>dir</h1>"

    (build / "secret").symlink_to(outside)
    with pytest.raises(ActionError, match="leading out of the artifact") as caught:
        run("deploy", make_ctx(settings, store, "exec-2"), params | {"release_id": "v2"})
    assert caught.value.kind == "unsafe"
    assert app.releases() == ["v1"] and not list(app.releases_dir.glob(".staging-*"))


def test_deploy_a_zip_with_strip_components(settings, store, work, app):
    artifact = work / "site.zip"
    with zipfile.ZipFile(artifact, "w") as archive:
        archive.writestr("site-1.0/index.html", "<h1>zip</h1>")
        archive.writestr("site-1.0/VERSION", "1.0")
    params = {"artifact": str(artifact), "app_dir": str(app.root), "strip_components": 1}
    run("deploy", make_ctx(settings, store), params)
    assert sorted(p.name for p in app.current_link.iterdir()) == ["VERSION", "index.html"]

    with zipfile.ZipFile(work / "evil.zip", "w") as archive:
        archive.writestr("../evil.txt", "x")
    with pytest.raises(ActionError, match="unsafe member"):
        run(
            "deploy", make_ctx(settings, store, "e2"), params | {"artifact": str(work / "evil.zip")}
        )
    assert not (app.root / "evil.txt").exists() and not (app.releases_dir / "evil.txt").exists()


def test_current_is_never_missing_while_releases_switch(deployer, app):
    deployer("0")
    seen: set[str] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.add(live_version(app))
            except OSError as exc:
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for version in ("1", "2", "3", "4", "5"):
            deployer(version, keep=3)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert seen <= {"0", "1", "2", "3", "4", "5"} and live_version(app) == "5"
    assert not [p for p in app.root.iterdir() if p.name.startswith(".current-")]


def test_keep_prunes_the_oldest_releases(deployer, app):
    outs = [deployer(str(v), keep=2) for v in range(4)]
    assert [o["pruned"] for o in outs] == [[], [], [outs[0]["path"]], [outs[1]["path"]]]
    assert app.releases() == [outs[2]["release"], outs[3]["release"]]


def test_keep_never_removes_the_current_or_the_previous_release(settings, store, deployer, app):
    r1, r2, r3 = (deployer(v)["release"] for v in ("1", "2", "3"))
    # Given the oldest release is live again (named rollback that keeps r3 in place)
    rollback = {"app_dir": str(app.root), "release": r1, "discard": False}
    run("rollback", make_ctx(settings, store, "rb"), rollback)
    # When a new release is deployed keeping only one
    out = deployer("4", keep=1)
    # Then the new one and the previous one (r1, the oldest) stay; the others go
    assert out["previous"] == r1
    assert sorted(out["pruned"]) == sorted(str(app.release_path(r)) for r in (r2, r3))
    assert app.releases() == [r1, out["release"]]


def test_a_redelivered_deploy_reuses_its_release(settings, store, work, app, deployer):
    before = deployer("0")["release"]
    artifact = make_tar(work / "v1.tar.gz", site("1.0"))
    ctx = make_ctx(settings, store, "exec-9", index=1)
    params = {"artifact": str(artifact), "app_dir": str(app.root)}

    first = run("deploy", ctx, params)
    again = run("deploy", ctx, params)

    assert again["release"] == first["release"] and again["reused"] is True
    assert again["previous"] == first["previous"] == before  # not the release it made itself
    assert app.releases() == [before, first["release"]]
    assert live_version(app) == "1.0"


def test_a_deploy_that_crashed_mid_build_is_finished_by_its_redelivery(settings, store, work, app):
    artifact = make_tar(work / "v1.tar.gz", site("1.0"))
    ctx = make_ctx(settings, store, "exec-3")
    # Given an attempt that recorded its release and died while unpacking
    release = "20240101T000000Z-" + key_suffix(ctx.idempotency_key)
    with opened(app.root, settings.confined_paths, create=True) as layout:
        record = {"release": release, "previous": None}
        write_record(layout, "deploy", key_suffix(ctx.idempotency_key), record)
    (app.releases_dir / f".staging-{release}").mkdir(parents=True)
    (app.releases_dir / f".staging-{release}" / "partial").write_text("junk")

    out = run("deploy", ctx, {"artifact": str(artifact), "app_dir": str(app.root)})

    assert out["release"] == release and out["reused"] is False
    assert sorted(p.name for p in app.releases_dir.iterdir()) == [release]
    assert not (app.current_link / "partial").exists() and live_version(app) == "1.0"


def test_deploy_refuses_a_release_id_that_exists(settings, store, work, app):
    artifact = make_tar(work / "v1.tar.gz", site("1.0"))
    params = {"artifact": str(artifact), "app_dir": str(app.root), "release_id": "v1"}
    run("deploy", make_ctx(settings, store, "a"), params)
    with pytest.raises(ActionError, match="already exists") as caught:
        run("deploy", make_ctx(settings, store, "b"), params)
    assert caught.value.kind == "exists"


def test_deploy_refuses_a_current_that_is_not_a_link(deployer, app):
    app.current_link.mkdir(parents=True)
    with pytest.raises(ActionError, match="not a symlink") as caught:
        deployer("1")
    assert caught.value.kind == "conflict" and app.current_link.is_dir()


# --- verify -----------------------------------------------------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response({"/health": 200, "/broken": 500}.get(self.path, 404))
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_verify_passes_every_kind_of_check(settings, store, deployer, app, server):
    release = deployer("1.0")["release"]
    checks = [
        {"path_exists": "index.html"},
        {"command": ["grep", "-q", "1.0", "VERSION"]},  # runs in the release directory
        {"http": f"http://{server}/health", "timeout_s": 5},
        {"http": f"http://{server}/missing", "status": 404},
        {"tcp": server},
    ]
    out = run("verify", make_ctx(settings, store), {"app_dir": str(app.root), "checks": checks})
    assert out["release"] == release and out["path"] == str(app.release_path(release))
    assert [c["ok"] for c in out["checks"]] == [True] * 5
    assert out["checks"][2]["detail"] == "status 200"


def test_verify_fails_naming_every_failed_check(
    settings, store, deployer, app, server, say_and_exit
):
    release = deployer("1.0")["release"]
    checks = [
        {"path_exists": "missing.html"},
        {"path_exists": "index.html"},
        {"command": [str(say_and_exit), "not ready", "2"]},
        {"http": f"http://{server}/broken", "timeout_s": 5},
        {"tcp": f"127.0.0.1:{closed_port()}", "timeout_s": 2},
        {"http": f"http://127.0.0.1:{closed_port()}/", "timeout_s": 2},
    ]
    with pytest.raises(ActionError) as caught:
        run("verify", make_ctx(settings, store), {"app_dir": str(app.root), "checks": checks})
    message = str(caught.value)
    assert caught.value.kind == "verify"
    assert f"release {release} failed 5 of 6 checks" in message
    assert "path_exists missing.html (missing)" in message
    assert "exit 2: not ready" in message
    assert "status 500, expected 200" in message
    assert "cannot connect" in message and "unreachable" in message


def test_verify_refuses_a_path_check_leading_out_of_the_release(
    settings, store, deployer, app, outside
):
    release = deployer("1.0")["release"]
    (app.release_path(release) / "escape").symlink_to(outside)
    params = {"app_dir": str(app.root), "checks": [{"path_exists": "escape"}]}
    with pytest.raises(ActionError, match="leads out of the release"):
        run("verify", make_ctx(settings, store), params)


def test_verify_without_a_deploy_fails(settings, store, app):
    params = {"app_dir": str(app.root), "checks": [{"path_exists": "index.html"}]}
    with pytest.raises(ActionError, match="nothing deployed") as caught:
        run("verify", make_ctx(settings, store), params)
    assert caught.value.kind == "verify"


# --- rollback ---------------------------------------------------------------------------------


def test_rollback_to_the_previous_release_sets_the_bad_one_aside(settings, store, deployer, app):
    r1 = deployer("1")["release"]
    r2 = deployer("2")["release"]
    out = run("rollback", make_ctx(settings, store, "rb"), {"app_dir": str(app.root)})
    assert (out["from"], out["to"], out["reused"]) == (r2, r1, False)
    assert out["discarded"] == str(app.rolled_back_dir / r2)
    assert live_version(app) == "1" and app.releases() == [r1]
    # the release set aside is never "previous" again
    r3 = deployer("3")["release"]
    again = run("rollback", make_ctx(settings, store, "rb2"), {"app_dir": str(app.root)})
    assert (again["from"], again["to"]) == (r3, r1)


def test_releases_set_aside_are_pruned_like_releases(settings, store, deployer, app):
    for n in range(3):  # each deploy is rolled back: three releases set aside
        deployer(f"{n}a")
        deployer(f"{n}b")
        run("rollback", make_ctx(settings, store, f"rb-{n}"), {"app_dir": str(app.root)})
    assert len(list(app.rolled_back_dir.iterdir())) == 3
    out = deployer("last", keep=2)
    aside = sorted(p.name for p in app.rolled_back_dir.iterdir())
    assert len(aside) == 2 and len(app.releases()) == 2
    assert sum("rolled_back" in p for p in out["pruned"]) == 1


def test_rollback_to_a_named_release(settings, store, deployer, app):
    r1, r2, r3 = (deployer(v)["release"] for v in ("1", "2", "3"))
    params = {"app_dir": str(app.root), "release": r1, "discard": False}
    out = run("rollback", make_ctx(settings, store), params)
    assert (out["from"], out["to"], out["discarded"]) == (r3, r1, None)
    assert live_version(app) == "1" and app.releases() == [r1, r2, r3]


def test_a_redelivered_rollback_does_not_roll_back_twice(settings, store, deployer, app):
    _, r2, r3 = (deployer(v)["release"] for v in ("1", "2", "3"))
    ctx = make_ctx(settings, store, "rb", index=3)
    first = run("rollback", ctx, {"app_dir": str(app.root)})
    again = run("rollback", ctx, {"app_dir": str(app.root)})
    assert (first["from"], first["to"]) == (again["from"], again["to"]) == (r3, r2)
    assert again["reused"] is True and live_version(app) == "2"


@pytest.mark.parametrize(
    ("releases", "params", "message"),
    [
        (0, {}, "nothing to roll back"),
        (1, {}, "no release before"),
        (2, {"release": "v9"}, "no release 'v9'"),
        (2, {"release": "CURRENT"}, "already current"),
    ],
)
def test_rollback_refuses(settings, store, deployer, app, releases, params, message):
    made = [deployer(str(v))["release"] for v in range(releases)]
    app.root.mkdir(exist_ok=True)
    if params.get("release") == "CURRENT":
        params = {"release": made[-1]}
    with pytest.raises(ActionError, match=message) as caught:
        run("rollback", make_ctx(settings, store, "rb"), {"app_dir": str(app.root), **params})
    assert caught.value.kind == "rollback"
    assert app.current() == (made[-1] if made else None)


# --- the template, run through the engine -----------------------------------------------------


def template() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "examples" / "deploy.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_the_template_is_valid_as_written(tmp_path):
    load_plugins([])
    # default allowed paths (the data dir); its checks run tar and test
    settings = Settings(data_dir=tmp_path / "data", check_allow=CHECK_ALLOW)
    task = Task.model_validate(template(), context=context(settings))
    assert [a.type for a in task.actions] == ["validate", "deploy", "verify"]
    assert [a.type for a in task.actions[2].on_failure] == ["rollback", "verify"]
    for spec in [*task.actions, *task.actions[2].on_failure]:
        assert REGISTRY.get(spec.type).process_type == "deployment"


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    load_plugins([])
    data = tmp_path / "data"
    settings = Settings(data_dir=data, allowed_paths=[tmp_path], check_allow=CHECK_ALLOW)
    return Runtime(settings, FileStore(settings.data_path), REGISTRY, Recorder())


def test_a_failed_verify_rolls_back_by_itself(rt: Runtime):
    data = rt.settings.data_path
    task = Task.model_validate(template(), context=rt.validation_context())
    rt.store.create_task(task, None)
    artifact = data / "artifacts" / "webapp.tar.gz"
    app = App(data / "apps" / "webapp")

    # Given a good release is live
    make_tar(artifact, site("1.0"))
    good = drive(rt, trigger(rt, task))
    assert good.status is S.SUCCEEDED, good.error
    v1 = good.actions[1].output["release"]
    assert live_version(app) == "1.0"

    # When a release without index.html is deployed
    make_tar(artifact, site("2.0", healthy=False))
    ex = drive(rt, trigger(rt, task))

    # Then verify fails after its retries, rollback runs by itself and the old release is live
    assert ex.status is S.FAILED
    assert ex.error is not None and "action 2 (verify) failed" in ex.error
    steps = [(r.type, r.phase, r.status) for r in ex.actions]
    assert steps == [
        ("validate", "main", S.SUCCEEDED),
        ("deploy", "main", S.SUCCEEDED),
        ("verify", "main", S.FAILED),
        ("rollback", "recovery", S.SUCCEEDED),
        ("verify", "recovery", S.SUCCEEDED),
    ]
    validate, deploy, verify, rollback, reverify = ex.actions
    assert validate.output["sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()
    v2 = deploy.output["release"]
    assert deploy.output["previous"] == v1 and v2 != v1
    assert verify.attempts == 3 and verify.error_kind == "verify"
    assert "path_exists index.html (missing)" in (verify.error or "")
    assert rollback.output["from"] == v2 and rollback.output["to"] == v1
    assert reverify.output["release"] == v1
    assert app.current() == v1 and live_version(app) == "1.0"
    assert (app.rolled_back_dir / v2 / "VERSION").read_text() == "2.0"
    log = rt.store.read_log(ex.id)
    assert "FAILED (missing)" in log and f"rolled back from {v2}" in log


# --- params are checked at create_task --------------------------------------------------------

OUT = "/OUTSIDE"  # replaced by a directory outside the allowed paths
_CHECK = {"path_exists": "index.html"}


@pytest.mark.parametrize(
    ("action", "params", "message"),
    [
        ("validate", {"artifact": f"{OUT}/a.tgz"}, "outside the allowed paths"),
        ("validate", {"artifact": "a.tgz", "bogus": 1}, "Extra inputs are not permitted"),
        ("validate", {"artifact": "a.tgz", "sha256": "abc"}, "64 hex digits"),
        ("validate", {"artifact": "a.tgz", "check": "tar -tzf x"}, "valid list"),
        ("validate", {"artifact": "a.tgz", "check": []}, "argv list"),
        ("validate", {}, "Field required"),
        ("deploy", {"artifact": "a.tgz", "app_dir": OUT}, "outside the allowed paths"),
        ("deploy", {"artifact": f"{OUT}/a.tgz", "app_dir": "app"}, "outside the allowed paths"),
        ("deploy", {"artifact": "a.tgz", "app_dir": "app", "keep": 0}, "greater than or equal"),
        ("deploy", {"artifact": "a", "app_dir": "app", "release_id": "../x"}, "release id"),
        ("deploy", {"artifact": "a", "app_dir": "app", "strip_components": -1}, "greater"),
        ("deploy", {"artifact": "apps", "app_dir": "apps/x"}, "inside the artifact"),
        ("deploy", {"artifact": "a.tgz", "app_dir": "app", "nope": 1}, "Extra inputs"),
        ("deploy", {"artifact": "a.tgz"}, "Field required"),
        ("verify", {"app_dir": OUT, "checks": [_CHECK]}, "outside the allowed paths"),
        ("verify", {"app_dir": "app", "checks": []}, "at least 1 item"),
        ("verify", {"checks": [_CHECK]}, "need app_dir"),
        ("verify", {"app_dir": "a", "checks": [{"path_exists": "../x"}]}, "without \\.\\."),
        ("verify", {"checks": [{"http": "file:///etc/passwd"}]}, "http:// or https://"),
        ("verify", {"checks": [{"tcp": "no-port"}]}, "host:port"),
        ("verify", {"checks": [{"tcp": "a:1", "http": "http://a/"}]}, "exactly one"),
        ("verify", {"checks": [{"tcp": "a:1", "status": 200}]}, "http checks only"),
        ("verify", {"checks": [{"tcp": "a:1", "retries": 3}]}, "Extra inputs"),
        ("verify", {"checks": [{"tcp": "a:1"}], "url": "x"}, "Extra inputs"),
        ("rollback", {"app_dir": OUT}, "outside the allowed paths"),
        ("rollback", {"app_dir": "app", "release": "a/b"}, "release id"),
        ("rollback", {"app_dir": "app", "to": "v1"}, "Extra inputs"),
    ],
)
def test_bad_params_fail_at_create_task(settings, outside, action, params, message):
    params = json.loads(json.dumps(params).replace(OUT, str(outside)))
    definition = {
        "name": "deploy",
        "type": "deployment",
        "schedule": "daily",
        "schedule_config": {"hour": 3},
        "actions": [{"type": action, "params": params}],
    }
    with pytest.raises(ValidationError, match=message):
        Task.model_validate(definition, context=context(settings))


def test_recovery_steps_and_links_out_are_checked_too(settings, work, outside):
    link = work / "app"
    link.symlink_to(outside, target_is_directory=True)
    step = {"type": "verify", "params": {"checks": [{"tcp": "a:1"}]}}
    definition = {
        "name": "deploy",
        "type": "deployment",
        "schedule": "daily",
        "schedule_config": {"hour": 3},
        "actions": [
            {**step, "on_failure": [{"type": "rollback", "params": {"app_dir": str(link)}}]}
        ],
    }
    with pytest.raises(ValidationError, match="outside the allowed paths"):
        Task.model_validate(definition, context=context(settings))
    ctx = make_ctx(settings, FileStore(settings.data_path))
    with pytest.raises(PathNotAllowed):
        REGISTRY.get("rollback").handler(ctx, app_dir=str(link))
