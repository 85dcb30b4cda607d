-- The fleet registry (crews, vehicles, shifts), accounts and the administrative audit
-- (store/fleet.py, store/accounts.py). The rules the admin API relies on are
-- constraints here, so two administrators racing cannot break them: a plate belongs to one
-- vehicle, a vehicle to one crew at most, a crew holds only a known and active vehicle, and a
-- vehicle a crew holds cannot be deactivated.

CREATE TABLE vehicles (
    vehicle_id  text PRIMARY KEY,
    plate       text NOT NULL DEFAULT '',           -- '' for a vehicle registered without one
    kind        text NOT NULL,
    unit_id     text,
    active      boolean NOT NULL DEFAULT true,
    source      text NOT NULL,                      -- 'city' (seeded) or 'admin'
    version     integer NOT NULL DEFAULT 1 CHECK (version > 0),
    updated_at  timestamptz NOT NULL,
    updated_by  text NOT NULL,
    CONSTRAINT vehicles_id_active UNIQUE (vehicle_id, active)  -- the target of crews_vehicle_active
);
CREATE UNIQUE INDEX vehicles_plate ON vehicles (plate) WHERE plate <> '';

CREATE TABLE crews (
    crew_id         text PRIMARY KEY,
    crew_name       text NOT NULL,
    unit_id         text,
    station_id      text,
    skills          text[] NOT NULL DEFAULT '{}',
    vehicle_id      text CONSTRAINT crews_vehicle_known REFERENCES vehicles (vehicle_id),
    -- true while the crew holds a vehicle: with crews_vehicle_active the held vehicle must be
    -- active, and deactivating a held vehicle fails
    vehicle_active  boolean GENERATED ALWAYS AS (CASE WHEN vehicle_id IS NOT NULL THEN true END) STORED,
    active          boolean NOT NULL DEFAULT true,
    source          text NOT NULL,
    version         integer NOT NULL DEFAULT 1 CHECK (version > 0),
    updated_at      timestamptz NOT NULL,
    updated_by      text NOT NULL,
    CONSTRAINT crews_one_per_vehicle UNIQUE (vehicle_id),
    CONSTRAINT crews_vehicle_active FOREIGN KEY (vehicle_id, vehicle_active)
        REFERENCES vehicles (vehicle_id, active)
);

-- A crew without a row is on shift (the demo city has no rota).
CREATE TABLE crew_shifts (
    crew_id   text PRIMARY KEY REFERENCES crews (crew_id),
    on_shift  boolean NOT NULL,
    ends_at   timestamptz,
    set_by    text NOT NULL,
    set_at    timestamptz NOT NULL
);

-- Readers of the registry (the ingest every 2 s, dispatch's crew registry, the live feed) reload
-- when this moved; every crew or vehicle change increments it in its own transaction.
CREATE TABLE fleet_revision (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    rev        bigint NOT NULL
);

CREATE TABLE accounts (
    name           text PRIMARY KEY,
    role           text NOT NULL CHECK (role IN ('agent', 'dispatcher', 'crew', 'supervisor', 'admin')),
    display        text NOT NULL DEFAULT '',
    crew_id        text,                            -- crew accounts only
    active         boolean NOT NULL DEFAULT true,
    password_hash  text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX accounts_crew ON accounts (crew_id) WHERE crew_id IS NOT NULL;

-- Every administrative change (accounts, crews, vehicles, shifts, device credentials): who,
-- with which role, when, what. Never trimmed.
CREATE TABLE admin_audit (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL,
    by       text NOT NULL,
    role     text NOT NULL,
    action   text NOT NULL,                         -- crew.create, vehicle.update, user.create, shift.set...
    target   text NOT NULL,                         -- crew:C01, vehicle:V01, user:agent, device:V01, city
    changes  jsonb NOT NULL                         -- {field: [old, new]}
);
CREATE INDEX admin_audit_target ON admin_audit (target, id);

-- Device credentials (store/devices.py): the MQTT accounts of vehicles and gateways, with
-- the mosquitto "$7$" hash of their secret (never the secret). The process that owns an embedded
-- broker polls device_revision (a random token, new at every change) and renders the broker's
-- password and ACL files when it moved.
CREATE TABLE devices (
    device_id      text PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('vehicle', 'gateway')),
    password_hash  text NOT NULL,
    sensors        text[] NOT NULL DEFAULT '{}',    -- gateway: the sensors it may publish for
    sparkplug      boolean NOT NULL DEFAULT false,  -- gateway: a Sparkplug B edge node
    active         boolean NOT NULL DEFAULT true,
    issued_at      double precision NOT NULL DEFAULT 0,  -- UTC epoch s
    issued_by      text NOT NULL DEFAULT ''
);

CREATE TABLE device_revision (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    rev        text NOT NULL
);
