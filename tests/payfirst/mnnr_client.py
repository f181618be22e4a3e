"""The pay-first example client of the MNNR x402 documentation (https://mnnr.app/docs/x402, "Complete Flow
Example"), as that page writes it, pointed at a paygate on a local chain instead of Base: read the price from
the 402's X-402-* headers, transfer the token with web3.py, wait for the receipt, and retry with
X-402-Payment-Proof naming the transaction, the network and the token by its symbol.

Usage: mnnr_client.py URL RPC_URL PAYER_ADDRESS. The payer is an unlocked account of the node (anvil's dev
accounts are). Prints one JSON line: the retry's status, body and the proof header it sent.
"""

import json
import sys

import requests
from web3 import Web3

ERC20_ABI = [
    {
        "name": "transfer",
        "type": "function",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "to", "type": "address"}, {"name": "value", "type": "uint256"}],
        "outputs": [{"name": "", "type": "bool"}],
    }
]


def main(url, rpc_url, payer):
    # Step 1: Make initial request
    response = requests.get(url)

    # Step 2: Handle 402 Payment Required
    assert response.status_code == 402, response.status_code
    payment_info = {
        "amount": response.headers["X-402-Amount"],
        "receiver": response.headers["X-402-Receiver"],
        "network": response.headers["X-402-Network"],
        "token": response.headers["X-402-Token"],
    }

    # Step 3: Send payment (the documentation's Base network is this test's local chain)
    w3 = Web3(Web3.HTTPProvider(rpc_url))
    w3.eth.default_account = Web3.to_checksum_address(payer)
    usdc = w3.eth.contract(address=Web3.to_checksum_address(payment_info["token"]), abi=ERC20_ABI)
    tx = usdc.functions.transfer(
        Web3.to_checksum_address(payment_info["receiver"]),
        int(float(payment_info["amount"]) * 1e6),  # USDC has 6 decimals
    ).transact()
    receipt = w3.eth.wait_for_transaction_receipt(tx)

    # Step 4: Retry with payment proof: the token named by its symbol, as the documentation sends it
    proof = json.dumps(
        {
            "txHash": receipt["transactionHash"].hex(),
            "network": payment_info["network"],
            "token": "USDC",
            "amount": payment_info["amount"],
        }
    )
    paid = requests.get(url, headers={"X-402-Payment-Proof": proof})
    print(json.dumps({"status": paid.status_code, "body": paid.text, "proof": proof}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
