// paygate's browser paywall: pays the x402 `exact` offer of this page's 402 from the browser's wallet (an
// injected EIP-1193 provider) by signing its EIP-3009 authorization, then asks for the page again with the
// payment and shows the answer. No library, no network access but this page's own URL.
(() => {
  const required = JSON.parse(document.getElementById('offers').textContent);
  const status = document.getElementById('status');
  const result = document.getElementById('result');
  const button = document.getElementById('pay');
  const say = (text) => { status.textContent = text; };
  const offer = required.accepts.find((a) => a.scheme === 'exact' && a.network.startsWith('eip155:') && a.extra && a.extra.name);
  if (!offer) {
    say('No offer here can be paid from a browser wallet: use an x402 or MPP client.');
    return;
  }
  if (!window.ethereum) {
    say('No browser wallet found: install one (MetaMask, Coinbase Wallet, Rabby) or use an x402 client.');
    return;
  }
  button.disabled = false;
  const hex = (bytes) => '0x' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      say('Asking your wallet for an account…');
      const [from] = await window.ethereum.request({ method: 'eth_requestAccounts' });
      const chainId = Number(offer.network.split(':')[1]);
      const now = Math.floor(Date.now() / 1000);
      const authorization = {
        from,
        to: offer.payTo,
        value: offer.amount,
        validAfter: String(now - 600),
        validBefore: String(now + (offer.maxTimeoutSeconds || 300)),
        nonce: hex(crypto.getRandomValues(new Uint8Array(32))),
      };
      const typed = {
        types: {
          EIP712Domain: [
            { name: 'name', type: 'string' }, { name: 'version', type: 'string' },
            { name: 'chainId', type: 'uint256' }, { name: 'verifyingContract', type: 'address' },
          ],
          TransferWithAuthorization: [
            { name: 'from', type: 'address' }, { name: 'to', type: 'address' }, { name: 'value', type: 'uint256' },
            { name: 'validAfter', type: 'uint256' }, { name: 'validBefore', type: 'uint256' }, { name: 'nonce', type: 'bytes32' },
          ],
        },
        primaryType: 'TransferWithAuthorization',
        domain: { name: offer.extra.name, version: offer.extra.version, chainId, verifyingContract: offer.asset },
        message: authorization,
      };
      say('Sign the payment in your wallet…');
      const signature = await window.ethereum.request({ method: 'eth_signTypedData_v4', params: [from, JSON.stringify(typed)] });
      const payment = { x402Version: 2, resource: required.resource, accepted: offer, payload: { signature, authorization } };
      say('Paying…');
      const answer = await fetch(location.href, { headers: { 'PAYMENT-SIGNATURE': btoa(JSON.stringify(payment)) } });
      const text = await answer.text();
      if (answer.ok) {
        say('Paid. Here is what you bought:');
      } else {
        say('Not paid (' + answer.status + '): nothing was charged.');
        button.disabled = false;
      }
      result.textContent = text;
    } catch (error) {
      say('Not paid: ' + (error && error.message ? error.message : error));
      button.disabled = false;
    }
  });
})();
