"""The README's lifecycle table is the state machine's: one row per action of
`command.tickets.ACTIONS`, in the table's order, with its from-states, target and roles."""
from __future__ import annotations

from command.ticket_model import FIELD_STATES, OPEN_STATES, POOL_STATES, UNIT_STATES, Role, State
from command.tickets import ACTIONS
from tests.conftest import ROOT

# the README's names for groups of states, largest first
GROUPS = (("any", frozenset(State)), ("open", OPEN_STATES), ("pool", POOL_STATES), ("field", FIELD_STATES),
          ("unit", UNIT_STATES))


def states_text(states: frozenset[State]) -> str:
    """The from-states as the README writes them: group names, then the other states in order."""
    names, rest = [], set(states)
    for name, group in GROUPS:
        if group <= rest:
            names.append(name)
            rest -= group
    return ", ".join(names + [s.value for s in State if s in rest])


def rows() -> list[str]:
    """The README rows of the lifecycle table, one per action."""
    out = []
    for spec in ACTIONS.values():
        roles = "any" if spec.roles == frozenset(Role) else ", ".join(r.value for r in Role if r in spec.roles)
        target = "(same)" if spec.to_state is None else spec.to_state.value
        out.append(f"| `{spec.name}` | {states_text(spec.from_states)} | {target} | {roles} |")
    return out


def test_the_readme_lifecycle_table_is_the_state_machine():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("<!-- lifecycle:start -->")[1].split("<!-- lifecycle:end -->")[0]
    written = [line for line in table.splitlines() if line.startswith("| `")]
    assert written == rows(), "README lifecycle table out of date: print tests.test_readme_lifecycle.rows()"


def test_the_groups_named_in_the_readme_are_the_model_s():
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())  # lines joined
    for name, group in GROUPS[2:]:
        listed = ", ".join(f"`{s.value}`" for s in State if s in group)
        assert f"{name} ({listed}" in readme, name
