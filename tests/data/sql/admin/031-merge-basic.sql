MERGE INTO customers AS t
USING staging_customers AS s ON t.email = s.email
WHEN MATCHED AND s.deleted THEN DELETE
WHEN MATCHED THEN UPDATE SET full_name = s.full_name
WHEN NOT MATCHED THEN INSERT (email, full_name) VALUES (s.email, s.full_name)