"""``StoreScheduler``: a Celery beat scheduler that fires the tasks kept in tdauto's store.

Use it as ``tdauto beat``, inside ``tdauto up`` or ``AutomationSystems.start()``, or as
``celery beat -S tdauto.scheduler:StoreScheduler`` with an app from ``tdauto.app.make_app``
(which keeps Celery's SIGTERM handler: see the last paragraph).

Each tick pops what is due from the store's due index (a Redis sorted set, or an index file
in local mode), so its cost grows with what is due, never with the number of tasks. A slot
``task_id@fire_ts`` is claimed by creating its execution, whose id derives from the slot:
creation succeeds once, so two beats or a restarted beat cannot fire a slot twice. The next
fire time is written back to the store, so a restart neither re-fires nor forgets.

Order of a dispatch: claim (create the PENDING execution) and send ``tdauto.run``, then move
the task's next fire time. On a plain ``redis://`` broker that is also the store the claim and
the send are one step (``executions.create_and_start``); elsewhere (local mode, ``rediss://``,
a store on another Redis) they are two. A beat that dies after the claim
but before moving the next fire time finds the slot claimed on restart; if its execution is
still PENDING it re-sends it (``tdauto.run`` is idempotent), whatever the misfire policy
says of the slot now, otherwise it only reschedules.

The static entries of ``beat_schedule.py`` (system jobs) run through Celery's own in-memory
scheduling in the same loop.

``tdauto beat`` stops on SIGTERM or SIGINT between ticks, never inside one (``run_beat``).
Celery's own handler raises ``SystemExit`` wherever the signal lands: in the middle of a
dispatch it left a slot claimed but unsent (PENDING until a beat ran again) or the later slots
of a catch-up unhandled, which is what a rolling restart (SIGTERM) hits.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from celery import Celery
from celery.apps.beat import Beat
from celery.beat import Scheduler, Service
from celery.platforms import signals

from tdauto.app import runtime_of
from tdauto.engine.executions import create_and_start, finish, new_execution, send_start
from tdauto.engine.runtime import Runtime
from tdauto.engine.timers import dispatch_retries
from tdauto.leader import LeaderLock, leader_lock_for
from tdauto.models import ExecutionStatus, Task, Trigger
from tdauto.monitoring.rollups import record_final, record_fires
from tdauto.schedules import next_fire_ts
from tdauto.schedules.misfire import plan

log = logging.getLogger(__name__)

DUE_BATCH = 500


def compute_next_ts(task: Task, after_ts: float, default_tz: str = "UTC") -> float | None:
    """The task's first fire time strictly after ``after_ts`` (None: never again)."""
    if not task.enabled:
        return None
    return next_fire_ts(
        task.schedule,
        task.schedule_config,
        after_ts,
        default_tz=default_tz,
        anchor_ts=task.created_at.timestamp(),
        task_id=task.id,
    )


def dispatch_due(rt: Runtime, now_ts: float, limit: int = DUE_BATCH) -> int:
    """Fire every slot due at ``now_ts``; returns how many executions were sent.

    Free of Celery (it sends through ``rt.send``) so tests can drive it with a clock. Slots
    that passed while no beat ran go through the task's misfire policy
    (``tdauto.schedules.misfire``): each is run (trigger ``catchup``) or recorded MISSED, and
    the next fire time is computed from now.
    """
    sent = 0
    lags: list[float] = []  # seconds each fire was sent after its slot (scheduler lag)
    due = rt.store.due(now_ts, limit)
    tasks = rt.store.get_tasks([task_id for task_id, _ in due])
    for task_id, fire_ts in due:
        task = tasks.get(task_id)
        if task is None or not task.enabled:
            rt.store.set_next_run(task_id, None)
            continue
        tz = rt.settings.timezone
        misfire = plan(
            fire_ts,
            now_ts,
            functools.partial(compute_next_ts, task, default_tz=tz),
            task.misfire,
            task.misfire_grace,
            task.max_catchup,
        )
        for slot_ts, reason in misfire.missed:
            _record_missed(rt, task, slot_ts, reason)
        if misfire.dropped:
            log.warning("%s: %d+ more missed slots not recorded", task.name, misfire.dropped)
        trigger = Trigger.CATCHUP if misfire.catchup else Trigger.SCHEDULE
        for slot_ts in misfire.run:
            fired = _fire(rt, task, slot_ts, trigger)
            sent += fired
            lags += [now_ts - slot_ts] * fired
        following = (
            misfire.next_ts
            if misfire.next_known
            else compute_next_ts(task, max(misfire.last_slot_ts, now_ts), tz)
        )
        rt.store.set_run(task_id, misfire.last_slot_ts, following)
    record_fires(rt.store, lags, now_ts)
    return sent


def _fire(rt: Runtime, task: Task, slot_ts: float, trigger: Trigger) -> int:
    """Claim the slot (create its execution) and send it; re-send one left PENDING."""
    execution = new_execution(task, rt.registry, trigger, fire_ts=slot_ts)
    if create_and_start(rt, execution):
        log.info("fired %s (%s) for slot %.0f [%s]", task.name, execution.id, slot_ts, trigger)
        return 1
    _resend_claimed(rt, task, execution.id)
    return 0


def _resend_claimed(rt: Runtime, task: Task, execution_id: str) -> None:
    """A slot found claimed (its beat died before moving the task's next fire time): a run
    still PENDING may never have been sent, where the claim and the send are two steps, so
    send it (again: ``tdauto.run`` does nothing for a run past PENDING). It was claimed in
    time, so even a slot now past its misfire grace runs."""
    existing = rt.store.get_execution(execution_id)
    if existing is not None and existing.status is ExecutionStatus.PENDING:
        send_start(rt, existing)
        log.info("re-sent PENDING slot %s of %s", execution_id, task.name)


def _record_missed(rt: Runtime, task: Task, slot_ts: float, reason: str) -> None:
    """A MISSED execution for the slot, so no slot disappears without a record."""
    execution = new_execution(task, rt.registry, Trigger.SCHEDULE, fire_ts=slot_ts)
    finish(execution, ExecutionStatus.MISSED, reason)
    if rt.store.create_execution(execution):
        record_final(rt.store, execution)
        log.info("%s: slot %.0f recorded MISSED (%s)", task.name, slot_ts, reason)
    else:
        _resend_claimed(rt, task, execution.id)


class StoreScheduler(Scheduler):
    """Celery beat scheduler over tdauto's store (see the module docstring).

    Any number of beats may run; only the one holding the leader lock (``tdauto.leader``)
    dispatches anything, store tasks and static system jobs alike. The leader renews every
    ``leader_renew_s`` (well inside ``leader_ttl_s``); a standby tries to acquire every tick,
    so it takes over within the TTL plus one tick of the leader's death. A beat that loses the
    lock stops dispatching at once and keeps ticking as a standby; it never exits.
    """

    def __init__(
        self, app: Celery, *args: Any, leader_lock: LeaderLock | None = None, **kwargs: Any
    ) -> None:
        self._rt: Runtime = runtime_of(app)
        self._leader_lock = leader_lock or leader_lock_for(self._rt.settings, self._rt.store)
        self._was_leader: bool | None = None  # None until the first election; for logging
        self._renew_due_mono = 0.0  # time.monotonic() when the leader renews next
        self._ticking = False
        self._stop_requested = False
        kwargs.setdefault("max_interval", self._rt.settings.beat_tick_s)
        super().__init__(app, *args, **kwargs)

    @property
    def leader(self) -> bool:
        """Whether this beat may dispatch now (cached lock state and a clock read; no I/O)."""
        return self._leader_lock.is_leader

    @property
    def leader_lock(self) -> LeaderLock:
        """This beat's lock: ``owner_token`` says who it is, ``holder()`` who leads."""
        return self._leader_lock

    def _elect(self) -> None:
        """Renew if leading and due, or try to acquire if standby; log any change."""
        now_mono = time.monotonic()
        if self.leader and now_mono < self._renew_due_mono:
            return
        try:
            leading = self._leader_lock.try_acquire()
        except Exception:  # a lock that cannot answer means: not leader
            log.exception("beat leader election failed; standing by")
            leading = False
        self._renew_due_mono = now_mono + self._rt.settings.leader_renew_s
        if leading == self._was_leader:
            return
        first = self._was_leader is None
        self._was_leader = leading
        token = self._leader_lock.owner_token
        if leading:
            log.info("beat %s became leader (leader: yes); dispatching", token)
        elif first:
            log.info("beat %s is standby (leader: no); leader is %s", token, self._holder())
        else:
            log.warning(
                "beat %s lost leadership (leader: no); stopped dispatching, rejoining the election",
                token,
            )

    def _holder(self) -> str | None:
        try:
            return self._leader_lock.holder()
        except Exception:  # only for a log line
            return "unknown"

    def request_stop(self) -> bool:
        """A signal asks the beat to stop. True when a tick is under way: it runs to its end,
        and the tick returns 0 so the service loop sees its shutdown flag at once. False when
        idle, or when a stop was already requested (a second Ctrl-C): stop now."""
        already, self._stop_requested = self._stop_requested, True
        return self._ticking and not already

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """One tick (``_tick``), never cut short by a stop request (``request_stop``)."""
        self._ticking = True
        try:
            sleep = self._tick(*args, **kwargs)
        finally:
            self._ticking = False
        return 0.0 if self._stop_requested else sleep

    def _tick(self, *args: Any, **kwargs: Any) -> float:
        """Elect; if leader, run due system entries, then due store tasks; return seconds until
        the next tick. ``self.leader`` is checked right before each kind of dispatch, so a
        leader whose lease went stale (the process was paused past it) sends nothing."""
        self._elect()
        if not self.leader:
            return float(self.max_interval)
        static_sleep = super().tick(*args, **kwargs)
        if not self.leader:
            return 0.0  # the lease went stale during the static entries: renew first
        now = time.time()
        try:
            dispatch_due(self._rt, now)
            dispatch_retries(self._rt, now)
            next_ts = self._rt.store.next_due_ts()
        except Exception:  # a store outage must not kill beat; it retries next tick
            log.exception("tdauto scheduler tick failed; retrying")
            return float(self.max_interval)
        store_sleep = self.max_interval if next_ts is None else max(0.0, next_ts - time.time())
        renew_sleep = max(0.0, self._renew_due_mono - time.monotonic())
        return float(min(static_sleep, store_sleep, renew_sleep, self.max_interval))

    def close(self) -> None:
        """Release the leader lock first, so a standby leads at its next tick rather than
        after the TTL; then Celery's own close."""
        try:
            if self._leader_lock.is_leader or self._was_leader:
                log.info("beat %s releasing leadership", self._leader_lock.owner_token)
            self._was_leader = None
            self._leader_lock.release()
        except Exception:  # the lease expires by itself
            log.exception("releasing the beat leader lock failed")
        finally:
            super().close()

    @property
    def info(self) -> str:
        where = "files" if self._rt.settings.local_mode else "redis"
        return f"tdauto store ({where})"


def install_stop_handler(service: Service) -> None:
    """SIGTERM and SIGINT stop ``service`` after the tick under way, or at once when idle
    (see the module docstring); they replace Celery's handler, which exits mid-tick."""

    def stop(signum: int, frame: Any) -> None:
        service.stop()  # the loop ends when it next checks its shutdown flag
        scheduler = service.__dict__.get("scheduler")  # Service.scheduler is a cached property
        if isinstance(scheduler, StoreScheduler) and scheduler.request_stop():
            return
        raise SystemExit()

    signals.update(SIGTERM=stop, SIGINT=stop)


class _Beat(Beat):
    def install_sync_handler(self, service: Service) -> None:
        install_stop_handler(service)


def run_beat(app: Celery, loglevel: str) -> None:
    """``tdauto beat``: Celery's beat with ``StoreScheduler``, stopped between ticks."""
    max_interval = runtime_of(app).settings.beat_tick_s
    _Beat(app=app, scheduler=StoreScheduler, max_interval=max_interval, loglevel=loglevel).run()
