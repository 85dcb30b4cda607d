-- A crew's tickets of a period (the tickets a vehicle worked on the way in a track replay):
-- store.ticket_reads TicketReads.worked_between reads them by crew and creation time.
CREATE INDEX IF NOT EXISTS tickets_crew_created ON tickets (crew_id, created_at) WHERE crew_id IS NOT NULL;
