DROP TYPE IF EXISTS public.order_status;
