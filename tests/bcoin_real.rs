//! A real bcoin (1.0.2, regtest) answers the JSON-RPC methods hab's RPC
//! front door will forward: mined blocks, a transaction in its mempool and
//! one confirmed, and each method's raw answer printed (run with
//! `--nocapture` to read them) as the record of bcoin's shapes. It asserts
//! only that each call got a JSON-RPC result or error object.

mod common;

use common::{op_true_spend, Bcoin, REGTEST_SUBSIDY};
use serde_json::{json, Value};

/// Calls `method` and prints what bcoin answered, as it sent it; checks
/// that it is a JSON-RPC answer: a result, or an error object with a code
/// and a message.
async fn record(node: &Bcoin, label: &str, method: &str, params: Value) -> Value {
    let request = json!({"jsonrpc": "1.0", "id": "hab", "method": method, "params": params});
    let (status, body) = node.post_raw(&request).await;
    println!(
        "=== {label}: {method} {params}\nHTTP {status}\n{}",
        body.trim_end()
    );
    let answer: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method}: not JSON ({e}): {body}"));
    is_jsonrpc_answer(method, &answer);
    answer
}

fn is_jsonrpc_answer(method: &str, answer: &Value) {
    let obj = answer
        .as_object()
        .unwrap_or_else(|| panic!("{method}: not a JSON-RPC answer: {answer}"));
    match obj.get("error") {
        None | Some(Value::Null) => assert!(
            obj.contains_key("result"),
            "{method}: neither result nor error: {answer}"
        ),
        Some(e) => assert!(
            e["code"].is_i64() && e["message"].is_string(),
            "{method}: an error that is no JSON-RPC error object: {answer}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcoin_answers_the_front_doors_methods() {
    let node = Bcoin::start().await;
    assert!(!node.api_key().is_empty());
    println!(
        "bcoin on {} (prefix {})",
        node.url(),
        node.prefix().display()
    );

    // 101 blocks to an anyone-can-spend P2SH address: block 1's coinbase is
    // then mature (100 confirmations) and spent into the mempool.
    let address = node.op_true_address().await;
    let spk = node.script_pubkey(&address).await;
    println!("op_true address {address}, scriptPubKey {spk}");
    let t = std::time::Instant::now();
    let hashes = node.mine_to(101, &address).await;
    println!("mined {} blocks in {:?}", hashes.len(), t.elapsed());
    assert_eq!(hashes.len(), 101);
    let more = node.mine(2).await;
    assert_eq!(more.len(), 2);
    let block1 = hashes[0].clone();
    let coinbase1 = node.coinbase_txid(&block1).await;
    let spend = op_true_spend(&coinbase1, 0, REGTEST_SUBSIDY - 100_000, &spk);
    let sent = record(&node, "a valid spend", "sendrawtransaction", json!([spend])).await;
    let mempool_txid = sent["result"].as_str().unwrap().to_string();

    let unknown = "00".repeat(32);
    let coinbase1_hex = node
        .rpc("getrawtransaction", json!([coinbase1, false]))
        .await;
    let calls: Vec<(&str, &str, Value)> = vec![
        ("", "getblockchaininfo", json!([])),
        ("", "getblockcount", json!([])),
        ("", "getbestblockhash", json!([])),
        ("height 1", "getblockhash", json!([1])),
        ("out of range", "getblockhash", json!([100000])),
        ("negative", "getblockhash", json!([-1])),
        ("verbose true", "getblockheader", json!([block1, true])),
        ("verbose false", "getblockheader", json!([block1, false])),
        ("unknown hash", "getblockheader", json!([unknown])),
        ("not a hash", "getblockheader", json!(["xyz"])),
        ("verbosity 0", "getblock", json!([block1, 0])),
        ("verbosity 1", "getblock", json!([block1, 1])),
        ("verbosity 2 (Core's)", "getblock", json!([block1, 2])),
        (
            "bcoin's form: verbose true, details true",
            "getblock",
            json!([block1, true, true]),
        ),
        ("verbosity 3 (Core's)", "getblock", json!([block1, 3])),
        ("verbose false", "getblock", json!([block1, false])),
        ("unknown hash", "getblock", json!([unknown])),
        (
            "confirmed, verbose 0",
            "getrawtransaction",
            json!([coinbase1, 0]),
        ),
        (
            "confirmed, verbose 1",
            "getrawtransaction",
            json!([coinbase1, 1]),
        ),
        (
            "confirmed, verbose true",
            "getrawtransaction",
            json!([coinbase1, true]),
        ),
        (
            "confirmed, verbosity 2 (Core's)",
            "getrawtransaction",
            json!([coinbase1, 2]),
        ),
        (
            "confirmed, verbose 1, its block (Core's third parameter)",
            "getrawtransaction",
            json!([coinbase1, 1, block1]),
        ),
        (
            "in the mempool, verbose 1",
            "getrawtransaction",
            json!([mempool_txid, 1]),
        ),
        ("unknown txid", "getrawtransaction", json!([unknown, 0])),
        ("not hex", "sendrawtransaction", json!(["zz"])),
        (
            "hex, not a transaction",
            "sendrawtransaction",
            json!(["00"]),
        ),
        (
            "the valid spend again (already in the mempool)",
            "sendrawtransaction",
            json!([spend]),
        ),
        (
            "a confirmed coinbase (already in the chain)",
            "sendrawtransaction",
            json!([coinbase1_hex]),
        ),
        (
            "well formed, its input missing",
            "sendrawtransaction",
            json!([op_true_spend(&unknown, 0, 1000, &spk)]),
        ),
        ("", "getmempoolinfo", json!([])),
        ("", "getrawmempool", json!([])),
        ("verbose", "getrawmempool", json!([true])),
        (
            "mempool_sequence (Core's second parameter)",
            "getrawmempool",
            json!([false, true]),
        ),
        ("6 blocks", "estimatesmartfee", json!([6])),
        (
            "6 blocks, a mode (Core's second parameter)",
            "estimatesmartfee",
            json!([6, "CONSERVATIVE"]),
        ),
        ("", "getnetworkinfo", json!([])),
        ("", "uptime", json!([])),
        ("an unknown method", "nosuchmethod", json!([])),
    ];
    for (label, method, params) in calls {
        record(&node, label, method, params).await;
    }

    // The same through a JSON-RPC 2.0 request and in a batch.
    for (label, body) in [
        (
            "a JSON-RPC 2.0 request",
            json!({"jsonrpc": "2.0", "id": 7, "method": "nosuchmethod", "params": []}),
        ),
        (
            "a batch",
            json!([
                {"jsonrpc": "1.0", "id": 1, "method": "getblockcount", "params": []},
                {"jsonrpc": "1.0", "id": 2, "method": "nosuchmethod", "params": []}
            ]),
        ),
    ] {
        let (status, text) = node.post_raw(&body).await;
        println!("=== {label}: {body}\nHTTP {status}\n{}", text.trim_end());
        let answer: Value = serde_json::from_str(&text).unwrap();
        match answer.as_array() {
            Some(items) => items.iter().for_each(|a| is_jsonrpc_answer("batch", a)),
            None => is_jsonrpc_answer(label, &answer),
        }
    }

    // A wrong API key: not JSON-RPC, so only printed.
    let resp = reqwest::Client::new()
        .post(node.url())
        .basic_auth("hab", Some("wrong"))
        .json(&json!({"jsonrpc": "1.0", "id": "hab", "method": "getblockcount", "params": []}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = format!("{:?}", resp.headers().get("www-authenticate"));
    println!(
        "=== a wrong API key: getblockcount\nHTTP {status} (WWW-Authenticate {headers})\n{}\n",
        resp.text().await.unwrap()
    );
    assert_eq!(status, 401);
}
