//! The browser paywall in headless Chromium, on the embedded devnet: a browser that opens a priced URL gets the
//! 402 as an HTML page under a strict Content-Security-Policy; its button pays from the wallet the page finds (a
//! test EIP-1193 provider signing with a dev key), and the page shows what was bought. The seller's balance rises
//! by the price; a client that is not a browser still gets the JSON 402.

mod common;

use common::{Backend, Harness, pay_to};
use paygate_chain::devtoken::dev_account;
use paygate_store::PaymentState;
use paygate_testkit::node;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_pays_from_the_browsers_wallet_on_the_devnet() {
    let h = Harness::start_with(Backend::Devnet.options()).await;
    let before = h.chain.balance(pay_to()).await;

    // A browser's request gets the page; an API client the JSON problem, with the same offers either way.
    let page = h.http.get(h.url("/v1/quote")).header("accept", "text/html,*/*;q=0.8").send().await.unwrap();
    assert_eq!(page.status(), 402);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(page.headers().contains_key("payment-required") && page.headers().contains_key("www-authenticate"));
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.starts_with("default-src 'none'; script-src 'sha256-") && csp.contains("connect-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains("Pay with my wallet") && !html.contains("<script src"), "everything is in the page");
    let api = h.http.get(h.url("/v1/quote")).send().await.unwrap();
    assert_eq!(api.headers()["content-type"], "application/problem+json");

    let key = dev_account(1).to_bytes().to_string();
    let shown = node::paywall(&h.url("/v1/quote"), &key).await;
    assert_eq!(
        (&shown["status"], &shown["statusText"]),
        (&402.into(), &"Paid. Here is what you bought:".into()),
        "{shown}"
    );
    assert!(shown["result"].as_str().is_some_and(|r| r.contains("\"symbol\":\"PAY\"")), "{shown}");
    assert_eq!(shown["consoleErrors"], serde_json::json!([]), "no script or policy error");
    assert_eq!(h.chain.balance(pay_to()).await, before + 10_000);
    let ledger = h.ledger().await;
    assert_eq!(ledger.len(), 1);
    assert_eq!(
        (ledger[0].state, ledger[0].payer.as_str()),
        (PaymentState::Settled, dev_account(1).address().to_checksum(None).as_str())
    );
}
