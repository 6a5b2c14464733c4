"""PostgreSQL DSN options that read files (issue #18, finding 13).

A task's DSN reaches ``pg_dump``/``pg_restore``/``psql`` as ``--dbname``, and libpq acts on
every option in it: ``passfile=/etc/shadow``, another app's ``sslkey``, a ``service`` from a
service file. Such options are now refused or confined to ``TDAUTO_ALLOWED_PATHS`` when the
task is created and again when a target is resolved to run; the DSN is parsed as libpq
parses it, which is checked against libpq itself.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tdauto import AutomationSystems, ProcessType, ScheduleType
from tdauto.actions import REGISTRY
from tdauto.actions.maintenance import BackupParams
from tdauto.actions.pgoptions import KNOWN, ConninfoError, parse
from tdauto.actions.registry import load_plugins
from tdauto.errors import InvalidInput
from tdauto.settings import Settings
from tests.support.actions import call, context, make_ctx
from tests.support.libpq import libpq

load_plugins([])
LIBPQ = libpq()
needs_libpq = pytest.mark.skipif(LIBPQ is None, reason="libpq (libpq5) is not installed")


@pytest.fixture
def settings(tmp_path: Path, work: Path) -> Settings:
    data = tmp_path / "data"
    data.mkdir()
    return Settings(data_dir=data, allowed_paths=[data, work], task_secrets=["PW"])


def backup(dsn: str) -> dict[str, Any]:
    return {"type": "backup", "params": {"kind": "postgres", "dsn": dsn, "password_env": "PW"}}


def refusal(settings: Settings, dsn: str) -> str:
    with pytest.raises((ValidationError, InvalidInput)) as caught:
        BackupParams.model_validate(backup(dsn)["params"], context=context(settings))
    return str(caught.value)


@pytest.mark.parametrize("option", ["passfile", "sslkey", "sslcert", "sslrootcert", "sslcrl"])
def test_a_file_option_outside_the_allowed_paths_is_refused_at_create(settings, option):
    system = AutomationSystems(
        data_dir=settings.data_path, allowed_paths=[str(p) for p in settings.allowed_paths]
    )
    for dsn in (
        f"host=db dbname=app {option}=/etc/shadow",
        f"postgresql://db/app?{option}=/etc/shadow",
    ):
        with pytest.raises((ValidationError, InvalidInput)) as caught:
            asyncio.run(
                system.create_task(
                    "nightly",
                    ProcessType.MAINTENANCE,
                    ScheduleType.DAILY,
                    {"hour": 2},
                    actions=[backup(dsn)],
                )
            )
        message = str(caught.value)
        assert "dsn" in message and f"option {option} reads a file" in message, message
        assert "'/etc/shadow' is outside the allowed paths" in message
        assert "TDAUTO_ALLOWED_PATHS" in message
    assert asyncio.run(system.list_tasks()) == []  # nothing was stored


def test_file_options_inside_the_allowed_paths_are_accepted(settings, work):
    ca = work / "ca.pem"
    ok = f"postgresql://db/app?sslmode=verify-full&sslrootcert={ca}&sslkey={work / 'k.key'}"
    assert BackupParams.model_validate(backup(ok)["params"], context=context(settings)).dsn == ok
    system_ca = "host=db dbname=app sslmode=verify-full sslrootcert=system"
    assert BackupParams.model_validate(backup(system_ca)["params"], context=context(settings))


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("host=db dbname=app service=prod", "option service reads connection settings"),
        ("postgresql:///app?service=prod", "option service reads connection settings"),
        ("dbname=app servicefile=/tmp/pg_service.conf", "option servicefile reads"),
        ("host=db dbname=app sslkey=client.key", "give its absolute path"),
        ("host=db dbname=app sslpassword=hunter2", "option sslpassword carries a secret"),
        ("host=db dbname=app gssdelegation=1 sslkeylogfile=/tmp/keys", "sslkeylogfile reads a"),
        ("host=db dbname=app foo=1", "option 'foo' is not a libpq connection option"),
        ("host=db dbname='app", "unterminated quoted value"),
        ("host=db dbname", "missing \"=\" after 'dbname'"),
        ("postgresql://db/app?sslmode", "must be key=value"),
        # the quoting that hides an option from a naive split does not hide it from libpq
        ("dbname='app' sslkey = '/etc/ssl/private/other app.key'", "outside the allowed paths"),
        ("postgresql://db/app?ssl%6Bey=%2Fetc%2Fshadow", "option sslkey reads a file"),
    ],
)
def test_options_that_read_services_or_secrets_are_refused(settings, dsn, message):
    text = refusal(settings, dsn)
    assert message in text and "dsn" in text, text
    assert "hunter2" not in text


def test_health_checks_refuse_them_too(settings):
    params = {"checks": [{"type": "postgres", "dsn": "dbname=app passfile=/etc/shadow"}]}
    with pytest.raises(ValidationError, match="option passfile reads a file") as caught:
        REGISTRY.parse_params("health_check", params, context(settings))
    assert "dsn" in str(caught.value)


def test_a_named_target_is_checked_again_when_the_backup_runs(settings, work):
    """The targets file is read without settings; its DSN is confined once they are known."""
    (work / "targets.yaml").write_text(
        "appdb:\n  kind: postgres\n  dsn: host=db dbname=app sslkey=/etc/ssl/private/app.key\n"
    )
    named = settings.model_copy(update={"backup_targets_file": work / "targets.yaml"})
    with pytest.raises((ValidationError, InvalidInput)) as caught:  # where the worker reads it
        model = REGISTRY.parse_params("backup", {"target": "appdb"}, context(named))
        call("backup", make_ctx(named, action_type="backup"), model)
    message = str(caught.value)
    assert "target 'appdb'" in message and "option sslkey reads a file" in message, message
    assert not list(settings.data_path.rglob("*.pgdump"))


# --- the parser is libpq's ---------------------------------------------------------------------

CASES = [
    "host=db dbname='my db' sslkey = '/etc/sha\\'dow'  port=5432",
    "dbname=a\\ b user=x\\",
    "dbname = ''",
    "dbname=a'b host='h\\\\'",
    "dbname='a",
    "dbname",
    "dbname=a=b",
    "postgresql://",
    "postgresql://u%40x:@h1:5432,h2,[::1]:6/d%2Fb?sslmode=verify-full&sslrootcert=/x%20y",
    "postgres://h/d?ssl=true&application_name=a+b",
    "postgresql://h/d?sslmode",
    "postgresql://h/d?sslmode=a=b",
    "postgresql:///d?host=%2Fvar%2Frun%2Fpostgresql&port=5433",
]


def ours(dsn: str) -> dict[str, str] | None:
    """What tdauto reads from ``dsn``; None when it refuses it, as libpq refuses a string
    that does not parse or names an option it does not know."""
    try:
        options = parse(dsn)
    except ConninfoError:
        return None
    return None if set(options) - KNOWN else options


@needs_libpq
@pytest.mark.parametrize("dsn", CASES)
def test_the_options_are_those_libpq_reads(dsn):
    assert LIBPQ is not None
    assert ours(dsn) == LIBPQ(dsn)


KEYS = st.sampled_from(["host", "dbname", "sslkey", "user", "port"])
VALUE = st.text(alphabet="ab '\\=/", max_size=8)
SPACE = st.sampled_from(["", " ", "  ", "\t"])


@needs_libpq
@hypothesis_settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(SPACE, KEYS, SPACE, SPACE, VALUE, st.booleans()), max_size=4))
def test_any_conninfo_is_read_as_libpq_reads_it(pairs):
    assert LIBPQ is not None
    parts = []
    for before, key, around, after, value, quoted in pairs:
        shown = "'" + value + "'" if quoted else value
        parts.append(f"{before}{key}{around}={after}{shown}")
    dsn = " ".join(parts)
    assert ours(dsn) == LIBPQ(dsn), dsn


@needs_libpq
@hypothesis_settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab:@/?&=%2F[],.'\\ ", max_size=16))
def test_any_uri_is_read_as_libpq_reads_it(rest):
    dsn = "postgresql://" + rest
    assert ours(dsn) == LIBPQ(dsn), dsn
