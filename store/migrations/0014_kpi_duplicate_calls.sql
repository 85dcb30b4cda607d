-- KPI rows count duplicate calls (duplicate_call: another caller about the same problem, which
-- joins the ticket's call count without colouring it; command/kpi_facts.py): the packed row grows
-- by one int16 count (136 bytes for a report instead of 128), so rows packed before are of another
-- width and folds lack the count. Both tables are derived from ticket_events: emptied here, the
-- KPI service's sweep at start-up folds every ticket again (as in 0010).
TRUNCATE kpi_folds, kpi_facts;
