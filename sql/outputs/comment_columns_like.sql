-- flywheel.comment_columns_like(): comment each column of a read model as the column it shows is
-- commented.
--
-- Answers nothing at run time: the files of flywheel.summary and flywheel.current_flow call it once,
-- when they are created, so that `\d+` describes their columns with the words of the table or view
-- they come from and the two can never disagree.
--
-- drop: drop function if exists flywheel.comment_columns_like(regclass, regclass[])
create function flywheel.comment_columns_like(target regclass, sources regclass[])
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    column_name name;
begin
    for column_name in
        select attname from pg_attribute where attrelid = target and attnum > 0 and not attisdropped
    loop
        execute format('comment on column %s.%I is %L', target, column_name,
                       (select col_description(source.attrelid, source.attnum)
                        from pg_attribute as source
                        join unnest(sources) with ordinality as listed (relation, rank) on listed.relation = source.attrelid
                        where source.attname = column_name and not source.attisdropped
                        order by listed.rank
                        limit 1));
    end loop;
end
$$;

comment on function flywheel.comment_columns_like(regclass, regclass[]) is
    'Comments every column of target with the comment of the same-named column of the first of sources that has one; the read models'' files call it when they are created';
