"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/) from the published vectors the project
keeps (crates/proto/tests/vectors/), the example configs, and a few answers of facilitators, Stripe and LND as
the tests record them. Run again when the vectors change: python3 fuzz/seeds.py"""

import base64
import hashlib
import json
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent
corpus = root / "fuzz" / "corpus"
vectors = root / "crates" / "proto" / "tests" / "vectors"


def seed(target, data):
    if isinstance(data, str):
        data = data.encode()
    out = corpus / target
    out.mkdir(parents=True, exist_ok=True)
    (out / hashlib.sha256(data).hexdigest()[:16]).write_bytes(data)


examples = json.loads((vectors / "x402" / "examples.json").read_text())
for case in examples["cases"]:
    if case.get("base64"):
        seed("x402", case["base64"])
        seed("credential", f"{case.get('header') or 'payment-signature'}: {case['base64']}")
    if case.get("decoded"):
        seed("x402", json.dumps(case["decoded"]))
        seed("jcs", json.dumps(case["decoded"]))

for name in ["www-authenticate.json", "authorization.json"]:
    for scenario in json.loads((vectors / "mpp" / name).read_text())["scenarios"]:
        wire = scenario.get("wire")
        if isinstance(wire, str):
            seed("mpp", wire)
            seed("credential", f"authorization: {wire}")
        if "object" in scenario:
            seed("jcs", json.dumps(scenario["object"]))

for receipt in [{"status": "success", "method": "evm", "reference": "0x" + "ab" * 32, "timestamp": "2026-12-03T00:00:00Z"}]:
    seed("mpp", base64.urlsafe_b64encode(json.dumps(receipt).encode()).decode().rstrip("="))

hash_ = "0x" + "12" * 32
seed("credential", f'x-402-payment-proof: {{"txHash":"{hash_}","network":"eip155:8453","token":"USDC","amount":"0.01"}}')
seed("credential", f"x-payment-hash: {hash_}")
seed("credential", f"x-402-payment: {base64.b64encode(json.dumps({'txHash': hash_}).encode()).decode()}")

for json_text in ['{"b":1,"a":[1.5e3,"\\u00e9",null,true]}', '{"x":-0.0,"y":1e21,"z":"\\ud83d\\ude00"}', "[]"]:
    seed("jcs", json_text)

for example in (root / "examples").glob("*.toml"):
    seed("config", example.read_text())
for doc in (root / "docs").glob("*.md"):
    for block in doc.read_text().split("```toml")[1:]:
        seed("config", block.split("```")[0])

for answer in [
    {"isValid": False, "invalidReason": "insufficient_funds", "payer": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"},
    {"isValid": False, "invalidReason": "invalid_exact_evm_payload_signature: rpc https://internal/?key=x"},
    {"isValid": True, "payer": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"},
    {"success": False, "errorReason": "unexpected_settle_error", "transaction": hash_, "network": "eip155:84532"},
    {"kinds": [{"x402Version": 2, "scheme": "exact", "network": "eip155:84532"}], "extensions": [], "signers": {}},
]:
    seed("facilitator_answer", json.dumps(answer))

# A status byte (the target's status is 100 + 2 * byte), then the body.
for status, body in [
    (50, {"id": "pi_123abc", "status": "requires_capture", "payment_method": "pm_card_visa"}),
    (151, {"error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."}}),
    (154, {"error": {"type": "idempotency_error", "message": "Keys for idempotent requests can only be used..."}}),
    (200, {"error": {"type": "api_error", "message": "internal"}}),
]:
    seed("stripe_answer", bytes([status]) + json.dumps(body).encode())

for status, body in [
    (50, {"r_hash": base64.b64encode(b"\x01" * 32).decode(), "payment_request": "lnbcrt1500n1pj...", "add_index": "1"}),
    (200, {"code": 2, "message": "wallet locked, unlock it to enable full RPC access", "details": []}),
]:
    seed("lnd_answer", bytes([status]) + json.dumps(body).encode())

# x402 batch-settlement payloads, as the official @x402/evm 2.27.0 client sends them (a deposit with its first
# voucher, then a voucher), for the channel_payload target.
config = {
    "payer": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "payerAuthorizer": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "receiver": "0x0909090909090909090909090909090909090909",
    "receiverAuthorizer": "0x0000000000000000000000000000000000000000",
    "token": "0x0505050505050505050505050505050505050505",
    "withdrawDelay": 900,
    "salt": "0x" + "00" * 32,
}
voucher = {"channelId": "0x" + "3d" * 32, "maxClaimableAmount": "1000", "signature": "0x" + "11" * 65}
seed("channel_payload", json.dumps({"type": "voucher", "channelConfig": config, "voucher": voucher}))
seed("channel_payload", json.dumps({
    "type": "deposit", "channelConfig": config, "voucher": voucher,
    "deposit": {"amount": "5000", "authorization": {"erc3009Authorization": {
        "validAfter": "0", "validBefore": "1796296113", "salt": "0x" + "90" * 32, "signature": "0x" + "fb" * 65}}},
}))

