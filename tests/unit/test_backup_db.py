"""``backup`` of PostgreSQL and Redis targets and their restore, against real servers.

PostgreSQL: a private cluster (``tests.support.postgres_server``) that wants a password over
TCP, given to the action by ``password_env`` as in production. Redis: a private
``redis-server`` (the ``redis_server`` fixture) with ``requirepass`` set at run time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import ValidationError

from tdauto.actions import REGISTRY, ActionContext
from tdauto.actions.backup_db import manifest_of
from tdauto.actions.maintenance import BackupParams, restore_backup
from tdauto.errors import ActionError
from tdauto.models import Task
from tdauto.settings import Settings
from tests.support import actions
from tests.support.postgres_server import PostgresServer
from tests.support.redis_server import RedisServer, free_port

PW_ENV = "APP_TEST_DB_PASSWORD"
REDIS_PASSWORD = "r3dis-Secret-pw"


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    data.mkdir()
    return Settings(
        data_dir=data, allowed_paths=[data, tmp_path / "work"], task_secrets=["APP_*"]
    )


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def make_ctx(settings: Settings, execution_id: str = "exec-1") -> ActionContext:
    return actions.make_ctx(
        settings,
        execution_id=execution_id,
        task_name="nightly",
        action_type="backup",
        logger="tdauto.test.backup_db",
    )


def run_backup(settings: Settings, params: dict[str, Any], execution_id: str = "e1") -> dict:
    """Validate the params as create_task does, then run the handler as the engine does."""
    model = REGISTRY.parse_params("backup", params, actions.context(settings))
    return actions.call("backup", make_ctx(settings, execution_id), model)


# --- PostgreSQL ---------------------------------------------------------------------------------

SCHEMA = """
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, meta jsonb, seen timestamptz);
CREATE INDEX customers_name ON customers (name);
CREATE VIEW named AS SELECT name FROM customers;
INSERT INTO customers (name, meta, seen)
  SELECT 'c' || g, jsonb_build_object('n', g), '2024-01-01'::timestamptz + g * interval '1 h'
  FROM generate_series(1, 500) g;
"""
SNAPSHOT = "SELECT count(*), sum(id), max(name), max(meta->>'n') FROM customers"


@pytest.fixture
def appdb(postgres: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh database with a table, an index, a view and 500 rows; its DSN."""
    name = "app_" + request.node.name.split("[")[0][-40:].lower()
    postgres.psql(f'DROP DATABASE IF EXISTS "{name}"')
    dsn = postgres.create_database(name)
    postgres.psql(SCHEMA, name)
    return dsn


@pytest.fixture
def pg_password(postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The password reaches the action only through the variable that password_env names."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.delenv("PGPASSFILE", raising=False)
    monkeypatch.setenv(PW_ENV, postgres.password)
    return postgres.password


def dbname(dsn: str) -> str:
    return dsn.rsplit("/", 1)[1]


def test_postgres_backup_then_restore_round_trip(settings, postgres, appdb, pg_password, logs):
    before = postgres.psql(SNAPSHOT, dbname(appdb))

    # When the database is backed up with the password from the environment
    out = run_backup(settings, {"kind": "postgres", "dsn": appdb, "password_env": PW_ENV})

    # Then the archive is a pg_dump custom file, checksummed, with a manifest and no secret
    archive = Path(out["path"])
    assert out["kind"] == "postgres" and out["target"] == dbname(appdb)
    assert archive.name.endswith(".pgdump") and archive.read_bytes()[:5] == b"PGDMP"
    assert out["source"] == appdb
    manifest = json.loads(manifest_of(archive).read_text())
    assert manifest["source"]["dsn"] == appdb and manifest["source"]["password_env"] == PW_ENV
    for text in (json.dumps(out), manifest_of(archive).read_text(), logs.text):
        assert pg_password not in text

    # When the data changes and the backup is restored over it
    postgres.psql("DELETE FROM customers WHERE id > 10; DROP VIEW named", dbname(appdb))
    with pytest.raises(ActionError, match="overwrite=True") as refused:
        restore_backup(archive)  # the table exists: refused, and nothing changed
    assert refused.value.kind == "conflict"
    assert postgres.psql("SELECT count(*) FROM customers", dbname(appdb)) == "10"
    result = restore_backup(archive, overwrite=True)

    # Then the database is as it was when backed up (the manifest said where it came from)
    assert result["restored_to"] == appdb and result["clean"] is True
    assert postgres.psql(SNAPSHOT, dbname(appdb)) == before
    assert postgres.psql("SELECT count(*) FROM named", dbname(appdb)) == "500"
    assert pg_password not in logs.text


def test_postgres_restore_into_another_database_and_as_sql(
    settings, postgres, appdb, pg_password, tmp_path
):
    out = run_backup(
        settings,
        {"target": "app", "kind": "postgres", "host": "127.0.0.1", "port": postgres.port,
         "dbname": dbname(appdb), "user": "postgres", "password_env": PW_ENV},
    )
    postgres.psql('DROP DATABASE IF EXISTS "copy"')
    copy = postgres.create_database("copy")

    result = restore_backup(Path(out["path"]), dsn=copy, password_env=PW_ENV)

    assert result["restored_to"] == copy
    assert postgres.psql(SNAPSHOT, "copy") == postgres.psql(SNAPSHOT, dbname(appdb))
    script = tmp_path / "app.sql"
    assert restore_backup(Path(out["path"]), dest=script)["format"] == "sql"
    assert "CREATE TABLE public.customers" in script.read_text()
    with pytest.raises(ValueError, match="overwrite=True"):
        restore_backup(Path(out["path"]), dest=script)


def test_postgres_named_target_keeps_n_backups_with_their_manifests(
    settings, postgres, appdb, pg_password, tmp_path
):
    work = tmp_path / "work"
    work.mkdir()
    (work / "targets.yaml").write_text(
        f"appdb:\n  kind: postgres\n  dsn: {appdb}\n  password_env: {PW_ENV}\n"
    )
    named = Settings(
        data_dir=settings.data_dir,
        allowed_paths=settings.allowed_paths,
        backup_targets_file=work / "targets.yaml",
        task_secrets=settings.task_secrets,
    )
    first = run_backup(named, {"target": "appdb", "keep": 1}, "e1")
    second = run_backup(named, {"target": "appdb", "keep": 1}, "e2")
    assert second["pruned"] == [first["path"]]
    folder = Path(second["path"]).parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [Path(second["path"]).name, Path(second["path"]).name + ".sha256",
         Path(second["path"]).name + ".manifest.json"]
    )


def test_postgres_wrong_or_missing_password_fails_without_leaking(
    settings, postgres, appdb, monkeypatch, logs
):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv(PW_ENV, "not-the-Password-123")
    params = {"kind": "postgres", "dsn": appdb, "password_env": PW_ENV}
    with pytest.raises(ActionError, match="password authentication failed") as caught:
        run_backup(settings, params)
    assert caught.value.kind == "exit"
    assert "not-the-Password-123" not in str(caught.value) + logs.text
    assert not any(p.suffix == ".pgdump" for p in settings.data_path.rglob("*"))

    monkeypatch.delenv(PW_ENV)
    with pytest.raises(ActionError, match=f"{PW_ENV} is not set"):
        run_backup(settings, params)


def test_restore_without_a_manifest_asks_where_to(settings, postgres, appdb, pg_password):
    out = run_backup(settings, {"kind": "postgres", "dsn": appdb, "password_env": PW_ENV})
    manifest_of(Path(out["path"])).unlink()
    with pytest.raises(ValueError, match=r"no postgres manifest.*dsn="):
        restore_backup(Path(out["path"]))


# --- Redis --------------------------------------------------------------------------------------


def fill(client: redis.Redis) -> None:
    client.set("string", "value")
    client.set("binary", bytes(range(256)))
    client.set("expiring", "soon", ex=3600)
    client.hset("hash", mapping={"a": "1", "b": "2"})
    client.rpush("list", *range(100))
    client.sadd("set", "x", "y", "z")
    client.zadd("zset", {"m1": 1.5, "m2": 2.5})
    client.xadd("stream", {"field": "v"})


def contents(client: redis.Redis) -> dict[bytes, Any]:
    """Every key's type and value (and whether it expires), for comparisons."""
    out: dict[bytes, Any] = {}
    for key in client.scan_iter():
        kind = client.type(key)
        value: Any = {
            b"string": lambda k: client.get(k),
            b"hash": lambda k: client.hgetall(k),
            b"list": lambda k: client.lrange(k, 0, -1),
            b"set": lambda k: sorted(client.smembers(k)),
            b"zset": lambda k: client.zrange(k, 0, -1, withscores=True),
            b"stream": lambda k: client.xrange(k),
        }[kind](key)
        out[key] = (kind, value, client.ttl(key) > 0)
    return out


@pytest.fixture
def secured_redis(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> RedisServer:
    """The test's redis-server filled in databases 0 and 5, then given a password.

    ``repl-diskless-sync-delay 0``: the server otherwise waits 5 s for more replicas before it
    streams the snapshot to ``redis-cli --rdb``.
    """
    fill(redis.Redis.from_url(redis_server.url))
    redis.Redis(port=redis_server.port).config_set("repl-diskless-sync-delay", 0)
    redis.Redis(port=redis_server.port, db=5).set("other-db", "5")
    redis.Redis(port=redis_server.port).config_set("requirepass", REDIS_PASSWORD)
    monkeypatch.setenv(PW_ENV, REDIS_PASSWORD)
    return redis_server


def authed(server: RedisServer, db: int = 0) -> redis.Redis:
    return redis.Redis(port=server.port, db=db, password=REDIS_PASSWORD)


def test_redis_backup_then_restore_round_trip(settings, secured_redis, logs):
    server = secured_redis
    before = {db: contents(authed(server, db)) for db in (0, 5)}

    out = run_backup(settings, {"kind": "redis", "url": server.url, "password_env": PW_ENV})

    archive = Path(out["path"])
    assert out["target"] == "redis" and archive.name.endswith(".rdb")
    assert archive.read_bytes()[:5] == b"REDIS"
    assert REDIS_PASSWORD not in json.dumps(out) + logs.text + manifest_of(archive).read_text()

    # When everything is lost, the backup restores every key, type, TTL and database
    authed(server).flushall()
    result = restore_backup(archive)
    assert result["databases"] == {"0": len(before[0]), "5": 1}
    assert {db: contents(authed(server, db)) for db in (0, 5)} == before
    assert 3500 < authed(server).ttl("expiring") <= 3600


def test_redis_restore_refuses_a_non_empty_database_unless_overwrite(settings, secured_redis):
    server = secured_redis
    out = run_backup(settings, {"kind": "redis", "url": server.url, "password_env": PW_ENV})
    client = authed(server)
    client.set("string", "changed")
    client.set("new-key", "stays")

    with pytest.raises(ValueError, match="overwrite=True"):
        restore_backup(Path(out["path"]))
    assert client.get("string") == b"changed"

    restore_backup(Path(out["path"]), overwrite=True)
    assert client.get("string") == b"value" and client.get("new-key") == b"stays"


def test_redis_restore_into_another_server_and_as_an_rdb_file(
    settings, secured_redis, tmp_path, monkeypatch
):
    out = run_backup(settings, {"kind": "redis", "url": secured_redis.url, "password_env": PW_ENV})
    with RedisServer(tmp_path / "other") as other:
        monkeypatch.delenv(PW_ENV)  # the other server has no password
        restore_backup(Path(out["path"]), redis_url=other.url)
        assert contents(redis.Redis.from_url(other.url)) == contents(authed(secured_redis))
    rdb = tmp_path / "dump.rdb"
    assert restore_backup(Path(out["path"]), dest=rdb)["format"] == "rdb"
    assert rdb.read_bytes() == Path(out["path"]).read_bytes()


def test_redis_backup_with_a_wrong_password_fails(settings, secured_redis, monkeypatch, logs):
    monkeypatch.setenv(PW_ENV, "wrong-Redis-pw-42")
    with pytest.raises(ActionError, match="backup of 'redis' failed"):
        run_backup(settings, {"kind": "redis", "url": secured_redis.url, "password_env": PW_ENV})
    assert "wrong-Redis-pw-42" not in logs.text
    closed = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(ActionError, match="failed"):
        run_backup(settings, {"kind": "redis", "url": closed})


# --- validation at create time ------------------------------------------------------------------


def task(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "nightly",
        "type": "maintenance",
        "schedule": "daily",
        "schedule_config": {"hour": 2},
        "actions": [{"type": "backup", "params": params}],
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"kind": "postgres", "dsn": "postgresql://app:hunter2@db/app"}, "carries a password"),
        ({"kind": "postgres", "dsn": "postgresql://app@db/app?password=hunter2"}, "password"),
        ({"kind": "postgres", "dsn": "host=db dbname=app password=hunter2"}, "password"),
        ({"kind": "postgres", "dsn": "mysql://db/app"}, "not a PostgreSQL DSN"),
        ({"kind": "postgres", "dsn": "postgresql://db/app", "host": "db"}, "not both"),
        ({"kind": "postgres", "host": "db"}, "name the database"),
        ({"kind": "postgres", "dbname": "app", "port": 0}, "greater than or equal to 1"),
        ({"kind": "postgres", "dbname": "app", "password_env": "hunter2!"}, "NAME of an env"),
        ({"kind": "postgres", "dbname": "app", "url": "redis://h"}, "url is for kind redis"),
        ({"kind": "postgres", "dbname": "app", "path": "x"}, "take no path"),
        ({"kind": "postgres", "dbname": "app", "passfile": "/etc/pgpass"}, "outside the allowed"),
        ({"kind": "redis", "url": "redis://:hunter2@cache:6379/0"}, "carries a password"),
        ({"kind": "redis", "url": "http://cache"}, "use redis://"),
        ({"kind": "redis", "url": "redis://cache/x"}, "database number"),
        ({"kind": "redis"}, "need url"),
        ({"kind": "redis", "url": "redis://c", "dsn": "postgresql://d/x"}, "dsn is for kind"),
        ({"kind": "sqlite", "path": "a.db", "dsn": "postgresql://d/x"}, "dsn is for kind"),
        ({"dsn": "postgresql://d/x"}, "without kind"),
        ({"kind": "postgres", "dbname": "app", "bogus": 1}, "Extra inputs"),
    ],
)
def test_bad_database_backup_params_are_refused(settings, params, message):
    with pytest.raises(ValidationError, match=message) as caught:
        BackupParams.model_validate(params, context={"registry": REGISTRY, "settings": settings})
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ValidationError, match=message):
        Task.model_validate(task(params), context={"registry": REGISTRY, "settings": settings})


def test_good_database_backup_params_are_accepted(settings):
    context = {"registry": REGISTRY, "settings": settings}
    ok = Task.model_validate(
        task({"kind": "postgres", "dsn": "postgresql://app@db:5432/app", "password_env": "APP_X"}),
        context=context,
    )
    assert ok.actions[0].params["dsn"] == "postgresql://app@db:5432/app"
    pg = {"kind": "postgres", "dsn": "host=db dbname=shop"}
    assert BackupParams.model_validate(pg, context=context).target == "shop"
    cache = {"kind": "redis", "url": "rediss://u@c:6380/2"}
    assert BackupParams.model_validate(cache).target == "redis"
