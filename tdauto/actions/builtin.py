"""Imports every built-in action module, one per process type (and the generic ones), so that
importing this registers them all."""

from tdauto.actions import (  # noqa: F401 - imported for their @action registrations
    deployment,
    generic,
    health,
    http_request,
    maintenance,
    monitoring,
    optimization,
    update,
)
