DO LANGUAGE plpgsql $do$
DECLARE r record;
BEGIN
  FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' LOOP
    EXECUTE format('TRUNCATE %I', r.tablename);
  END LOOP;
END
$do$