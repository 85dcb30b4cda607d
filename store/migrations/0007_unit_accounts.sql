-- A responsible unit's liaison (责任单位联络员, role 'unit'): an account bound to one unit of the
-- organisation tree (0006_units.sql). The liaison sees the tickets of that unit and of every unit
-- under it, and acts on them through the unit's lifecycle rows (command/tickets.py).
-- Only a unit account has a unit, and it always has one.

ALTER TABLE accounts DROP CONSTRAINT accounts_role_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_role_check
    CHECK (role IN ('agent', 'dispatcher', 'crew', 'supervisor', 'admin', 'unit'));
ALTER TABLE accounts ADD COLUMN unit_id text CONSTRAINT accounts_unit_known REFERENCES units (unit_id);
ALTER TABLE accounts ADD CONSTRAINT accounts_unit_of_liaison CHECK ((role = 'unit') = (unit_id IS NOT NULL));
CREATE INDEX accounts_unit ON accounts (unit_id) WHERE unit_id IS NOT NULL;
