-- flywheel.newest_active_incidents: the current flow of metrics.md as the refresh last read it.
--
-- Answers "which incidents are in the flywheel right now, and at which node?": the
-- current_flow_limit newest incidents investigating or mitigating (by created_at, ties by
-- incident_id, both descending), numbered from 1, with the node each is at. It reads the tracked
-- incidents, which hold every active incident as the last refresh read it (through their partial
-- index, without a sort); a refresh that cannot track (the source lacks an index, see
-- flywheel-sync check) tracks just these incidents, so the definition is the same in both modes.
-- flywheel.current_flow materializes it; read that (it is what flywheel_json() and Grafana show).
--
-- When changing this, also change: flywheel.current_flow (its unique index), docs/metrics.md.
--
-- drop: drop view if exists flywheel.newest_active_incidents
create view flywheel.newest_active_incidents as
select row_number() over (order by newest.created_at desc nulls last, newest.incident_id desc)::integer as position,
       newest.incident_id,
       newest.alertname,
       newest.status,
       case newest.status when 'investigating' then 'diagnosis' else 'execution' end as current_node,
       newest.created_at
from (select tracked.incident_id, tracked.alertname, tracked.status, tracked.created_at
      from flywheel.tracked_incidents as tracked
      where tracked.status in ('investigating', 'mitigating')
      order by tracked.created_at desc nulls last, tracked.incident_id desc
      limit (flywheel.setting('current_flow_limit') #>> '{}')::integer) as newest;

comment on view flywheel.newest_active_incidents is
    'The current_flow_limit newest active incidents (investigating or mitigating) as the last refresh tracked them, newest first: the definition flywheel.current_flow materializes';
comment on column flywheel.newest_active_incidents.position is '1 = newest (created_at descending, then incident_id descending)';
comment on column flywheel.newest_active_incidents.incident_id is 'incidents.incident_id, as text';
comment on column flywheel.newest_active_incidents.alertname is 'incidents.alertname as stored (NULL or blank shows as "unknown" in JSON)';
comment on column flywheel.newest_active_incidents.status is 'investigating or mitigating';
comment on column flywheel.newest_active_incidents.current_node is 'Flywheel node the incident is at: diagnosis (investigating) or execution (mitigating)';
comment on column flywheel.newest_active_incidents.created_at is 'incidents.created_at';
