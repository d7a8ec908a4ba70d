SET default_table_access_method = heap;
