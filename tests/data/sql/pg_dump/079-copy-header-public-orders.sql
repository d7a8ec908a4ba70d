COPY public.orders (id, customer_id, status, total, meta, updated_at) FROM stdin;
