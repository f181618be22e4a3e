//! An agent's HTTP call that pays its own 402 within its owner's limits: the library example of
//! `docs/pay-from-an-agent.md`, which shows this file whole (its docs test checks that the two agree).

use paygate_client::{PayError, PayingClient, Policy, SpendLog, Wallet};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1).ok_or("usage: agent URL")?;
    // PAYGATE_WALLET_KEYSTORE (with PAYGATE_WALLET_PASSWORD), else PAYGATE_WALLET_KEY.
    let wallet = Wallet::from_env()?;
    // Limits in micro-dollars (six decimals; money is never a float): at most 5 cents a call, $1 a day.
    let policy = Policy { max_per_payment: Some(50_000), daily_budget: Some(1_000_000), ..Policy::default() };
    // Every payment is written here as `pending` before it is signed: a crash never loses track of money.
    let log = SpendLog::open(std::path::Path::new("agent-spend.db")).await?;
    let client = PayingClient::new(reqwest::Client::new(), wallet, policy, log);

    match client.send("GET", &url, Default::default(), None).await {
        Ok(answer) => {
            if let Some(payment) = &answer.payment {
                let offer = &payment.offer;
                eprintln!("paid {} atomic units of {} on {}", offer.amount.0, offer.asset, offer.network);
            }
            println!("{} {}", answer.status, String::from_utf8_lossy(&answer.body));
            Ok(())
        }
        // Outside the limits: nothing was signed.
        Err(PayError::Policy(limit)) => Err(format!("not paid: {limit}").into()),
        Err(other) => Err(other.into()),
    }
}
