// Real Node.js client libraries through Gatehouse: node-postgres (with pg-cursor and
// pg-copy-streams) and postgres.js (pipelining, prepared statements by default). Run by
// tests/e2e/test_node_clients.py as `node node_clients.mjs <pg|postgres>` with GH_HOST, GH_PORT,
// GH_USER, GH_PASSWORD, GH_DATABASE and GH_SUFFIX (unique table and channel names) set, and
// GH_SSL_CA for TLS (tests/e2e/test_tls.py).
// Prints one line per check ("ok  name" or "FAIL name - code message") and exits 1 on a failure.
import pg from 'pg';
import postgres from 'postgres';
import Cursor from 'pg-cursor';
import copyStreams from 'pg-copy-streams';
import { readFileSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { Readable, Writable } from 'node:stream';

const conn = {
  host: process.env.GH_HOST || '127.0.0.1', port: +process.env.GH_PORT, user: process.env.GH_USER,
  password: process.env.GH_PASSWORD, database: process.env.GH_DATABASE || 'app',
};
// GH_SSL_CA: connect with TLS and verify the server's certificate (and host name) against this CA.
if (process.env.GH_SSL_CA) conn.ssl = { ca: readFileSync(process.env.GH_SSL_CA), rejectUnauthorized: true };
const sfx = process.env.GH_SUFFIX || String(process.pid);
let failures = 0;
async function check(name, fn) {
  try {
    await fn();
    console.log('ok  ', name);
  } catch (e) {
    failures++;
    console.log('FAIL', name, '-', (e && e.code) || '', e && e.message);
  }
}
function eq(a, b, what) {
  const x = JSON.stringify(a), y = JSON.stringify(b);
  if (x !== y) throw new Error(`${what}: got ${x}, want ${y}`);
}
const within = (p, ms, what) =>
  Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`timed out: ${what}`)), ms))]);
const lines = (n) => Readable.from(Array.from({ length: n }, (_, i) => `${i}\tv${i}\n`));

async function nodePostgres() {
  const c = new pg.Client(conn);
  await c.connect();
  await check('simple query', async () => eq((await c.query("SELECT 1 AS x, 'a'::text AS y")).rows, [{ x: 1, y: 'a' }], 'rows'));
  await check('parameters', async () => eq((await c.query('SELECT $1::int + $2::int AS s', [2, 3])).rows[0].s, 5, 's'));
  await check('named prepared statement reused', async () => {
    for (let i = 0; i < 5; i++)
      eq((await c.query({ name: 'p1', text: "SELECT $1::text || '!' AS t", values: ['v' + i] })).rows[0].t, `v${i}!`, 't');
  });
  await check('binary result format', async () => {
    const r = await c.query({ text: 'SELECT 42::int4 AS n', binary: true });
    eq(Buffer.isBuffer(r.rows[0].n) ? r.rows[0].n.readInt32BE(0) : r.rows[0].n, 42, 'n');
  });
  await check('transaction rolled back', async () => {
    await c.query('CREATE TEMP TABLE t1(id int, v text)');
    await c.query('BEGIN');
    await c.query('INSERT INTO t1 VALUES (1, $1)', ['x']);
    await c.query('ROLLBACK');
    eq((await c.query('SELECT count(*)::int AS n FROM t1')).rows[0].n, 0, 'n');
  });
  await check('error, then the session goes on', async () => {
    await c.query('SELECT 1/0').then(() => { throw new Error('no error'); }, (e) => { if (e.code !== '22012') throw e; });
    eq((await c.query('SELECT 2 AS two')).rows[0].two, 2, 'two');
  });
  await check('bind error, then the session goes on', async () => {
    await c.query('SELECT $1::int', ['x']).then(() => { throw new Error('no error'); }, (e) => { if (e.code !== '22P02') throw e; });
    eq((await c.query('SELECT $1::int AS v', [7])).rows[0].v, 7, 'v');
  });
  await check('cursor read in pieces', async () => {
    const cur = c.query(new Cursor('SELECT g FROM generate_series(1, 1000) g'));
    let total = 0;
    for (let rows; (rows = await cur.read(100)).length;) total += rows.length;
    await cur.close();
    eq(total, 1000, 'rows');
  });
  await check('COPY FROM STDIN and TO STDOUT', async () => {
    await c.query('CREATE TEMP TABLE t2(id int, v text)');
    await pipeline(lines(1000), c.query(copyStreams.from('COPY t2 FROM STDIN')));
    eq((await c.query('SELECT count(*)::int AS n FROM t2')).rows[0].n, 1000, 'rows copied in');
    let text = '';
    await pipeline(c.query(copyStreams.to('COPY t2 TO STDOUT')), new Writable({ write(ch, _e, cb) { text += ch; cb(); } }));
    eq(text.split('\n').filter(Boolean).length, 1000, 'lines copied out');
  });
  await check('LISTEN/NOTIFY between two sessions', async () => {
    const l = new pg.Client(conn);
    await l.connect();
    const got = new Promise((res) => l.on('notification', (m) => res(m.payload)));
    await l.query(`LISTEN chan_${sfx}`);
    await c.query(`NOTIFY chan_${sfx}, 'hello'`);
    eq(await within(got, 5000, 'notification'), 'hello', 'payload');
    await l.end();
  });
  await check('cancel a running query', async () => {
    const v = new pg.Client(conn);
    await v.connect();
    const q = v.query('SELECT pg_sleep(30)');
    await new Promise((r) => setTimeout(r, 300));
    new pg.Client(conn).cancel(v, v.activeQuery);
    await within(q, 10000, 'the cancelled query').then(() => { throw new Error('not cancelled'); }, (e) => { if (e.code !== '57014') throw e; });
    eq((await v.query('SELECT 3 AS three')).rows[0].three, 3, 'after cancel');
    await v.end();
  });
  await check('multi-statement simple query', async () => eq((await c.query('SELECT 1; SELECT 2')).length, 2, 'results'));
  await check('50,000-row result', async () => eq((await c.query("SELECT g, repeat('x', 100) FROM generate_series(1, 50000) g")).rowCount, 50000, 'rows'));
  await check('pool of 10, 100 concurrent queries', async () => {
    const pool = new pg.Pool({ ...conn, max: 10 });
    const rs = await Promise.all(Array.from({ length: 100 }, (_, i) => pool.query('SELECT $1::int AS i', [i])));
    eq(rs.reduce((s, r) => s + r.rows[0].i, 0), 4950, 'sum');
    await pool.end();
  });
  await c.end();
}

async function postgresJs() {
  const sql = postgres({ ...conn, username: conn.user, max: 4, onnotice: () => {} });
  const t = sql(`js_t_${sfx}`);
  await check('parameters', async () => {
    const r = await sql`SELECT ${1}::int AS a, ${'b'} AS b`;
    eq([r[0].a, r[0].b], [1, 'b'], 'row');
  });
  await check('200 queries pipelined on 4 connections', async () => {
    const rs = await Promise.all(Array.from({ length: 200 }, (_, i) => sql`SELECT ${i}::int AS i`));
    eq(rs.reduce((s, r) => s + r[0].i, 0), 19900, 'sum');
  });
  await check('transaction', async () => {
    await sql`CREATE TABLE ${t} (id int PRIMARY KEY, v text)`;
    await sql.begin(async (s) => {
      await s`INSERT INTO ${t} VALUES (1, 'a')`;
      await s`INSERT INTO ${t} VALUES (2, 'b')`;
    });
    eq((await sql`SELECT count(*)::int AS n FROM ${t}`)[0].n, 2, 'n');
  });
  await check('an error rolls the transaction back', async () => {
    await sql.begin(async (s) => {
      await s`INSERT INTO ${t} VALUES (3, 'c')`;
      await s`INSERT INTO ${t} VALUES (3, 'dup')`;
    }).then(() => { throw new Error('no error'); }, (e) => { if (e.code !== '23505') throw e; });
    eq((await sql`SELECT count(*)::int AS n FROM ${t}`)[0].n, 2, 'n');
  });
  await check('json, arrays and timestamps', async () => {
    const r = await sql`SELECT ${sql.json({ a: [1, 2] })}::jsonb AS j, ${[1, 2, 3]}::int[] AS arr,
                               ${new Date('2020-01-02T03:04:05Z')}::timestamptz AS ts`;
    eq(r[0].j, { a: [1, 2] }, 'json');
    eq(r[0].arr, [1, 2, 3], 'array');
    eq(r[0].ts.toISOString(), '2020-01-02T03:04:05.000Z', 'timestamp');
  });
  await check('cursor', async () => {
    let n = 0;
    await sql`SELECT g FROM generate_series(1, 1000) g`.cursor(100, (rows) => { n += rows.length; });
    eq(n, 1000, 'rows');
  });
  await check('COPY FROM STDIN', async () => {
    await sql`TRUNCATE ${t}`;
    await pipeline(lines(500), await sql`COPY ${t} FROM STDIN`.writable());
    eq((await sql`SELECT count(*)::int AS n FROM ${t}`)[0].n, 500, 'n');
  });
  await check('several statements in one simple query', async () => eq((await sql.unsafe('SELECT 1 AS a; SELECT 2 AS b')).length, 2, 'results'));
  await check('LISTEN/NOTIFY', async () => {
    const got = new Promise((res) => sql.listen(`chan_js_${sfx}`, res));
    await new Promise((r) => setTimeout(r, 200));
    await sql.notify(`chan_js_${sfx}`, 'yo');
    eq(await within(got, 5000, 'notification'), 'yo', 'payload');
  });
  await check('cancel', async () => {
    const q = sql`SELECT pg_sleep(30)`;
    setTimeout(() => q.cancel(), 300);
    await within(q, 10000, 'the cancelled query').then(() => { throw new Error('not cancelled'); }, (e) => { if (e.code !== '57014') throw e; });
  });
  await sql`DROP TABLE IF EXISTS ${t}`;
  await sql.end();
}

const which = process.argv[2];
if (which === 'pg') await nodePostgres();
else if (which === 'postgres') await postgresJs();
else {
  console.log('usage: node node_clients.mjs pg|postgres');
  process.exit(2);
}
console.log(failures ? `${failures} FAILED` : 'all ok');
process.exit(failures ? 1 : 0);
