"""pydantic's validation errors as tdauto's one line: ``field.path: what is wrong``.

A ``ValidationError`` prints several lines and a URL per problem; the facade raises this
instead (the pydantic error stays its ``__cause__``), so the CLI and the API say the same
short thing and callers catch one error type.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from tdauto.errors import InvalidInput, PathNotAllowed
from tdauto.intake.limits import field_path

_SHOWN = 3
_LEADING_FIELD = re.compile(r"^([A-Za-z_][\w.]*): (.+)$", re.DOTALL)


def _one(error: Any, prefix: tuple[Any, ...]) -> tuple[str, str]:
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    loc = tuple(part for part in error["loc"] if not str(part).startswith("function-"))
    field = field_path((*prefix, *loc))
    named = _LEADING_FIELD.match(message)
    if named and (not loc or named.group(1).startswith(str(loc[-1]))):
        # a model-level check that names its own field ("schedule_config: key(s) ...")
        inner = named.group(1)
        field = field_path((*prefix, *loc[:-1], inner)) if loc else field_path((*prefix, inner))
        message = named.group(2)
    return field, " ".join(message.split())


def field_error(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> InvalidInput:
    """The first problem as ``InvalidInput(field, message)``, the next ones appended."""
    errors = exc.errors(include_url=False, include_input=False)
    field, message = _one(errors[0], prefix)
    others = [": ".join(_one(error, prefix)) for error in errors[1:_SHOWN]]
    if others:
        message += "; also " + "; ".join(others)
    if len(errors) > _SHOWN:
        message += f" (and {len(errors) - _SHOWN} more)"
    cause = errors[0].get("ctx", {}).get("error")
    kind = PathNotAllowed if isinstance(cause, PathNotAllowed) else InvalidInput
    return kind(field, message)
