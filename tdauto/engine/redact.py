"""Kept for importers of the old path: the one redaction policy is :mod:`tdauto.redact`."""

from tdauto.redact import REDACTED, is_secret_key, redact, redact_headers, redact_text, redact_url

__all__ = ["REDACTED", "is_secret_key", "redact", "redact_headers", "redact_text", "redact_url"]
