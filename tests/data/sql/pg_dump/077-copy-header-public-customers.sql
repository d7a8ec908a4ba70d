COPY public.customers (id, email, full_name, ssn, created_at) FROM stdin;
