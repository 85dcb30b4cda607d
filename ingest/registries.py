"""What the ingest decodes, followed at run time: the fleet registry (the vehicles whose messages
are decoded, in PostgreSQL), the sensor registry (from the city's sensors layer, in Redis) and a
Redis that lost the live state. Mixed into `ingest.service.Ingest`, whose timer runs them with the
sensors' silence checks.
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from config.city import DEMO_SUBDIR
from config.settings import Settings
from ingest.sensors import SensorRegistry, load_profile_rows
from store.live import Store

log = logging.getLogger("ingest.service")

FLEET_POLL_S = 2.0  # how often the ingest reads the fleet registry's revision (a change: reload the ids)


class RegistriesMixin:
    """The ingest's registries: `load_fleet`, `load_registry`, `after_wipe`, and the `timer` that
    runs them (attributes from `ingest.service.Ingest`)."""

    async def timer(self) -> None:
        """The registries and the silence checks: follow the fleet registry every FLEET_POLL_S
        (`load_fleet`), check every sensor for silence every SENSOR_CHECK_S, reload the sensor
        registry every SENSOR_REGISTRY_REFRESH_S."""
        check_s = self.settings.SENSOR_CHECK_S
        refresh_s = self.settings.SENSOR_REGISTRY_REFRESH_S
        now = time.monotonic()
        next_fleet, next_check, next_refresh = now + FLEET_POLL_S, now + check_s, now + refresh_s
        while True:
            await asyncio.sleep(max(0.0, min(next_fleet, next_check, next_refresh) - time.monotonic()))
            now = time.monotonic()
            if now >= next_fleet:
                next_fleet = now + FLEET_POLL_S
                if self.takes_fleet:
                    await self.load_fleet()
                await self.after_wipe()
            if now >= next_check:
                next_check = now + check_s
                if self.takes_sensors:
                    self.sensors.check_silence(self.store.clock.now(), self.sensor_lane.batch.sensors, self.stats)
                if self.sensor_lane.batch.sensors.events:
                    self._cut(self.sensor_lane)
            if now >= next_refresh:
                next_refresh = now + refresh_s
                if self.takes_sensors:
                    await self.load_registry()

    async def load_fleet(self) -> bool:
        """Follow the fleet registry: read its revision and, when it moved, add the ids of its
        vehicles to those whose messages are decoded; False (logged) when PostgreSQL cannot answer.

        The set only grows while the ingest runs: the registry never deletes a vehicle (it
        deactivates it), and a database that cannot answer for a while must not turn every vehicle
        away."""
        try:
            revision = await self._fleet.revision()
            if revision == self.fleet_revision:
                return True
            ids = self.fleet_ids.union(await self._fleet.vehicle_ids())
        except Exception as exc:
            self.rlog.warning("fleet", "ingest: cannot load the fleet registry: %s", exc)
            return False
        if len(ids) != len(self.fleet_ids):
            log.info("ingest: %d vehicles in the fleet registry (revision %d)", len(ids), revision)
        self.fleet_ids, self.fleet_revision = ids, revision
        return True

    async def after_wipe(self) -> bool:
        """When Redis lost what this ingest wrote (FLUSHALL, or a restart without its AOF, which
        no write error announced): forget the caches of what is there (so the next write adds
        each vehicle to ``veh:ids`` and indexes its track hour again) and publish the sensor
        registry again. True when a wipe was found."""
        try:
            present = await self.store.live_state_present(vehicles=bool(self._known_ids),
                                                          sensors=bool(self.sensors.registry.specs))
            if present:
                return False
            log.warning("ingest: Redis lost the live state (wiped); writing it again from the next messages")
            self.stats["redis_wiped"] += 1
            self._indexed.clear()
            self._known_ids.clear()
            if self.takes_sensors:
                await publish_registry(self.settings, self.store)
        except Exception as exc:
            self.rlog.warning("wipe", "ingest: cannot check Redis for a wipe: %s", exc)
            return False
        if self.takes_sensors:
            await self.load_registry()
        return True

    async def load_registry(self) -> bool:
        """(Re)load the sensor registry from Redis; False (logged) when Redis cannot answer."""
        try:
            rows = await self.store.sensor_registry()
        except Exception as exc:
            self.rlog.warning("registry", "ingest: cannot load the sensor registry: %s", exc)
            return False
        registry, problems = SensorRegistry.from_rows(rows, deadband_pct=self.settings.SENSOR_DEADBAND_PCT,
                                                      min_duration_s=self.settings.SENSOR_MIN_DURATION_S)
        for problem in problems[:20]:
            log.warning("ingest: registry row left out: %s", problem)
        self.stats["registry_problems"] = len(problems)
        self.sensors.set_registry(registry)
        return True


def city_profile(settings: Settings) -> Path | None:
    """The city profile whose sensors layer is the registry: CITY_PROFILE, or the generated demo city."""
    if settings.CITY_PROFILE:
        return Path(settings.CITY_PROFILE)
    demo = settings.data_dir / DEMO_SUBDIR / "profile.toml"
    return demo if demo.is_file() else None


async def publish_registry(settings: Settings, store: Store) -> int | None:
    """Copy the city's sensors layer into the Redis registry; None when there is no city."""
    profile = city_profile(settings)
    if profile is None:
        return None
    rows = await load_profile_rows(profile)
    return await store.replace_sensor_registry(rows)
