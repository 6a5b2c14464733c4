"""The action registry and the ``@action`` decorator.

One registry per process. Built-in actions register when ``tdauto.actions`` is imported;
plugins (``TDAUTO_PLUGINS`` and the ``tdauto.actions`` entry-point group) are imported by
``load_plugins`` in every process, so the beat, the facade and every worker know the same
actions. A decorated function is checked when it is declared (its params model must be a
pydantic model, its name unique), not at 2 a.m. when it first runs.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from tdauto.errors import InvalidInput
from tdauto.models import ProcessType, ResourceClass
from tdauto.suggest import did_you_mean

Handler = Callable[..., dict[str, Any]]
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class NoParams(BaseModel):
    """Params model of actions that take none."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ActionDef:
    """A registered action: its handler, params model and default resource class."""

    name: str
    handler: Handler
    params: type[BaseModel]
    resource_class: ResourceClass
    process_type: ProcessType | None
    description: str

    @property
    def task_name(self) -> str:
        """The Celery task that runs it (so Flower shows what ran)."""
        return f"tdauto.action.{self.name}"


class Registry:
    """Name -> ActionDef."""

    def __init__(self) -> None:
        self._actions: dict[str, ActionDef] = {}

    def register(self, definition: ActionDef, replace: bool = False) -> None:
        if not _NAME.match(definition.name):
            raise ValueError(
                f"action name {definition.name!r} must be lower-case letters, digits and _"
            )
        existing = self._actions.get(definition.name)
        if existing is not None and existing.handler is not definition.handler and not replace:
            raise ValueError(f"action {definition.name!r} is already registered")
        self._actions[definition.name] = definition

    def get(self, name: str) -> ActionDef:
        try:
            return self._actions[name]
        except KeyError:
            raise InvalidInput(
                "type",
                f"unknown action type {name!r}; registered actions: "
                f"{', '.join(sorted(self._actions))} (add one with @action or TDAUTO_PLUGINS)"
                + did_you_mean(name, self._actions),
            ) from None

    def names(self) -> list[str]:
        return sorted(self._actions)

    def all(self) -> list[ActionDef]:
        return [self._actions[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def parse_params(
        self, action_type: str, params: dict[str, Any], context: dict[str, Any]
    ) -> BaseModel:
        """Validate ``params`` against the action's model (raises ValidationError)."""
        return self.get(action_type).params.model_validate(params, context=context)

    def validate_params(
        self, action_type: str, params: dict[str, Any], context: dict[str, Any]
    ) -> dict[str, Any]:
        """The ``ActionValidator`` hook models call: params as given, once they validate.

        What was given is what is stored (so a definition reads back as written); the parsed
        model is rebuilt when the action runs.
        """
        if action_type not in self._actions:
            self.get(action_type)  # raises the error that lists known actions
        try:
            self.parse_params(action_type, params, context)
        except ValidationError:
            raise
        return params


REGISTRY = Registry()


def action(
    name: str,
    resource_class: ResourceClass | str = ResourceClass.CPU,
    params: type[BaseModel] | None = None,
    process_type: ProcessType | str | None = None,
    registry: Registry | None = None,
) -> Callable[[Handler], Handler]:
    """Register ``fn(ctx, **params) -> dict`` as action ``name``.

    ``params`` is a pydantic model; bad params then fail at ``create_task``. ``resource_class``
    is the pool the action runs on unless the task's action spec says otherwise.
    """
    if params is not None and not (isinstance(params, type) and issubclass(params, BaseModel)):
        raise TypeError(f"@action({name!r}): params must be a pydantic BaseModel subclass")
    klass = ResourceClass(resource_class)
    ptype = ProcessType(process_type) if process_type is not None else None

    def decorate(fn: Handler) -> Handler:
        if not callable(fn):
            raise TypeError(f"@action({name!r}) must decorate a function (ctx, **params) -> dict")
        doc = (fn.__doc__ or "").strip().splitlines()
        (registry or REGISTRY).register(
            ActionDef(
                name=name,
                handler=fn,
                params=params or NoParams,
                resource_class=klass,
                process_type=ptype,
                description=doc[0] if doc else "",
            )
        )
        return fn

    return decorate


def load_plugins(modules: Iterable[str]) -> list[str]:
    """Import the built-in actions, ``modules`` and the ``tdauto.actions`` entry points.

    Returns the names of the modules imported. An import error names the module and the
    setting, so a typo in ``TDAUTO_PLUGINS`` is obvious.
    """
    importlib.import_module("tdauto.actions.builtin")
    loaded: list[str] = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise InvalidInput(
                "TDAUTO_PLUGINS", f"cannot import plugin module {module!r}: {exc}"
            ) from exc
        loaded.append(module)
    for ep in entry_points(group="tdauto.actions"):
        ep.load()
        loaded.append(ep.value)
    return loaded
