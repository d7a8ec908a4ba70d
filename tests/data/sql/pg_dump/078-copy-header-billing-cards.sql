COPY billing.cards (id, customer_id, number, expires) FROM stdin;
