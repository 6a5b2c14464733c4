"""Imports every built-in action module so that importing this registers them all."""

from tdauto.actions import maintenance  # noqa: F401
