// Drives `paygate mcp` with the official MCP SDK's client over stdio, as an agent would:
//
//   node mcp.mjs PAYGATE_BIN URL [NAME=VALUE...] -- [paygate mcp args...]
//
// (the NAME=VALUE pairs are added to the server's environment: its wallet key, its spend log.)
// It lists the tools, asks `quote` for URL, `fetch`es it with a maximum below its price (refused), then with
// the owner's limits only (paid), and reads `spending`; it prints one JSON line with every answer, and the
// milliseconds the paid `fetch` took from the agent's call to its result.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const [bin, url, ...rest] = process.argv.slice(2);
const split = rest.indexOf('--');
const env = { ...process.env };
for (const pair of split < 0 ? rest : rest.slice(0, split)) {
  const at = pair.indexOf('=');
  env[pair.slice(0, at)] = pair.slice(at + 1);
}
const args = split < 0 ? [] : rest.slice(split + 1);
const transport = new StdioClientTransport({ command: bin, args: ['mcp', ...args], env, stderr: 'inherit' });
const client = new Client({ name: 'paygate-interop', version: '1.0.0' });
const text = (result) => ({ isError: result.isError ?? false, value: parse(result.content[0].text) });
const parse = (t) => { try { return JSON.parse(t); } catch { return t; } };
try {
  await client.connect(transport);
  const tools = (await client.listTools()).tools.map((t) => ({ name: t.name, required: t.inputSchema.required ?? [] }));
  const quote = text(await client.callTool({ name: 'quote', arguments: { url } }));
  const tooCheap = text(await client.callTool({ name: 'fetch', arguments: { url, max_usd: '0.000001' } }));
  const started = performance.now();
  const paid = text(await client.callTool({ name: 'fetch', arguments: { url } }));
  const paidMs = performance.now() - started;
  const spending = text(await client.callTool({ name: 'spending', arguments: {} }));
  console.log(JSON.stringify({ tools, quote, tooCheap, paid, paidMs, spending }));
  await client.close();
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.stack ?? error) }));
  process.exit(1);
}
