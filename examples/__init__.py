"""Examples: task templates (YAML) and an example plugin (``examples.plugin_example``)."""
