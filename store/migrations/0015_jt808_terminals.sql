-- JT/T 808 terminals (store/jt808.py): a terminal, known by the phone number of its frames'
-- header, bound to one vehicle of the fleet registry by an administrator. The center issues the
-- authentication code (鉴权码) when the terminal registers (0x0100/0x8100) and keeps only its
-- SHA-256; 0x0102 must present the code. A vehicle has one terminal at most.
CREATE TABLE jt808_terminals (
    phone          text PRIMARY KEY,                -- the header's BCD digits, leading zeros dropped
    terminal_id    text NOT NULL DEFAULT '',        -- '' : any terminal id may register this phone
    maker          text NOT NULL DEFAULT '',
    model          text NOT NULL DEFAULT '',
    plate          text NOT NULL DEFAULT '',        -- as the terminal sends it at registration
    vehicle_id     text NOT NULL REFERENCES vehicles (vehicle_id),
    code_hash      text NOT NULL DEFAULT '',        -- hex SHA-256 of the issued code; '' before registration
    registered_at  timestamptz,
    bound_at       timestamptz NOT NULL,
    bound_by       text NOT NULL,
    CONSTRAINT jt808_terminals_one_per_vehicle UNIQUE (vehicle_id)
);

-- The JT/T 808 gateway logs in to the broker with a device credential of its own kind: it
-- publishes fleet/<vehicle>/jt808 for the vehicles of the terminals it serves.
ALTER TABLE devices DROP CONSTRAINT devices_kind_check;
ALTER TABLE devices ADD CONSTRAINT devices_kind_check CHECK (kind IN ('vehicle', 'gateway', 'jt808'));
