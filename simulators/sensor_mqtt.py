"""The sensor simulator's MQTT connections: one shared connection for the JSON readings and one per
Sparkplug B edge node, whose MQTT session is the node's Sparkplug session.

An edge node's connection carries its NDEATH (with the session's ``bdSeq``) as the last will and
subscribes to the node's own ``spBv1.0/<group>/NCMD/<node>`` before anything is published on it
(the subscription is sent in the CONNACK handler, ahead of the births). Commands arrive on paho's
network thread and are handed to ``on_command`` as raw payloads. A connection that drops is
``lost``: the simulator then closes it and opens a new session (``bdSeq`` + 1, new will, births
again) instead of letting paho reconnect with the old will.
"""
from __future__ import annotations

import threading
from typing import Callable, Mapping

CommandHandler = Callable[[bytes], None]


class MqttTransport:
    """One shared MQTT connection for JSON readings and one per Sparkplug edge node (with its will).

    ``device_urls``: device id -> broker URL with that device's credentials. The shared connection
    logs in as the SCADA gateway ``gateway`` and each edge node as itself (client id = device id)
    when they have one; otherwise they use ``mqtt_url`` with ``client_prefix`` client ids."""

    def __init__(self, mqtt_url: str, client_prefix: str = "sim-sensors", *,
                 device_urls: Mapping[str, str] | None = None, gateway: str = ""):
        from messaging.mqtt import MqttClient

        self._url, self._prefix = mqtt_url, client_prefix
        self._devices = dict(device_urls or {})
        own = self._devices.get(gateway) if gateway else None
        self.shared = MqttClient(own or mqtt_url, gateway if own else client_prefix)
        self.shared.start()
        self.links: list = []

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """Publish on the shared connection."""
        return self.shared.publish(topic, payload, qos, retain)

    def connect_node(self, edge_node: str, will_topic: str, will_payload: bytes, *, commands: str = "",
                     on_command: CommandHandler | None = None, wait: float = 10.0) -> "MqttNodeLink":
        """A new connection for an edge node, its NDEATH as the will, subscribed to ``commands``
        (its NCMD topic) for ``on_command``; blocks until connected, at most ``wait`` s (a link
        that is not up yet connects in the background and reports ``connected`` when it is)."""
        from messaging.mqtt import MqttClient, Will

        own = self._devices.get(edge_node)
        link = MqttNodeLink(on_command)
        client = MqttClient(own or self._url, edge_node if own else f"{self._prefix}-{edge_node}",
                            will=Will(will_topic, will_payload, qos=1, retain=False),
                            on_messages=link.deliver, on_connection=link.connection)
        if commands:
            client.subscribe(commands, qos=1)
        link.client = client
        client.start()
        if wait > 0:
            client.wait_connected(wait)
        self.links.append(link)
        return link

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Block until the shared connection is up."""
        return self.shared.wait_connected(timeout)

    def stop(self) -> None:
        """Disconnect everything cleanly."""
        for link in self.links:
            link.close()
        self.shared.stop()


class MqttNodeLink:
    """One edge node's MQTT connection (``simulators.sparkplug_node.NodeLink``)."""

    def __init__(self, on_command: CommandHandler | None = None):
        self.client = None
        self._on_command = on_command
        self._closed = False
        self._lost = threading.Event()

    @property
    def connected(self) -> bool:
        """True while the broker connection is up."""
        return self.client is not None and self.client.connected

    @property
    def lost(self) -> bool:
        """True once an established connection dropped (the session, and its will, are over)."""
        return self._lost.is_set()

    def connection(self, up: bool) -> None:
        """paho's network thread: the connection came up or dropped."""
        if not up and not self._closed:
            self._lost.set()

    def deliver(self, messages) -> None:
        """paho's network thread: hand each command's payload to the handler."""
        if self._on_command is not None and not self._closed:
            for message in messages:
                self._on_command(message.payload)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> object:
        """Publish on this node's connection."""
        return self.client.publish(topic, payload, qos, retain)

    def kill(self) -> None:
        """Drop the TCP connection without DISCONNECT: the broker then publishes the will."""
        self._closed = True
        self.client.kill()

    def close(self) -> None:
        """Disconnect cleanly (no will), and stop reconnecting."""
        if not self._closed:
            self._closed = True
            self.client.stop()
