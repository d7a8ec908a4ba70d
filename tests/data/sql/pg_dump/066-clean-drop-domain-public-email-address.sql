DROP DOMAIN IF EXISTS public.email_address;
