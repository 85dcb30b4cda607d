-- An incident handled once (issue #24; store/incidents.py, rules in command/outages.py):
-- the audit trail of an incident's own changes (its restoration time, its outage notice, its
-- resolution), never updated or deleted, and its outage notice (停水/停电通知), one per incident.
-- The ETR itself lives in the incident's record (incidents.record: etr, etr_note, etr_by, etr_set_at).

CREATE TABLE incident_events (
    id           bigserial PRIMARY KEY,
    incident_id  text NOT NULL REFERENCES incidents (incident_id),
    action       text NOT NULL,                 -- etr_set, notice_published, notice_updated, notice_withdrawn, resolved
    actor_id     text NOT NULL,
    role         text NOT NULL,
    at           timestamptz NOT NULL,
    note         text NOT NULL DEFAULT '',
    data         jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX incident_events_incident ON incident_events (incident_id, id);

CREATE TABLE outage_notices (
    incident_id   text PRIMARY KEY REFERENCES incidents (incident_id),
    category      text NOT NULL,
    kind          text NOT NULL,                -- 停水, 停电, 停气, 停暖
    area_id       text NOT NULL,                -- the incident's supply area
    area_text     text NOT NULL CHECK (area_text <> ''),
    starts_at     timestamptz NOT NULL,
    etr           timestamptz,
    text          text NOT NULL CHECK (text <> ''),
    text_custom   boolean NOT NULL DEFAULT false,
    state         text NOT NULL CHECK (state IN ('active', 'withdrawn')),
    published_by  text NOT NULL,
    published_at  timestamptz NOT NULL,
    updated_by    text NOT NULL,
    updated_at    timestamptz NOT NULL,
    withdrawn_at  timestamptz,
    withdrawn_by  text,
    CONSTRAINT outage_notices_withdrawn CHECK ((state = 'withdrawn') = (withdrawn_at IS NOT NULL))
);
CREATE INDEX outage_notices_active ON outage_notices (published_at) WHERE state = 'active';
