//! Bitcoin Core's format whichever node answers: what the front door
//! changes in a call to, and an answer from, another implementation.
//!
//! bcoin 1.0.2's answers, from its lib/node/rpc.js and as a real bcoin in
//! regtest gives them (tests/bcoin_real.rs), against Bitcoin Core's
//! (src/rpc/blockchain.cpp, mempool.cpp, fees.cpp, net.cpp,
//! rawtransaction.cpp); the differences method by method are in the
//! shapes record the tests were written from. btcd's translations, from
//! btcd's sources, are in [`btcd`] (its gaps in [`BTCD_GAPS`]). What is
//! done here, for bcoin (bitcoind is Core):
//!
//! - **Parameters** ([`params_for`]): Core's named parameters made
//!   positional (bcoin takes arrays only); `getblock`/`getrawtransaction`
//!   verbosity 0/1 made bcoin's booleans; Core-only trailing parameters
//!   bcoin rejects with its usage line dropped (`getrawtransaction`'s
//!   block hash, `estimatesmartfee`'s mode, `getrawmempool`'s
//!   `mempool_sequence` when false, `sendrawtransaction`'s `maxfeerate`
//!   and `maxburnamount`); a negative `getblockhash` height sent as one
//!   out of range (Core: -8, bcoin: a type error).
//! - **Results** ([`result_for`]): each object with Core's keys and types
//!   (`bits` a hex string, no `null` neighbour hashes, `scriptPubKey`'s
//!   `address`/`desc`/lower-case `type`, mempool entries' `vsize`/`fees{}`
//!   with counts including the entry, `estimatesmartfee`'s
//!   `feerate`/`errors`, `getnetworkinfo`'s integer `version`, ...).
//! - **Errors** ([`error_for`]): bcoin's codes and messages to Core's (not
//!   found -1 → -5, a bad hash -3 → -8, bad transaction hex → -22, ...).
//! - **What one answer cannot give** ([`follow_up`] then [`complete`]): a
//!   second call to the same node — `nonce`/`nTx` of a header or block,
//!   `getmempoolinfo`'s `bytes`/`total_fee`, `getnetworkinfo`'s
//!   `connections_in`/`connections_out`, and whether a
//!   `sendrawtransaction` really entered the mempool (bcoin returns the
//!   txid of any well-formed transaction, even one it drops).
//! - **`uptime`**, which bcoin has no RPC for: its REST `GET /`
//!   (`time.uptime`, the same port and credentials) instead
//!   ([`rest_instead`]); until that is called, bcoin's "Method not found"
//!   is answered as Core's -32601, saying why.

use serde_json::{json, Value};

mod btcd;
mod shapes;

use super::Dialect;
use shapes::*;

pub use btcd::BTCD_GAPS;

/// Bitcoin Core's error codes (src/rpc/protocol.h) used here.
mod rpc {
    pub const MISC_ERROR: i64 = -1;
    pub const TYPE_ERROR: i64 = -3;
    pub const INVALID_ADDRESS_OR_KEY: i64 = -5;
    pub const INVALID_PARAMETER: i64 = -8;
    pub const DESERIALIZATION_ERROR: i64 = -22;
    pub const TRANSACTION_ERROR: i64 = -25;
    pub const VERIFY_REJECTED: i64 = -26;
    pub const VERIFY_ALREADY_IN_UTXO_SET: i64 = -27;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
}

/// Seconds since the Unix epoch now (0 if the clock is before it).
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether a node's `getblockchaininfo` says it is in initial block
/// download: Core's own field, or (bcoin, which has none) verification
/// short of the tip, or (btcd, which has neither) a tip older than 24
/// hours, btcd's own rule ([`btcd::in_initial_block_download`]).
pub fn in_initial_block_download(dialect: Dialect, info: &Value) -> bool {
    match info["initialblockdownload"].as_bool() {
        Some(ibd) => ibd,
        None => match dialect {
            Dialect::Bcoin => info["verificationprogress"].as_f64().unwrap_or(0.0) < 0.9999,
            Dialect::Btcd => btcd::in_initial_block_download(info, now_secs()),
            Dialect::Core => false,
        },
    }
}

/// The height a call names (`getblockhash h`): it goes only to a node
/// that has it.
pub fn height_named(method: &str, params: &Value) -> Option<u64> {
    match method {
        "getblockhash" => params
            .get(0)
            .or_else(|| params.get("height"))
            .and_then(Value::as_u64),
        _ => None,
    }
}

/// Whether `method` names a block or a transaction by hash, which one node
/// may lack while another has it.
pub fn names_block_or_tx(method: &str) -> bool {
    matches!(method, "getblockheader" | "getblock" | "getrawtransaction")
}

/// The height an answer shows the client (a client is never shown a
/// lower one afterwards).
pub fn height_shown(method: &str, result: &Value) -> Option<u64> {
    match method {
        "getblockcount" => result.as_u64(),
        "getblockchaininfo" => result["blocks"].as_u64(),
        _ => None,
    }
}

/// Core's parameter names, in order, for the subset's methods that take
/// any (src/rpc/*.cpp `RPCHelpMan` arguments; `verbose` is an alias of
/// `verbosity` in getblock and getrawtransaction).
fn parameter_names(method: &str) -> &'static [&'static [&'static str]] {
    match method {
        "getblockhash" => &[&["height"]],
        "getblockheader" => &[&["blockhash"], &["verbose"]],
        "getblock" => &[&["blockhash"], &["verbosity", "verbose"]],
        "getrawtransaction" => &[&["txid"], &["verbosity", "verbose"], &["blockhash"]],
        "sendrawtransaction" => &[&["hexstring"], &["maxfeerate"], &["maxburnamount"]],
        "getrawmempool" => &[&["verbose"], &["mempool_sequence"]],
        "estimatesmartfee" => &[&["conf_target"], &["estimate_mode"]],
        _ => &[],
    }
}

/// Core's named parameters (an object) as positions, as bcoin takes
/// them (bweb answers an object with -32602): a missing one in between
/// is `null`, which bcoin's validator takes as "not given".
fn positional(method: &str, params: &Value) -> Vec<Value> {
    match params {
        Value::Array(a) => a.clone(),
        Value::Object(o) => {
            let names = parameter_names(method);
            let mut out: Vec<Value> = names
                .iter()
                .map(|aliases| {
                    aliases
                        .iter()
                        .find_map(|n| o.get(*n).cloned())
                        .unwrap_or(Value::Null)
                })
                .collect();
            while out.last().is_some_and(Value::is_null) {
                out.pop();
            }
            out
        }
        _ => Vec::new(),
    }
}

/// Core's verbosity 0/1 as bcoin's boolean (bval's `bool()` takes 0 and
/// 1 too, but a JSON `0`/`1` from a client is made explicit here);
/// anything else is left for bcoin to refuse.
fn as_verbose(v: &Value) -> Value {
    match v.as_i64() {
        Some(0) => json!(false),
        Some(1) => json!(true),
        _ => v.clone(),
    }
}

/// The method a node is asked for Core's `method`: btcd lacks
/// `estimatesmartfee` and `getnetworkinfo`, and answers them as
/// `estimatefee` and `getinfo` ([`btcd::method`]).
pub fn method_for(dialect: Dialect, method: &str) -> &str {
    match dialect {
        Dialect::Btcd => btcd::method(method),
        Dialect::Core | Dialect::Bcoin => method,
    }
}

/// A call's parameters as `implementation` takes them.
pub fn params_for(dialect: Dialect, method: &str, params: &Value) -> Value {
    match dialect {
        Dialect::Core => return params.clone(),
        Dialect::Btcd => return btcd::params(method, params),
        Dialect::Bcoin => {}
    }
    let mut p = positional(method, params);
    match method {
        "getblock" | "getrawtransaction" => {
            if let Some(v) = p.get_mut(1) {
                *v = as_verbose(v);
            }
            // Core's getrawtransaction blockhash: bcoin (with --index-tx)
            // finds the transaction without it and takes no third one.
            p.truncate(2);
        }
        "getblockheader" => {
            if let Some(v) = p.get_mut(1) {
                *v = as_verbose(v);
            }
        }
        // Core answers a negative height -8 "out of range"; bcoin a type
        // error: ask for one out of range instead.
        "getblockhash" if p.first().and_then(Value::as_i64).is_some_and(|h| h < 0) => {
            p[0] = json!(u32::MAX);
        }
        // bcoin's usage is `estimatesmartfee nblocks`: Core's
        // estimate_mode only changes the estimate, so it is dropped.
        "estimatesmartfee" => p.truncate(1),
        // maxfeerate/maxburnamount: bcoin's second parameter is a
        // different one (allowhighfees, unused), and bcoin checks neither.
        "sendrawtransaction" => p.truncate(1),
        "getrawmempool" if p.get(1).is_some_and(|s| s.is_null() || *s == json!(false)) => {
            p.truncate(1);
        }
        _ => {}
    }
    Value::Array(p)
}

/// What a call needs from the node when its JSON-RPC cannot answer it: a
/// GET of this path on the node's RPC port, with the same credentials,
/// whose body [`result_for`] then makes Core's answer. bcoin has no
/// `uptime` RPC; its REST `GET /` has `time.uptime` (lib/node/http.js).
pub fn rest_instead(dialect: Dialect, method: &str) -> Option<&'static str> {
    match (dialect, method) {
        (Dialect::Bcoin, "uptime") => Some("/"),
        _ => None,
    }
}

/// The node's answer to a call (`params` as the client sent them) as
/// Core would answer that call, before [`result_for`] and [`error_for`]:
/// where btcd answers with an error what Core answers with a result, or
/// the result's shape depends on the call ([`btcd::answer`]). Others'
/// answers are left as they are.
pub fn answer_for(
    dialect: Dialect,
    method: &str,
    params: &Value,
    answer: Result<Value, Value>,
) -> Result<Value, Value> {
    match dialect {
        Dialect::Btcd => btcd::answer(method, params, answer),
        Dialect::Core | Dialect::Bcoin => answer,
    }
}

/// A result in Bitcoin Core's format.
pub fn result_for(dialect: Dialect, method: &str, mut result: Value) -> Value {
    match dialect {
        Dialect::Core => return result,
        Dialect::Btcd => return btcd::result(method, result, now_secs()),
        Dialect::Bcoin => {}
    }
    match method {
        "getblockchaininfo" => chain_info(&mut result),
        "getblockheader" | "getblock" => {
            if let Some(o) = result.as_object_mut() {
                block_header(o);
                if method == "getblock" {
                    // bcoin's extra: the coinbase input script.
                    o.remove("coinbase");
                    if let Some(n) = o.get("tx").and_then(Value::as_array).map(Vec::len) {
                        o.insert("nTx".into(), json!(n));
                    }
                }
            }
        }
        "getrawtransaction" => {
            if let Some(o) = result.as_object_mut() {
                transaction(o);
            }
        }
        "getrawmempool" if result.is_object() => result = mempool_entries(result),
        "getmempoolinfo" => {
            if let Some(o) = result.as_object_mut() {
                mempool_info(o);
            }
        }
        "estimatesmartfee" => result = smart_fee(result),
        "getnetworkinfo" => {
            if let Some(o) = result.as_object_mut() {
                network_info(o);
            }
        }
        // The body of bcoin's GET / (rest_instead): its uptime in seconds.
        "uptime" => {
            if let Some(s) = result.pointer("/time/uptime").and_then(Value::as_u64) {
                result = json!(s);
            }
        }
        _ => {}
    }
    result
}

fn error(code: i64, message: &str) -> Value {
    json!({"code": code, "message": message})
}

/// An error object in Bitcoin Core's codes and messages
/// (src/rpc/blockchain.cpp, rawtransaction.cpp, mempool.cpp, fees.cpp,
/// common/messages.cpp).
pub fn error_for(dialect: Dialect, method: &str, error_object: Value) -> Value {
    if dialect == Dialect::Core {
        return error_object;
    }
    let code = error_object["code"].as_i64().unwrap_or(rpc::MISC_ERROR);
    let message = error_object["message"].as_str().unwrap_or("").to_string();
    if dialect == Dialect::Btcd {
        return btcd::error_for(method, code, &message);
    }
    let hash_param = matches!(method, "getblock" | "getblockheader" | "getrawtransaction");
    match (method, code) {
        ("uptime", rpc::METHOD_NOT_FOUND) => error(
            rpc::METHOD_NOT_FOUND,
            "Method not found (bcoin has no uptime RPC)",
        ),
        (_, rpc::METHOD_NOT_FOUND) => error(rpc::METHOD_NOT_FOUND, "Method not found"),
        ("getblock" | "getblockheader", rpc::MISC_ERROR) if message == "Block not found" => {
            error(rpc::INVALID_ADDRESS_OR_KEY, "Block not found")
        }
        ("getrawtransaction", rpc::MISC_ERROR) if message.starts_with("Transaction not found") => {
            error(
                rpc::INVALID_ADDRESS_OR_KEY,
                "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.",
            )
        }
        (_, rpc::INVALID_PARAMETER) if message.starts_with("Block height out of range") => {
            error(rpc::INVALID_PARAMETER, "Block height out of range")
        }
        ("getblock" | "getrawtransaction", rpc::TYPE_ERROR) if message.starts_with("Param #1") => {
            error(
                rpc::INVALID_PARAMETER,
                "Verbosity 2 and 3 are not served by this node (bcoin): use 0 or 1",
            )
        }
        (_, rpc::TYPE_ERROR) if hash_param && message.starts_with("Param #0") => {
            let name = if method == "getrawtransaction" {
                "txid"
            } else {
                "blockhash"
            };
            error(
                rpc::INVALID_PARAMETER,
                &format!("{name} must be of length 64 and hexadecimal"),
            )
        }
        ("sendrawtransaction", rpc::TYPE_ERROR | rpc::DESERIALIZATION_ERROR) => error(
            rpc::DESERIALIZATION_ERROR,
            "TX decode failed. Make sure the tx has at least one input.",
        ),
        ("estimatesmartfee", rpc::TYPE_ERROR) => error(
            rpc::INVALID_PARAMETER,
            "Invalid conf_target, must be between 1 and 1008",
        ),
        // Only a true mempool_sequence is still sent (params_for).
        ("getrawmempool", rpc::MISC_ERROR) if message.starts_with("getrawmempool") => error(
            rpc::INVALID_PARAMETER,
            "mempool_sequence is not served by this node (bcoin)",
        ),
        _ => error(code, &message),
    }
}

/// A second call to the same node that completes an answer
/// ([`complete`]), after waiting `settle`.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUp {
    pub method: &'static str,
    pub params: Value,
    pub settle: std::time::Duration,
}

/// The second call an answer (already through [`result_for`]) needs, if
/// any: bcoin's header and block lack `nonce` (and the header `nTx`),
/// which its raw header/block carry; its getmempoolinfo's `bytes` is
/// memory, not vsize, and it has no `total_fee`; its getnetworkinfo does
/// not split connections; and its sendrawtransaction answers the txid of
/// any well-formed transaction, taken or not.
pub fn follow_up(dialect: Dialect, method: &str, result: &Value) -> Option<FollowUp> {
    match dialect {
        Dialect::Core => return None,
        Dialect::Btcd => return btcd::follow_up(method, result),
        Dialect::Bcoin => {}
    }
    let call = |method, params| {
        Some(FollowUp {
            method,
            params,
            settle: std::time::Duration::ZERO,
        })
    };
    let hash = result["hash"].as_str();
    match method {
        "getblockheader" => call("getblock", json!([hash?, false])),
        "getblock" => call("getblockheader", json!([hash?, false])),
        "getmempoolinfo" if result.is_object() => call("getrawmempool", json!([true])),
        "getnetworkinfo" if !result["connections_in"].is_u64() => call("getpeerinfo", json!([])),
        // bcoin takes it asynchronously (relay() is not awaited): a
        // moment before looking.
        "sendrawtransaction" => Some(FollowUp {
            method: "getrawtransaction",
            params: json!([result.as_str()?, true]),
            settle: std::time::Duration::from_millis(300),
        }),
        _ => None,
    }
}

/// The answer, completed with the node's answer to [`follow_up`]'s call
/// (`Err` with its error object when it answered one). When the node did
/// not answer the second call at all, keep the first answer unchanged.
pub fn complete(
    dialect: Dialect,
    method: &str,
    mut result: Value,
    second: Result<Value, Value>,
) -> Result<Value, Value> {
    if dialect == Dialect::Btcd {
        return btcd::complete(method, result, second);
    }
    match (method, second) {
        ("getblockheader", Ok(raw)) | ("getblock", Ok(raw)) => {
            if let Some(b) = raw.as_str().and_then(|h| hex::decode(h).ok()) {
                if let (Some(o), Some(nonce)) = (result.as_object_mut(), b.get(76..80)) {
                    let nonce = u32::from_le_bytes(nonce.try_into().unwrap_or([0; 4]));
                    o.insert("nonce".into(), json!(nonce));
                    if method == "getblockheader" {
                        let mut r = Reader { b: &b, at: 80 };
                        if let Some(n) = r.varint() {
                            o.insert("nTx".into(), json!(n));
                        }
                    }
                }
            }
            Ok(result)
        }
        ("getmempoolinfo", Ok(Value::Object(entries))) => {
            let (mut bytes, mut fee) = (0u64, 0i64);
            for e in entries.values() {
                bytes += e["size"].as_u64().unwrap_or(0);
                fee += sats(&e["fee"]);
            }
            if let Some(o) = result.as_object_mut() {
                o.insert("bytes".into(), json!(bytes));
                o.insert("total_fee".into(), btc(fee));
            }
            Ok(result)
        }
        ("getnetworkinfo", Ok(Value::Array(peers))) => {
            let inbound = peers.iter().filter(|p| p["inbound"] == json!(true)).count();
            if let Some(o) = result.as_object_mut() {
                o.insert("connections_in".into(), json!(inbound));
                o.insert("connections_out".into(), json!(peers.len() - inbound));
            }
            Ok(result)
        }
        ("sendrawtransaction", Ok(tx)) => {
            if tx["blockhash"].is_string() {
                Err(error(
                    rpc::VERIFY_ALREADY_IN_UTXO_SET,
                    "Transaction outputs already in utxo set",
                ))
            } else {
                Ok(result)
            }
        }
        ("sendrawtransaction", Err(_)) => Err(error(
            rpc::VERIFY_REJECTED,
            "Transaction not accepted: the node (bcoin) answered its txid but did not take it \
             into its mempool (missing or spent inputs, or its policy)",
        )),
        _ => Ok(result),
    }
}

#[cfg(test)]
mod btcd_tests;
#[cfg(test)]
mod tests;
