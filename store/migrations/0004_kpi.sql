-- KPI facts: one row per ticket, folded from its audit events (ticket_events) by the KPI service
-- (store/kpi.py, services/kpi_service.py); reports read a period's rows of kpi_facts.

-- Integer codes of the names in the facts' packed rows (kind: channel, category, type, urgency,
-- area_class, color, callback_result, state, district, grid, unit, crew), dense per kind.
CREATE TABLE kpi_names (
    kind  text NOT NULL,
    name  text NOT NULL,
    code  integer NOT NULL CHECK (code >= 0),
    PRIMARY KEY (kind, name),
    UNIQUE (kind, code)
);

-- A ticket's KPI row (command.kpi.named_row): the columns reports select and filter on, and the
-- whole row packed in two parts (little-endian, names as kpi_names codes): `packed`, the fields a
-- report reads (store.kpi.REPORT_ROW), and `extra`, the rest (EXTRA_ROW: the fact id first),
-- which a report copies out in binary and reads as numpy columns without parsing.
CREATE TABLE kpi_facts (
    id             bigint NOT NULL UNIQUE,       -- the ticket's first ticket_events.id (also in packed)
    number         text PRIMARY KEY,
    last_event_id  bigint NOT NULL,              -- the ticket's last ticket_events.id folded in
    created        timestamptz,                  -- the create event's time
    resolved       timestamptz,                  -- the last resolution's time
    category       text,
    district       text,
    unit_id        text,
    crew_id        text,
    state          text,
    packed         bytea NOT NULL,               -- what a report reads (120 bytes)
    extra          bytea NOT NULL                -- the rest: drill-downs and exports read packed || extra
);
-- A period's rows come from this index alone (an index-only scan in creation order; the heap
-- holds them in the order they were last updated), whole or only a report's part.
CREATE INDEX kpi_facts_created ON kpi_facts (created) INCLUDE (packed, extra, category, district, unit_id);
CREATE INDEX kpi_facts_resolved ON kpi_facts (resolved, created);

-- The running fold of each ticket's events (command.kpi_facts.TicketAccumulator.to_dict), so its
-- next events continue it; `version` is the ticket's version it has seen (tickets.version): a
-- ticket whose version is ahead of its fold is folded again from last_event_id on.
CREATE TABLE kpi_folds (
    number         text PRIMARY KEY,
    fact_id        bigint NOT NULL,              -- kpi_facts.id of the ticket
    version        integer NOT NULL,
    last_event_id  bigint NOT NULL,
    fold           jsonb NOT NULL
);
