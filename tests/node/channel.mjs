// Pays calls to a URL through an x402 `batch-settlement` channel with the official client
// (@x402/evm/batch-settlement/client), for paygate's channel tests.
//
//   node channel.mjs URL --rpc RPC_URL [--calls N] [--deposit ATOMIC] [--key 0xPRIVATEKEY] [--refund [ATOMIC]]
//
// Makes N paid GETs one after another (each: the unpaid request, its 402, the paid retry, as
// wrapFetchWithPayment does). The first deposits ATOMIC units (default: the client's own policy, 5 calls' worth)
// into the channel; later calls pay with vouchers. Prints one JSON line:
// {"statuses": [...], "receipts": [decoded PAYMENT-RESPONSE of each call], "bodies": [...]}; errors exit 1 with
// {"error"}. With --refund, the client then asks for its unspent deposit back (the scheme's `refund(url)`, all of it
// or ATOMIC) and the line also has "refund": the settle response it got.
import { createPublicClient, http } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { x402Client } from '@x402/core/client';
import { wrapFetchWithPayment, decodePaymentResponseHeader } from '@x402/fetch';
import { toClientEvmSigner } from '@x402/evm';
import { BatchSettlementEvmScheme } from '@x402/evm/batch-settlement/client';

const [url, ...rest] = process.argv.slice(2);
const option = (name, fallback) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? rest[i + 1] : fallback;
};
// Dev account 1 of anvil's public mnemonic.
const key = option('key', '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d');
const calls = Number(option('calls', '1'));
const deposit = option('deposit', undefined);
const rpc = option('rpc', undefined);
const refundAt = rest.indexOf('--refund');
const refundAmount = refundAt >= 0 && rest[refundAt + 1] && !rest[refundAt + 1].startsWith('--') ? rest[refundAt + 1] : undefined;

async function main() {
  const account = privateKeyToAccount(key);
  const publicClient = createPublicClient({ transport: http(rpc) });
  const options = {
    depositPolicy: { depositMultiplier: 5 },
    ...(deposit !== undefined ? { depositStrategy: () => deposit } : {}),
  };
  const scheme = new BatchSettlementEvmScheme(toClientEvmSigner(account, publicClient), options);
  const client = new x402Client().register('eip155:*', scheme);
  client.setSpendControls(false);
  const pay = wrapFetchWithPayment(fetch, client);
  const statuses = [];
  const receipts = [];
  const bodies = [];
  for (let i = 0; i < calls; i++) {
    const response = await pay(url);
    statuses.push(response.status);
    const header = response.headers.get('payment-response');
    receipts.push(header ? decodePaymentResponseHeader(header) : null);
    bodies.push(await response.text());
  }
  if (refundAt < 0) return { statuses, receipts, bodies };
  const refund = await scheme.refund(url, refundAmount !== undefined ? { amount: refundAmount } : undefined);
  return { statuses, receipts, bodies, refund };
}

main().then(
  (out) => console.log(JSON.stringify(out)),
  (e) => {
    console.log(JSON.stringify({ error: String(e?.stack ?? e) }));
    process.exit(1);
  },
);
