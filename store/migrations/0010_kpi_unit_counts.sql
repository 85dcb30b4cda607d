-- KPI rows for the unit report (考核): the packed row grows by seven int16 counts (returns asked
-- and approved, extensions asked and approved, 督办 issued, urged, escalated; command/kpi_facts.py
-- UNIT_COUNTS), so rows packed before are of another width and folds lack the counts. Both
-- tables are derived from ticket_events: emptied here, the KPI service's sweep at start-up folds
-- every ticket again (store/kpi.py, services/kpi_service.py). kpi_names keeps its codes.
TRUNCATE kpi_folds, kpi_facts;
