-- flywheel.playbook_metrics(): the playbook metrics of metrics.md, as one row.
--
-- Answers "how many approved playbooks, and how many records are invalid?" and the approved
-- playbooks' runs and successes that execution_success_rate falls back to (flywheel.execution_metrics).
-- They are flywheel.playbook_totals, which the statement triggers of flywheel.count_playbooks() keep
-- in the sync worker's own transaction: no refresh counts the mirror. Valid records only
-- (sync.md, Invalid records). flywheel.write_snapshot() stores the row.
--
-- drop: drop function if exists flywheel.playbook_metrics()
create function flywheel.playbook_metrics()
returns table (playbook_count bigint, playbooks_invalid bigint, approved_runs bigint, approved_successes bigint)
language sql
stable
begin atomic
    select approved, invalid, approved_runs, approved_successes from flywheel.playbook_totals;
end;

comment on function flywheel.playbook_metrics() is
    'Approved valid playbooks (playbook_count), invalid records, and the approved ones'' runs (success_count + failure_count) and successes, as flywheel.playbook_totals keeps them';
