// An MCP server built with the official @modelcontextprotocol/sdk, over its streamable HTTP transport at /mcp:
// the upstream of paygate's tests that sell MCP tools. It knows nothing of payments.
//
//   node mcp-server.mjs [--json]
//
// Tools: `forecast` {city} (text), `quote` {symbol} (with an output schema: structured content), `broken` (always
// answers a result with isError), `echo` {text} (free in the tests' config). Sessions are stateful (the
// Mcp-Session-Id header); answers are server-sent events, or JSON with --json. `GET /runs` answers how many times
// each tool ran. Prints {"port": P} once listening on a free port.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const jsonResponses = process.argv.includes('--json');
const runs = { forecast: 0, quote: 0, broken: 0, echo: 0 };

function server() {
  const mcp = new McpServer({ name: 'paygate-test-tools', version: '1.0.0' });
  mcp.registerTool('forecast', { description: 'Tomorrow\'s weather', inputSchema: { city: z.string() } }, async ({ city }) => {
    runs.forecast++;
    return { content: [{ type: 'text', text: `Forecast for ${city}: sunny, 21 C` }] };
  });
  mcp.registerTool(
    'quote',
    { description: 'A stock quote', inputSchema: { symbol: z.string() }, outputSchema: { symbol: z.string(), price: z.string() } },
    async ({ symbol }) => {
      runs.quote++;
      const value = { symbol, price: '4.02' };
      return { content: [{ type: 'text', text: JSON.stringify(value) }], structuredContent: value };
    },
  );
  mcp.registerTool('broken', { description: 'Always fails' }, async () => {
    runs.broken++;
    return { isError: true, content: [{ type: 'text', text: 'the tool failed' }] };
  });
  mcp.registerTool('echo', { description: 'Echoes', inputSchema: { text: z.string() } }, async ({ text }) => {
    runs.echo++;
    return { content: [{ type: 'text', text }] };
  });
  return mcp;
}

const transports = {};
const readBody = (req) =>
  new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : undefined));
    req.on('error', reject);
  });

const httpServer = http.createServer(async (req, res) => {
  try {
    if (req.url === '/runs') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(runs));
    }
    if (!req.url.startsWith('/mcp')) {
      res.writeHead(404);
      return res.end();
    }
    const body = req.method === 'POST' ? await readBody(req) : undefined;
    const sessionId = req.headers['mcp-session-id'];
    let transport = sessionId ? transports[sessionId] : undefined;
    if (!transport && req.method === 'POST' && isInitializeRequest(body)) {
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        enableJsonResponse: jsonResponses,
        onsessioninitialized: (id) => {
          transports[id] = transport;
        },
      });
      await server().connect(transport);
    }
    if (!transport) {
      res.writeHead(404, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null }));
    }
    await transport.handleRequest(req, res, body);
  } catch (error) {
    if (!res.headersSent) res.writeHead(500);
    res.end(String(error));
  }
});
httpServer.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: httpServer.address().port })));
