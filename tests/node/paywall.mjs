// Opens a priced URL in headless Chromium as a person would, with a test wallet injected as the page's EIP-1193
// provider (it signs with KEY, in Node, through playwright's exposeFunction), clicks the paywall's button, and
// prints what the page showed:
//
//   node paywall.mjs CHROMIUM URL KEY
//
// {"status", "contentType", "csp", "statusText", "result", "consoleErrors"}
import { chromium } from 'playwright-core';
import { privateKeyToAccount } from 'viem/accounts';

const [executablePath, url, key] = process.argv.slice(2);
const account = privateKeyToAccount(key);
const browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
try {
  const page = await browser.newPage();
  await page.exposeFunction('testWalletSign', async (json) => {
    const typed = JSON.parse(json);
    delete typed.types.EIP712Domain;
    const m = typed.message;
    const message = { ...m, value: BigInt(m.value), validAfter: BigInt(m.validAfter), validBefore: BigInt(m.validBefore) };
    return account.signTypedData({ domain: typed.domain, types: typed.types, primaryType: typed.primaryType, message });
  });
  await page.addInitScript((address) => {
    window.ethereum = {
      request: async ({ method, params }) => {
        if (method === 'eth_requestAccounts' || method === 'eth_accounts') return [address];
        if (method === 'eth_signTypedData_v4') return window.testWalletSign(params[1]);
        throw new Error('the test wallet does not do ' + method);
      },
    };
  }, account.address);
  const consoleErrors = [];
  // Chromium logs the page's own 402 as "Failed to load resource"; any other error (a script's, a policy
  // violation) counts.
  page.on('console', (message) => {
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => consoleErrors.push(String(error)));
  const response = await page.goto(url);
  const headers = response.headers();
  await page.click('#pay');
  await page.waitForFunction(() => document.getElementById('result').textContent.length > 0, null, { timeout: 30000 });
  console.log(JSON.stringify({
    status: response.status(),
    contentType: headers['content-type'],
    csp: headers['content-security-policy'],
    statusText: await page.textContent('#status'),
    result: await page.textContent('#result'),
    consoleErrors,
  }));
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.stack ?? error) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
