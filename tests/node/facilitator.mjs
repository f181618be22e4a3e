// The reference x402 facilitator (@x402/core x402Facilitator + @x402/evm ExactEvmScheme) on an EVM JSON-RPC,
// served over HTTP as /verify, /settle and /supported, for paygate's remote-settlement tests.
//
//   node facilitator.mjs PORT RPC_URL CHAIN_ID PRIVATE_KEY
//
// Prints {"listening": PORT} once ready (port 0 takes a free port, and PORT says which).
import http from 'node:http';
import { createWalletClient, defineChain, http as viemHttp, publicActions } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { x402Facilitator } from '@x402/core/facilitator';
import { toFacilitatorEvmSigner } from '@x402/evm';
import { ExactEvmScheme } from '@x402/evm/exact/facilitator';

const [port, rpcUrl, chainId, key] = process.argv.slice(2);
const account = privateKeyToAccount(key);
const chain = defineChain({
  id: Number(chainId),
  name: 'test',
  nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
  rpcUrls: { default: { http: [rpcUrl] } },
});
const wallet = createWalletClient({ account, chain, transport: viemHttp(rpcUrl), pollingInterval: 50 }).extend(publicActions);
const signer = toFacilitatorEvmSigner({ ...wallet, address: account.address });
const facilitator = new x402Facilitator().register(`eip155:${chainId}`, new ExactEvmScheme(signer));

const server = http.createServer(async (req, res) => {
  const send = (status, value) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? v.toString() : v)));
  };
  try {
    if (req.method === 'GET' && req.url === '/supported') return send(200, facilitator.getSupported());
    let text = '';
    for await (const chunk of req) text += chunk;
    const body = JSON.parse(text || '{}');
    if (req.method === 'POST' && req.url === '/verify') {
      return send(200, await facilitator.verify(body.paymentPayload, body.paymentRequirements));
    }
    if (req.method === 'POST' && req.url === '/settle') {
      return send(200, await facilitator.settle(body.paymentPayload, body.paymentRequirements));
    }
    send(404, { error: 'not found' });
  } catch (error) {
    send(500, { error: String(error?.message ?? error) });
  }
});
server.listen(Number(port), '127.0.0.1', () => console.log(JSON.stringify({ listening: server.address().port })));
