"""Review chains (审核流程): per ticket type, the review steps by role before a ticket leaves the
center (pure; the lifecycle's actions are in `command.tickets`).

Default (the Beijing 12320 practice, issue #23): a complaint 投诉 is checked by the team leader
(班长初审), examined by the 督办协调席 (coordinator) and approved by the director (主任审核);
suggestions and praise by the coordinator; repairs, service and consultations go straight out.

A ticket of a type with a chain is submitted at its creation (`submit_review`, state
``in_review``). Each step's reviewer approves (`approve_review`: the next step, or after the last
the ticket is reviewed and sent to its routed unit: 交办), sends it back to the agent with a note
(`send_back_review`: state ``new``; the agent corrects and resubmits, the chain starts again) or
rejects it with a reason (`reject_review`: 不予受理, resolved with the reason, which the callback
tells the citizen before closing it). No one reviews a ticket they recorded, nor two steps of one
round (`command.ticket_effects.check_reviewer`: 403 ``self_review``, ``review_twice``,
``review_not_your_step``). A ticket whose chain has not passed never leaves the center (assign
and dispatch refused).

The running system reads the table from the file named by REVIEW_FILE (`config.review_file`;
the shipped ``config/review.toml`` is `DEFAULT_REVIEW`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from command.errors import ValidationError
from command.ticket_model import REVIEWER_ROLES, Role, Ticket, TicketType

__all__ = ["ReviewTable", "DEFAULT_REVIEW", "NO_REVIEW", "STEP_NAMES", "table_from_config", "waiting_step"]

STEP_NAMES = {Role.TEAM_LEADER: "班长初审", Role.COORDINATOR: "督办协调席审核", Role.DIRECTOR: "主任审核"}


@dataclass(frozen=True)
class ReviewTable:
    """The review steps (reviewer roles, in order) of every ticket type."""

    chains: Mapping[TicketType, tuple[Role, ...]]

    def __post_init__(self) -> None:
        if sorted(self.chains) != sorted(TicketType):
            raise ValidationError("chains", "the review table needs one chain per ticket type")
        for ticket_type, chain in self.chains.items():
            if any(role not in REVIEWER_ROLES for role in chain) or len(set(chain)) != len(chain):
                raise ValidationError(f"chains.{ticket_type.value}", "steps are distinct reviewer roles")

    def chain(self, ticket_type: TicketType) -> tuple[Role, ...]:
        """The steps of a ticket type (empty: it goes straight out)."""
        return self.chains[ticket_type]


_T = TicketType
DEFAULT_REVIEW = ReviewTable({
    _T.COMPLAINT: (Role.TEAM_LEADER, Role.COORDINATOR, Role.DIRECTOR),
    _T.SUGGESTION: (Role.COORDINATOR,),
    _T.PRAISE: (Role.COORDINATOR,),
    _T.REPAIR: (),
    _T.SERVICE: (),
    _T.CONSULTATION: (),
})

NO_REVIEW = ReviewTable({t: () for t in TicketType})  # every type straight out


def table_from_config(data: Mapping[str, Any], base: ReviewTable = DEFAULT_REVIEW) -> ReviewTable:
    """The table of a review file's contents, e.g. {"chains": {"complaint": ["team_leader"]}}: each
    type named there takes that chain, the others keep `base`'s. ValidationError names the bad key."""
    unknown = sorted(set(data) - {"chains"})
    if unknown:
        raise ValidationError(unknown[0], "unknown key (a review file has one table: chains)")
    chains = data.get("chains", {})
    if not isinstance(chains, Mapping):
        raise ValidationError("chains", "must be a table of ticket type = [reviewer roles]")
    out = dict(base.chains)
    allowed = ", ".join(sorted(r.value for r in REVIEWER_ROLES))
    for name, steps in chains.items():
        try:
            ticket_type = TicketType(name)
        except ValueError:
            raise ValidationError(f"chains.{name}", "unknown ticket type; one of: "
                                  + ", ".join(t.value for t in TicketType)) from None
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
            raise ValidationError(f"chains.{name}", "must be a list of reviewer roles")
        try:
            roles = tuple(Role(s) for s in steps)
        except ValueError:
            roles = ()
        if len(roles) != len(steps) or any(r not in REVIEWER_ROLES for r in roles):
            raise ValidationError(f"chains.{name}", f"each step is one of: {allowed}")
        if len(set(roles)) != len(roles):
            raise ValidationError(f"chains.{name}", "a role reviews one step of a chain")
        out[ticket_type] = roles
    return ReviewTable(out)


def waiting_step(ticket: Ticket) -> dict[str, Any] | None:
    """The step waiting on a ticket under review, {step (1-based), role, name, of}, else None."""
    if ticket.review_step is None or not ticket.review_chain:
        return None
    role = ticket.review_chain[ticket.review_step]
    return {"step": ticket.review_step + 1, "role": role, "name": STEP_NAMES.get(Role(role), role),
            "of": len(ticket.review_chain)}
