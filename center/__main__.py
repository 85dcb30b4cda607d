"""One entry point for every service: ``python -m center web|ingest|simulate|demo|servers|city``."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from center.settings import SettingsError, load

SERVICES = ("web", "ingest", "simulate")


def _logging(level: str, name: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format=f"%(asctime)s {name:<8} %(levelname)-7s %(name)s: %(message)s",
                        stream=sys.stderr)


async def _standalone(name: str, settings) -> None:
    """Run one service; starts embedded servers only when none is configured or running."""
    from center.city import ensure_city, load_city
    from center.servers import Servers

    servers = await asyncio.to_thread(Servers.resolve, settings)
    try:
        if name == "web":
            from web.app import serve

            city = await asyncio.to_thread(load_city, ensure_city(settings))
            await serve(settings, servers.redis_url, servers.mqtt_url, city=city)
        elif name == "ingest":
            from ingest.service import serve

            await serve(settings, servers.redis_url, servers.mqtt_url)
        elif name == "simulate":
            from simulators.run import serve

            await serve(settings, servers.mqtt_url, ensure_city(settings), redis_url=servers.redis_url)
    finally:
        servers.stop()


async def _demo(settings) -> int:
    from center.city import ensure_city
    from center.supervisor import Supervisor
    from web.app import bootstrap_accounts

    ensure_city(settings, progress=lambda msg: print(msg, flush=True))
    supervisor = Supervisor(settings, list(SERVICES))

    async def prepare(servers) -> None:
        from center.accounts import generate_password
        from center.store import Store

        password_file = settings.data_dir / "demo-accounts.txt"
        demo_password = settings.DEMO_PASSWORD
        if not demo_password and password_file.exists():
            demo_password = password_file.read_text(encoding="utf-8").split()[-1]
        demo_password = demo_password or generate_password()
        store = Store.from_url(servers.redis_url)
        try:
            created = await bootstrap_accounts(store, settings.with_values(DEMO_PASSWORD=demo_password), demo=True)
        finally:
            await store.close()
        if "agent" in created:
            password_file.write_text(f"demo accounts (agent, dispatcher, crew, supervisor) password: {demo_password}\n",
                                     encoding="utf-8")
            os.chmod(password_file, 0o600)
        if "admin" in created:
            print(f"admin account created: admin / {created['admin']}  (shown once; set ADMIN_PASSWORD to choose)",
                  flush=True)
        print(f"demo accounts: agent, dispatcher, crew, supervisor / {demo_password}", flush=True)

    def ready(ok: bool) -> None:
        url = f"http://{settings.HTTP_HOST}:{settings.HTTP_PORT}/"
        print(f"console: {url}" if ok else f"web did not come up; see the log above ({url})", flush=True)

    return await supervisor.run(on_ready=ready, prepare=prepare)


def main(argv: list[str] | None = None) -> int:
    """Parse the command and run it."""
    parser = argparse.ArgumentParser(prog="python -m center", description=__doc__)
    parser.add_argument("command", choices=SERVICES + ("demo", "servers", "city"))
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
            from center.city import ensure_city

            print(ensure_city(settings, progress=lambda m: print(m, flush=True)))
            return 0
        if args.command == "servers":
            return asyncio.run(_servers(settings))
        asyncio.run(_standalone(args.command, settings))
        return 0
    except KeyboardInterrupt:
        return 0


async def _servers(settings) -> int:
    """Run just the embedded Redis and broker (for services started one by one) until signalled."""
    import signal

    from center.servers import Servers

    servers = await asyncio.to_thread(Servers.resolve, settings)
    print(f"REDIS_URL={servers.redis_url}\nMQTT_URL={servers.mqtt_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        servers.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
