-- The review chains' roles (issue #23, command/review.py): 班长 team_leader (初审), 督办协调席
-- coordinator, 主任 director.
ALTER TABLE accounts DROP CONSTRAINT accounts_role_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_role_check
    CHECK (role IN ('agent', 'dispatcher', 'crew', 'supervisor', 'admin', 'unit',
                    'team_leader', 'coordinator', 'director'));
