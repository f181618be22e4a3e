// Parses a 402 with the official parsers, strictly, and prints what each understood:
//
//   node parse402.mjs URL
//
// {"mpp": [{"method","intent","id"}...],          mppx's Challenge.fromResponseList (every WWW-Authenticate line)
//  "mppClient": [{"method","intent"}...],          what mppx's HTTP client transport collects (MPP and x402)
//  "x402": {"networks": [...], "schemes": [...]},  @x402/core's decodePaymentRequiredHeader + its zod schema
//  "x402v1": {"networks": [...]}}                  the v1 body through the same schema
import { Challenge } from 'mppx';
import { Transport } from 'mppx/client';
import { decodePaymentRequiredHeader } from '@x402/core/http';
import { PaymentRequiredSchema } from '@x402/core/schemas';

const url = process.argv[2];
try {
  const response = await fetch(url);
  const body = await response.text();
  const copy = () => new Response(body, { status: response.status, headers: response.headers });
  const mpp = Challenge.fromResponseList(copy()).map((c) => ({ method: c.method, intent: c.intent, id: c.id }));
  const mppClient = (await Transport.http().getChallenges(copy())).map((c) => ({ method: c.method, intent: c.intent }));
  const required = PaymentRequiredSchema.parse(decodePaymentRequiredHeader(response.headers.get('payment-required')));
  const v1 = PaymentRequiredSchema.parse(JSON.parse(body));
  console.log(JSON.stringify({
    status: response.status,
    mpp,
    mppClient,
    x402: { networks: required.accepts.map((a) => a.network), schemes: required.accepts.map((a) => a.scheme) },
    x402v1: { networks: v1.accepts.map((a) => a.network) },
  }));
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.stack ?? error) }));
  process.exit(1);
}
