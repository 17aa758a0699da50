//! btcd's result structs (btcjson/chainsvrresults.go, as btcd's handlers
//! fill them) in Core's shapes: chain info, headers, blocks,
//! transactions, mempool entries and info, network info.

use serde_json::{json, Map, Value};

use super::super::shapes::{btc, sats, tx_weight, with_checksum};
use super::in_initial_block_download;

/// getblockchaininfo (handleGetBlockChainInfo): chain names as Core's
/// (chaincfg `Name`: mainnet, testnet3), no soft-fork lists (Core moved
/// them to getdeploymentinfo), `initialblockdownload` as
/// [`in_initial_block_download`], `warnings` empty (btcd has none).
/// `time` (the tip's) comes from [`super::complete`].
pub(super) fn chain_info(o: &mut Map<String, Value>, now: u64) {
    for k in ["softforks", "bip9_softforks"] {
        o.remove(k);
    }
    let chain = match o.get("chain").and_then(Value::as_str) {
        Some("mainnet") => Some("main"),
        Some("testnet3") => Some("test"),
        _ => None,
    };
    if let Some(c) = chain {
        o.insert("chain".into(), json!(c));
    }
    if !o.contains_key("initialblockdownload") {
        let ibd = in_initial_block_download(&Value::Object(o.clone()), now);
        o.insert("initialblockdownload".into(), json!(ibd));
    }
    o.entry("warnings").or_insert(json!([]));
}

/// What a header and a block share (GetBlockHeaderVerboseResult,
/// GetBlockVerboseResult): `bits` as Core's 8 hex digits (btcd's is
/// `strconv.FormatInt(bits, 16)`, unpadded), no previous hash for the
/// genesis block (btcd writes the zero hash; Core leaves the key out),
/// `hash` lower-case (btcd echoes the hash as the caller wrote it).
fn header_fields(o: &mut Map<String, Value>) {
    if let Some(bits) = o.get("bits").and_then(Value::as_str) {
        if let Ok(n) = u32::from_str_radix(bits, 16) {
            o.insert("bits".into(), json!(format!("{n:08x}")));
        }
    }
    for k in ["previousblockhash", "nextblockhash"] {
        let none = match o.get(k) {
            Some(Value::String(h)) => h.chars().all(|c| c == '0'),
            Some(Value::Null) => true,
            _ => false,
        };
        if none {
            o.remove(k);
        }
    }
    if let Some(h) = o.get("hash").and_then(Value::as_str) {
        let lower = h.to_ascii_lowercase();
        o.insert("hash".into(), json!(lower));
    }
}

/// getblockheader verbose; `nTx` comes from [`super::complete`].
pub(super) fn header(o: &mut Map<String, Value>) {
    header_fields(o);
}

/// getblock verbosity 1 (and 2): `nTx` from `tx`; an older btcd's
/// verbose transactions (`rawtx`, its verbosetx extension) moved to
/// `tx` as Core has them, each in Core's shape.
pub(super) fn block(o: &mut Map<String, Value>) {
    header_fields(o);
    if let Some(raw) = o.remove("rawtx") {
        if !o.contains_key("tx") {
            o.insert("tx".into(), raw);
        }
    }
    if let Some(txs) = o.get_mut("tx").and_then(Value::as_array_mut) {
        for tx in txs.iter_mut() {
            if let Some(t) = tx.as_object_mut() {
                transaction(t);
            }
        }
        let n = txs.len();
        o.insert("nTx".into(), json!(n));
    }
}

/// getrawtransaction verbose (TxRawResult, rpcserver.go
/// createTxRawResult): `weight` from the hex where btcd leaves it out
/// (omitempty, not set by older btcds); a coinbase input's `witness` as
/// Core's `txinwitness` (Vin.MarshalJSON); each `scriptPubKey` as Core's.
/// A transaction in the mempool has no block fields in either.
pub(super) fn transaction(o: &mut Map<String, Value>) {
    let weight = o.get("weight").and_then(Value::as_u64);
    if weight.is_none_or(|w| w == 0) {
        if let Some(w) = o.get("hex").and_then(Value::as_str).and_then(tx_weight) {
            o.insert("weight".into(), json!(w));
        }
    }
    for vin in o
        .get_mut("vin")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(v) = vin.as_object_mut() {
            if v.contains_key("coinbase") {
                if let Some(w) = v.remove("witness") {
                    v.insert("txinwitness".into(), w);
                }
            }
        }
    }
    for vout in o
        .get_mut("vout")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(spk) = vout.get_mut("scriptPubKey").and_then(Value::as_object_mut) {
            script_pub_key(spk);
        }
    }
}

/// ScriptPubKeyResult (`asm, hex, reqSigs, type, addresses`; btcd's
/// type names, txscript ScriptClass.String, are Core's) to Core's
/// `{asm, desc, hex, address?, type}`: one address as `address` (none
/// for bare multisig, nor for P2PK, whose "address" btcd writes as the
/// key's P2PKH), and the descriptor Core infers without keys: `pk()`,
/// `multi()`, `rawtr()`, `addr()` for other scripts with an address,
/// else `raw()`.
pub(super) fn script_pub_key(spk: &mut Map<String, Value>) {
    spk.remove("reqSigs");
    let addresses = spk.remove("addresses");
    let one = match &addresses {
        Some(Value::Array(a)) if a.len() == 1 => a[0].as_str().map(str::to_string),
        _ => spk
            .get("address")
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    spk.remove("address");
    let hex = spk
        .get("hex")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    spk.insert("hex".into(), json!(hex));
    let ty = spk
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("nonstandard");
    let desc = match ty {
        "pubkey" => pubkey_of(&hex).map(|k| format!("pk({k})")),
        "multisig" => multi_of(&hex),
        "witness_v1_taproot" => {
            let tr = hex.strip_prefix("5120").filter(|k| k.len() == 64);
            tr.map(|k| format!("rawtr({k})"))
        }
        _ => None,
    };
    let keep_address = !matches!(ty, "pubkey" | "multisig");
    let desc = match (desc, &one) {
        (Some(d), _) => d,
        (None, Some(a)) if keep_address => format!("addr({a})"),
        _ => format!("raw({hex})"),
    };
    if let (true, Some(a)) = (keep_address, one) {
        spk.insert("address".into(), json!(a));
    }
    spk.insert("desc".into(), json!(with_checksum(&desc)));
}

/// The key of a P2PK script (`<33 or 65 byte push> OP_CHECKSIG`).
fn pubkey_of(hex: &str) -> Option<&str> {
    let key = hex.strip_suffix("ac")?;
    match key.get(..2)? {
        "21" if key.len() == 68 => key.get(2..),
        "41" if key.len() == 132 => key.get(2..),
        _ => None,
    }
}

/// `multi(k,key,...)` of a bare multisig script (`OP_k <keys> OP_n
/// OP_CHECKMULTISIG`).
fn multi_of(hex: &str) -> Option<String> {
    let b = hex::decode(hex).ok()?;
    let (&first, rest) = b.split_first()?;
    let (&last, rest) = rest.split_last()?;
    let (&n_op, mut keys) = rest.split_last()?;
    let small = |op: u8| (0x51..=0x60).contains(&op).then(|| op - 0x50);
    let (k, n) = (small(first)?, small(n_op)?);
    if last != 0xae {
        return None;
    }
    let mut found = Vec::new();
    while let Some((&len, tail)) = keys.split_first() {
        let len = usize::from(len);
        if !(len == 33 || len == 65) || tail.len() < len {
            return None;
        }
        found.push(hex::encode(&tail[..len]));
        keys = &tail[len..];
    }
    (found.len() == usize::from(n)).then(|| format!("multi({k},{})", found.join(",")))
}

/// getrawmempool verbose (mempool.go RawMempoolVerbose:
/// GetRawMempoolVerboseResult `size, vsize, weight, fee, time, height,
/// startingpriority, currentpriority, depends`) to Core's entries
/// (src/rpc/mempool.cpp entryToJSON). btcd's `depends` name the entry's
/// parents in the pool, so the pool's graph gives what btcd does not:
/// `spentby`, and ancestor and descendant counts, sizes (vsize) and fees,
/// each including the entry as Core counts them.
pub(super) fn mempool_entries(o: &Map<String, Value>) -> Value {
    use std::collections::{BTreeMap, BTreeSet};
    let vsize = |e: &Value| {
        e["vsize"]
            .as_u64()
            .or_else(|| e["size"].as_u64())
            .unwrap_or(0)
    };
    let links = |e: &Value| -> Vec<String> {
        let deps = e["depends"].as_array().into_iter().flatten();
        deps.filter_map(Value::as_str).map(str::to_string).collect()
    };
    let parents: BTreeMap<&str, Vec<String>> =
        o.iter().map(|(t, e)| (t.as_str(), links(e))).collect();
    let mut children: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (txid, deps) in &parents {
        for p in deps {
            if let Some((key, _)) = o.get_key_value(p) {
                children
                    .entry(key.as_str())
                    .or_default()
                    .push(txid.to_string());
            }
        }
    }
    // Every entry reachable from `txid` along `edges`, not itself.
    let closure = |txid: &str, edges: &BTreeMap<&str, Vec<String>>| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = edges.get(txid).cloned().unwrap_or_default();
        while let Some(t) = todo.pop() {
            if o.contains_key(&t) && t != txid && seen.insert(t.clone()) {
                todo.extend(edges.get(t.as_str()).cloned().unwrap_or_default());
            }
        }
        seen
    };
    let sum = |set: &BTreeSet<String>| {
        let entries = set.iter().filter_map(|t| o.get(t));
        entries.fold((0u64, 0i64), |(s, f), e| {
            (s + vsize(e), f + sats(&e["fee"]))
        })
    };
    let out: Map<String, Value> = o
        .iter()
        .map(|(txid, e)| {
            let (size, fee) = (vsize(e), sats(&e["fee"]));
            let (up, down) = (closure(txid, &parents), closure(txid, &children));
            let ((up_size, up_fee), (down_size, down_fee)) = (sum(&up), sum(&down));
            let weight = e["weight"].as_u64().filter(|w| *w > 0).unwrap_or(size * 4);
            let entry = json!({
                "vsize": size,
                "weight": weight,
                "time": e["time"],
                "height": e["height"],
                "descendantcount": down.len() + 1,
                "descendantsize": down_size + size,
                "ancestorcount": up.len() + 1,
                "ancestorsize": up_size + size,
                "fees": {
                    "base": btc(fee),
                    "modified": btc(fee),
                    "ancestor": btc(up_fee + fee),
                    "descendant": btc(down_fee + fee),
                },
                "depends": e.get("depends").cloned().unwrap_or(json!([])),
                "spentby": children.get(txid.as_str()).cloned().unwrap_or_default(),
                "unbroadcast": false,
            });
            (txid.clone(), entry)
        })
        .collect();
    Value::Object(out)
}

/// getmempoolinfo (GetMempoolInfoResult `{size, bytes}`, bytes being
/// serialized sizes): what btcd's policy fixes — `loaded` (no mempool
/// file to load), bare multisig standard (policy.go
/// checkPkScriptStandard), 80 data bytes in OP_RETURN
/// (txscript.MaxDataCarrierSize: Core's 83 counts the script's 3
/// opcode bytes), no unbroadcast set. `bytes` as Core's (vsize) and
/// `total_fee` come from [`super::complete`].
pub(super) fn mempool_info(o: &mut Map<String, Value>) {
    o.insert("loaded".into(), json!(true));
    o.entry("unbroadcastcount").or_insert(json!(0));
    o.entry("permitbaremultisig").or_insert(json!(true));
    o.entry("maxdatacarriersize").or_insert(json!(83));
}

/// getnetworkinfo from btcd's getinfo (InfoChainResult, handleGetInfo):
/// `version` (btcd's `1000000*major + 10000*minor + 100*patch`) in the
/// form the front door gives every node's (Core's CLIENT_VERSION,
/// `10000*major + 100*minor + patch`: btcd 0.24.2 → 2402) and btcd's
/// user agent as `subversion`; `networkactive` true (btcd has no
/// setnetworkactive); getinfo's `errors` as `warnings`. Connections in
/// and out come from [`super::complete`] (getpeerinfo).
pub(super) fn network_info(o: &mut Map<String, Value>) {
    if let Some(v) = o.get("version").and_then(Value::as_u64) {
        let (major, minor, patch) = (v / 1_000_000, v / 10_000 % 100, v / 100 % 100);
        o.insert(
            "version".into(),
            json!(major * 10_000 + minor * 100 + patch),
        );
        let agent = format!("/btcwire:0.5.0/btcd:{major}.{minor}.{patch}/");
        o.insert("subversion".into(), json!(agent));
    }
    let warnings = match o.remove("errors") {
        Some(Value::String(s)) if !s.is_empty() => json!([s]),
        _ => json!([]),
    };
    o.insert("warnings".into(), warnings);
    for k in ["blocks", "proxy", "difficulty", "testnet"] {
        o.remove(k);
    }
    o.insert("networkactive".into(), json!(true));
    if o.get("connections").and_then(Value::as_u64) == Some(0) {
        o.insert("connections_in".into(), json!(0));
        o.insert("connections_out".into(), json!(0));
    }
}
