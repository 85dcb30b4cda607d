-- Incidents over several supply areas (issue #24, command/grouping.py): a power incident whose
-- calls came from several 台区 of one 10 kV feeder keeps them all in `areas` (its first area
-- stays `supply_area`), and the feeder it is on; a create reads the unresolved incidents of its
-- area (any of `areas`) and of its feeder.
ALTER TABLE incidents ADD COLUMN areas text[] NOT NULL DEFAULT '{}';
ALTER TABLE incidents ADD COLUMN feeder text;
UPDATE incidents SET areas = ARRAY[supply_area] WHERE supply_area IS NOT NULL;
CREATE INDEX incidents_open_areas ON incidents USING gin (areas) WHERE resolved_at IS NULL;
CREATE INDEX incidents_open_feeder ON incidents (feeder) WHERE resolved_at IS NULL AND feeder IS NOT NULL;
