//! `paygate mcp`: a stdio MCP server any MCP-capable agent can start, so that it can pay for what it fetches.
//! Its tools are `paygate pay` for a model: `fetch` (request a URL, paying its 402 within the owner's limits and
//! the call's own maximum), `quote` (what a URL would cost, and which offer would be paid; nothing is signed)
//! and `spending` (the spend log's last payments and what the budgets leave). Everything goes through the client
//! library with the same wallet, policy and spend log as `paygate pay`, so every limit holds exactly as there.
//!
//! Built on `rmcp`, MCP's official Rust SDK (its stdio transport and tool macros).

use std::collections::BTreeMap;

use anyhow::Context;
use paygate_client::{Paid, PayingClient, Wallet, now_ms};
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::pay::{PayerArgs, describe, usd_micros};

/// The most of an answer's body a tool result carries; the rest is cut (and said so).
const MAX_BODY_CHARS: usize = 64 * 1024;

/// Serve the paying tools over stdio (MCP), with the wallet of `PAYGATE_WALLET_KEY` or a keystore.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    payer: PayerArgs,
}

pub async fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    let wallet = Wallet::from_env().context("paygate mcp pays from a wallet")?;
    let client = args.payer.client(wallet).await?;
    let tools = PayingTools { client, tools: PayingTools::tool_router() };
    let running = tools.serve(rmcp::transport::stdio()).await.context("the MCP client did not start a session")?;
    running.waiting().await.context("the MCP session")?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// The paying tools, over one client.
#[derive(Clone)]
struct PayingTools {
    client: PayingClient,
    /// Built once: the tools' names, schemas and handlers.
    tools: ToolRouter<Self>,
}

/// A request, as a tool takes it.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct Request {
    /// The URL to request.
    url: String,
    /// The HTTP method (default GET).
    #[serde(default)]
    method: Option<String>,
    /// Request headers, by name.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// The request body (text; JSON as text).
    #[serde(default)]
    body: Option<String>,
}

/// `fetch`'s arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct FetchArgs {
    #[serde(flatten)]
    request: Request,
    /// The most to pay for this request, in US dollars ("0.01"); the owner's limits hold too.
    #[serde(default)]
    max_usd: Option<String>,
}

impl Request {
    fn headers(&self) -> Result<reqwest::header::HeaderMap, String> {
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a header name"))?;
            let value =
                HeaderValue::from_str(value).map_err(|_| format!("the value of {name} is not a header value"))?;
            map.append(name, value);
        }
        Ok(map)
    }

    fn method(&self) -> String {
        self.method.clone().unwrap_or_else(|| "GET".into()).to_ascii_uppercase()
    }
}

fn refused(text: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text)])
}

fn answered(value: &Value) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(value.to_string())])
}

/// What a tool result says of a paid (or free) answer: status, payment, and the body, as text.
fn described(paid: &Paid) -> Value {
    let text = String::from_utf8_lossy(&paid.body);
    let cut = text.chars().count() > MAX_BODY_CHARS;
    let body: String = text.chars().take(MAX_BODY_CHARS).collect();
    json!({
        "status": paid.status.as_u16(),
        "paid": paid.payment.as_ref().map(|p| json!({
            "offer": describe(&p.offer),
            "reference": p.reference,
        })),
        "contentType": paid.headers.get("content-type").and_then(|v| v.to_str().ok()),
        "body": body,
        "truncated": cut,
    })
}

#[tool_router]
impl PayingTools {
    #[tool(
        description = "Fetch a URL, paying its HTTP 402 (x402 or MPP) from the local wallet within the owner's limits \
                       and max_usd. Answers the status, what was paid, and the body."
    )]
    async fn fetch(&self, Parameters(args): Parameters<FetchArgs>) -> Result<CallToolResult, ErrorData> {
        let headers = match args.request.headers() {
            Ok(headers) => headers,
            Err(e) => return Ok(refused(e)),
        };
        let mut policy = self.client.policy().clone();
        if let Some(max) = &args.max_usd {
            let max = match usd_micros(max) {
                Ok(max) => max,
                Err(e) => return Ok(refused(format!("max_usd: {e}"))),
            };
            policy.max_per_payment = Some(policy.max_per_payment.map_or(max, |owner| owner.min(max)));
        }
        let client = self.client.clone().with_policy(policy);
        let body = args.request.body.clone().map(String::into_bytes);
        match client.send(&args.request.method(), &args.request.url, headers, body).await {
            Ok(paid) => Ok(answered(&described(&paid))),
            Err(e) => Ok(refused(format!("not paid: {e}"))),
        }
    }

    #[tool(
        description = "What a URL costs, without paying: its offers and the one fetch would pay. Nothing is signed."
    )]
    async fn quote(&self, Parameters(request): Parameters<Request>) -> Result<CallToolResult, ErrorData> {
        let headers = match request.headers() {
            Ok(headers) => headers,
            Err(e) => return Ok(refused(e)),
        };
        let body = request.body.clone().map(String::into_bytes);
        match self.client.dry_run(&request.method(), &request.url, headers, body).await {
            Ok(dry) => {
                let offers: Vec<String> = dry.offers.iter().map(describe).collect();
                let chosen = dry.chosen.and_then(|i| offers.get(i).cloned());
                Ok(answered(&json!({
                    "status": dry.status,
                    "offers": offers,
                    "wouldPay": chosen,
                    "refusedBecause": dry.refused.map(|r| r.to_string()),
                })))
            }
            Err(e) => Ok(refused(format!("could not ask: {e}"))),
        }
    }

    #[tool(description = "The spend log's last payments and what the owner's budgets leave for today.")]
    async fn spending(&self) -> Result<CallToolResult, ErrorData> {
        let log = self.client.spend_log();
        let (records, spent) = match (log.records().await, log.spent("", now_ms()).await) {
            (Ok(records), Ok(spent)) => (records, spent),
            (Err(e), _) | (_, Err(e)) => return Ok(refused(format!("the spend log: {e}"))),
        };
        let last: Vec<Value> = records
            .iter()
            .rev()
            .take(20)
            .map(|r| {
                json!({
                    "url": r.url, "kind": r.kind, "state": r.state, "amountAtomic": r.amount_atomic,
                    "asset": r.asset, "network": r.network, "usd": paygate_core::money::format_atomic(
                        paygate_core::money::AtomicAmount(r.usd_micros), 6),
                })
            })
            .collect();
        let policy = self.client.policy();
        let usd = |micros: u128| paygate_core::money::format_atomic(paygate_core::money::AtomicAmount(micros), 6);
        Ok(answered(&json!({
            "spentLast24hUsd": usd(spent.total),
            "dailyBudgetUsd": policy.daily_budget.map(usd),
            "leftTodayUsd": policy.daily_budget.map(|b| usd(b.saturating_sub(spent.total))),
            "maxPerPaymentUsd": policy.max_per_payment.map(usd),
            "last": last,
        })))
    }
}

#[tool_handler(router = self.tools)]
impl ServerHandler for PayingTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "Fetch paid HTTP APIs: `quote` says what a URL costs, `fetch` pays and fetches it within the owner's \
             limits, `spending` shows what was paid and what the budgets leave.",
        )
    }
}
