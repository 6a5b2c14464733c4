"""Run policies a task or an action states: retries and dependencies.

Kept out of ``models.py`` so each file stays readable; ``tdauto.models`` re-exports them.
Durations accept seconds or "90s", "5m", "2h".
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tdauto.units import parse_duration_s


def _duration(value: object) -> object:
    return None if value is None else parse_duration_s(value)


class RetryPolicy(BaseModel):
    """How a failed action is tried again.

    ``max`` retries after the first attempt, the n-th waiting ``backoff * factor**(n-1)``
    seconds capped at ``backoff_max``; with ``jitter`` the wait is drawn uniformly from half
    of it to all of it, so many failing actions do not retry in step. ``retry_on`` lists the
    error kinds that are retried (an ``ActionError``'s ``kind``, an exception's class name or
    any of its bases' names, ``timeout``); empty means every error.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max: int = Field(default=0, ge=0, le=100)
    backoff: float = Field(default=2.0, description="first wait, seconds")
    factor: float = Field(default=2.0, ge=1.0, le=10.0)
    backoff_max: float = Field(default=300.0, description="longest wait, seconds")
    jitter: bool = True
    retry_on: tuple[str, ...] = ()

    _dur = field_validator("backoff", "backoff_max", mode="before")(
        classmethod(lambda cls, v: _duration(v))
    )

    def __eq__(self, other: object) -> bool:
        """Identity first: a dump compares every action's policy with the shared default
        (``NO_RETRY``, ``exclude_defaults``), and pydantic's comparison walks the fields."""
        return self is other or super().__eq__(other)

    def delay_s(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry)."""
        base = min(self.backoff_max, self.backoff * self.factor ** max(0, retry_number - 1))
        if not self.jitter:
            return base
        return (rng or random).uniform(base / 2, base)

    def retries(self, kinds: list[str]) -> bool:
        """Whether an error of any of ``kinds`` is retried under this policy."""
        return not self.retry_on or any(kind in self.retry_on for kind in kinds)


NO_RETRY = RetryPolicy()
"""The default policy (no retry) as one shared object. It is frozen and hashable, so pydantic
uses it as a field default as is: a ``default_factory`` ran on every parse of a record and,
to compare with, on every ``exclude_defaults`` dump, once per action of a run."""


class RunAfter(BaseModel):
    """Run this task when another task's execution ends: on ``success``, ``failure``
    (failed or timed out) or ``always``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str = Field(min_length=1, description="the upstream task's name")
    on: Literal["success", "failure", "always"] = "success"

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: object) -> object:
        # YAML 1.1 reads an unquoted `on:` key as the boolean true
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data

    def fires_on(self, status: str) -> bool:
        if self.on == "always":
            return status in ("SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED")
        if self.on == "success":
            return status == "SUCCEEDED"
        return status in ("FAILED", "TIMED_OUT")
