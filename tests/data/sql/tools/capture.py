#!/usr/bin/env python3
"""Re-capture the psql/ and pg_dump/ categories from a live PostgreSQL 15.

Usage (see ../README.md for starting the throw-away server):
    tools/capture.py --port 55999 --host /tmp --out /tmp/corpus-capture

Writes candidate files to OUT/psql and OUT/pg_dump. The committed corpus keeps a
selection of them (near-duplicate shapes dropped); compare by file name suffix and copy
over the ones you want. OIDs inside psql's queries change from run to run.
"""
import argparse, json, os, re, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))

PSQL_NAMES = {'\\d': 'd-relations', '\\dt': 'dt-tables', '\\dT': 'dT-types', '\\dD': 'dD-domains',
    '\\dE': 'dE-foreign-tables', '\\dC': 'dC-casts', '\\dd': 'dd-descriptions', '\\dc': 'dc-conversions',
    '\\dRp': 'dRp-publications', '\\dFp': 'dFp-ts-parsers', '\\dL': 'dL-languages', '\\do': 'do-operators',
    '\\dP': 'dP-partitioned', '\\dp': 'dp-privileges', '\\da': 'da-aggregates', '\\dA': 'dA-access-methods',
    '\\dO': 'dO-collations', '\\dX': 'dX-extended-stats', '\\dx': 'dx-extensions', '\\dn': 'dn-schemas',
    '\\dn+': 'dn-plus-schemas', '\\df': 'df-functions', '\\du': 'du-roles', '\\l': 'l-databases',
    '\\l+': 'l-plus-databases', '\\dv': 'dv-views', '\\dm': 'dm-matviews', '\\di': 'di-indexes',
    '\\di+': 'di-plus-indexes', '\\ds': 'ds-sequences', '\\dy': 'dy-event-triggers',
    '\\drds': 'drds-role-settings', '\\des': 'des-servers', '\\dew': 'dew-fdws', '\\deu': 'deu-user-mappings',
    '\\dconfig': 'dconfig-settings', '\\db': 'db-tablespaces', '\\ddp': 'ddp-default-privileges'}


def run(args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


def capture_psql(conn, out):
    os.makedirs(out, exist_ok=True)
    seen_shapes, n = set(), 0
    for cmd in [l.rstrip('\n') for l in open(os.path.join(HERE, 'psql-meta-commands.txt')) if l.strip()]:
        stdout = run(['psql', *conn, '-E', '-X', '-c', cmd, 'shop'])
        for k, part in enumerate(stdout.split('********* QUERY **********\n')[1:]):
            q = part.split('\n**************************\n')[0]
            shape = re.sub(r"'\d+'", "'N'", q)
            shape = re.sub(r"\^\(.*?\)\$", 'RX', shape)
            if shape in seen_shapes:
                continue
            seen_shapes.add(shape)
            n += 1
            name = PSQL_NAMES.get(cmd) or cmd.replace('\\', '').replace('+', '-plus').replace('*', 'all').replace('.', '-')
            name = re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-').lower()
            with open(os.path.join(out, f'{n:03d}-{name}-q{k + 1}.sql'), 'w', newline='') as f:
                f.write(q)  # the query exactly as psql sent it (no trailing newline)


def slug(s):
    return re.sub(r'[^a-z0-9]+', '-', s.lower()).strip('-')[:40]


def toc_blocks(text):
    text = re.sub(r'^\\(un)?restrict .*\n', '', text, flags=re.M)
    text = re.sub(r'^\\connect .*\n', '', text, flags=re.M)
    parts = re.split(r'(?m)^(?=--\n-- (?:Name|Data for Name): )', text)
    return parts[0], parts[1:]


def capture_pg_dump(conn, out):
    os.makedirs(out, exist_ok=True)
    dump = lambda *a: run(['pg_dump', *conn, *a, 'shop'])
    files = []
    pre, rest = toc_blocks(dump('--schema-only'))
    files.append(('preamble-settings', re.search(r'(?ms)^SET statement_timeout.*?^SET row_security = off;\n', pre).group(0)))
    for b in rest:
        b = b.split('--\n-- PostgreSQL database dump complete')[0]
        h = re.match(r'--\n-- Name: (.*?); Type: (.*?);', b)
        b = b.rstrip('\n') + '\n'
        m = re.search(r'(?ms)\n(SET default_tablespace.*)$', b)
        if m:
            b = b[:m.start() + 1].rstrip('\n') + '\n'
            for line in m.group(1).strip().split('\n\n'):
                files.append(('set-' + slug(line.split('=')[0].replace('SET', '')), line.strip() + '\n'))
        files.append((slug(h.group(2)) + '-' + slug(h.group(1)), b))
    clean = dump('--schema-only', '--clean', '--if-exists')
    drops = [l for l in clean.splitlines(True) if re.match(r'^(DROP|ALTER TABLE IF EXISTS)', l)]
    for line in drops:
        files.append(('clean-' + slug(line.rstrip(';\n')), line))
    files.append(('clean-all-drops', ''.join(drops)))
    create = dump('--schema-only', '--clean', '--if-exists', '-C')
    m = re.search(r'(?ms)^DROP DATABASE IF EXISTS shop;\n.*?^ALTER DATABASE shop OWNER TO postgres;\n', create)
    for line in re.findall(r'(?m)^.*;$', m.group(0)):
        files.append(('create-db-' + slug(' '.join(line.split()[:2])), line + '\n'))
    _, rest = toc_blocks(dump('--data-only', '--inserts'))
    for b in rest:
        if 'INSERT' in b or 'setval' in b:
            h = re.match(r'--\n-- (?:Data for )?Name: (.*?); Type: (.*?);', b)
            b = b.split('--\n-- PostgreSQL database dump complete')[0].rstrip('\n') + '\n'
            files.append((('inserts-' if 'INSERT' in b else '') + slug(h.group(2)) + '-' + slug(h.group(1)), b))
    for line in dump('--data-only').splitlines(True):
        if line.startswith('COPY'):
            files.append(('copy-header-' + slug(line.split()[1]), line))
    g = run(['pg_dumpall', *conn, '--globals-only'])
    files.append(('globals-roles', re.search(r'(?ms)^CREATE ROLE app_readonly;.*?BYPASSRLS;\n(?=\n)', g).group(0)))
    files.append(('globals-preamble', re.search(r'(?ms)^SET default_transaction_read_only = off;\n\nSET client_encoding.*?on;\n', g).group(0)))
    seen, n = set(), 0
    for name, text in files:
        if text in seen:
            continue
        seen.add(text)
        n += 1
        with open(os.path.join(out, f'{n:03d}-{name}.sql'), 'w', newline='') as f:
            f.write(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--host', default='/tmp')
    ap.add_argument('--port', default='55999')
    ap.add_argument('--user', default='postgres')
    ap.add_argument('--out', required=True)
    ap.add_argument('--load-schema', action='store_true', help='create roles, the shop database and its objects first')
    a = ap.parse_args()
    conn = ['-h', a.host, '-p', a.port, '-U', a.user]
    if a.load_schema:
        run(['psql', *conn, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', os.path.join(HERE, 'schema.psql'), 'postgres'])
    capture_psql(conn, os.path.join(a.out, 'psql'))
    capture_pg_dump(conn, os.path.join(a.out, 'pg_dump'))


if __name__ == '__main__':
    main()
