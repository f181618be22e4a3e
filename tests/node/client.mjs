// Drives the official x402 and MPP client packages against a URL, for paygate's interoperability tests.
//
//   node client.mjs <x402|x402upto|x402v1|mppx> <pay|sign> URL [--method M] [--body JSON] [--key 0xPRIVATEKEY]
//                   [--header NAME:VALUE] [--payment-id ID] [--count N]
//
// pay:  performs the whole paid request with the official client and prints
//       {"status", "body", "headers": {payment-response, x-payment-response, payment-receipt, ...}}
// sign: fetches the 402, lets the official client create its credential, and prints {"name", "value"} of the
//       header it would send, without sending it (the Rust tests replay and tamper with it). With --payment-id
//       (x402), the id is added with @x402/extensions' appendPaymentIdentifierToExtensions, which adds it only
//       when the 402 declares the payment-identifier extension; the script fails when it does not. With --count N
//       (x402), N credentials for the same 402: {"name", "values": [...]}.
// Always prints exactly one JSON line on stdout; errors exit 1 with {"error"}.
import { privateKeyToAccount } from 'viem/accounts';
import { x402Client, x402HTTPClient } from '@x402/core/client';
import { wrapFetchWithPayment } from '@x402/fetch';
import { ExactEvmScheme } from '@x402/evm/exact/client';
import { UptoEvmScheme } from '@x402/evm/upto/client';
import { ExactEvmSchemeV1 } from '@x402/evm/exact/v1/client';
import { Mppx, evm } from 'mppx/client';
import { appendPaymentIdentifierToExtensions, extractAndValidatePaymentIdentifier } from '@x402/extensions/payment-identifier';

const [protocol, mode, url, ...rest] = process.argv.slice(2);
const option = (name, fallback) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? rest[i + 1] : fallback;
};
// Dev account 1 of anvil's public mnemonic.
const key = option('key', '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d');
const account = privateKeyToAccount(key);
const method = option('method', 'GET');
const body = option('body', undefined);
const header = option('header', undefined);
const paymentId = option('payment-id', undefined);
const count = option('count', undefined);
const headers = {
  ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
  ...(header !== undefined ? { [header.slice(0, header.indexOf(':'))]: header.slice(header.indexOf(':') + 1) } : {}),
};
const init = { method, ...(body !== undefined ? { body } : {}), headers };

const interesting = ['payment-response', 'x-payment-response', 'payment-receipt', 'paygate-settlement', 'paygate-free-calls-left', 'content-type', 'www-authenticate', 'payment-required', 'cache-control'];
async function report(response) {
  const headers = {};
  for (const name of interesting) {
    const value = response.headers.get(name);
    if (value !== null) headers[name] = value;
  }
  const receipt = headers['payment-response'] ?? headers['x-payment-response'] ?? headers['payment-receipt'];
  const decoded = receipt ? JSON.parse(Buffer.from(receipt, receipt === headers['payment-receipt'] ? 'base64url' : 'base64').toString()) : undefined;
  return { status: response.status, body: await response.text(), receipt: decoded, headers };
}

async function x402v2() {
  // The test token is not one of the SDK's default assets; allow it explicitly. `x402upto` pays `upto` offers
  // (a Permit2 authorization of the offer's maximum) with the official upto client instead of `exact` ones.
  const scheme = protocol === 'x402upto' ? new UptoEvmScheme(account) : new ExactEvmScheme(account);
  const client = new x402Client().register('eip155:*', scheme);
  client.setSpendControls({ allowedAssets: true });
  if (mode === 'pay') return report(await wrapFetchWithPayment(fetch, client)(url, init));
  const http = new x402HTTPClient(client);
  const response = await fetch(url, init);
  const text = await response.text();
  const required = http.getPaymentRequiredResponse((n) => response.headers.get(n), text ? JSON.parse(text) : undefined);
  if (paymentId !== undefined) {
    appendPaymentIdentifierToExtensions((required.extensions ??= {}), paymentId);
  }
  if (count !== undefined) {
    // Several payments of the same 402 (one offer, many payments).
    const values = [];
    for (let i = 0; i < Number(count); i++) {
      values.push(Object.values(http.encodePaymentSignatureHeader(await client.createPaymentPayload(required)))[0]);
    }
    return { name: 'PAYMENT-SIGNATURE', values };
  }
  const payload = await client.createPaymentPayload(required);
  if (paymentId !== undefined) {
    const { id, validation } = extractAndValidatePaymentIdentifier(payload);
    if (id !== paymentId || !validation.valid) {
      throw new Error(`the payload carries no valid payment identifier: ${JSON.stringify(payload.extensions)}`);
    }
  }
  const [[name, value]] = Object.entries(http.encodePaymentSignatureHeader(payload));
  return { name, value };
}

// What the legacy v1 clients do: read the 402 body's `accepts`, sign with the v1 scheme, send X-PAYMENT.
async function x402v1() {
  const response = await fetch(url, init);
  const required = JSON.parse(await response.text());
  if (required.x402Version !== 1) throw new Error(`not a v1 body: ${JSON.stringify(required)}`);
  const payload = await new ExactEvmSchemeV1(account).createPaymentPayload(1, required.accepts[0]);
  const value = Buffer.from(JSON.stringify(payload)).toString('base64');
  if (mode === 'sign') return { name: 'X-PAYMENT', value };
  return report(await fetch(url, { ...init, headers: { ...(init.headers ?? {}), 'X-PAYMENT': value } }));
}

async function mppx() {
  const client = Mppx.create({
    polyfill: false,
    methods: [evm.charge({ account, authorization: { name: 'USD Coin', version: '2' } })],
  });
  if (mode === 'pay') return report(await client.fetch(url, init));
  const response = await fetch(url, init);
  return { name: 'Authorization', value: await client.createCredential(response) };
}

const run = { x402: x402v2, x402upto: x402v2, x402v1, mppx }[protocol];
try {
  if (!run || !['pay', 'sign'].includes(mode)) throw new Error('usage: client.mjs <x402|x402upto|x402v1|mppx> <pay|sign> URL');
  console.log(JSON.stringify(await run()));
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.stack ?? error) }));
  process.exit(1);
}
