#!/usr/bin/env node
// Verifies compact JWS tokens against a JWKS with jose (an independent implementation), for the
// fixture's own tests: stdin {jwks, tokens:[...]} -> stdout [{ok, alg, kid, error?}, ...].
import { compactVerify, createLocalJWKSet, decodeProtectedHeader } from 'jose';

let input = '';
for await (const chunk of process.stdin) input += chunk;
const { jwks, tokens } = JSON.parse(input);
const keys = createLocalJWKSet(jwks);
const out = [];
for (const token of tokens) {
  const { alg, kid } = decodeProtectedHeader(token);
  try {
    await compactVerify(token, keys, { algorithms: ['RS256', 'PS256', 'ES256', 'ES384', 'EdDSA', 'Ed25519'] });
    out.push({ ok: true, alg, kid });
  } catch (err) {
    out.push({ ok: false, alg, kid, error: `${err.code ?? err.name}: ${err.message}` });
  }
}
process.stdout.write(`${JSON.stringify(out)}\n`);
