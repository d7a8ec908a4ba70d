SET default_tablespace = '';
