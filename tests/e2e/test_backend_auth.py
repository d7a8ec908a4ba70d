"""The proxy's own login to the database: SCRAM (everywhere else), md5 and cleartext here."""
from __future__ import annotations

import pytest
import psycopg

from conftest import connect, target


@pytest.fixture(scope="module")
def legacy_auth(pg):
    """Roles whose pg_hba lines ask for md5 and for a cleartext password."""
    pg.psql("drop role if exists gh_md5; drop role if exists gh_clear")
    pg.psql("set password_encryption = 'md5'; create role gh_md5 login password 'md5-pw'")
    pg.psql("create role gh_clear login password 'clear-pw'")
    hba = pg.data / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text("host all gh_md5 127.0.0.1/32 md5\n"
                   "host all gh_clear 127.0.0.1/32 password\n" + original)
    pg.psql("select pg_reload_conf()")
    assert pg.psql("select rolpassword like 'md5%' from pg_authid where rolname = 'gh_md5'") == "t"
    yield
    hba.write_text(original)
    pg.psql("select pg_reload_conf()")


def test_md5_and_cleartext_backend_logins(pg, make_proxy, legacy_auth):
    cfg = make_proxy.config()
    cfg["targets"] = [target("md5t", pg.port, "gh_md5", "md5-pw"), target("cleart", pg.port, "gh_clear", "clear-pw"),
                      target("badmd5", pg.port, "gh_md5", "not-the-password")]
    proxy = make_proxy(cfg)
    with connect(proxy, dbname="md5t") as c:
        assert c.execute("select current_user, current_setting('gatehouse.identity')").fetchone() == \
            ("gh_md5", "alice")
    # cleartext is only sent because the backend is on loopback
    with connect(proxy, dbname="cleart") as c:
        assert c.execute("select current_user").fetchone() == ("gh_clear",)
    with pytest.raises(psycopg.OperationalError) as ei:
        connect(proxy, dbname="badmd5")
    msg = str(ei.value)
    assert "could not log in to the database server of target \"badmd5\"" in msg
    assert "not-the-password" not in msg and "not-the-password" not in proxy.log()
