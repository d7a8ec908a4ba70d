"""asyncpg (binary protocol, prepared statements, COPY in binary) against one server: run by
tests/e2e/test_asyncpg.py through Gatehouse and directly. Arguments: a DSN and a suffix for
unique table and channel names. Prints one line per check, "ok   name" or "FAIL name - ...", then
"all ok" or "N FAILED", and exits 1 on a failure.
"""
import asyncio
import datetime
import decimal
import io
import json
import sys
import uuid

import asyncpg

failures = 0
async def check(name, coro):
    global failures
    try:
        await coro
        print("ok  ", name)
    except Exception as e:
        failures += 1
        print("FAIL", name, "-", getattr(e, "sqlstate", ""), repr(e))

async def fails_then_goes_on(c, run, error, after: int):
    """`run()` raises `error`; the connection then answers SELECT `after`."""
    try:
        await run()
        raise AssertionError("no error")
    except error:
        pass
    assert await c.fetchval(f"SELECT {after}") == after


async def main(dsn, sfx):
    c = await asyncpg.connect(dsn)
    async def basic():
        assert await c.fetchval("SELECT $1::int + 1", 41) == 42
    await check("fetchval", basic())
    async def types():
        r = await c.fetchrow("SELECT $1::uuid u, $2::numeric n, $3::timestamptz t, $4::jsonb j, $5::int[] a, $6::bytea b",
                             uuid.UUID(int=5), decimal.Decimal("1.50"), datetime.datetime(2020, 1, 2, tzinfo=datetime.timezone.utc), json.dumps({"a": 1}), [1, 2], b"\x00\x01")
        assert r["u"] == uuid.UUID(int=5) and r["n"] == decimal.Decimal("1.50") and r["a"] == [1, 2] and r["b"] == b"\x00\x01", r
    await check("binary types", types())
    async def prepared():
        st = await c.prepare("SELECT $1::text || 'x'")
        for i in range(10):
            assert await st.fetchval(str(i)) == f"{i}x"
    await check("prepared statement", prepared())
    async def tx():
        await c.execute(f"CREATE TABLE apg_{sfx} (id int primary key, v text)")
        async with c.transaction():
            await c.executemany(f"INSERT INTO apg_{sfx} VALUES ($1, $2)", [(i, f"v{i}") for i in range(500)])
        try:
            async with c.transaction():
                await c.execute(f"INSERT INTO apg_{sfx} VALUES (1000, 'a')")
                await c.execute(f"INSERT INTO apg_{sfx} VALUES (1, 'dup')")
        except asyncpg.UniqueViolationError:
            pass
        assert await c.fetchval(f"SELECT count(*) FROM apg_{sfx}") == 500
    await check("executemany + transactions", tx())
    async def cursor():
        n = 0
        async with c.transaction():
            async for _ in c.cursor("SELECT g FROM generate_series(1, 5000) g", prefetch=100):
                n += 1
        assert n == 5000, n
    await check("cursor", cursor())
    async def copy():
        await c.execute(f"TRUNCATE apg_{sfx}")
        await c.copy_records_to_table(f"apg_{sfx}", records=[(i, f"v{i}") for i in range(1000)])
        assert await c.fetchval(f"SELECT count(*) FROM apg_{sfx}") == 1000
        buf = io.BytesIO()
        await c.copy_from_table(f"apg_{sfx}", output=buf, format="csv")
        assert buf.getvalue().count(b"\n") == 1000
    await check("copy (binary in, csv out)", copy())
    await check("error then continue", fails_then_goes_on(c, lambda: c.fetchval("SELECT 1/0"),
                                                          asyncpg.DivisionByZeroError, 2))
    async def notify():
        c2 = await asyncpg.connect(dsn)
        fut = asyncio.get_running_loop().create_future()
        await c2.add_listener(f"ch_{sfx}", lambda *a: fut.set_result(a[3]))
        await c.execute(f"NOTIFY ch_{sfx}, 'hi'")
        assert await asyncio.wait_for(fut, 5) == "hi"
        await c2.close()
    await check("listen/notify", notify())
    await check("timeout cancels", fails_then_goes_on(c, lambda: c.execute("SELECT pg_sleep(20)", timeout=0.5),
                                                      asyncio.TimeoutError, 3))
    async def pool():
        p = await asyncpg.create_pool(dsn, min_size=2, max_size=8)
        rs = await asyncio.gather(*[p.fetchval("SELECT $1::int", i) for i in range(200)])
        assert sum(rs) == 19900
        await p.close()
    await check("pool", pool())
    await c.execute(f"DROP TABLE IF EXISTS apg_{sfx}")
    await c.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
print("all ok" if not failures else f"{failures} FAILED")
sys.exit(1 if failures else 0)
