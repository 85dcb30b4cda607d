-- The reworks (转办督查单: a callback not satisfied sends a department's ticket back to its unit)
-- counted per unit by GET /api/tickets/counts (store/tickets.py unit_rework), beside the
-- reopens of ticket_events_reopen: a partial index, so the count reads only those events.
CREATE INDEX ticket_events_rework ON ticket_events (number) WHERE action = 'rework';
