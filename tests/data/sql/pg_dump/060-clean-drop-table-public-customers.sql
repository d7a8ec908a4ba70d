DROP TABLE IF EXISTS public.customers;
