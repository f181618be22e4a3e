// Pays MCP tools sold through paygate with the official clients, over the MCP SDK's streamable HTTP transport:
//
//   node mcp-tools.mjs URL mppx|x402|unpaid [--key 0xPRIVATEKEY]
//
// mppx:   the MCP SDK's Client wrapped by mppx's McpClient (`mppx/mcp-sdk/client`) with mppx's `evm` charge: lists
//         the tools, calls `echo` (free), `forecast` and `quote` (paid), and `broken` (paid, fails).
// x402:   x402 over MCP as specs/transports-v2/mcp.md has the client do it, with @x402/core's x402Client and
//         @x402/evm's exact scheme creating the payment (there is no @x402/mcp on npm, and mppx/x402/mcp imports
//         it): the unpaid call's `x402/error`, the paid retry with `_meta["x402/payment"]`, then the same payment
//         sent again (a replay).
// unpaid: the raw answer to an unpaid `forecast` call.
// Prints one JSON line with what each call answered; errors exit 1 with {"error"}.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpClient } from 'mppx/mcp-sdk/client';
import { evm } from 'mppx/client';
import { privateKeyToAccount } from 'viem/accounts';
import { x402Client } from '@x402/core/client';
import { ExactEvmScheme } from '@x402/evm/exact/client';

const [url, mode, ...rest] = process.argv.slice(2);
const keyAt = rest.indexOf('--key');
// Dev account 1 of anvil's public mnemonic.
const account = privateKeyToAccount(keyAt >= 0 ? rest[keyAt + 1] : '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d');

const client = new Client({ name: 'paygate-interop', version: '1.0.0' });
// A JSON-RPC error thrown by the SDK, as data.
const settled = (promise) => promise.then((result) => ({ result }), (e) => ({ error: { code: e.code, message: e.message, data: e.data } }));

async function mppx() {
  McpClient.wrap(client, {
    methods: [evm.charge({ account, authorization: { name: 'USD Coin', version: '2' } })],
  });
  const tools = (await client.listTools()).tools.map((t) => t.name).sort();
  const echo = await settled(client.callTool({ name: 'echo', arguments: { text: 'hi' } }));
  const started = performance.now();
  const forecast = await settled(client.callTool({ name: 'forecast', arguments: { city: 'Oslo' } }));
  const forecastMs = performance.now() - started;
  const quote = await settled(client.callTool({ name: 'quote', arguments: { symbol: 'PAY' } }));
  const broken = await settled(client.callTool({ name: 'broken', arguments: {} }));
  return { tools, echo, forecast, forecastMs, quote, broken };
}

// specs/transports-v2/mcp.md, "Client Requirements": structuredContent, then structuredContent["x402/error"],
// then content[0].text.
function paymentRequired(result) {
  if (!result.isError) return undefined;
  const structured = result.structuredContent;
  if (structured?.x402Version) return structured;
  if (structured?.['x402/error']) return structured['x402/error'].data;
  try {
    const parsed = JSON.parse(result.content?.[0]?.text ?? '');
    return parsed['x402/error']?.data ?? (parsed.x402Version ? parsed : undefined);
  } catch {
    return undefined;
  }
}

async function x402() {
  const payments = new x402Client().register('eip155:*', new ExactEvmScheme(account));
  payments.setSpendControls({ allowedAssets: true });
  const params = { name: 'forecast', arguments: { city: 'Oslo' } };
  const unpaid = await client.callTool(params);
  const required = paymentRequired(unpaid);
  if (!required) throw new Error(`no x402 PaymentRequired in ${JSON.stringify(unpaid)}`);
  const payload = await payments.createPaymentPayload(required);
  const started = performance.now();
  const paid = await settled(client.callTool({ ...params, _meta: { 'x402/payment': payload } }));
  const paidMs = performance.now() - started;
  const replayed = await settled(client.callTool({ ...params, _meta: { 'x402/payment': payload } }));
  return { required, paid, paidMs, replayed };
}

async function unpaid() {
  return { answer: await client.callTool({ name: 'forecast', arguments: { city: 'Oslo' } }) };
}

try {
  const run = { mppx, x402, unpaid }[mode];
  if (!run) throw new Error('usage: mcp-tools.mjs URL mppx|x402|unpaid');
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  const answer = await run();
  answer.sessionId = client.transport?.sessionId ?? null;
  console.log(JSON.stringify(answer));
  await client.close();
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.stack ?? error) }));
  process.exit(1);
}
