-- flywheel.current_flow: the newest active incidents at the last refresh, a materialized view.
--
-- Answers the current_flow of flywheel_json() and Grafana's Flow table: the rows of
-- flywheel.newest_active_incidents (its definition) as of the last refresh. flywheel.refresh()
-- refreshes it CONCURRENTLY in its own transaction when its rows would change
-- (flywheel.write_snapshot), so readers never wait for a refresh, and a DBA's own
-- REFRESH MATERIALIZED VIEW CONCURRENTLY flywheel.current_flow gives the same rows. The unique index
-- on position is what CONCURRENTLY needs. Owned by flywheel_owner (security/ownership.sql): only
-- the owner (and its members, the migrating role) may refresh it.
--
-- drop: drop materialized view if exists flywheel.current_flow
create materialized view flywheel.current_flow as
select position, incident_id, alertname, status, current_node, created_at
from flywheel.newest_active_incidents;

create unique index current_flow_position on flywheel.current_flow (position);

comment on materialized view flywheel.current_flow is
    'The newest active incidents (investigating or mitigating) at the last refresh, current_flow_limit of them; flywheel_json() lists them. Materializes flywheel.newest_active_incidents; refreshed concurrently by flywheel.refresh() when it changes.';
-- The columns mean what those of its definition mean: copy those comments, so the two never disagree.
select flywheel.comment_columns_like('flywheel.current_flow', array['flywheel.newest_active_incidents']::regclass[]);
