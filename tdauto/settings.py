"""Every ``TDAUTO_*`` setting, in one place.

Precedence: arguments to :class:`Settings` (and so to ``AutomationSystems(**settings)``), then
``TDAUTO_*`` environment variables, then the defaults here. Unknown arguments are refused, so a
misspelt option fails at once instead of being silently dropped. The README's configuration
table is generated from the descriptions below (``tdauto config --markdown``).
"""

from __future__ import annotations

import ipaddress
import math
import socket
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tdauto import datadir, redis_url


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """tdauto's configuration; see the README for the table of variables."""

    # a refused value is not echoed by pydantic: it may be a password (a broker URL's)
    model_config = SettingsConfigDict(
        env_prefix="TDAUTO_", extra="forbid", frozen=True, hide_input_in_errors=True
    )

    broker_url: str | None = Field(
        default=None,
        description="Redis URL for distributed mode (redis://[:password@]host:port/db, rediss://, "
        "unix:///path.sock, or sentinel://host:port;sentinel://host:port;... for Redis "
        "Sentinel); unset = local mode (embedded SQLite broker and file store under the data dir).",
    )
    data_dir: Path = Field(
        default_factory=lambda: datadir.discover().path,
        description="Where tasks, executions, logs, metrics, reports and backups live.",
    )
    timezone: str = Field(
        default="UTC", description="Default IANA time zone of schedules without their own."
    )
    allowed_paths: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated directories actions may touch; empty = the data dir only.",
    )
    plugins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated modules imported by every process to register actions.",
    )
    backup_targets_file: Path | None = Field(
        default=None,
        description="JSON or YAML file of named backup targets ({name: {kind, path}}, or "
        "{kind: postgres, dsn} / {kind: redis, url}).",
    )
    key_prefix: str = Field(default="tdauto", description="Prefix of every Redis key.")
    host: str = Field(
        default_factory=socket.gethostname,
        description="This host's name in queues, samples and records.",
    )
    beat_tick_s: float = Field(
        default=1.0, gt=0, le=60, description="Longest sleep of the scheduler between ticks."
    )
    leader_ttl_s: float = Field(
        default=15,
        gt=0,
        le=3600,
        description="Lease of the beat leader lock, in seconds: a leader that dies is replaced "
        "within this plus one tick.",
    )
    leader_renew_s: float = Field(
        default=5,
        gt=0,
        description="How often the leading beat renews its lease, in seconds; under half of "
        "TDAUTO_LEADER_TTL_S so one slow renewal does not cost the lead.",
    )
    poll_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description="Local broker: the longest a consumer waits before looking at its queues "
        "again when no wake-up came (a lost wake-up, a dead consumer's messages to restore).",
    )
    visibility_timeout_s: int = Field(
        default=3600, ge=60, description="Redis broker visibility timeout (unacked redelivery)."
    )
    store_reconnect_s: float = Field(
        default=30.0, ge=0, description="Seconds a Redis store call keeps reconnecting."
    )
    sentinel_master: str = Field(
        default="mymaster", description="Master name the sentinels watch (sentinel:// URLs)."
    )
    sentinel_password: SecretStr | None = Field(
        default=None, description="Password of the sentinels themselves (their requirepass)."
    )
    lease_ttl_s: float = Field(
        default=20.0, ge=2, description="Lease of a running action; expired = its worker died."
    )
    lease_renew_s: float = Field(
        default=5.0, gt=0, description="How often a worker renews its running actions' leases."
    )
    write_behind: bool = Field(
        default=False,
        description="Prefork workers record an action's success on a thread of their own "
        "while Celery acks and hands over the next message: quicker where a pool's "
        "processes wait on Redis (a one-process pool), slower where the workers already "
        "fill the CPUs (docs/execution.md).",
    )
    lost_requeues: int = Field(
        default=2, ge=0, description="Times an action whose worker died is run again."
    )
    kill_grace_s: float = Field(
        default=5.0, ge=0, description="Seconds between SIGTERM and SIGKILL on cancel/timeout."
    )
    log_max_bytes: int = Field(
        default=1_000_000, ge=1024, description="Cap of one execution's stored log, in bytes."
    )
    flower_user: str | None = Field(default=None, description="Flower basic-auth user.")
    flower_password: SecretStr | None = Field(
        default=None,
        description="Flower basic-auth password (of its /metrics too); 12+ characters.",
    )
    flower_port: int = Field(default=5555, description="Flower's port.")
    flower_address: str = Field(default="127.0.0.1", description="Flower's bind address.")
    flower_max_tasks: int = Field(
        default=10_000,
        ge=100,
        description="Tasks Flower keeps in memory and in its state file (oldest dropped).",
    )
    metrics_user: str | None = Field(
        default=None, description="Basic-auth user of the Prometheus /metrics endpoint."
    )
    metrics_password: SecretStr | None = Field(
        default=None,
        description="Basic-auth password of the Prometheus /metrics endpoint; 12+ characters.",
    )
    metrics_port: int = Field(
        default=9808, description="Port of /metrics (`tdauto metrics`, `tdauto up`); 0 = off in up."
    )
    metrics_address: str = Field(default="127.0.0.1", description="Bind address of /metrics.")
    retention_executions_days: float = Field(
        default=30, gt=0, description="Finished executions older than this are removed."
    )
    retention_logs_days: float = Field(
        default=14, gt=0, description="Execution logs older than this are removed."
    )
    retention_metrics_days: float = Field(
        default=90,
        gt=0,
        description="Host samples, metrics files and hourly/daily rollups older than this are "
        "removed.",
    )
    alert_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Key of the HMAC-SHA256 signature (X-Tdauto-Signature) of alert webhooks; "
        "webhooks are refused without it.",
    )
    smtp_host: str | None = Field(default=None, description="SMTP server of alert emails.")
    smtp_port: int = Field(default=587, description="SMTP port of alert emails.")
    smtp_user: str | None = Field(default=None, description="SMTP login (unset: no login).")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    smtp_from: str = Field(
        default="tdauto@localhost", description="Sender address of alert emails."
    )
    smtp_security: Literal["starttls", "ssl", "none"] = Field(
        default="starttls",
        description="starttls (port 587), ssl (port 465) or none (a local relay only).",
    )
    concurrency_cpu: int = Field(default=2, ge=1, description="Processes of the cpu pool.")
    concurrency_memory: int = Field(default=1, ge=1, description="Processes of the memory pool.")
    concurrency_storage: int = Field(default=4, ge=1, description="Threads of the storage pool.")
    memory_child_max_mb: int = Field(
        default=512,
        ge=64,
        description="Resident memory (MiB) above which a memory-pool child process is replaced "
        "after its task (Celery's worker_max_memory_per_child).",
    )
    manager_interval_s: float = Field(
        default=3.0,
        ge=0.5,
        le=300,
        description="How often the resource manager runs (a beat entry): it reads load samples, "
        "queue depths and reservations, rewrites the routing weights and lends idle pools to a "
        "backlogged class.",
    )
    high_water_percent: float = Field(
        default=90.0,
        gt=0,
        le=100,
        description="A host whose use of a class's resource (measured CPU, memory or disk "
        "percent, or reserved share, whichever is higher) is at or above this gets routing "
        "weight 0 for that class.",
    )
    spill_backlog: int = Field(
        default=4,
        ge=1,
        description="Messages waiting in one class's queues at which the resource manager lends "
        "that class idle pools of other classes (add_consumer); it takes them back when the "
        "backlog drains.",
    )
    subprocess_limits: bool = Field(
        default=True,
        description="Run action subprocesses under rlimits derived from the action's "
        "reservation (address space from its memory share of the host's RAM).",
    )
    shell_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated programs (names on PATH or absolute paths) the shell action "
        "may run; empty = the shell action is off.",
    )
    update_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated programs (names on PATH or absolute paths) the update action "
        "may run; empty = the update action is off.",
    )
    task_secrets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated patterns (fnmatch, e.g. APP_*,DB_*) of the environment "
        "variables tasks may read as secrets (headers_env, password_env); empty = none. "
        "TDAUTO_* variables never, whatever the patterns.",
    )
    outbound_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated networks (CIDRs) that tasks, health checks and notifiers "
        "may connect to although link-local or cloud metadata (169.254.0.0/16, fe80::/10, "
        "fd00:ec2::254 are refused by default).",
    )
    task_max_bytes: int = Field(
        default=262_144,
        ge=1,
        description="Largest task definition (create, update, task files), in bytes of JSON.",
    )
    task_max_actions: int = Field(
        default=100, ge=1, description="Most actions of a task, and most recovery steps of a list."
    )
    task_description_max: int = Field(
        default=4096, ge=0, description="Longest task description, in characters."
    )
    param_max_bytes: int = Field(
        default=65_536,
        ge=1,
        description="Largest value of one action param (or trigger override), in bytes of JSON.",
    )
    task_file_max_bytes: int = Field(
        default=4_194_304, ge=1, description="Largest file `tdauto apply -f` reads."
    )

    check_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated programs (names on PATH or absolute paths) that validate's "
        "check and verify's command checks may run; empty = those checks are off.",
    )
    debug: bool = Field(
        default=False,
        description="The CLI prints the traceback under an expected error's line (`--debug`).",
    )

    @field_validator(
        "allowed_paths",
        "plugins",
        "shell_allow",
        "update_allow",
        "check_allow",
        "task_secrets",
        "outbound_allow",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("host", mode="before")
    @classmethod
    def _host(cls, value: object) -> object:
        return value if value not in (None, "") else socket.gethostname()

    @field_validator(
        "backup_targets_file",
        "flower_user",
        "flower_password",
        "metrics_user",
        "metrics_password",
        "alert_webhook_secret",
        "smtp_host",
        "smtp_user",
        "smtp_password",
        "sentinel_password",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("outbound_allow")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError(
                    f"TDAUTO_OUTBOUND_ALLOW: {text!r} is not a network; give CIDRs such as "
                    "169.254.10.0/24 or fd00:ec2::254/128, comma-separated"
                ) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as 'UTC' or 'Europe/Paris'"
            ) from exc
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        try:
            redis_url.parse(value)
        except ValueError as exc:  # the CLI's error line names the variable itself
            raise ValueError(str(exc).removeprefix(f"{redis_url.VARIABLE}: ")) from None
        return value

    @model_validator(mode="after")
    def _finite(self) -> Settings:
        # NaN compares false with every bound (a NaN tick would never sleep, a NaN TTL never
        # expire), and inf is "never": both are refused wherever a number is taken
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(
                    f"TDAUTO_{name.upper()}: {value} is not a finite number; give one"
                )
        return self

    @model_validator(mode="after")
    def _leader_timing(self) -> Settings:
        if self.leader_renew_s >= self.leader_ttl_s / 2:
            raise ValueError(
                f"leader_renew_s ({self.leader_renew_s}) must be under half of leader_ttl_s "
                f"({self.leader_ttl_s}) so the lease is renewed well before it expires; lower "
                "TDAUTO_LEADER_RENEW_S or raise TDAUTO_LEADER_TTL_S"
            )
        if self.lease_renew_s >= self.lease_ttl_s / 2:
            raise ValueError(
                f"lease_renew_s ({self.lease_renew_s}) must be under half of lease_ttl_s "
                f"({self.lease_ttl_s}); lower TDAUTO_LEASE_RENEW_S or raise TDAUTO_LEASE_TTL_S"
            )
        return self

    @property
    def local_mode(self) -> bool:
        """True when no broker URL is set: local broker and file store."""
        return self.broker_url is None

    @cached_property
    def data_path(self) -> Path:
        """The data dir as an absolute path (so child processes agree on it); resolved once,
        since settings are frozen."""
        return self.data_dir.expanduser().resolve()

    @cached_property
    def confined_paths(self) -> list[Path]:
        """Resolved directories actions may touch (default: the data dir); resolved once."""
        paths = self.allowed_paths or [self.data_dir]
        return [p.expanduser().resolve() for p in paths]

    def child_env(self) -> dict[str, str]:
        """These settings as ``TDAUTO_*`` variables, for processes this one starts."""
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None or value == []:
                continue
            key = f"TDAUTO_{name.upper()}"
            if isinstance(value, list):
                env[key] = ",".join(str(v) for v in value)
            elif isinstance(value, SecretStr):
                env[key] = value.get_secret_value()
            elif name == "data_dir":
                env[key] = str(self.data_path)
            else:
                env[key] = str(value)
        return env


def settings_table() -> str:
    """The README's configuration table (Markdown), generated from the fields above."""
    rows = ["| variable | default | what it does |", "| --- | --- | --- |"]
    for name, info in Settings.model_fields.items():
        if info.default_factory is not None:
            default = {
                "allowed_paths": "the data dir",
                "data_dir": "the nearest `data/enterprise/automation` in the current directory "
                "or a parent, else `$XDG_DATA_HOME/tdauto` (`~/.local/share/tdauto`)",
                "plugins": "none",
                "host": "hostname",
                "shell_allow": "none (shell off)",
                "update_allow": "none (update off)",
                "task_secrets": "none",
                "outbound_allow": "none",
                "check_allow": "none (command checks off)",
            }.get(name, "-")
        else:
            default = "unset" if info.default is None else f"`{info.default}`"
        rows.append(f"| `TDAUTO_{name.upper()}` | {default} | {info.description or ''} |")
    return "\n".join(rows)
