"""JT/T 808 terminal simulator: vehicles whose terminals speak JT/T 808-2013 over TCP to the
center's gateway (`ingest.jt808_gateway`) instead of NMEA over MQTT.

Each terminal registers (0x0100) and keeps the authentication code the center answers (0x8100),
authenticates (0x0102), then every `every_s` seconds sends a location report (0x0200) of its
vehicle (a `simulators.vehicles.SimVehicle` driving the road network) and, between reports, a
heartbeat (0x0002) when the report interval is long. Now and then it drives through a coverage
gap (`gap_reports` reports kept in memory) and sends them after it as one 0x0704 batch, type 1
(盲区补传), cut into sub-packages when longer than a frame.

`Terminal` is the client (also used by the tests and the benchmark); `run_terminals` drives
vehicles. Run alone: ``python -m simulators.jt808_terminal --port 6808 --count 3`` (the
terminals' phone numbers must be bound to vehicles first: POST /api/admin/jt808/terminals).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import random
from datetime import datetime, timedelta, timezone
from typing import Sequence

from ingest.jt808 import MAX_BODY, Jt808Stream, Message, encode_frame
from ingest.jt808_items import ALARM_BITS
from ingest.jt808_packages import encode_packages
from store.streams import pause as stop_or_timeout

log = logging.getLogger(__name__)

_BEIJING = timedelta(hours=8)
PHONE_BASE = 13900000000  # demo terminals: 013900000001, 013900000002, ...


def demo_phone(index: int) -> str:
    """The 12-digit phone number of the demo's terminal `index` (from 1)."""
    return f"{PHONE_BASE + index:012d}"


def demo_terminals(vehicle_ids: Sequence[str], count: int) -> list[tuple[str, str]]:
    """(phone, vehicle id) of the demo's JT/T 808 vehicles: the last `count` simulated vehicles."""
    chosen = list(vehicle_ids)[-count:] if count > 0 else []
    return [(demo_phone(i + 1), vid) for i, vid in enumerate(chosen)]


def bcd_time(t: datetime) -> bytes:
    """BCD[6] YYMMDDhhmmss in GMT+8 of an aware time."""
    return bytes.fromhex((t.astimezone(timezone.utc) + _BEIJING).strftime("%y%m%d%H%M%S"))


def location_body(lat: float, lon: float, t: datetime, *, speed_kmh: float = 0.0, course: float = 0.0,
                  alt_m: float = 0.0, alarms: Sequence[str] = (), positioned: bool = True, sats: int = 9) -> bytes:
    """A 0x0200 body: alarm and status words, position, altitude, speed, course, time, and the
    satellites item (0x31)."""
    alarm = sum(1 << ALARM_BITS.index(name) for name in alarms)
    status = 1 | (2 if positioned else 0) | (4 if lat < 0 else 0) | (8 if lon < 0 else 0) | (1 << 18)
    return (alarm.to_bytes(4, "big") + status.to_bytes(4, "big") + round(abs(lat) * 1e6).to_bytes(4, "big")
            + round(abs(lon) * 1e6).to_bytes(4, "big") + max(0, round(alt_m)).to_bytes(2, "big")
            + round(speed_kmh * 10).to_bytes(2, "big") + (round(course) % 360).to_bytes(2, "big") + bcd_time(t)
            + b"\x31\x01" + bytes((sats,)))


def registration_body(terminal_id: str, plate: str = "", *, maker: str = "SIMUL", model: str = "SIM-808") -> bytes:
    """A 2013 0x0100 body: province 37, city 100, maker, model, terminal id, plate colour, plate."""
    def field(text: str, size: int) -> bytes:
        return text.encode("gbk")[:size].ljust(size, b"\x00")
    colour = 1 if plate else 0
    return (b"\x00\x25\x00\x64" + field(maker, 5) + field(model, 20) + field(terminal_id, 7) + bytes((colour,))
            + plate.encode("gbk"))


class Jt808Error(Exception):
    """The platform refused or did not answer."""


class Terminal:
    """One JT/T 808-2013 terminal's TCP connection to the platform."""

    def __init__(self, phone: str, terminal_id: str = "") -> None:
        self.phone = phone
        self.terminal_id = terminal_id or phone[-7:]
        self.serial = 0
        self.code = ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.stream = Jt808Stream()
        self.inbox: list[Message] = []

    async def connect(self, host: str, port: int) -> None:
        """Open the connection."""
        self.reader, self.writer = await asyncio.open_connection(host, port)

    def close(self) -> None:
        """Close the connection."""
        if self.writer is not None:
            self.writer.close()

    def _next(self) -> int:
        self.serial = (self.serial + 1) & 0xFFFF
        return self.serial

    def send(self, message_id: int, body: bytes) -> int:
        """Send one message (sub-packaged when longer than a frame); its (first) serial."""
        serial = self._next()
        if len(body) <= MAX_BODY:
            self.writer.write(encode_frame(message_id, self.phone, serial, body))
        else:
            frames = encode_packages(message_id, self.phone, serial, body)
            self.serial = (serial + len(frames) - 1) & 0xFFFF
            self.writer.write(b"".join(frames))
        return serial

    async def reply(self, timeout: float = 10.0) -> Message:
        """The platform's next message."""
        while not self.inbox:
            chunk = await asyncio.wait_for(self.reader.read(4096), timeout)
            if not chunk:
                raise Jt808Error("the platform closed the connection")
            self.inbox.extend(self.stream.feed(chunk))
        return self.inbox.pop(0)

    async def result(self, timeout: float = 10.0) -> int:
        """The result of the platform's next general reply (0x8001)."""
        message = await self.reply(timeout)
        if message.header.message_id != 0x8001 or not isinstance(message.body, bytes) or len(message.body) != 5:
            raise Jt808Error(f"expected 0x8001, got {message.header.message_id:#06x}")
        return message.body[4]

    async def register(self, plate: str = "") -> int:
        """Register; the 0x8100 result (the code is kept on success)."""
        self.send(0x0100, registration_body(self.terminal_id, plate))
        message = await self.reply()
        if message.header.message_id != 0x8100:
            raise Jt808Error(f"expected 0x8100, got {message.header.message_id:#06x}")
        body = message.body
        if body[2] == 0:
            self.code = body[3:].decode("gbk")
        return body[2]

    async def authenticate(self, code: str | None = None) -> int:
        """Authenticate with the code (default: the one registration gave); the 0x8001 result."""
        self.send(0x0102, (self.code if code is None else code).encode("gbk"))
        return await self.result()

    async def report(self, body: bytes) -> int:
        """A location report; the 0x8001 result."""
        self.send(0x0200, body)
        return await self.result()

    async def batch(self, bodies: Sequence[bytes], blind_area: bool = True) -> int:
        """A 0x0704 batch (盲区补传 when `blind_area`); the 0x8001 result."""
        body = len(bodies).to_bytes(2, "big") + bytes((1 if blind_area else 0,))
        body += b"".join(len(b).to_bytes(2, "big") + b for b in bodies)
        self.send(0x0704, body)
        return await self.result()

    async def heartbeat(self) -> int:
        """A heartbeat; the 0x8001 result."""
        self.send(0x0002, b"")
        return await self.result()


async def drive_terminal(terminal: Terminal, vehicle, net, host: str, port: int, stop: asyncio.Event, *,
                         every_s: float = 10.0, gap_every: int = 30, gap_reports: int = 6,
                         rng: random.Random | None = None, clock=None) -> dict[str, int]:
    """Register, authenticate and report a `SimVehicle`'s position every `every_s` until `stop`;
    every `gap_every` reports a coverage gap of `gap_reports` reports sent after it as a 0x0704
    batch. Reconnects (and registers again) after a lost connection. Returns its counts."""
    rng = rng or random.Random(terminal.phone)
    counts = {"reports": 0, "batches": 0, "refused": 0, "reconnects": 0}
    held: list[bytes] = []
    n = 0
    while not stop.is_set():
        try:
            await terminal.connect(host, port)
            result = await terminal.register()
            if result != 0 or await terminal.authenticate() != 0:
                counts["refused"] += 1
                log.warning("jt808 terminal %s refused (registration result %d)", terminal.phone, result)
                terminal.close()
                await stop_or_timeout(stop, 30.0)
                continue
            while not stop.is_set():
                await stop_or_timeout(stop, every_s)
                vehicle.step(net, rng, every_s if clock is None else every_s * clock.speedup)
                lon, lat, course = vehicle.position(net)
                t = datetime.now(timezone.utc) if clock is None else clock.now_dt()
                body = location_body(lat, lon, t, speed_kmh=vehicle.speed * 3.6, course=course, alt_m=vehicle.alt)
                n += 1
                if gap_every and n % gap_every < gap_reports and n > gap_reports:
                    held.append(body)  # in the gap: kept for the 盲区补传
                    continue
                if held:
                    await terminal.batch(held)
                    counts["batches"] += 1
                    held = []
                await terminal.report(body)
                counts["reports"] += 1
        except (OSError, asyncio.TimeoutError, Jt808Error) as exc:
            counts["reconnects"] += 1
            log.info("jt808 terminal %s: %s; reconnecting", terminal.phone, exc)
            terminal.close()
            await stop_or_timeout(stop, 3.0)
    terminal.close()
    return counts


async def run_terminals(host: str, port: int, net, fleet, pairs: Sequence[tuple[str, str]], stop: asyncio.Event, *,
                        every_s: float = 10.0, seed: int = 1, clock=None) -> list[dict[str, int]]:
    """Drive the vehicles of `pairs` (phone, vehicle id) of `fleet` through their terminals."""
    by_id = {v.vehicle_id: v for v in fleet}
    tasks = [drive_terminal(Terminal(phone), by_id[vid], net, host, port, stop, every_s=every_s,
                            rng=random.Random(seed + i), clock=clock)
             for i, (phone, vid) in enumerate(pairs) if vid in by_id]
    return list(await asyncio.gather(*tasks))


def _options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from config.settings import load

    settings = load()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="the gateway's address")
    parser.add_argument("--port", type=int, default=settings.JT808_PORT, help="the gateway's port (JT808_PORT)")
    parser.add_argument("--count", type=int, default=settings.DEMO_JT808_VEHICLES, help="terminals")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between location reports")
    parser.add_argument("--seed", type=int, default=settings.SIM_SEED, help="random seed")
    return parser.parse_args(argv)


async def main(argv: Sequence[str] | None = None) -> None:
    """Drive the demo city's last `--count` vehicles through JT/T 808 terminals."""
    from config.settings import load
    from runtime.lifecycle import stop_on_signals
    from simulators.democity import ensure_city
    from simulators.roads import roadnet_from_city
    from simulators.vehicles import make_fleet

    opts = _options(argv)
    net, ids, starts = roadnet_from_city(str(ensure_city(load())))
    fleet = make_fleet(net, ids, random.Random(opts.seed), starts=starts)
    stop = stop_on_signals()
    pairs = demo_terminals(ids, opts.count)
    log.info("jt808 terminals %s on %s:%d", ", ".join(f"{p}={v}" for p, v in pairs), opts.host, opts.port)
    await run_terminals(opts.host, opts.port, net, fleet, pairs, stop, every_s=opts.every, seed=opts.seed)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(main())
