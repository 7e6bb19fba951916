"""Storage exceptions.

One small hierarchy shared by every backend so callers (the ingress, the job runner) can map
failures to HTTP statuses without knowing which backend is configured:

- ``StorageError``      -> 502/503 (backend unreachable, rejected credentials, ...)
- ``ObjectNotFound``    -> 404
- ``LinkInvalid``       -> 403 (tampered/unsigned/other-key local link)
- ``LinkExpired``       -> 403 (or 410) for an expired local link
- ``StorageConfigError``-> a startup failure: the configuration or environment is incomplete.

Messages are written for operators and must never contain secrets: no access key id, no
secret key, no signature. Backends build messages from names (bucket, endpoint host, env var
names), never from credential values.
"""

from __future__ import annotations


class StorageError(Exception):
    """A storage operation failed; the message says what and where, without secrets.

    ``code`` is a short machine-readable reason (e.g. ``"credentials"``, ``"no_such_bucket"``,
    ``"unreachable"``) so callers can branch without parsing the message.
    """

    def __init__(self, message: str, *, code: str = "error") -> None:
        super().__init__(message)
        self.code = code


class ObjectNotFound(StorageError):
    """The key does not exist (HTTP 404)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="not_found")


class StorageConfigError(StorageError, ValueError):
    """Storage cannot be built from the given args/environment (missing bucket, secret, ...)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="config")


class LinkInvalid(StorageError):
    """A local signed link failed verification: bad signature, malformed, or unsafe key."""

    def __init__(self, message: str = "invalid link") -> None:
        super().__init__(message, code="link_invalid")


class LinkExpired(StorageError):
    """A local signed link had a valid signature but its expiry time has passed."""

    def __init__(self, message: str = "link expired") -> None:
        super().__init__(message, code="link_expired")
