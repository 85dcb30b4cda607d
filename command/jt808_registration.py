"""Who may register as a JT/T 808 terminal: the answers of a registration (0x8100, JT/T 808-2013
8.6, whose result numbers these are) and the rule that picks one (pure). The codec
(``ingest.jt808``) writes the number; the terminals' service (``services.jt808_terminals``) reads
the binding from the store and applies the rule."""
from __future__ import annotations

REGISTER_OK, REGISTER_VEHICLE_TAKEN, REGISTER_NO_VEHICLE, REGISTER_TERMINAL_TAKEN, REGISTER_NO_TERMINAL = range(5)


def registration_result(bound: bool, bound_terminal_id: str, vehicle_active: bool | None, phone: str,
                        plate_holder: str | None, sent_terminal_id: str) -> int:
    """The 0x8100 result of a registration, in this order: no terminal bound to the phone; its
    vehicle deactivated (or gone, None); the binding names another terminal id than the one sent
    (a binding without one takes the first); the plate sent is held by another terminal's
    vehicle; else REGISTER_OK."""
    if not bound:
        return REGISTER_NO_TERMINAL
    if not vehicle_active:
        return REGISTER_NO_VEHICLE
    if bound_terminal_id and sent_terminal_id != bound_terminal_id:
        return REGISTER_TERMINAL_TAKEN
    if plate_holder is not None and plate_holder != phone:
        return REGISTER_VEHICLE_TAKEN
    return REGISTER_OK
