"""One entry point for every service: ``python -m center web|ingest|ingest-sensors|simulate|dispatch|jt808|demo|servers|city|tiles|kpi|mqtt-auth|backup|restore|migrate-redis``."""
from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import os
import signal
import sys

from runtime.lifecycle import StartupError
from config.settings import SettingsError, load

SERVICES = ("web", "ingest", "ingest-sensors", "simulate", "dispatch", "jt808")


def _logging(level: str, name: str) -> None:
    # SIGUSR1 prints every thread's stack to stderr (the log): how an operator, or a test that
    # waited too long, sees where a process is stuck without stopping it
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format=f"%(asctime)s {name:<8} %(levelname)-7s %(name)s: %(message)s",
                        stream=sys.stderr)


async def _standalone(name: str, settings) -> None:
    """Run one service; starts embedded servers only when none is configured or running."""
    # each service imports what it needs in its branch: the city's modules (geopandas) cost a
    # process ~115 MB that the JT/T 808 gateway does without
    from runtime.clock import process_clock
    from store.startup import open_servers
    from center.supervisor import keep_servers

    process_clock(settings, name)  # a speed-up without a shared anchor is refused, with one logged loudly
    servers = await asyncio.to_thread(open_servers, settings)
    settings = settings.with_values(DATABASE_URL=servers.database_url)  # the embedded one, if started
    kept = asyncio.Event()
    keeper = asyncio.create_task(keep_servers(servers, kept))  # the embedded servers it started, if any
    try:
        if name == "web":
            from config.city import load_city
            from simulators.democity import ensure_city
            from web.app import serve

            city = await asyncio.to_thread(load_city, ensure_city(settings))
            await serve(settings, servers.redis_url, servers.mqtt_url, city=city)
        elif name in ("ingest", "ingest-sensors"):  # ingest-sensors: the ingest of the sensors' topics alone
            from ingest.service import serve

            if name == "ingest-sensors":
                settings = settings.with_values(INGEST_TOPICS="sensors")
            await serve(settings, servers.redis_url, servers.mqtt_url, own_process=True)
        elif name == "simulate":
            from simulators.democity import ensure_city
            from simulators.run import serve

            await serve(settings, servers.mqtt_url, ensure_city(settings), redis_url=servers.redis_url)
        elif name == "jt808":  # the JT/T 808 terminals' gateway
            from ingest.jt808_gateway import raise_open_files, serve

            raise_open_files(settings.JT808_MAX_CONNECTIONS + 100)
            settings = settings.with_values(MQTT_DEVICE_URL=settings.MQTT_DEVICE_URL or servers.device_url)
            await serve(settings, servers.redis_url)
        elif name == "dispatch":
            from gis.layers import load_profile
            from services.worker import serve
            from simulators.democity import ensure_city

            city = await asyncio.to_thread(load_profile, ensure_city(settings))
            await serve(settings, servers.redis_url, servers.mqtt_url, city)
    finally:
        kept.set()
        await keeper
        servers.stop()


def _demo_password(settings) -> str:
    """DEMO_PASSWORD, else the one recorded in DATA_DIR by an earlier demo, else a new one."""
    from command.accounts import generate_password

    password_file = settings.data_dir / "demo-accounts.txt"
    if settings.DEMO_PASSWORD:
        return settings.DEMO_PASSWORD
    if password_file.exists():
        return password_file.read_text(encoding="utf-8").split()[-1]
    return generate_password()


def _demo_police(settings) -> dict[str, object]:
    """The demo's 110 link: with POLICE_URL empty, the simulated 110 side on a free port (or
    SIM_POLICE_PORT) and a shared secret generated once into DATA_DIR (mode 600)."""
    import secrets

    from servers.embedded import free_port

    values: dict[str, object] = {}
    if not settings.POLICE_URL:
        port = settings.SIM_POLICE_PORT or free_port()
        values.update(POLICE_URL=f"http://127.0.0.1:{port}", SIM_POLICE_PORT=port)
    if not settings.POLICE_SECRET:
        secret_file = settings.data_dir / "police-secret.txt"
        if not secret_file.exists():
            secret_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(secrets.token_urlsafe(32) + "\n")
        values["POLICE_SECRET"] = secret_file.read_text(encoding="utf-8").strip()
    return values


async def _crew_accounts(store, profile, password: str) -> list[str]:
    """One crew-app account per crew of the city: ``crew-<crew_id>`` (created once)."""
    from command.accounts import hash_password
    from store.accounts import AccountStore
    from gis.layers import load_layer, read_profile

    specs = [spec for spec in read_profile(profile).layers if spec.kind == "crews"]
    known = AccountStore(store.db)
    existing = await known.names()
    created = []
    for spec in specs:
        frame = await asyncio.to_thread(load_layer, spec)
        for row in frame.drop(columns="geometry").to_dict("records"):
            crew_id = str(row["crew_id"])
            name = f"crew-{crew_id}"
            if name in existing:
                continue
            fields = {"role": "crew", "crew_id": crew_id, "display": str(row.get("crew_name") or name),
                      "active": "1", "hash": await asyncio.to_thread(hash_password, password)}
            if await known.put(name, fields, only_new=True):
                created.append(name)
    return created


async def _unit_accounts(store, password: str) -> list[str]:
    """The demo's unit liaisons (role unit): ``unit-<unit_id>`` for every 二级 department and the
    first 三级 station of each (created once, after the unit tree is seeded)."""
    from command.accounts import hash_password
    from store.accounts import AccountStore
    from store.units import UnitStore
    from simulators.units import liaison_units  # the one rule of which units have a demo liaison

    tree = await UnitStore(store.db).tree()
    by_id = {u["unit_id"]: u for u in tree}
    hashed = await asyncio.to_thread(hash_password, password)
    return await AccountStore(store.db).unit_liaisons([by_id[u] for u in liaison_units(tree)], hashed)


async def _demo_devices(store, settings, profile) -> dict[str, str]:
    """MQTT credentials for the simulated devices (vehicles, the SCADA gateway, Sparkplug edge
    nodes), issued once; their secrets in DATA_DIR/sim-devices.json (mode 600) for `simulate`,
    rotated when that file is lost. The fleet and sensor registries are filled first (as web and
    ingest do at their start) so that the credentials can be checked against them."""
    import time

    from store.fleet import FleetStore
    from store.units import UnitStore, nodes_of_city
    from gis.layers import load_profile
    from ingest.service import publish_registry
    from services.crews import crews_from_city, seed_items
    from services.devices import DeviceService, seed_demo_devices, sim_devices_path
    from simulators.run import simulated_devices

    city = await asyncio.to_thread(load_profile, profile)
    await FleetStore(store.db, store.redis).seed(seed_items(crews_from_city(city), time.time()), time.time())
    await UnitStore(store.db).seed(nodes_of_city(city), time.time())  # the unit tree, as web seeds it
    await publish_registry(settings, store)
    await _demo_terminals(store, settings, [str(v) for v in city.crews["vehicle_id"]][:settings.SIM_VEHICLES])
    return await seed_demo_devices(DeviceService(store.redis, store.db), simulated_devices(city, settings),
                                   sim_devices_path(settings.data_dir))


async def _demo_terminals(store, settings, vehicle_ids: list[str]) -> None:
    """Bind the demo's JT/T 808 terminals (the last DEMO_JT808_VEHICLES simulated vehicles, phone
    numbers 013900000001...) to their vehicles, once (one audit entry, by system)."""
    from services.devices import SYSTEM
    from services.jt808_terminals import TerminalService
    from simulators.jt808_terminal import demo_terminals

    pairs = demo_terminals(vehicle_ids, settings.DEMO_JT808_VEHICLES)
    if pairs and await TerminalService(store.db).bind_many(pairs, by=SYSTEM):
        print(f"JT/T 808 terminals: {', '.join(f'{p} -> {v}' for p, v in pairs)}", flush=True)


async def _demo(settings) -> int:
    from simulators.democity import ensure_city
    from center.supervisor import Supervisor
    from command.accounts import demo_accounts
    from web.app import bootstrap_accounts

    profile = ensure_city(settings, progress=lambda msg: print(msg, flush=True))
    from services.basemap import ensure_demo_tiles

    ensure_demo_tiles(settings, profile, progress=lambda msg: print(msg, flush=True))  # once per city
    demo_password = _demo_password(settings)
    settings = settings.with_values(DEMO_PASSWORD=demo_password, **_demo_police(settings))
    # the JT/T 808 gateway runs when some demo vehicles report through terminals
    supervisor = Supervisor(settings, [s for s in SERVICES if s != "jt808" or settings.DEMO_JT808_VEHICLES > 0])

    async def prepare(servers) -> None:
        from store.live import Store

        password_file = settings.data_dir / "demo-accounts.txt"
        store = Store.from_url(servers.redis_url, servers.database_url)
        try:
            created = await bootstrap_accounts(store, settings, demo=True)
            crews = await _crew_accounts(store, profile, demo_password)
            devices = await _demo_devices(store, settings, profile)
            liaisons = await _unit_accounts(store, demo_password)
        finally:
            await store.close()
        demo_names = [user["name"] for user in demo_accounts()]
        if "agent" in created:
            password_file.write_text(f"demo accounts ({', '.join(demo_names)}) password: {demo_password}\n",
                                     encoding="utf-8")
            os.chmod(password_file, 0o600)
        if "admin" in created:
            print(f"admin account created: admin / {created['admin']}  (shown once; set ADMIN_PASSWORD to choose)",
                  flush=True)
        print(f"demo accounts: {', '.join(demo_names)} / {demo_password}", flush=True)
        if crews:
            print(f"crew accounts: {', '.join(crews)} (same password)", flush=True)
        if liaisons:
            print(f"unit liaison accounts: {', '.join(liaisons)} (same password)", flush=True)
        print(f"110 side: {settings.POLICE_URL}", flush=True)
        if devices:
            print(f"simulated devices: {', '.join(f'{k} {v}' for k, v in sorted(devices.items()))}", flush=True)

    def ready(ok: bool) -> None:
        url = f"http://{settings.HTTP_HOST}:{settings.HTTP_PORT}/"
        print(f"console: {url}" if ok else f"web did not come up; see the log above ({url})", flush=True)

    return await supervisor.run(on_ready=ready, prepare=prepare)


def main(argv: list[str] | None = None) -> int:
    """Parse the command and run it."""
    parser = argparse.ArgumentParser(prog="python -m center", description=__doc__)
    parser.add_argument("command", choices=SERVICES + ("demo", "servers", "city", "tiles", "kpi", "mqtt-auth",
                                                       "backup", "restore", "migrate-redis"))
    parser.add_argument("directory", nargs="?", default="",
                        help="mqtt-auth: where to write mosquitto.passwd and mosquitto.acl; backup: the file to "
                             "write (default DATA_DIR/backups/center-<time>.dump); restore: the file to read; "
                             "tiles: the MBTiles file to write (default BASEMAP_MBTILES)")
    parser.add_argument("--zooms", default="11-15",
                        help="tiles: the zooms to draw, N-M (default 11-15; each deeper zoom takes about 4x as long)")
    parser.add_argument("--force", action="store_true",
                        help="restore: replace a database that holds data (drops its schema public first)")
    _kpi_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = load()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    _logging(settings.LOG_LEVEL, args.command)
    try:
        if args.command == "demo":
            from center.supervisor import AlreadyRunning

            try:
                return asyncio.run(_demo(settings))
            except AlreadyRunning as exc:
                print(f"demo: {exc}", file=sys.stderr)
                return 1
        if args.command == "city":
            from simulators.democity import ensure_city

            print(ensure_city(settings, progress=lambda m: print(m, flush=True)))
            return 0
        if args.command == "tiles":
            return _tiles(settings, args.directory, args.zooms)
        if args.command == "kpi":
            return _kpi(settings, args)
        if args.command == "servers":
            return asyncio.run(_servers(settings))
        if args.command == "mqtt-auth":
            return _mqtt_auth(settings, args.directory)
        if args.command in ("backup", "restore"):
            from store.backup import command

            return command(settings, args.command, args.directory, force=args.force)
        if args.command == "migrate-redis":
            from store.migrate_redis import command as migrate_redis

            return migrate_redis(settings)
        asyncio.run(_standalone(args.command, settings))
        return 0
    except StartupError as exc:
        logging.getLogger("center").error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 0


def _tiles(settings, out: str, zooms: str) -> int:
    """Draw the city's street base map (CITY_PROFILE, else the demo city) into an MBTiles file."""
    from pathlib import Path

    from simulators.democity import ensure_city
    from services.basemap import font_path, mbtiles_path, parse_zooms, render_city

    try:
        levels = parse_zooms(zooms)
    except ValueError as exc:
        print(f"tiles: {exc}", file=sys.stderr)
        return 2
    profile = ensure_city(settings, progress=lambda m: print(m, flush=True))
    target = Path(out) if out else mbtiles_path(settings)
    render_city(profile, target, font=font_path(settings), zooms=levels, progress=lambda m: print(m, flush=True))
    print(target)
    return 0


def _kpi_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the `kpi` command (the report's period and filters)."""
    group = parser.add_argument_group("kpi", "python -m center kpi: rebuild the KPIs from the audit events "
                                             "alone (PostgreSQL) and print the report JSON (progress on stderr)")
    group.add_argument("--period", choices=("day", "week", "month", "year", "range"), default=None,
                       help="report period (default day; range when --from/--to are given)")
    group.add_argument("--date", default="", help="a day of the period, YYYY-MM-DD (default today, TIME_ZONE)")
    group.add_argument("--from", dest="from", default="", help="first day of a range, YYYY-MM-DD")
    group.add_argument("--to", default="", help="last day of a range, YYYY-MM-DD")
    for name in ("category", "district", "unit"):
        group.add_argument(f"--{name}", default="", help=f"only this {name} (comma-separated values allowed)")


def _kpi(settings, args) -> int:
    """Rebuild the KPIs from the audit events in PostgreSQL (DATABASE_URL, else the embedded
    servers of DATA_DIR) and print the report."""
    from config.limit_files import load_policy
    from services.kpi_query import report_command
    from store.startup import open_servers

    try:
        policy = load_policy(settings)  # CALENDAR_FILE / LIMITS_FILE, as the web and dispatch processes
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    servers = open_servers(settings)
    try:
        return report_command(servers.database_url, vars(args), tz=settings.zone, policy=policy)
    finally:
        servers.stop()


def _mqtt_auth(settings, directory: str) -> int:
    """Write mosquitto.passwd and mosquitto.acl for an external mosquitto from the device
    credentials (DATABASE_URL, else the embedded PostgreSQL of DATA_DIR), with the center account
    of MQTT_URL's credentials when it has them (send mosquitto a SIGHUP afterwards to reload them)."""
    from pathlib import Path
    from urllib.parse import unquote, urlparse

    import psycopg

    from servers.broker_credentials import hash_password
    from servers.broker_files import render_devices
    from store.devices import read_all
    from store.startup import open_servers

    if not directory:
        print("usage: python -m center mqtt-auth <directory>", file=sys.stderr)
        return 2
    parsed = urlparse(settings.MQTT_URL)
    center = None
    if parsed.username and parsed.password is not None:
        center = (unquote(parsed.username), hash_password(unquote(parsed.password)))
    servers = open_servers(settings.with_values(MQTT_URL=settings.MQTT_URL or "mqtt://unused"))
    try:
        with psycopg.connect(servers.database_url, autocommit=True) as conn:
            devices = read_all(conn)
        render_devices(Path(directory), devices, center)
    finally:
        servers.stop()
    active = sum(1 for device in devices if device.active)
    print(f"{Path(directory) / 'mosquitto.passwd'}, {Path(directory) / 'mosquitto.acl'}: "
          f"{active} active devices{', and the account ' + center[0] if center else ''}", flush=True)
    return 0


async def _servers(settings) -> int:
    """Run just the embedded PostgreSQL, Redis and broker (for services started one by one) until
    signalled, printing their URLs."""
    import signal

    from store.startup import open_servers
    from center.supervisor import keep_servers

    servers = await asyncio.to_thread(open_servers, settings)
    print(f"DATABASE_URL={servers.database_url}\nREDIS_URL={servers.redis_url}\nMQTT_URL={servers.mqtt_url}\nMQTT_DEVICE_URL={servers.device_url}",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await keep_servers(servers, stop)  # until signalled: a dead server is restarted meanwhile
        await stop.wait()  # (at once when it owns none)
    finally:
        servers.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
