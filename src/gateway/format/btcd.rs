//! btcd's answers in Bitcoin Core's format, taken from btcd's own sources
//! (github.com/btcsuite/btcd; no btcd was run for this). The stored
//! versions read: the result structs and json tags in
//! `btcjson/chainsvrresults.go` at e23a7f60 (v0.24 era, with
//! `btcd/btcutil`), parameter forms in `btcjson/chainsvrcmds.go` at
//! 069a0eca, error codes in `btcjson/jsonrpcerr.go` at 7d1adc1d, the
//! methods with handlers in `rpcserverhelp.go` at 72bbdd55
//! (`rpcResultTypes`), `mempool/mempool.go` at 02efecd8 and
//! `mempool/estimatefee.go`. The handlers in `rpcserver.go` were read as
//! stored at f470bf0f, a 2018 version older than those structs: where a
//! handler changed since (getblock's verbosity became an int;
//! sendrawtransaction's rejections got -25/-26/-27 in btcd PR #1428
//! instead of -22) both forms are taken.
//!
//! btcd has no `getnetworkinfo` (in `rpcUnimplemented`) and no
//! `estimatesmartfee` handler: they are asked as `getinfo` and
//! `estimatefee` ([`method`]). What cannot be given is in [`BTCD_GAPS`].

use serde_json::{json, Value};

use super::shapes::{btc, sats};
use super::{error, positional, rpc, FollowUp};

mod results;

use results::*;

/// Core's fields (or behaviours) the front door cannot give from btcd,
/// and why: (Core shape case, field, why). Cases are those of
/// tests/gateway_formats.rs `SHAPES` where one fits.
pub const BTCD_GAPS: &[(&str, &str, &str)] = &[
    ("getblockchaininfo", "verificationprogress", "btcd never sets it (btcjson.GetBlockChainInfoResult has it with omitempty; rpcserver.go handleGetBlockChainInfo leaves it 0)"),
    ("getblockchaininfo", "chainwork", "never set by handleGetBlockChainInfo (omitempty)"),
    ("getblockchaininfo", "size_on_disk", "never set by handleGetBlockChainInfo (omitempty)"),
    ("getblockchaininfo", "headers", "btcd answers its block height (Headers: chainSnapshot.Height), not a header count"),
    ("getblockchaininfo", "time", "from a second call (getblockheader of bestblockhash); missing if that fails"),
    ("getblockheader verbose", "mediantime", "btcd gives a median time past only for the tip (getblockchaininfo)"),
    ("getblockheader verbose", "chainwork", "btcd's RPC gives no chain work anywhere"),
    ("getblock verbosity 1", "mediantime", "as getblockheader"),
    ("getblock verbosity 1", "chainwork", "as getblockheader"),
    ("getblock verbosity 2", "tx[].fee", "btcd's verbose transactions (TxRawResult) carry no fee"),
    ("getrawtransaction verbosity 2", "fee, vin[].prevout", "btcd takes any non-zero verbose as 1 (handleGetRawTransaction)"),
    ("scriptPubKey", "asm", "btcd's disassembler (txscript.DisasmString); Core's differs in details (sighash types as [ALL] in signatures)"),
    ("scriptPubKey", "desc", "inferred here from type, address and script: Core's for pk/pkh/sh/wpkh/wsh/multi/nulldata; rawtr() for taproot even where Core, finding the key off the curve, writes addr()"),
    ("getrawmempool verbose entry", "wtxid", "GetRawMempoolVerboseResult has none (a getrawtransaction per entry would give it)"),
    ("getrawmempool verbose entry", "weight", "where btcd leaves it 0, vsize x 4 (at most 3 over Core's)"),
    ("getrawmempool verbose entry", "unbroadcast", "false: btcd relays a transaction as it takes it (no unbroadcast set)"),
    ("getmempoolinfo", "usage", "btcd does not measure its pool's memory"),
    ("getmempoolinfo", "maxmempool", "btcd's pool has no size limit"),
    ("getmempoolinfo", "mempoolminfee", "btcd's --minrelaytxfee is in getinfo, not asked here (the one second call is getrawmempool)"),
    ("getmempoolinfo", "minrelaytxfee", "as mempoolminfee"),
    ("getmempoolinfo", "incrementalrelayfee", "btcd has no such setting"),
    ("getnetworkinfo", "localservices", "getinfo has no service bits (server.go defaultServices, less --nopeerbloomfilters/--nocfilters)"),
    ("getnetworkinfo", "localservicesnames", "as localservices"),
    ("getnetworkinfo", "localrelay", "--blocksonly is not visible over RPC"),
    ("getnetworkinfo", "networks", "btcd's RPC does not list its networks"),
    ("getnetworkinfo", "incrementalfee", "btcd has no such setting"),
    ("getnetworkinfo", "localaddresses", "btcd's RPC does not list its local addresses"),
    ("getnetworkinfo", "subversion", "made from getinfo's version as btcd's user agent (/btcwire:0.5.0/btcd:X.Y.Z/), without any --uacomment"),
    ("estimatesmartfee", "feerate", "btcd's estimatefee: BTC per kB of serialized size (not per kvB), targets 2..25 only (estimateFeeDepth); a longer target is answered for 25"),
    ("getrawmempool", "mempool_sequence", "btcd has no mempool sequence: true is refused (-8)"),
    ("sendrawtransaction", "error message", "a rejection's message is btcd's description, not Core's reject-reason token (except already in chain -27, missing inputs -25, already in the mempool: its txid)"),
    ("getblock/getblockheader/getrawtransaction", "hash parameter", "btcd zero-pads a hex hash shorter than 64 digits (chainhash.NewHashFromStr) where Core refuses it (-8)"),
];

/// Core's DEFAULT_MAX_TIP_AGE, which is also btcd's own test of being
/// current (blockchain/chain.go `isCurrent`: the tip's timestamp within
/// 24 hours).
const MAX_TIP_AGE: u64 = 24 * 60 * 60;

/// btcd's `estimatefee` targets (mempool/estimatefee.go
/// `estimateFeeDepth`).
const MAX_FEE_TARGET: i64 = 25;

const NO_FEE: &str = "Insufficient data or no feerate found";

/// Whether btcd's `getblockchaininfo` means initial block download. btcd
/// gives neither `initialblockdownload` nor `verificationprogress` (both
/// omitempty and never set), and `headers` is its block height, so it
/// is btcd's own rule (`isCurrent`) on what it gives: the tip's median
/// time past more than 24 hours before `now`. Median time past trails
/// the tip's own time (about an hour on mainnet), so this says IBD a
/// little sooner than btcd would. A `verificationprogress` btcd does
/// give is used instead; no `mediantime` at all counts as IBD.
pub(super) fn in_initial_block_download(info: &Value, now: u64) -> bool {
    if let Some(progress) = info["verificationprogress"].as_f64() {
        return progress < 0.9999;
    }
    match info["mediantime"].as_u64() {
        Some(t) => now.saturating_sub(t) > MAX_TIP_AGE,
        None => true,
    }
}

/// The method btcd is asked for a Core method it lacks: `getnetworkinfo`
/// is in btcd's rpcUnimplemented ("Command unimplemented"), and it has
/// no `estimatesmartfee` handler (rpcserverhelp.go `rpcResultTypes`).
pub(super) fn method(method: &str) -> &str {
    match method {
        "estimatesmartfee" => "estimatefee",
        "getnetworkinfo" => "getinfo",
        other => other,
    }
}

/// Core's conf_target as btcd's `estimatefee` numblocks: Core answers a
/// target of 1 for 2, btcd estimates up to 25 blocks (Core, too, answers
/// a longer target with the longest it has); outside Core's 1..=1008,
/// 0, which btcd refuses ("cannot confirm transaction in zero blocks").
fn fee_target(target: i64) -> i64 {
    if (1..=1008).contains(&target) {
        target.clamp(2, MAX_FEE_TARGET)
    } else {
        0
    }
}

/// A call's parameters in btcd's forms (btcjson/chainsvrcmds.go):
/// positional only (btcjson.Request's params is an array); getblock's
/// `Verbosity *int` and getrawtransaction's `Verbose *int` from Core's
/// booleans, getblockheader's `Verbose *bool` from 0/1; Core-only
/// trailing parameters dropped (getrawtransaction's blockhash,
/// sendrawtransaction's maxfeerate/maxburnamount, which btcd ignores
/// anyway, estimatesmartfee's mode, a false mempool_sequence); a
/// getblockhash height outside int32 as -1 (btcd's `int32(c.Index)`
/// would wrap it onto a real height).
pub(super) fn params(method: &str, params: &Value) -> Value {
    let mut p = positional(method, params);
    let as_int = |v: &Value| match v {
        Value::Bool(b) => json!(i64::from(*b)),
        other => other.clone(),
    };
    match method {
        "getblock" | "getrawtransaction" => {
            if let Some(v) = p.get_mut(1) {
                *v = as_int(v);
            }
            p.truncate(2);
        }
        "getblockheader" => {
            if let Some(v) = p.get_mut(1) {
                if let Some(n @ (0 | 1)) = v.as_i64() {
                    *v = json!(n == 1);
                }
            }
            p.truncate(2);
        }
        "getblockhash" => {
            if let Some(h) = p.first_mut() {
                let int32 = h
                    .as_i64()
                    .is_some_and(|h| (0..=i64::from(i32::MAX)).contains(&h));
                if (h.is_i64() || h.is_u64()) && !int32 {
                    *h = json!(-1);
                }
            }
        }
        "sendrawtransaction" => p.truncate(1),
        "getrawmempool" if p.get(1).is_some_and(|s| s.is_null() || *s == json!(false)) => {
            p.truncate(1);
        }
        "estimatesmartfee" => {
            p.truncate(1);
            if let Some(t) = p.first_mut() {
                if let Some(n) = t.as_i64() {
                    *t = json!(fee_target(n));
                }
            }
        }
        "getnetworkinfo" => p.clear(),
        _ => {}
    }
    Value::Array(p)
}

/// An answer whose meaning depends on the call, before [`result`] or
/// [`error_for`]: estimatefee's number as Core's `{feerate, blocks}`
/// (or `{errors, blocks}` when btcd has no estimate: "not enough blocks
/// have been observed" is Core's no-data case, blocks 0); a
/// sendrawtransaction btcd refuses as "already have transaction <txid>"
/// (mempool.go maybeAcceptTransaction) as the txid, which is what Core
/// answers for a transaction already in its mempool.
pub(super) fn answer(
    method: &str,
    params: &Value,
    answer: Result<Value, Value>,
) -> Result<Value, Value> {
    let message = |e: &Value| e["message"].as_str().unwrap_or("").to_string();
    match (method, answer) {
        ("estimatesmartfee", Ok(rate)) => {
            let Some(f) = rate.as_f64() else {
                return Ok(rate);
            };
            let target = positional(method, params)
                .first()
                .and_then(Value::as_i64)
                .map(fee_target)
                .unwrap_or(0);
            Ok(if f > 0.0 {
                json!({"feerate": f, "blocks": target})
            } else {
                json!({"errors": [NO_FEE], "blocks": target})
            })
        }
        ("estimatesmartfee", Err(e)) if message(&e) == "not enough blocks have been observed" => {
            Ok(json!({"errors": [NO_FEE], "blocks": 0}))
        }
        ("sendrawtransaction", Err(e)) => {
            let m = message(&e);
            let txid = m
                .split_once("already have transaction ")
                .map(|(_, t)| t.trim())
                .filter(|t| t.len() == 64 && t.chars().all(|c| c.is_ascii_hexdigit()));
            match txid {
                Some(t) => Ok(json!(t.to_ascii_lowercase())),
                None => Err(e),
            }
        }
        (_, other) => other,
    }
}

/// A result in Bitcoin Core's format (btcjson/chainsvrresults.go's
/// structs, as btcd serialises them, to Core's shapes).
pub(super) fn result(method: &str, mut result: Value, now: u64) -> Value {
    let Some(o) = result.as_object_mut() else {
        // Hex strings, hashes, counts, txid lists: Core's already.
        return result;
    };
    match method {
        "getblockchaininfo" => chain_info(o, now),
        "getblockheader" => header(o),
        "getblock" => block(o),
        "getrawtransaction" => transaction(o),
        "getrawmempool" => return mempool_entries(o),
        "getmempoolinfo" => mempool_info(o),
        "getnetworkinfo" => network_info(o),
        _ => {}
    }
    result
}

/// btcd's error objects in Core's codes and messages (btcjson
/// jsonrpcerr.go; rpcserver.go's handlers, parseCmd and
/// standardCmdResult).
pub(super) fn error_for(method: &str, code: i64, message: &str) -> Value {
    let hash_param = matches!(method, "getblock" | "getblockheader" | "getrawtransaction");
    match (method, code) {
        // Unregistered or unhandled (ErrRPCMethodNotFound), or in
        // rpcUnimplemented (ErrRPCUnimplemented, -1).
        (_, rpc::METHOD_NOT_FOUND) => error(rpc::METHOD_NOT_FOUND, "Method not found"),
        (_, rpc::MISC_ERROR) if message == "Command unimplemented" => {
            error(rpc::METHOD_NOT_FOUND, "Method not found")
        }
        ("getblock" | "getblockheader", rpc::INVALID_ADDRESS_OR_KEY) => {
            error(rpc::INVALID_ADDRESS_OR_KEY, "Block not found")
        }
        // ErrRPCOutOfRange is -1 in btcd.
        ("getblockhash", rpc::MISC_ERROR) if message.starts_with("Block number out of range") => {
            error(rpc::INVALID_PARAMETER, "Block height out of range")
        }
        // rpcNoTxInfoError, with btcd's --txindex; without it btcd says
        // so, as Core does without -txindex.
        ("getrawtransaction", rpc::INVALID_ADDRESS_OR_KEY) if message.starts_with("No information available") => error(
            rpc::INVALID_ADDRESS_OR_KEY,
            "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.",
        ),
        ("getrawtransaction", rpc::INVALID_ADDRESS_OR_KEY) if message.contains("transaction index must be enabled") => error(
            rpc::INVALID_ADDRESS_OR_KEY,
            "No such mempool transaction. Use -txindex or provide a block hash to enable blockchain transaction queries. Use gettransaction for wallet transactions.",
        ),
        ("sendrawtransaction", _) if message.starts_with("TX rejected: ") => {
            rejected(code, message.trim_start_matches("TX rejected: "))
        }
        // rpcDecodeHexError ("Argument must be hexadecimal string") and
        // "TX decode failed: ...", both ErrRPCDeserialization.
        ("sendrawtransaction", rpc::DESERIALIZATION_ERROR) => error(
            rpc::DESERIALIZATION_ERROR,
            "TX decode failed. Make sure the tx has at least one input.",
        ),
        (_, rpc::DESERIALIZATION_ERROR) if hash_param && message.starts_with("Argument must be hexadecimal") => {
            bad_hash(method, message)
        }
        ("estimatesmartfee", rpc::INTERNAL_ERROR)
            if message == "cannot confirm transaction in zero blocks"
                || message == "Parameter NumBlocks must be positive" =>
        {
            error(rpc::INVALID_PARAMETER, "Invalid conf_target, must be between 1 and 1008")
        }
        // Only a true mempool_sequence is still sent (params).
        ("getrawmempool", rpc::INVALID_PARAMS) if message.contains("wrong number of params") => error(
            rpc::INVALID_PARAMETER,
            "mempool_sequence is not served by this node (btcd)",
        ),
        // btcjson.UnmarshalCmd's "parameter #N 'x' must be type T".
        (_, rpc::INVALID_PARAMS) if message.contains("must be type") => error(rpc::TYPE_ERROR, message),
        _ => error(code, message),
    }
}

/// A rejected sendrawtransaction ("TX rejected: <reason>": -22 before
/// btcd PR #1428, then -25 when not a rule error, -27 for "transaction
/// already exists", else -26) as Core's (src/node/transaction.cpp,
/// rpc/util.cpp JSONRPCTransactionError).
fn rejected(code: i64, reason: &str) -> Value {
    if reason.contains("transaction already exists") {
        error(
            rpc::VERIFY_ALREADY_IN_UTXO_SET,
            "Transaction outputs already in utxo set",
        )
    } else if reason.contains("orphan transaction") {
        error(rpc::TRANSACTION_ERROR, "bad-txns-inputs-missingorspent")
    } else if reason.contains("already have transaction") {
        error(rpc::VERIFY_REJECTED, "txn-already-in-mempool")
    } else if code == rpc::TRANSACTION_ERROR {
        error(rpc::TRANSACTION_ERROR, reason)
    } else {
        error(rpc::VERIFY_REJECTED, reason)
    }
}

/// btcd's rpcDecodeHexError (`Argument must be hexadecimal string (not
/// "<hash>")`) as Core's ParseHashV messages (-8).
fn bad_hash(method: &str, message: &str) -> Value {
    let name = if method == "getrawtransaction" {
        "txid"
    } else {
        "blockhash"
    };
    let given = message
        .split_once("(not ")
        .map(|(_, g)| g.trim_end_matches(')').trim_matches('"'))
        .unwrap_or("");
    let text = if given.len() != 64 {
        format!(
            "{name} must be of length 64 (not {}, for '{given}')",
            given.len()
        )
    } else {
        format!("{name} must be hexadecimal string (not '{given}')")
    };
    error(rpc::INVALID_PARAMETER, &text)
}

/// The second call a btcd answer needs: the tip's header for
/// getblockchaininfo's `time`; the block's transaction list for a
/// header's `nTx`; the pool's entries for getmempoolinfo's `bytes`
/// (vsize) and `total_fee`; the peers for getnetworkinfo's connections
/// in and out.
pub(super) fn follow_up(method: &str, first: &Value) -> Option<FollowUp> {
    let call = |method, params| {
        Some(FollowUp {
            method,
            params,
            settle: std::time::Duration::ZERO,
        })
    };
    match method {
        "getblockchaininfo" => call(
            "getblockheader",
            json!([first["bestblockhash"].as_str()?, true]),
        ),
        "getblockheader" => call("getblock", json!([first["hash"].as_str()?, 1])),
        "getmempoolinfo" if first.is_object() => call("getrawmempool", json!([true])),
        "getnetworkinfo" => {
            let done = first["connections_in"].is_u64() || first["connections"].as_u64() == Some(0);
            if done || !first.is_object() {
                None
            } else {
                call("getpeerinfo", json!([]))
            }
        }
        _ => None,
    }
}

/// A btcd result completed with the answer to [`follow_up`]'s call; a
/// second answer of another shape leaves it as it is.
pub(super) fn complete(
    method: &str,
    mut result: Value,
    second: Result<Value, Value>,
) -> Result<Value, Value> {
    let Ok(second) = second else {
        return Ok(result);
    };
    let Some(o) = result.as_object_mut() else {
        return Ok(result);
    };
    match (method, &second) {
        ("getblockchaininfo", Value::Object(h)) => {
            if let Some(t) = h.get("time").filter(|t| t.is_u64()) {
                o.insert("time".into(), t.clone());
            }
        }
        ("getblockheader", Value::Object(b)) => {
            if let Some(n) = b.get("tx").and_then(Value::as_array).map(Vec::len) {
                o.insert("nTx".into(), json!(n));
            }
        }
        ("getmempoolinfo", Value::Object(entries)) => {
            let (mut bytes, mut fee) = (0u64, 0i64);
            for e in entries.values() {
                bytes += e["vsize"]
                    .as_u64()
                    .or_else(|| e["size"].as_u64())
                    .unwrap_or(0);
                fee += sats(&e["fee"]);
            }
            o.insert("bytes".into(), json!(bytes));
            o.insert("total_fee".into(), btc(fee));
        }
        ("getnetworkinfo", Value::Array(peers)) => {
            let inbound = peers.iter().filter(|p| p["inbound"] == json!(true)).count();
            o.insert("connections_in".into(), json!(inbound));
            o.insert("connections_out".into(), json!(peers.len() - inbound));
        }
        _ => {}
    }
    Ok(result)
}
