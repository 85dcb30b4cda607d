-- Tickets, their audit trail, incidents and the outbox of committed changes (store/tickets.py).
-- A ticket row keeps the columns queries filter and sort on; `record` holds the whole stored
-- ticket (command.tickets.to_dict plus "meta"), the form the code reads back.

CREATE TABLE tickets (
    number        text PRIMARY KEY,
    version       integer NOT NULL CHECK (version > 0),
    state         text NOT NULL,
    open          boolean GENERATED ALWAYS AS (state NOT IN ('closed', 'cancelled', 'merged')) STORED,
    category      text NOT NULL,
    type          text NOT NULL,
    urgency       text NOT NULL,
    urgency_rank  smallint NOT NULL,
    color         text NOT NULL,
    supervised    boolean NOT NULL DEFAULT false,
    channel       text NOT NULL,
    caller_phone  text NOT NULL DEFAULT '',
    lon           double precision CHECK (lon BETWEEN -180 AND 180),
    lat           double precision CHECK (lat BETWEEN -90 AND 90),
    district      text,
    unit_id       text,
    crew_id       text,
    incident_id   text,
    supply_area   text,
    police_kind   text,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    resolved_at   timestamptz,
    closed_at     timestamptz,
    record        jsonb NOT NULL
);
CREATE INDEX tickets_open_created ON tickets (created_at) WHERE open;
CREATE INDEX tickets_state_created ON tickets (state, created_at);
CREATE INDEX tickets_created ON tickets (created_at);
CREATE INDEX tickets_phone_created ON tickets (caller_phone, created_at) WHERE caller_phone <> '';
CREATE INDEX tickets_crew_open ON tickets (crew_id) WHERE open AND crew_id IS NOT NULL;
CREATE INDEX tickets_color_open ON tickets (color, created_at) WHERE open;
CREATE INDEX tickets_point_open ON tickets (lat, lon) WHERE open AND lat IS NOT NULL;
CREATE INDEX tickets_callbacks ON tickets (resolved_at) WHERE state IN ('resolved', 'callback');
CREATE INDEX tickets_resolved ON tickets (resolved_at) WHERE resolved_at IS NOT NULL;
CREATE INDEX tickets_unit_created ON tickets (unit_id, created_at);
CREATE INDEX tickets_police_open ON tickets (created_at) WHERE open AND police_kind IS NOT NULL;
CREATE INDEX tickets_supervise_open ON tickets (created_at) WHERE open AND (color = 'red' OR supervised);

-- Every change of every ticket, never deleted: the audit trail and the source of the KPIs.
CREATE TABLE ticket_events (
    id      bigserial PRIMARY KEY,
    number  text NOT NULL REFERENCES tickets (number),
    at      timestamptz NOT NULL,
    action  text NOT NULL,
    event   jsonb NOT NULL                      -- command.tickets.event_to_dict
);
CREATE INDEX ticket_events_number ON ticket_events (number, id);
CREATE INDEX ticket_events_at ON ticket_events (at);
CREATE INDEX ticket_events_reopen ON ticket_events (number) WHERE action = 'reopen';

-- The open timed stages of open tickets (the dispatcher's queue: share of the limit left).
CREATE TABLE ticket_stages (
    number    text NOT NULL REFERENCES tickets (number) ON DELETE CASCADE,
    stage     text NOT NULL,
    deadline  timestamptz NOT NULL,
    limit_s   integer NOT NULL CHECK (limit_s > 0),
    PRIMARY KEY (number, stage)
);
CREATE INDEX ticket_stages_queue ON ticket_stages (limit_s, deadline);

-- Daily number sequences (kind 'ticket' or 'incident', day in the center's zone). A drawn number
-- is never drawn again; a failed or released draw may leave a gap.
CREATE TABLE day_sequences (
    kind  text NOT NULL,
    day   date NOT NULL,
    last  integer NOT NULL,
    PRIMARY KEY (kind, day)
);

CREATE TABLE incidents (
    incident_id    text PRIMARY KEY,
    rev            integer NOT NULL CHECK (rev > 0),
    category       text NOT NULL,
    supply_area    text,
    first_call_at  timestamptz NOT NULL,
    resolved_at    timestamptz,
    record         jsonb NOT NULL               -- incident_to_dict
);
CREATE INDEX incidents_first_call ON incidents (first_call_at);
CREATE INDEX incidents_open_area ON incidents (supply_area) WHERE resolved_at IS NULL;

-- The one proactive ticket of a sensor alarm (idempotency of alarm -> ticket).
CREATE TABLE alarm_tickets (
    alarm_key  text PRIMARY KEY,
    number     text NOT NULL REFERENCES tickets (number)
);

-- Client action ids already applied (a resent action answers instead of conflicting); kept a day.
CREATE TABLE client_actions (
    action_id   text PRIMARY KEY,
    applied_to  text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL DEFAULT now() + interval '1 day'
);
CREATE INDEX client_actions_at ON client_actions (at);
CREATE INDEX client_actions_expires ON client_actions (expires_at);

-- The transactional outbox: one row per ticket write, in the write's transaction; the relay
-- (store/outbox.py) copies rows in id order to Redis (stream tkt:changes, channel live:tickets)
-- and deletes them. A row is relayed at least once; consumers skip versions they have seen.
CREATE TABLE ticket_changes (
    id          bigserial PRIMARY KEY,
    number      text NOT NULL,
    version     integer NOT NULL,
    action      text NOT NULL,
    state       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
