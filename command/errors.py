"""Typed errors of the command domain.

Every error carries its HTTP `status`, a stable machine-readable `code` and a `details` mapping,
so the single `write_error` at the HTTP boundary (``web.base.BaseHandler``) turns any of them into
a JSON body ``{"error": {"code", "message", **details}}`` without knowing the individual classes.
The errors of other layers (store refusals, service refusals) derive from `CommandError` too.
Messages are English for logs; the pages translate by `code`.
"""
from __future__ import annotations

from typing import Any


class CommandError(Exception):
    """Base of all domain errors: an HTTP `status`, a stable `code`, a message and JSON-safe
    `details`. A subclass sets `status` and `code` as class attributes, or per instance when one
    class covers several refusals."""

    status = 400
    code = "command_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The stable error shape: {"error": code, "message": ..., **details}."""
        return {"error": self.code, "message": self.message, **self.details}


class TicketNotFound(CommandError, LookupError):
    """No ticket with this number exists."""

    status = 404
    code = "ticket_not_found"

    def __init__(self, number: str) -> None:
        super().__init__(f"ticket {number!r} not found", number=number)
        self.number = number


class InvalidTransition(CommandError, ValueError):
    """The action is not legal from the ticket's current state (or a guard of it failed)."""

    status = 409
    code = "invalid_transition"

    def __init__(
        self,
        number: str,
        from_state: str,
        action: str,
        to_state: str | None = None,
        reason: str = "",
    ) -> None:
        text = f"ticket {number}: action {action!r} is not allowed in state {from_state!r}"
        if to_state:
            text += f" (would go to {to_state!r})"
        if reason:
            text += f": {reason}"
        super().__init__(
            text, number=number, from_state=from_state, action=action, to_state=to_state, reason=reason
        )
        self.number = number
        self.from_state = from_state
        self.action = action
        self.to_state = to_state
        self.reason = reason


class Conflict(CommandError):
    """The ticket changed since the caller read it: the expected version is stale."""

    status = 409
    code = "conflict"

    def __init__(self, number: str, expected: int, actual: int) -> None:
        super().__init__(
            f"ticket {number}: expected version {expected}, current version is {actual}",
            number=number,
            expected_version=expected,
            actual_version=actual,
        )
        self.number = number
        self.expected = expected
        self.actual = actual


class ValidationError(CommandError, ValueError):
    """An input field is missing or invalid; `field` names it."""

    code = "validation_error"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)
        self.field = field


class Forbidden(CommandError):
    """The actor's role (or crew) may not perform this action on this ticket."""

    status = 403
    code = "forbidden"

    def __init__(self, message: str, *, role: str, action: str) -> None:
        super().__init__(message, role=role, action=action)
        self.role = role
        self.action = action


class Refused(CommandError):
    """A request the rules refuse with its own `status` and `code` (a store's or a service's
    refusal: a name taken, a record changed meanwhile, a crew still at work)."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.status = status
        self.code = code


class NotFound(Refused):
    """No record with this id (HTTP 404 with the record's own code, such as ``crew_not_found``)."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(404, code, message, **details)
