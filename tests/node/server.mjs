// An official seller: the x402 resource server (@x402/core + @x402/evm exact) or the MPP server (mppx, `evm`
// charge), serving GET /paid for 10000 atomic units of the test USDC, for paygate's buyer-client tests.
//
//   node server.mjs x402|mppx --port P --rpc URL --token ADDR --pay-to ADDR --facilitator URL [--chain-id 31337]
//
// Both settle through the reference x402 facilitator (tests/node/facilitator.mjs) at --facilitator: the x402
// server by design, mppx's evm charge through its `x402.facilitator` settlement option (the EIP-3009
// authorization is submitted on the chain by the facilitator's key, so no settler key is needed here). mppx's
// 402 carries both its `WWW-Authenticate: Payment` evm/charge challenge and its x402 compatibility offer
// (PAYMENT-REQUIRED). --rpc is accepted for the caller's symmetry; the facilitator is what talks to the chain.
// Prints {"port": P} once listening (`--port 0` takes a free port, and P says which).
import http from 'node:http';
import { HTTPFacilitatorClient, x402HTTPResourceServer, x402ResourceServer } from '@x402/core/server';
import { ExactEvmScheme } from '@x402/evm/exact/server';
import { Mppx, evm } from 'mppx/server';

const [kind, ...rest] = process.argv.slice(2);
const option = (name, fallback) => {
  const i = rest.indexOf(`--${name}`);
  if (i >= 0) return rest[i + 1];
  if (fallback === undefined) throw new Error(`--${name} is required`);
  return fallback;
};
const port = Number(option('port'));
option('rpc');
const token = option('token');
const payTo = option('pay-to');
const facilitatorUrl = option('facilitator');
const chainId = Number(option('chain-id', '31337'));
const PRICE = '10000';
const DOMAIN = { name: 'USD Coin', version: '2' };

const json = (res, status, value, headers = {}) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(value));
};

async function x402() {
  const network = `eip155:${chainId}`;
  const resourceServer = new x402ResourceServer(new HTTPFacilitatorClient({ url: facilitatorUrl })).register(
    network,
    new ExactEvmScheme(),
  );
  const routes = {
    'GET /paid': {
      accepts: { scheme: 'exact', network, payTo, price: { asset: token, amount: PRICE, extra: DOMAIN }, maxTimeoutSeconds: 300 },
      description: 'a paid test resource',
      mimeType: 'application/json',
    },
  };
  const server = new x402HTTPResourceServer(resourceServer, routes);
  await server.initialize();
  return async (req, res) => {
    const url = new URL(req.url, `http://${req.headers.host}`);
    const adapter = {
      getHeader: (name) => {
        const value = req.headers[name.toLowerCase()];
        return Array.isArray(value) ? value.join(', ') : value;
      },
      getMethod: () => req.method,
      getPath: () => url.pathname,
      getUrl: () => url.toString(),
      getAcceptHeader: () => req.headers.accept ?? '',
      getUserAgent: () => req.headers['user-agent'] ?? '',
    };
    const paymentHeader = adapter.getHeader('payment-signature') ?? adapter.getHeader('x-payment');
    const context = { adapter, path: url.pathname, method: req.method, paymentHeader };
    const result = await server.processHTTPRequest(context);
    if (result.type === 'payment-error') {
      const { status, headers, body } = result.response;
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      return res.end(body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body));
    }
    if (result.type === 'no-payment-required') return json(res, 404, { error: 'not found' });
    const settled = await server.processSettlement(result.paymentPayload, result.paymentRequirements, result.declaredExtensions);
    if (!settled.success) {
      const { status, headers, body } = settled.response;
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      return res.end(body === undefined ? '' : JSON.stringify(body));
    }
    json(res, 200, { ok: true }, settled.headers);
  };
}

async function mppx(port) {
  const mppx = Mppx.create({
    methods: [
      evm.charge({
        currency: token,
        recipient: payTo,
        chainId,
        decimals: 6,
        authorization: DOMAIN,
        x402: { facilitator: facilitatorUrl },
      }),
    ],
    realm: `127.0.0.1:${port}`,
    secretKey: 'paygate-official-server-test-secret-of-32-bytes-or-more',
  });
  // Display units: 0.01 of a 6-decimal token = 10000 atomic units.
  const paid = Mppx.toNodeListener(mppx.charge({ amount: '0.01' }));
  return async (req, res) => {
    if (!(req.method === 'GET' && req.url === '/paid')) return json(res, 404, { error: 'not found' });
    const result = await paid(req, res);
    if (result.status === 402) return;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ ok: true }));
  };
}

const make = { x402, mppx }[kind];
if (!make) throw new Error('usage: server.mjs x402|mppx --port P --rpc URL --token ADDR --pay-to ADDR --facilitator URL');
let handle = null;
const server = http.createServer(async (req, res) => {
  try {
    await handle(req, res);
  } catch (error) {
    console.error(error);
    if (!res.headersSent) json(res, 500, { error: String(error?.message ?? error) });
    else res.end();
  }
});
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const listening = server.address().port;
handle = await make(listening);
console.log(JSON.stringify({ port: listening }));
