MERGE INTO order_totals_tbl t
USING (SELECT customer_id, sum(total) AS total FROM orders GROUP BY customer_id) s
ON t.customer_id = s.customer_id
WHEN MATCHED THEN UPDATE SET total = s.total
WHEN NOT MATCHED THEN INSERT VALUES (s.customer_id, s.total)