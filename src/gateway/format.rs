//! Bitcoin Core's format whichever node answers: what the front door
//! changes in a call to, and an answer from, another implementation.
//!
//! bcoin 1.0.2's answers, from its lib/node/rpc.js and as a real bcoin in
//! regtest gives them (tests/bcoin_real.rs), against Bitcoin Core's
//! (src/rpc/blockchain.cpp): `getblockchaininfo` lacks
//! `initialblockdownload`, `time`, `size_on_disk` and `warnings`, carries
//! pre-0.19 `softforks`/`bip9_softforks` Core no longer has there, and
//! `pruneheight: null` where Core leaves the key out. Only that method is
//! translated so far; the rest of the subset passes through.

use serde_json::{json, Value};

use crate::config::Implementation;

/// Whether a node's `getblockchaininfo` says it is in initial block
/// download: Core's own field, or (bcoin, which has none) verification
/// short of the tip.
pub fn in_initial_block_download(implementation: Implementation, info: &Value) -> bool {
    match info["initialblockdownload"].as_bool() {
        Some(ibd) => ibd,
        None => {
            implementation == Implementation::Bcoin
                && info["verificationprogress"].as_f64().unwrap_or(0.0) < 0.9999
        }
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

/// The height an answer shows the client (a client is never shown a
/// lower one afterwards).
pub fn height_shown(method: &str, result: &Value) -> Option<u64> {
    match method {
        "getblockcount" => result.as_u64(),
        "getblockchaininfo" => result["blocks"].as_u64(),
        _ => None,
    }
}

/// A call's parameters as `implementation` takes them.
pub fn params_for(_implementation: Implementation, _method: &str, params: &Value) -> Value {
    params.clone()
}

/// A result in Bitcoin Core's format.
pub fn result_for(implementation: Implementation, method: &str, mut result: Value) -> Value {
    if implementation != Implementation::Bcoin {
        return result;
    }
    if method == "getblockchaininfo" {
        let ibd = in_initial_block_download(implementation, &result);
        if let Some(o) = result.as_object_mut() {
            o.remove("softforks");
            o.remove("bip9_softforks");
            if o.get("pruneheight").is_some_and(Value::is_null) {
                o.remove("pruneheight");
            }
            o.insert("initialblockdownload".into(), json!(ibd));
            let median = o.get("mediantime").cloned().unwrap_or(json!(0));
            o.entry("time").or_insert(median);
            o.entry("size_on_disk").or_insert(json!(0));
            o.entry("warnings").or_insert(json!([]));
        }
    }
    result
}

/// An error object in Bitcoin Core's codes.
pub fn error_for(_implementation: Implementation, _method: &str, error: Value) -> Value {
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcoins_chain_info_gets_cores_fields() {
        let bcoin = json!({"chain": "regtest", "blocks": 103, "headers": 103, "bestblockhash": "ab",
            "difficulty": 4.6e-10, "mediantime": 1_796_080_737, "verificationprogress": 1,
            "chainwork": "00d0", "pruned": false, "softforks": [], "bip9_softforks": {}, "pruneheight": null});
        let core = result_for(Implementation::Bcoin, "getblockchaininfo", bcoin);
        for k in ["softforks", "bip9_softforks", "pruneheight"] {
            assert!(core.get(k).is_none(), "{k}");
        }
        assert_eq!(core["initialblockdownload"], false);
        assert_eq!(core["time"], 1_796_080_737);
        assert_eq!(core["warnings"], json!([]));
        // Core's own answer is left as it is.
        let v = json!({"blocks": 1, "initialblockdownload": true});
        assert_eq!(
            result_for(Implementation::Bitcoind, "getblockchaininfo", v.clone()),
            v
        );
        assert!(in_initial_block_download(Implementation::Bitcoind, &v));
    }
}
