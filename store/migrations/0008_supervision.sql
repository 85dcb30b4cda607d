-- 督办单 (supervision orders): a supervisor, or the rules (a red ticket, an overdue stage), tells the
-- ticket's responsible unit to answer by a deadline (store/supervision.py, rules in
-- command/supervision.py). Issuing again while one is open urges it (urgings + 1, the new message
-- replaces the old one; each is an audit event on the ticket's timeline). The unit answers; left
-- unanswered at its deadline it escalates to the unit above (escalated_to_unit, a new deadline).
-- A ticket has at most one open 督办 at a time; `causes` remembers which rules issued or urged it,
-- so each rule acts once per ticket and cause.

CREATE TABLE supervisions (
    id                 bigserial PRIMARY KEY,
    number             text NOT NULL REFERENCES tickets (number),
    unit_id            text NOT NULL,                  -- the ticket's responsible unit when issued
    issued_by          text NOT NULL,                  -- a user, or 'system' for the rules
    issued_at          timestamptz NOT NULL,
    deadline           timestamptz NOT NULL,
    message            text NOT NULL CHECK (message <> ''),
    causes             text[] NOT NULL DEFAULT '{}',   -- rules that issued or urged it: red, overdue:<stage>
    urgings            integer NOT NULL DEFAULT 0 CHECK (urgings >= 0),
    last_urged_at      timestamptz,
    answered_at        timestamptz,
    answered_by        text,
    answer             text,
    escalated_to_unit  text,                           -- the unit above that now holds it
    escalated_at       timestamptz,
    escalations        integer NOT NULL DEFAULT 0 CHECK (escalations >= 0),
    closed_at          timestamptz,                    -- answered, or its ticket ended
    holder             text GENERATED ALWAYS AS (coalesce(escalated_to_unit, unit_id)) STORED,
    CONSTRAINT supervisions_answer_whole CHECK ((answered_at IS NULL) = (answered_by IS NULL)
                                                AND (answered_at IS NULL) = (answer IS NULL)),
    CONSTRAINT supervisions_answered_closed CHECK (answered_at IS NULL OR closed_at IS NOT NULL)
);
CREATE UNIQUE INDEX supervisions_one_open ON supervisions (number) WHERE closed_at IS NULL;
CREATE INDEX supervisions_open_by_unit ON supervisions (holder, deadline) WHERE closed_at IS NULL;
CREATE INDEX supervisions_due ON supervisions (deadline) WHERE closed_at IS NULL;
CREATE INDEX supervisions_unit_issued ON supervisions (unit_id, issued_at);
CREATE INDEX supervisions_number ON supervisions (number, issued_at);
