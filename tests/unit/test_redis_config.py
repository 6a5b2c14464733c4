"""TDAUTO_BROKER_URL as a user writes it: misread URLs refused in one line, a Redis that needs a
password or is down named with the fix, and the CLI exits 4 (the store cannot be reached) with
that line (no traceback)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result
from pydantic import ValidationError

from tdauto.app import celery_config, make_app
from tdauto.cli import main as cli
from tdauto.errors import StoreError
from tdauto.redis_url import parse
from tdauto.redisconn import RedisUnavailable
from tdauto.settings import Settings
from tdauto.store import RedisStore, open_store
from tests.support.redis_server import RedisServer, free_port


def run_cli(args: list[str], data: Path, url: str) -> Result:
    env = {"TDAUTO_DATA_DIR": str(data), "TDAUTO_BROKER_URL": url}
    return CliRunner().invoke(cli, args, env=env)


def one_line(result: Result, code: int) -> str:
    """The command's single ``error:`` line (exit ``code``, no traceback)."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server with requirepass (no default password in its URL for the tests)."""
    server = RedisServer(tmp_path / "redis-auth", password="s3cret")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(
    "url, said",
    [
        ("redis://127.0.0.1:6379/abc", "the database 'abc' is not a number"),
        ("redis://127.0.0.1:6379/0x1", "the database '0x1' is not a number"),
        ("redis://127.0.0.1:6379?db=one", "the database 'one' is not a number"),
        ("redis://127.0.0.1:port/0", "the port is not a number"),
        ("http://127.0.0.1:6379/0", "unsupported scheme"),
        ("sentinel://127.0.0.1:26379;redis://127.0.0.1:6379", "that is not sentinel://"),
        ("redis://a:6379/0;redis://b:6379/0", "several servers"),
    ],
)
def test_a_url_redis_would_misread_is_refused_naming_the_variable(
    tmp_path: Path, url: str, said: str
) -> None:
    # When a command starts with a URL redis-py would read another way (or not at all)
    line = one_line(run_cli(["task", "list"], tmp_path / "data", url), 2)
    # Then one line names TDAUTO_BROKER_URL, what is wrong and the fix
    assert line.startswith("error: TDAUTO_BROKER_URL: "), line
    assert said in line


def test_the_password_is_never_shown_in_the_refusal(tmp_path: Path) -> None:
    line = one_line(run_cli(["stats"], tmp_path / "data", "redis://:hunter2@h:6379/x"), 2)
    assert "hunter2" not in line and "redis://:***@h:6379/x" in line
    with pytest.raises(ValidationError) as refused:  # nor to the Python API
        Settings(broker_url="sentinel://:hunter2@a:26379/x;sentinel://b:26379")
    assert "hunter2" not in str(refused.value)


def test_the_forms_tdauto_accepts_parse_to_their_server_and_database() -> None:
    assert parse("redis://:pw@10.0.0.1:6380/3").where() == "10.0.0.1:6380"
    assert parse("redis://10.0.0.1/").db == 0
    assert parse("rediss://h/2").db == 2
    assert parse("unix:///run/redis.sock?db=4").db == 4
    sentinels = parse("sentinel://:pw@a:26379/5;sentinel://b:26380;sentinel://c")
    assert sentinels.hosts == (("a", 26379), ("b", 26380), ("c", 26379))
    assert sentinels.db == 5 and sentinels.password == "pw"


@pytest.mark.parametrize("command", [["up"], ["worker", "cpu"], ["beat"], ["task", "list"]])
def test_redis_down_is_one_line_and_exit_4(tmp_path: Path, command: list[str]) -> None:
    port = free_port()  # nothing listens there
    # When up, worker, beat or a management command starts while Redis is down
    line = one_line(run_cli(command, tmp_path / "data", f"redis://127.0.0.1:{port}/0"), 4)
    # Then it says where and what to do, once, and stops (no pool started, no retry loop)
    assert f"Redis at 127.0.0.1:{port} is not reachable" in line
    assert "start it or fix TDAUTO_BROKER_URL" in line
    assert not (tmp_path / "data" / "state" / "up.lock").exists()


def test_no_password_says_noauth_and_where_to_put_it(tmp_path: Path, locked: RedisServer) -> None:
    url = f"redis://127.0.0.1:{locked.port}/0"
    # When a command reaches a Redis with requirepass without a password
    line = one_line(run_cli(["task", "list"], tmp_path / "data", url), 4)
    # Then it names the server and the variable, not "unauthenticated multibulk length"
    expected = f"Redis at 127.0.0.1:{locked.port} needs a password (NOAUTH)"
    assert line == f"error: {expected}: put it in TDAUTO_BROKER_URL"


def test_the_store_says_noauth_too_where_redis_said_protocol_error(locked: RedisServer) -> None:
    # A long script call unauthenticated is what Redis answers with "Protocol error:
    # unauthenticated multibulk length" (the store's first write, when no check ran first)
    store = RedisStore(f"redis://127.0.0.1:{locked.port}/0", reconnect_s=0)
    with pytest.raises(RedisUnavailable) as raised:
        store.snapshot()
    assert "needs a password (NOAUTH): put it in TDAUTO_BROKER_URL" in str(raised.value)
    assert isinstance(raised.value, StoreError)


def test_a_wrong_password_is_named_as_such(tmp_path: Path, locked: RedisServer) -> None:
    url = f"redis://:wrong@127.0.0.1:{locked.port}/0"
    line = one_line(run_cli(["stats"], tmp_path / "data", url), 4)
    assert "refused the password (WRONGPASS)" in line and "wrong" not in line.split("(")[0]


def test_with_the_password_in_the_url_the_command_works(
    tmp_path: Path, locked: RedisServer
) -> None:
    result = run_cli(["task", "list"], tmp_path / "data", locked.url)
    assert result.exit_code == 0, result.output


def test_sentinels_nobody_runs_are_named_with_the_settings(tmp_path: Path) -> None:
    url = f"sentinel://127.0.0.1:{free_port()};sentinel://127.0.0.1:{free_port()}"
    line = one_line(run_cli(["beat"], tmp_path / "data", url), 4)
    assert "no master from the sentinels" in line and "'mymaster'" in line
    assert "TDAUTO_SENTINEL_MASTER" in line


def test_a_sentinel_broker_gets_the_master_name_and_sentinel_password(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        broker_url="sentinel://:pw@127.0.0.1:26379/0;sentinel://127.0.0.1:26380",
        sentinel_master="tdauto",
        sentinel_password="sentinel-secret",
    )
    options = celery_config(settings)["broker_transport_options"]
    # Then kombu's sentinel transport (with the outbox) asks the sentinels for 'tdauto'
    assert celery_config(settings)["broker_transport"] == "tdauto.engine.outbox:SentinelTransport"
    assert options["master_name"] == "tdauto"
    assert options["sentinel_kwargs"] == {"password": "sentinel-secret"}
    # and the store is a sentinel client of the same master (nothing connects yet)
    store = open_store(settings)
    assert store.pushes_messages(settings.broker_url)


def test_a_unix_socket_url_serves_the_broker_and_the_store(tmp_path: Path) -> None:
    socket_path = tmp_path / "redis.sock"
    server = RedisServer(
        tmp_path / "redis-unix",
        password="s3cret",
        extra_args=("--unixsocket", str(socket_path), "--unixsocketperm", "700"),
    )
    server.start()
    try:
        settings = Settings(
            data_dir=tmp_path / "data", broker_url=f"unix://:s3cret@{socket_path}?db=3"
        )
        # the broker: a message through Celery's connection lands in database 3
        app = make_app(settings)
        with app.connection_for_write() as connection:
            queue = connection.SimpleQueue("tdauto.test-unix")
            queue.put({"hello": "socket"})
            message = queue.get(timeout=5)
            assert message.payload == {"hello": "socket"}
            message.ack()
            queue.close()
        # and the store, on the same database
        store = open_store(settings)
        assert store.list_tasks() == []
        direct = redis.Redis(unix_socket_path=str(socket_path), password="s3cret", db=3)
        assert direct.exists("_kombu.binding.tdauto.test-unix")
        assert not redis.Redis(unix_socket_path=str(socket_path), password="s3cret").keys()
    finally:
        server.stop()
