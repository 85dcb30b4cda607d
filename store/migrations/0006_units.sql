-- The organisation tree of responsible units (store/units.py, rules in gis/units.py):
-- the hotline center (level 1, the root), the departments that supervise (level 2, 二级网络单位)
-- and the service stations (level 3, 三级网络单位) that own the crews. Seeded from the city
-- profile's units layer; an administrator may rename a unit, change its phone, move it under
-- another parent or deactivate it, and a row so edited (source 'admin') is never overwritten by
-- a later seed. Moves are checked by the store under a transaction-level advisory lock (unknown
-- parent, cycle, level mismatch); the constraints below hold whatever writes.

CREATE TABLE units (
    unit_id     text PRIMARY KEY,
    parent_id   text CONSTRAINT units_parent_known REFERENCES units (unit_id),
    level       smallint NOT NULL CHECK (level BETWEEN 1 AND 3),
    name        text NOT NULL CHECK (name <> ''),
    trades      text[] NOT NULL DEFAULT '{}',      -- ticket categories: power, water, ...
    phone       text NOT NULL DEFAULT '',
    active      boolean NOT NULL DEFAULT true,
    source      text NOT NULL,                     -- 'city' (seeded) or 'admin' (edited since)
    version     integer NOT NULL DEFAULT 1 CHECK (version > 0),
    updated_at  timestamptz NOT NULL,
    updated_by  text NOT NULL,
    CONSTRAINT units_root_only CHECK ((parent_id IS NULL) = (level = 1)),
    CONSTRAINT units_not_own_parent CHECK (parent_id IS DISTINCT FROM unit_id)
);
CREATE INDEX units_parent ON units (parent_id);
