"""A 1,000,000-row result streams through the proxy without the proxy's memory growing with it."""
from __future__ import annotations

import time

from conftest import connect

ROWS = 1_000_000
QUERY = "select g, repeat('x', 100) from generate_series(1, 1000000) g"
LIMIT_KIB = 32 * 1024


def _warm_up(proxy):
    # Baseline after the proxy has served a session (allocators, TLS-free buffers, thread stacks).
    with connect(proxy) as c:
        c.execute("select repeat('w', 100000) from generate_series(1, 20)").fetchall()


def test_million_rows_copy_to_stdout(make_proxy):
    proxy = make_proxy()
    _warm_up(proxy)
    base = proxy.hwm_kib()
    rows = 0
    nbytes = 0
    last = b""
    t0 = time.time()
    with connect(proxy) as c:
        with c.cursor() as cur:
            with cur.copy(f"copy ({QUERY}) to stdout") as cp:
                for chunk in cp:
                    b = bytes(chunk)
                    rows += b.count(b"\n")
                    nbytes += len(b)
                    last = b
        assert c.execute("select 'still usable'").fetchone() == ("still usable",)
    elapsed = time.time() - t0
    assert rows == ROWS
    assert last.endswith(b"1000000\t" + b"x" * 100 + b"\n")
    assert nbytes > 100 * ROWS
    growth = proxy.hwm_kib() - base
    print(f"hwm growth: copy {growth} KiB, base {base} KiB, {elapsed:.1f}s")
    assert growth < LIMIT_KIB, f"proxy peak RSS grew by {growth} KiB streaming {nbytes} bytes in {elapsed:.1f}s"


def test_million_rows_server_side_cursor_and_slow_reader(make_proxy):
    """A named cursor fetched in big batches, then a plain query read by a slow client: the proxy must
    apply backpressure instead of buffering what the database sends."""
    proxy = make_proxy()
    _warm_up(proxy)
    base = proxy.hwm_kib()
    with connect(proxy) as c:
        with c.transaction():
            with c.cursor(name="million") as cur:
                cur.execute(QUERY)
                count = 0
                while True:
                    batch = cur.fetchmany(100_000)
                    if not batch:
                        break
                    count += len(batch)
                    assert len(batch[-1][1]) == 100
                assert count == ROWS
    growth = proxy.hwm_kib() - base
    assert growth < LIMIT_KIB, f"proxy peak RSS grew by {growth} KiB (server-side cursor)"

    # A raw client that reads slowly: the database produces ~110 MB far faster than we consume.
    from pgwire import connect as raw_connect, query
    rc = raw_connect(proxy.port, "alice", "alice-secret", timeout=30)
    try:
        rc.send(query(QUERY))
        time.sleep(1.0)  # let the database run ahead; the proxy must not soak it up
        mid_growth = proxy.hwm_kib() - base
        data_rows = 0
        while True:
            t, body = rc.read_message()
            if t == b"D":
                data_rows += 1
            elif t == b"Z":
                break
            elif t == b"E":
                raise AssertionError(body)
        assert data_rows == ROWS
    finally:
        rc.close()
    assert mid_growth < LIMIT_KIB, f"proxy buffered {mid_growth} KiB for a slow reader"
    growth = proxy.hwm_kib() - base
    print(f"hwm growth: slow reader {growth} KiB")
    assert growth < LIMIT_KIB, f"proxy peak RSS grew by {growth} KiB (slow reader)"
