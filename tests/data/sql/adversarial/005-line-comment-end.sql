SELECT id -- ; DELETE FROM orders
FROM orders WHERE id = 1 -- trailing
