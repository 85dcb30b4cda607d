"""A Sparkplug B edge node of the sensor simulator: its session state, the connection it needs
(`NodeLink`: the MQTT session whose will is the node's NDEATH), the emulated connection used
without a broker, and how a node reads the center's ``Node Control/Rebirth`` command.

`simulators.sensors.SensorSimulator` runs the sessions (births, data, rebirths);
`simulators.sensor_mqtt` opens the real connections.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from google.protobuf.message import DecodeError

from ingest import sparkplug_b_pb2

__all__ = ["REBIRTH_METRIC", "SPARKPLUG_GROUP", "EdgeNode", "EmulatedLink", "NodeConnector", "NodeLink",
           "Publish", "rebirth_asked"]

SPARKPLUG_GROUP = "democity"
REBIRTH_METRIC = "Node Control/Rebirth"
Publish = Callable[[str, bytes, int, bool], object]


def rebirth_asked(payload: bytes) -> bool:
    """Whether an NCMD payload holds ``Node Control/Rebirth`` = true (anything undecodable: no)."""
    try:
        message = sparkplug_b_pb2.Payload.FromString(payload)
    except (DecodeError, RuntimeError, ValueError):
        return False
    return any(m.name == REBIRTH_METRIC and m.WhichOneof("value") == "boolean_value" and m.boolean_value
               for m in message.metrics)


class NodeLink(Protocol):
    """The MQTT connection of one Sparkplug edge node (its will is the node's NDEATH)."""

    @property
    def connected(self) -> bool:
        """True while the connection is up (births wait for it)."""

    @property
    def lost(self) -> bool:
        """True once an established connection dropped: its session is over."""

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> object:
        """Publish on this node's connection."""

    def kill(self) -> None:
        """Drop the connection without DISCONNECT, so the broker publishes the will."""

    def close(self) -> None:
        """Disconnect cleanly (no will)."""


# (edge node, will topic, will payload, *, commands=NCMD topic, on_command=handler of its payloads)
NodeConnector = Callable[..., NodeLink]


class EmulatedLink:
    """No broker (tests): node messages go to ``publish`` and a kill publishes the will itself."""

    connected = True
    lost = False

    def __init__(self, publish: Publish, will_topic: str, will_payload: bytes, **_commands):
        self._publish, self._will = publish, (will_topic, will_payload)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> object:
        """Hand the node's message to the simulator's ``publish``."""
        return self._publish(topic, payload, qos, retain)

    def kill(self) -> None:
        """Publish the will, as the broker would on an abrupt drop."""
        self._publish(self._will[0], self._will[1], 1, False)

    def close(self) -> None:
        """Nothing to close."""


@dataclass
class EdgeNode:
    """One edge node's Sparkplug session: its devices and aliases, ``bdSeq``, ``seq`` and link."""

    node_id: str
    devices: list[str]                   # sensor ids, in birth order
    bdseq: int = -1
    seq: int = 0
    link: NodeLink | None = None
    dead: bool = False
    aliases: dict[str, int] = field(default_factory=dict)
    born: bool = False                   # births sent on the current connection
    rebirth: bool = False                # a Rebirth command came (set on the MQTT thread)
