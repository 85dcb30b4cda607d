-- The 110 police linkage (store/police.py): the outbox of messages to 110, the inbound
-- idempotency replies and nonces, the links between 110 incidents and our tickets, and each
-- ticket's last police message.

-- One outbound message (handover or result report), written before the first attempt to send
-- it; never deleted. `body` is the exact signed JSON (text, not jsonb: the signature covers the
-- bytes). Delivery state as command.police.OutboxEntry: while `state` is 'sent' an attempt holds
-- the entry until `next_attempt_at` (the lease).
CREATE TABLE police_outbox (
    message_id          text PRIMARY KEY,
    ticket_number       text NOT NULL,
    seq                 integer NOT NULL CHECK (seq > 0),   -- per ticket, in the order of sending
    body                text NOT NULL,
    idempotency_key     text NOT NULL UNIQUE,              -- an enqueue with a known key adds nothing
    kind                text NOT NULL CHECK (kind IN ('handover', 'result_report')),
    state               text NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'sent', 'acked', 'failed_alarmed')),
    attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at     timestamptz NOT NULL,
    created_at          timestamptz NOT NULL,
    first_sent_at       timestamptz,
    acked_at            timestamptz,
    alarmed_at          timestamptz,
    last_error          text NOT NULL DEFAULT '',
    police_incident_id  text,                               -- from 110's acknowledgement
    UNIQUE (ticket_number, seq)
);
CREATE INDEX police_outbox_unacked ON police_outbox (created_at) WHERE state <> 'acked';

-- Inbound Idempotency-Keys: 'processing' while the first request is handled (expires after
-- 60 s, so a crashed handler's key can be taken again), then 'done' with its reply, kept 7 days
-- for replays. An expired row counts as absent and is purged.
CREATE TABLE police_inbound (
    idempotency_key  text PRIMARY KEY,
    state            text NOT NULL CHECK (state IN ('processing', 'done')),
    reply_status     integer,
    reply_body       jsonb,
    expires_at       timestamptz NOT NULL
);
CREATE INDEX police_inbound_expires ON police_inbound (expires_at);

-- Nonces of accepted inbound requests (the replay store), kept twice the allowed clock skew.
CREATE TABLE police_nonces (
    nonce       text PRIMARY KEY,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX police_nonces_expires ON police_nonces (expires_at);

-- A 110 incident id and our ticket: handovers acknowledged with an incident id, and incidents
-- 110 transferred to us. ticket_number is NULL while a transfer's ticket is being created.
CREATE TABLE police_incidents (
    police_incident_id  text PRIMARY KEY,
    ticket_number       text
);

-- The 110 link of a ticket (the latest one): direction 'in' transferred to us, 'out' handed over.
CREATE TABLE police_tickets (
    ticket_number       text PRIMARY KEY,
    police_incident_id  text NOT NULL,
    direction           text NOT NULL CHECK (direction IN ('in', 'out')),
    message_id          text NOT NULL
);

-- The last police message of a ticket, either direction (rendered as CAP by the API).
CREATE TABLE police_last_messages (
    ticket_number  text PRIMARY KEY,
    direction      text NOT NULL CHECK (direction IN ('in', 'out')),
    body           text NOT NULL
);
