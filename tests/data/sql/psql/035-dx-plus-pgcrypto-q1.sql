SELECT e.extname, e.oid
FROM pg_catalog.pg_extension e
WHERE e.extname OPERATOR(pg_catalog.~) '^(pgcrypto)$' COLLATE pg_catalog.default
ORDER BY 1;