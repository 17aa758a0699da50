//! A real Bitcoin node per test: bcoin 1.0.2 (npm; `bash scripts/setup.sh`
//! installs it into /opt/hab-bcoin) in regtest, on free ports of 127.0.0.1,
//! with its data in a temporary prefix: no wallet, no listening for peers,
//! JSON-RPC over HTTP with basic auth (any user, the API key as password).
//!
//! bcoin's regtest is not Bitcoin Core's: its addresses have other prefixes
//! (P2SH 0x26, P2PKH 0x3c, bech32 `rb`), so they come from the node itself
//! ([`Bcoin::op_true_address`]), never from a Core fixture.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tempfile::TempDir;

use super::free_port;

/// Where scripts/setup.sh installs bcoin; `bcoin` on PATH otherwise (its
/// wrapper /usr/local/bin/bcoin).
pub const BCOIN_BIN: &str = "/opt/hab-bcoin/node_modules/.bin/bcoin";

/// The block subsidy of regtest blocks below height 150 (its halving
/// interval), in satoshis.
pub const REGTEST_SUBSIDY: u64 = 50 * 100_000_000;

/// The redeem script of [`Bcoin::op_true_address`]: OP_TRUE.
pub const OP_TRUE: &str = "51";

/// A running bcoin regtest node, killed (SIGKILL) on drop.
pub struct Bcoin {
    child: Child,
    /// The JSON-RPC (HTTP) port.
    pub port: u16,
    key: String,
    log: PathBuf,
    http: reqwest::Client,
    // Last: removed after the node is killed.
    dir: TempDir,
}

impl Bcoin {
    /// Starts one (with a transaction index, as Bitcoin Core's `-txindex`,
    /// so `getrawtransaction` finds confirmed transactions) and waits until
    /// its JSON-RPC answers.
    pub async fn start() -> Self {
        Self::start_with(&["--index-tx"]).await
    }

    /// Starts one with these extra bcoin options (`--index-tx`,
    /// `--index-address`, ...).
    pub async fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        // bcoin cannot have no outbound peers (max-outbound > 0) and dials
        // regtest's seed, 127.0.0.1:48444, on its own: make its only peer
        // its own P2P port, where nothing listens (--listen=false).
        let p2p = free_port();
        let key = format!("hab-test-{:016x}", rand::random::<u64>());
        let log = dir.path().join("bcoin.log");
        let out = std::fs::File::create(&log).unwrap();
        let bin = if Path::new(BCOIN_BIN).exists() {
            BCOIN_BIN
        } else {
            "bcoin"
        };
        let child = Command::new(bin)
            .args([
                "--network=regtest",
                "--no-wallet",
                "--listen=false",
                "--http-host=127.0.0.1",
                // Verification in-process: no worker processes to outlive a
                // killed node.
                "--workers=false",
                "--log-level=debug",
            ])
            .arg(format!("--http-port={port}"))
            .arg(format!("--port={p2p}"))
            .arg(format!("--only=127.0.0.1:{p2p}"))
            .arg(format!("--api-key={key}"))
            .arg(format!("--prefix={}", dir.path().display()))
            .args(extra)
            // Nothing native was built (setup.sh installs with
            // --ignore-scripts): bcoin's hashes and curves in JavaScript.
            .env("NODE_BACKEND", "js")
            .env_remove("BCOIN_NETWORK")
            .env_remove("BCOIN_PREFIX")
            .env_remove("BCOIN_API_KEY")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start bcoin ({bin}): {e}; bcoin 1.0.2 is installed by \
                     `bash scripts/setup.sh` (into /opt/hab-bcoin)"
                )
            });
        let mut node = Bcoin {
            child,
            port,
            key,
            log,
            http: reqwest::Client::new(),
            dir,
        };
        node.wait_ready().await;
        node
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "bcoin exited ({status}) before its JSON-RPC answered \
                     (is it installed? `bash scripts/setup.sh`); its log:\n{}",
                    self.log()
                );
            }
            if let Ok(resp) = self
                .http
                .post(self.url())
                .basic_auth("hab", Some(&self.key))
                .json(&json!({"method": "getblockcount", "params": [], "id": 0}))
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                if let Ok(v) = resp.json::<Value>().await {
                    if v["result"].is_u64() {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "bcoin's JSON-RPC on {} did not answer in 60 s; its log:\n{}",
                self.url(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:port/`, where it takes JSON-RPC requests (POST).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The API key: the basic-auth password (any user name).
    pub fn api_key(&self) -> &str {
        &self.key
    }

    /// Its data folder (`--prefix`).
    pub fn prefix(&self) -> &Path {
        self.dir.path()
    }

    /// What it printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Posts this JSON body (one request, a batch, a JSON-RPC 2.0 request)
    /// to its JSON-RPC endpoint: the HTTP status and the body as sent.
    pub async fn post_raw(&self, body: &Value) -> (u16, String) {
        let resp = self
            .http
            .post(self.url())
            .basic_auth("hab", Some(&self.key))
            .json(body)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap_or_else(|e| panic!("bcoin {body}: {e}; its log:\n{}", self.log()));
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    /// One JSON-RPC call (a JSON-RPC 1.0 request, as bitcoin-cli sends it):
    /// the HTTP status and the whole answer (`{"result", "error", "id"}`),
    /// errors included.
    pub async fn call(&self, method: &str, params: Value) -> (u16, Value) {
        let (status, body) = self
            .post_raw(&json!({"jsonrpc": "1.0", "id": "hab", "method": method, "params": params}))
            .await;
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    /// The result of a JSON-RPC call; panics with the error object when it
    /// failed.
    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        let (status, answer) = self.call(method, params.clone()).await;
        match answer.get("error") {
            Some(Value::Null) | None if status == 200 => answer["result"].clone(),
            _ => panic!("bcoin {method} {params}: HTTP {status}, {answer}"),
        }
    }

    /// The node's P2SH address whose redeem script is [`OP_TRUE`]: coins
    /// sent there are spent by anyone, with no key and no signature
    /// ([`op_true_spend`]).
    pub async fn op_true_address(&self) -> String {
        let decoded = self.rpc("decodescript", json!([OP_TRUE])).await;
        decoded["p2sh"]
            .as_str()
            .expect("decodescript's p2sh")
            .to_string()
    }

    /// The scriptPubKey (hex) of an address, by `validateaddress`.
    pub async fn script_pubkey(&self, address: &str) -> String {
        let v = self.rpc("validateaddress", json!([address])).await;
        assert_eq!(v["isvalid"], true, "{address}: {v}");
        v["scriptPubKey"].as_str().unwrap().to_string()
    }

    /// Mines `n` blocks to `address` (`generatetoaddress`, which bcoin has
    /// without a wallet); returns their hashes.
    pub async fn mine_to(&self, n: u32, address: &str) -> Vec<String> {
        let hashes = self.rpc("generatetoaddress", json!([n, address])).await;
        hashes
            .as_array()
            .expect("generatetoaddress: an array of block hashes")
            .iter()
            .map(|h| h.as_str().unwrap().to_string())
            .collect()
    }

    /// Mines `n` blocks to [`Bcoin::op_true_address`]; returns their hashes.
    pub async fn mine(&self, n: u32) -> Vec<String> {
        let address = self.op_true_address().await;
        self.mine_to(n, &address).await
    }

    /// The coinbase txid of the block with this hash.
    pub async fn coinbase_txid(&self, block_hash: &str) -> String {
        let block = self.rpc("getblock", json!([block_hash, true])).await;
        block["tx"][0].as_str().unwrap().to_string()
    }
}

impl Drop for Bcoin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw legacy transaction (hex) spending output `vout` of `txid`, a P2SH
/// output of [`OP_TRUE`] (scriptSig: the redeem script pushed), to one
/// output of `value` satoshis with this scriptPubKey (hex).
pub fn op_true_spend(txid: &str, vout: u32, value: u64, script_pubkey: &str) -> String {
    let mut prevout = hex::decode(txid).expect("txid hex");
    prevout.reverse();
    let spk = hex::decode(script_pubkey).expect("scriptPubKey hex");
    assert!(spk.len() < 0xfd);
    let mut tx = Vec::new();
    tx.extend(1u32.to_le_bytes()); // version
    tx.push(1); // inputs
    tx.extend(prevout);
    tx.extend(vout.to_le_bytes());
    tx.extend([0x02, 0x01, 0x51]); // scriptSig (2 bytes): push(OP_TRUE)
    tx.extend(0xffff_ffffu32.to_le_bytes()); // sequence
    tx.push(1); // outputs
    tx.extend(value.to_le_bytes());
    tx.push(spk.len() as u8);
    tx.extend(spk);
    tx.extend(0u32.to_le_bytes()); // locktime
    hex::encode(tx)
}
