"""Actions: the registry, the ``@action`` decorator and the built-in actions."""

from tdauto.actions.context import ActionContext, confine
from tdauto.actions.registry import REGISTRY, ActionDef, Registry, action, load_plugins

__all__ = [
    "REGISTRY",
    "ActionContext",
    "ActionDef",
    "Registry",
    "action",
    "confine",
    "load_plugins",
]
