// Checks a Coinbase CDP API token made by paygate against the official SDK (@coinbase/cdp-sdk):
//
//   node cdp.mjs KEY_ID KEY_SECRET TOKEN METHOD HOST PATH
//
// verifies TOKEN's signature with the key's public half (jose, which the SDK signs with), makes the SDK's own
// token for the same key and request with `generateJwt`, and prints both decoded:
//   {"verified": true|false, "error"?, "ours": {header, payload}, "official": {header, payload}}
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { generateJwt } from '@coinbase/cdp-sdk/auth';
import { decodeJwt, decodeProtectedHeader, importJWK, jwtVerify } from 'jose';

const [keyId, keySecret, token, requestMethod, requestHost, requestPath] = process.argv.slice(2);

async function publicKey() {
  if (keySecret.trim().startsWith('-----BEGIN')) return createPublicKey(createPrivateKey(keySecret));
  const raw = Buffer.from(keySecret, 'base64');
  return importJWK({ kty: 'OKP', crv: 'Ed25519', x: raw.subarray(32).toString('base64url') }, 'EdDSA');
}

const decoded = (jwt) => ({ header: decodeProtectedHeader(jwt), payload: decodeJwt(jwt) });
let verified = false;
let error;
try {
  await jwtVerify(token, await publicKey(), { issuer: 'cdp', subject: keyId });
  verified = true;
} catch (e) {
  error = String(e?.message ?? e);
}
const official = await generateJwt({ apiKeyId: keyId, apiKeySecret: keySecret, requestMethod, requestHost, requestPath });
console.log(JSON.stringify({ verified, error, ours: decoded(token), official: decoded(official) }));
