//! A facilitator that misbehaves on purpose: paygate's own `paygate facilitator` (real verification, real
//! settlement on the test chain, settled by dev account 2), behind a front that answers the ways facilitators in
//! the field do when things go wrong. A test switches the [`FacilitatorFault`] at any time, and can stop the
//! front (connections refused: nothing reaches it) and start it again on the same port.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use paygate_core::clock::SystemClock;
use paygate_gateway::Facilitator;
use paygate_gateway::config::FacilitatorFile;
use paygate_proto::x402::FacilitatorRequest;
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;

use crate::Devchain;

/// Dev account 2: the facilitator's transactions are nobody else's.
pub const FACILITATOR_KEY: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";

/// How the facilitator misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FacilitatorFault {
    /// It answers as it should.
    None,
    /// `/settle` settles, then answers `success: false` naming the transaction, as a facilitator whose own wait
    /// for the receipt timed out does.
    SettledButSaysFailed,
    /// `/settle` settles, then answers `success: false` with no transaction.
    SettledButSaysFailedQuietly,
    /// `/settle` answers `success: false` at once, with no transaction, and settles a second later.
    SaysFailedThenSettles,
    /// `/verify` refuses with a reason naming internals (an RPC URL with a key).
    LeakyRefusal,
    /// `/settle` answers 500 and does nothing.
    ServerError,
    /// `/settle` settles, then answers something that is not JSON.
    Garbage,
    /// `/settle` settles, then answers only after `HANG` (longer than a client's timeout).
    Hang,
}

/// How long a hanging facilitator takes to answer.
pub const HANG: Duration = Duration::from_secs(20);

/// The text of [`FacilitatorFault::LeakyRefusal`]: nothing of it may reach a client.
pub const LEAKY_REASON: &str = "insufficient_funds: rpc https://rpc.internal.example:8545/?apikey=SECRET-KEY-123";

#[derive(Debug)]
struct Shared {
    facilitator: Facilitator,
    fault: Mutex<FacilitatorFault>,
    /// Faults answered so far, by fault.
    faults_served: Mutex<BTreeMap<String, u64>>,
}

/// A running misbehaving facilitator.
#[derive(Debug)]
pub struct FaultyFacilitator {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: Option<JoinHandle<()>>,
    /// While stopped: the address, bound but not listening, so connections are refused.
    parked: Option<TcpSocket>,
}

impl FaultyFacilitator {
    /// A facilitator settling on `chain`, answering as it should until told otherwise.
    pub async fn start(chain: &Devchain) -> FaultyFacilitator {
        let toml = format!(
            "[facilitator]\nsettler_key = \"{FACILITATOR_KEY}\"\nnetworks = [\"local\"]\n\n[networks.local]\n\
             chain_id = {}\nrpc_url = \"{}\"\nreceipt_poll_ms = 50\n",
            chain.chain_id, chain.rpc_url
        );
        let file = FacilitatorFile::parse_with(&toml, "facilitator.toml", &|_| None, &[]).expect("parses");
        let facilitator = Facilitator::build(&file, "facilitator.toml", Arc::new(SystemClock), BTreeMap::new())
            .await
            .expect("builds");
        let shared = Arc::new(Shared {
            facilitator,
            fault: Mutex::new(FacilitatorFault::None),
            faults_served: Mutex::new(BTreeMap::new()),
        });
        let socket = bind(SocketAddr::from(([127, 0, 0, 1], 0)));
        let addr = socket.local_addr().expect("bound");
        let mut faulty = FaultyFacilitator { addr, shared, server: None, parked: Some(socket) };
        faulty.resume();
        faulty
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_fault(&self, fault: FacilitatorFault) {
        *self.shared.fault.lock().expect("fault lock") = fault;
    }

    /// How many answers each fault gave so far.
    pub fn faults_served(&self) -> BTreeMap<String, u64> {
        self.shared.faults_served.lock().expect("count lock").clone()
    }

    /// Stops listening: connections are refused until [`FaultyFacilitator::resume`].
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
            self.parked = Some(bind(self.addr));
        }
    }

    /// Listens again on the same address.
    pub fn resume(&mut self) {
        let Some(socket) = self.parked.take() else { return };
        let app = axum::Router::new()
            .route("/supported", get(supported))
            .route("/verify", post(verify))
            .route("/settle", post(settle))
            .with_state(self.shared.clone());
        let listener = socket.listen(1024).expect("the facilitator listens");
        self.server = Some(tokio::spawn(async move {
            axum::serve(listener, app).await.expect("facilitator serves");
        }));
    }
}

impl Drop for FaultyFacilitator {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

fn bind(addr: SocketAddr) -> TcpSocket {
    let socket = TcpSocket::new_v4().expect("a TCP socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket.bind(addr).unwrap_or_else(|e| panic!("bind the facilitator to {addr}: {e}"));
    socket
}

impl Shared {
    fn fault(&self) -> FacilitatorFault {
        let fault = *self.fault.lock().expect("fault lock");
        if fault != FacilitatorFault::None {
            *self.faults_served.lock().expect("count lock").entry(format!("{fault:?}")).or_default() += 1;
        }
        fault
    }
}

async fn supported(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.facilitator.supported()).into_response()
}

async fn verify(State(shared): State<Arc<Shared>>, axum::Json(request): axum::Json<FacilitatorRequest>) -> Response {
    let answer = shared.facilitator.verify(&request).await;
    if answer.is_valid && shared.fault() == FacilitatorFault::LeakyRefusal {
        let leak = json!({ "isValid": false, "invalidReason": LEAKY_REASON, "invalidMessage": LEAKY_REASON });
        return axum::Json(leak).into_response();
    }
    axum::Json(answer).into_response()
}

async fn settle(State(shared): State<Arc<Shared>>, axum::Json(request): axum::Json<FacilitatorRequest>) -> Response {
    let failed = |transaction: &str, network: &str| -> Value {
        json!({ "success": false, "errorReason": "unexpected_settle_error", "errorMessage": "timed out waiting for the receipt", "transaction": transaction, "network": network })
    };
    match shared.fault() {
        FacilitatorFault::None | FacilitatorFault::LeakyRefusal => {
            axum::Json(shared.facilitator.settle(&request).await).into_response()
        }
        FacilitatorFault::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response(),
        FacilitatorFault::SettledButSaysFailed => {
            let settled = shared.facilitator.settle(&request).await;
            axum::Json(failed(&settled.transaction, &settled.network)).into_response()
        }
        FacilitatorFault::SettledButSaysFailedQuietly => {
            let settled = shared.facilitator.settle(&request).await;
            axum::Json(failed("", &settled.network)).into_response()
        }
        FacilitatorFault::SaysFailedThenSettles => {
            let later = shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                later.facilitator.settle(&request).await;
            });
            axum::Json(failed("", "")).into_response()
        }
        FacilitatorFault::Garbage => {
            shared.facilitator.settle(&request).await;
            (StatusCode::OK, "<html>502 Bad Gateway</html>").into_response()
        }
        FacilitatorFault::Hang => {
            let settled = shared.facilitator.settle(&request).await;
            tokio::time::sleep(HANG).await;
            axum::Json(settled).into_response()
        }
    }
}
