// Reads what paygate publishes for discovery with the official parsers, and prints what each understood:
//
//   node discovery.mjs BASE METHOD PATH [BODY]
//
// {"bazaar": {"valid", "errors", "spec", "info"},   @x402/extensions: validateAndExtract and
//                                                   validateDiscoveryExtensionSpec of the 402's `bazaar` extension
//  "openapi": [{"message","path","severity"}...],   mppx/discovery's validate of GET /openapi.json
//  "wellKnown": {"resources": [...], "accepts": n}} GET /.well-known/x402, each item's accepts through @x402/core's
//                                                   PaymentRequirements schema
import { validateAndExtract, validateDiscoveryExtensionSpec } from '@x402/extensions/bazaar';
import { validate } from 'mppx/discovery';
import { decodePaymentRequiredHeader } from '@x402/core/http';
import { PaymentRequiredSchema } from '@x402/core/schemas';

const [base, method, path, body] = process.argv.slice(2);
try {
  const init = { method, headers: body ? { 'content-type': 'application/json' } : {}, body };
  const unpaid = await fetch(base + path, init);
  const required = PaymentRequiredSchema.parse(decodePaymentRequiredHeader(unpaid.headers.get('payment-required')));
  const extension = required.extensions?.bazaar;
  const checked = validateAndExtract(extension);
  const spec = validateDiscoveryExtensionSpec(extension);
  const openapi = await (await fetch(base + '/openapi.json')).json();
  const wellKnown = await (await fetch(base + '/.well-known/x402')).json();
  let accepts = 0;
  for (const item of wellKnown.items) {
    // Each item's offers are what a 402 would carry: the same schema parses them.
    PaymentRequiredSchema.parse({ x402Version: 2, resource: { url: item.resource }, accepts: item.accepts });
    accepts += item.accepts.length;
  }
  console.log(JSON.stringify({
    status: unpaid.status,
    bazaar: { valid: checked.valid, errors: checked.errors ?? [], spec, info: checked.info },
    openapi: validate(openapi),
    wellKnown: { resources: wellKnown.items.map((i) => i.resource), accepts, total: wellKnown.pagination.total },
  }));
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.stack ?? error) }));
  process.exit(1);
}
