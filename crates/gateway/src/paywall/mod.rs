//! The browser paywall: a person who opens a priced URL in a browser (a request that accepts `text/html` and
//! carries no payment) gets the same 402, headers and all, with an HTML page instead of the JSON body: what is
//! sold, its price, and a button that pays the x402 `exact` offer from the browser's wallet (an injected EIP-1193
//! provider signs the EIP-3009 authorization), asks for the page again with the payment and shows the answer.
//!
//! Everything is in the binary (`paywall.js` beside this file): no CDN, no other origin. The page's
//! Content-Security-Policy allows its one inline script and style by hash, and connections to this origin only.

use std::sync::LazyLock;

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Response, header};
use paygate_proto::{b64, x402};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::body::Body;
use crate::offers::{ResourceText, RouteOffer};

const SCRIPT: &str = include_str!("paywall.js");

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f6f4;color:#1d1d1b}\
main{max-width:36rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:12px;\
box-shadow:0 1px 4px #0002}h1{margin-top:0;font-size:1.4rem}.price{font-size:1.2rem;font-weight:600}\
button{font:inherit;padding:.6rem 1.2rem;border:0;border-radius:8px;background:#1d4ed8;color:#fff;cursor:pointer}\
button:disabled{background:#9ca3af;cursor:default}pre{white-space:pre-wrap;word-break:break-word;\
background:#f3f4f6;padding:1rem;border-radius:8px}#result:empty{display:none}small{color:#6b7280}";

/// The page's Content-Security-Policy: its inline script and style by hash, fetches to its own origin.
static CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = |text: &str| base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()));
    format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; connect-src 'self'; img-src 'none'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash(SCRIPT),
        hash(STYLE)
    )
});

/// Whether a request is a browser's asking for a page (`Accept` names `text/html`).
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    crate::offers::accepts(headers, "text/html")
}

/// The 402 `response` for a browser: its body becomes the paywall page for the x402 offers it carries (the
/// headers stay, so a client that pays from them still can).
pub(crate) fn page(mut response: Response<Body>, offers: &[RouteOffer], resource: &ResourceText) -> Response<Body> {
    let required = response
        .headers()
        .get(x402::PAYMENT_REQUIRED)
        .and_then(|v| b64::std_decode(v.to_str().ok()?).ok())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
    let Some(required) = required else { return response };
    let what = resource.description.as_deref().unwrap_or("This page");
    let url = required.pointer("/resource/url").and_then(Value::as_str).unwrap_or_default();
    let prices: Vec<String> = offers
        .iter()
        .filter(|o| o.x402.as_ref().is_some_and(|r| r.scheme == "exact"))
        .map(crate::discovery::offer_words)
        .collect();
    let price = prices.first().map(String::as_str).unwrap_or("a payment");
    // JSON inside a script element: `<` escaped, so that nothing in it can close the element.
    let data = required.to_string().replace('<', "\\u003c");
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Payment required</title>\
         <style>{STYLE}</style></head><body><main><h1>Payment required</h1><p>{what}</p>\
         <p class=\"price\">{price}</p><p><button id=\"pay\" disabled>Pay with my wallet</button></p>\
         <p id=\"status\"></p><pre id=\"result\"></pre><p><small>{url}: agents pay it with x402 or MPP \
         (<code>paygate pay</code>).</small></p></main>\
         <script type=\"application/json\" id=\"offers\">{data}</script><script>{SCRIPT}</script></body></html>",
        what = escape(what),
        price = escape(price),
        url = escape(url),
    );
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    if let Ok(csp) = HeaderValue::from_str(&CSP) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.remove(header::CONTENT_LENGTH);
    *response.body_mut() = Body::from(html);
    response
}

/// Text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_are_told_apart_and_text_is_escaped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"));
        assert!(wants_html(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_html(&headers));
        assert_eq!(escape("<b>\"x\" & y</b>"), "&lt;b&gt;&quot;x&quot; &amp; y&lt;/b&gt;");
        assert!(CSP.contains("script-src 'sha256-") && CSP.contains("connect-src 'self'"));
    }
}
