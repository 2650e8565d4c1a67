-- The editor's buttons on a build run as tasks: "restart server" and "update this module"
-- (the module named in the task, then the server restarted).
ALTER TABLE tasks ADD COLUMN module text;

-- The kinds a task may have grow with features that land in other migrations; this one
-- adds its two to whatever list is in force instead of writing the whole list again.
DO $$
DECLARE
    kinds text[];
BEGIN
    SELECT array_agg(DISTINCT quoted[1]) INTO kinds
      FROM pg_constraint c,
           regexp_matches(pg_get_constraintdef(c.oid), '''([a-z_]+)''', 'g') AS quoted
     WHERE c.conrelid = 'tasks'::regclass AND c.conname = 'tasks_kind_check';
    ALTER TABLE tasks DROP CONSTRAINT tasks_kind_check;
    EXECUTE format('ALTER TABLE tasks ADD CONSTRAINT tasks_kind_check CHECK (kind IN (%s))',
                   (SELECT string_agg(DISTINCT quote_literal(kind), ', ')
                      FROM unnest(coalesce(kinds, '{}') ||
                                  ARRAY['restart_server', 'update_module']) AS kind));
END
$$;

ALTER TABLE tasks ADD CONSTRAINT tasks_update_names_module
    CHECK (kind <> 'update_module' OR (module IS NOT NULL AND build_id IS NOT NULL));
