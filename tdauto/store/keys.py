"""The Redis key schema, in one place (rq's habit).

Every key tdauto writes to Redis is built here from one prefix (``TDAUTO_KEY_PREFIX``,
default ``tdauto``), so two deployments can share a Redis by prefix and an operator can read
the whole layout in one screen. Lua scripts never build key names: callers pass the keys
built here through ``KEYS``.

Store layout (``p`` is the prefix)::

    p:tasks                      hash   task id -> task definition JSON (no run state)
    p:task_names                 hash   task name -> task id (names are unique)
    p:task_state                 hash   task id -> run state JSON {"next_ts", "last_ts"}
    p:due                        zset   task id scored by next fire time (UTC epoch s)
    p:execution:<id>             string execution JSON
    p:executions                 zset   every execution id scored by created_at (epoch s)
    p:executions:task:<task_id>  zset   the task's execution ids, same score
    p:executions:status:<STATUS> zset   execution ids currently in that status, same score
    p:log:<execution_id>         string the execution's log, capped in size
    p:beat:leader                string owner token of the beat that leads, with a TTL (ms)
    p:active:task:<task_id>      set    executions of the task admitted and not yet finished
    p:active:lock:<name>         set    executions holding the conflict lock <name>
    p:timer:<name>               zset   timer members (leases, retries) scored by due time
    p:upstream                   hash   task id -> name of the task it runs after
    p:dependents:<name>          set    ids of the tasks that run after the task <name>
    p:sample:<host>:<pool>       string a worker's load sample JSON, with a TTL
    p:samples                    zset   sample keys scored by expiry (to list them cheaply)
    p:ledger:<host>              hash   resource -> percent reserved on the host
    p:reservations               hash   reservation key -> JSON {host, cpu, memory, storage}
    p:rollup:<tier>:<start_ts>   hash   monitoring counters of one time bucket (tier m, h, d)
    p:rollup:all                 hash   the same counters since the beginning
    p:rollups:<tier>             zset   bucket keys of a tier scored by bucket end (to purge)
    p:rollups:latest             hash   field -> "<ts>|<value>" (e.g. a task's last status)
    p:rollups:journal            list   run ends (JSON deltas) not yet folded into the buckets
    p:cooldown:<key>             string held while an alert is in its cooldown (TTL)
    p:history:<kind>             list   JSON records, newest first (alerts, samples, decisions)
    p:weights                    string the resource manager's last routing weights (JSON)
    p:decisions                  list   the manager's decisions, newest first, bounded (JSON each)
    p:spill                      hash   worker node -> JSON of the class queues it was lent to

Other parts of tdauto (scheduler, resources) add their keys to :class:`Keys` with
:meth:`Keys.join` so the schema stays in this module.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "tdauto"


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix; pure string building, no I/O."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix or any(c.isspace() for c in self.prefix):
            raise ValueError(
                f"key prefix {self.prefix!r} must be non-empty and contain no whitespace; "
                "set TDAUTO_KEY_PREFIX to e.g. 'tdauto'"
            )

    def join(self, *parts: str) -> str:
        """``prefix:part1:part2...``, the one way a key name is made."""
        return ":".join((self.prefix, *parts))

    # --- tasks and run state ---------------------------------------------------------------

    @property
    def tasks(self) -> str:
        return self.join("tasks")

    @property
    def task_names(self) -> str:
        return self.join("task_names")

    @property
    def task_state(self) -> str:
        return self.join("task_state")

    @property
    def due(self) -> str:
        return self.join("due")

    # --- executions and logs ---------------------------------------------------------------

    def execution(self, execution_id: str) -> str:
        return self.join("execution", execution_id)

    @property
    def executions(self) -> str:
        return self.join("executions")

    def task_executions(self, task_id: str) -> str:
        return self.join("executions", "task", task_id)

    def status_executions(self, status: str) -> str:
        return self.join("executions", "status", status)

    @property
    def task_executions_pattern(self) -> str:
        """``SCAN`` pattern matching every per-task execution index (used by restore)."""
        return self.join("executions", "task", "*")

    def log(self, execution_id: str) -> str:
        return self.join("log", execution_id)

    @property
    def restore_patterns(self) -> tuple[str, ...]:
        """``SCAN`` patterns of every key a restore replaces or clears beyond the fixed ones:
        per-task execution indexes, admission places, timers, run_after dependents and host
        ledgers (``tdauto.store.restored``)."""
        others = ("active", "timer", "dependents", "ledger")
        return (self.task_executions_pattern, *(self.join(name, "*") for name in others))

    # --- scheduler -------------------------------------------------------------------------

    @property
    def beat_leader(self) -> str:
        """The beat leader lock: its value is the leader's owner token (``host:pid:uuid``),
        its TTL the lease the leader keeps renewing (``tdauto.leader``)."""
        return self.join("beat", "leader")

    # --- admission ---------------------------------------------------------------------------

    def active_task(self, task_id: str) -> str:
        return self.join("active", "task", task_id)

    def active_lock(self, name: str) -> str:
        return self.join("active", "lock", name)

    def timer(self, name: str) -> str:
        return self.join("timer", name)

    @property
    def upstream(self) -> str:
        return self.join("upstream")

    def dependents(self, upstream: str) -> str:
        return self.join("dependents", upstream)

    # --- resources ---------------------------------------------------------------------------

    def sample(self, host: str, pool: str) -> str:
        return self.join("sample", host, pool)

    @property
    def samples(self) -> str:
        return self.join("samples")

    def ledger(self, host: str) -> str:
        return self.join("ledger", host)

    @property
    def reservations(self) -> str:
        return self.join("reservations")

    # --- monitoring --------------------------------------------------------------------------

    def rollup(self, bucket_id: str) -> str:
        """A rollup bucket's hash; ``bucket_id`` is ``"<tier>:<start_ts>"`` or ``"all"``."""
        return self.join("rollup", bucket_id)

    def rollup_index(self, tier: str) -> str:
        return self.join("rollups", tier)

    @property
    def rollup_latest(self) -> str:
        return self.join("rollups", "latest")

    @property
    def rollup_journal(self) -> str:
        return self.join("rollups", "journal")

    def cooldown(self, key: str) -> str:
        return self.join("cooldown", key)

    def history(self, kind: str) -> str:
        return self.join("history", kind)

    # --- resource manager ------------------------------------------------------------------

    @property
    def weights(self) -> str:
        return self.join("weights")

    @property
    def decisions(self) -> str:
        return self.join("decisions")

    @property
    def spill(self) -> str:
        return self.join("spill")
