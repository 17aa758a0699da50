//! Bitcoin Core's result shapes made from bcoin's: blocks, headers,
//! transactions, mempool entries, fee estimates, network info.

use serde_json::{json, Map, Value};

use super::{in_initial_block_download, Dialect};

pub(super) fn chain_info(result: &mut Value) {
    let ibd = in_initial_block_download(Dialect::Bcoin, result);
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

/// Core's header fields from bcoin's: `bits` as 8 hex digits (Core's
/// `strprintf("%08x", nBits)`), no `null` previous/next hash (Core leaves
/// the key out).
pub(super) fn block_header(o: &mut Map<String, Value>) {
    if let Some(bits) = o.get("bits").and_then(Value::as_u64) {
        o.insert("bits".into(), json!(format!("{bits:08x}")));
    }
    for k in ["previousblockhash", "nextblockhash"] {
        if o.get(k).is_some_and(Value::is_null) {
            o.remove(k);
        }
    }
}

/// A transaction object (getrawtransaction verbose) in Core's shape.
pub(super) fn transaction(o: &mut Map<String, Value>) {
    // In the mempool bcoin sends blockhash null, confirmations 0,
    // blocktime 0 and its entry time; Core leaves all four out.
    if o.get("blockhash").is_some_and(Value::is_null) {
        for k in ["blockhash", "confirmations", "blocktime", "time"] {
            o.remove(k);
        }
    }
    if !o.contains_key("weight") {
        if let Some(w) = o.get("hex").and_then(Value::as_str).and_then(tx_weight) {
            o.insert("weight".into(), json!(w));
        }
    }
    if let Some(vout) = o.get_mut("vout").and_then(Value::as_array_mut) {
        for out in vout {
            if let Some(spk) = out.get_mut("scriptPubKey").and_then(Value::as_object_mut) {
                script_pub_key(spk);
            }
        }
    }
}

/// `{asm, hex, type, reqSigs, addresses}` (upper-case type) to Core's
/// `{asm, desc, hex, address?, type}`. `desc` is `raw(<hex>)` with its
/// checksum: a valid descriptor of the script (Core infers `addr(…)` for
/// standard scripts; bcoin's regtest addresses are not Core's, so no
/// address descriptor is made from them). `address` is bcoin's own,
/// in its network's encoding.
pub(super) fn script_pub_key(spk: &mut Map<String, Value>) {
    spk.remove("reqSigs");
    if let Some(Value::Array(a)) = spk.remove("addresses") {
        if let [one] = a.as_slice() {
            spk.insert("address".into(), one.clone());
        }
    }
    if let Some(t) = spk.get("type").and_then(Value::as_str) {
        // bcoin's script types (lib/script/common.js) to Core's
        // (GetTxnOutputType).
        let core = match t {
            "PUBKEY" => "pubkey",
            "PUBKEYHASH" => "pubkeyhash",
            "SCRIPTHASH" => "scripthash",
            "MULTISIG" => "multisig",
            "NULLDATA" => "nulldata",
            "WITNESSPUBKEYHASH" => "witness_v0_keyhash",
            "WITNESSSCRIPTHASH" => "witness_v0_scripthash",
            "WITNESSMALFORMED" => "witness_unknown",
            _ => "nonstandard",
        };
        spk.insert("type".into(), json!(core));
    }
    if let Some(hex) = spk.get("hex").and_then(Value::as_str) {
        let desc = with_checksum(&format!("raw({hex})"));
        spk.insert("desc".into(), json!(desc));
    }
}

/// A descriptor with its checksum (BIP 380; Core's
/// script/descriptor.cpp `DescriptorChecksum`).
pub(super) fn with_checksum(desc: &str) -> String {
    const INPUT: &str = "0123456789()[],'/*abcdefgh@:$%{}IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~ijklmnopqrstuvwxyzABCDEFGH`#\"\\ ";
    const CHECKSUM: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    fn polymod(c: u64, val: u64) -> u64 {
        let c0 = c >> 35;
        let mut c = ((c & 0x7_ffff_ffff) << 5) ^ val;
        for (i, g) in [
            0xf5_dee5_1989u64,
            0xa9_fdca_3312,
            0x1b_ab10_e32d,
            0x37_06b1_677a,
            0x64_4d62_6ffd,
        ]
        .iter()
        .enumerate()
        {
            if c0 & (1 << i) != 0 {
                c ^= g;
            }
        }
        c
    }
    let (mut c, mut cls, mut clscount) = (1u64, 0u64, 0);
    for ch in desc.chars() {
        let Some(pos) = INPUT.find(ch) else {
            return desc.to_string();
        };
        let pos = pos as u64;
        c = polymod(c, pos & 31);
        cls = cls * 3 + (pos >> 5);
        clscount += 1;
        if clscount == 3 {
            c = polymod(c, cls);
            cls = 0;
            clscount = 0;
        }
    }
    if clscount > 0 {
        c = polymod(c, cls);
    }
    for _ in 0..8 {
        c = polymod(c, 0);
    }
    c ^= 1;
    let sum: String = (0..8)
        .map(|j| CHECKSUM[((c >> (5 * (7 - j))) & 31) as usize] as char)
        .collect();
    format!("{desc}#{sum}")
}

/// A transaction's weight (BIP 141: 3 × stripped size + total size) from
/// its serialization; `None` when the hex is not a whole transaction.
pub(super) fn tx_weight(hex: &str) -> Option<u64> {
    let b = hex::decode(hex).ok()?;
    let total = b.len() as u64;
    let mut r = Reader { b: &b, at: 4 };
    let segwit = b.get(4) == Some(&0) && b.get(5) == Some(&1);
    if !segwit {
        return Some(total * 4);
    }
    r.at = 6;
    let inputs = r.varint()?;
    for _ in 0..inputs {
        r.skip(36)?;
        let n = r.varint()?;
        r.skip(n as usize + 4)?;
    }
    let outputs = r.varint()?;
    for _ in 0..outputs {
        r.skip(8)?;
        let n = r.varint()?;
        r.skip(n as usize)?;
    }
    let witness_start = r.at;
    for _ in 0..inputs {
        for _ in 0..r.varint()? {
            let n = r.varint()?;
            r.skip(n as usize)?;
        }
    }
    let witness = (r.at - witness_start) as u64;
    r.skip(4)?;
    (r.at as u64 == total).then(|| {
        let stripped = total - 2 - witness;
        stripped * 3 + total
    })
}

pub(super) struct Reader<'a> {
    pub(super) b: &'a [u8],
    pub(super) at: usize,
}

impl Reader<'_> {
    pub(super) fn skip(&mut self, n: usize) -> Option<()> {
        (self.at + n <= self.b.len()).then(|| self.at += n)
    }

    pub(super) fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.at..self.at + n)?;
        self.at += n;
        Some(s)
    }

    pub(super) fn varint(&mut self) -> Option<u64> {
        let first = *self.b.get(self.at)?;
        self.at += 1;
        let le = |s: &[u8]| s.iter().rev().fold(0u64, |a, x| (a << 8) | u64::from(*x));
        Some(match first {
            0xfd => le(self.bytes(2)?),
            0xfe => le(self.bytes(4)?),
            0xff => le(self.bytes(8)?),
            n => u64::from(n),
        })
    }
}

/// satoshis to Core's BTC amount (8 decimals, as a JSON number).
pub(super) fn btc(sats: i64) -> Value {
    json!(sats as f64 / 1e8)
}

/// BTC (a JSON number from bcoin) to satoshis.
pub(super) fn sats(v: &Value) -> i64 {
    (v.as_f64().unwrap_or(0.0) * 1e8).round() as i64
}

/// getrawmempool verbose: bcoin's entries (`size`, `fee`,
/// `descendantfees` in satoshis, counts without the entry itself) to
/// Core's (src/rpc/mempool.cpp `entryToJSON`): `vsize`, `weight`,
/// `fees{base, modified, ancestor, descendant}`, counts and sizes
/// including the entry, `spentby` from the other entries' `depends`.
/// bcoin reports no ancestors (always 0): Core's ancestor fields then
/// count the entry alone. `wtxid` is not in bcoin's entry (not made up).
pub(super) fn mempool_entries(result: Value) -> Value {
    let Value::Object(entries) = result else {
        return result;
    };
    let mut spent_by: std::collections::HashMap<String, Vec<Value>> = Default::default();
    for (txid, e) in &entries {
        for parent in e["depends"].as_array().into_iter().flatten() {
            if let Some(p) = parent.as_str() {
                spent_by.entry(p.to_string()).or_default().push(json!(txid));
            }
        }
    }
    let out: Map<String, Value> = entries
        .into_iter()
        .map(|(txid, e)| {
            let entry = mempool_entry(&e, spent_by.remove(&txid).unwrap_or_default());
            (txid, entry)
        })
        .collect();
    Value::Object(out)
}

pub(super) fn mempool_entry(e: &Value, spentby: Vec<Value>) -> Value {
    let vsize = e["size"].as_u64().unwrap_or(0);
    let fee = sats(&e["fee"]);
    let descendant_fees = e["descendantfees"].as_i64().unwrap_or(fee);
    let ancestor_fees = e["ancestorfees"].as_i64().unwrap_or(0);
    json!({
        "vsize": vsize,
        // bcoin's size is already virtual (sigop-adjusted): the weight it
        // stands for.
        "weight": vsize * 4,
        "time": e["time"],
        "height": e["height"],
        "descendantcount": e["descendantcount"].as_u64().unwrap_or(0) + 1,
        "descendantsize": e["descendantsize"].as_u64().unwrap_or(vsize).max(vsize),
        "ancestorcount": e["ancestorcount"].as_u64().unwrap_or(0) + 1,
        "ancestorsize": e["ancestorsize"].as_u64().unwrap_or(0) + vsize,
        "fees": {
            "base": btc(fee),
            "modified": btc(fee),
            "ancestor": btc(ancestor_fees + fee),
            "descendant": btc(descendant_fees.max(fee)),
        },
        "depends": e.get("depends").cloned().unwrap_or(json!([])),
        "spentby": spentby,
        // bcoin relays a transaction as it takes it: none waits.
        "unbroadcast": false,
    })
}

/// getmempoolinfo: Core's fields that bcoin's node settings give
/// (lib/protocol/policy.js: bare multisig relayed, 83-byte OP_RETURN
/// data; bcoin's getnetworkinfo says incremental fee 0). `bytes` (bcoin:
/// memory, Core: total vsize) and `total_fee` come from [`complete`].
pub(super) fn mempool_info(o: &mut Map<String, Value>) {
    o.insert("loaded".into(), json!(true));
    let min = o.get("mempoolminfee").cloned().unwrap_or(json!(0.00001));
    o.entry("minrelaytxfee").or_insert(min);
    o.entry("incrementalrelayfee").or_insert(json!(0));
    o.entry("unbroadcastcount").or_insert(json!(0));
    o.entry("permitbaremultisig").or_insert(json!(true));
    o.entry("maxdatacarriersize").or_insert(json!(83));
}

/// estimatesmartfee: bcoin's `{fee, blocks}` (fee -1: no estimate) to
/// Core's `{feerate, blocks}` or `{errors, blocks}` (src/rpc/fees.cpp).
pub(super) fn smart_fee(result: Value) -> Value {
    let Some(fee) = result.get("fee").and_then(Value::as_f64) else {
        return result;
    };
    let blocks = result["blocks"].clone();
    if fee < 0.0 {
        json!({"errors": ["Insufficient data or no feerate found"], "blocks": blocks})
    } else {
        json!({"feerate": result["fee"], "blocks": blocks})
    }
}

/// getnetworkinfo: `version` as Core's integer (10000 × major + 100 ×
/// minor + patch, Core's CLIENT_VERSION form: bcoin v1.0.2 → 10002; the
/// name stays in `subversion`), `localservices` in 16 hex digits with
/// their names, `warnings` as v28's array.
pub(super) fn network_info(o: &mut Map<String, Value>) {
    if let Some(v) = o.get("version").and_then(Value::as_str) {
        let n: Vec<u64> = v
            .trim_start_matches('v')
            .split(['.', '-'])
            .take(3)
            .map(|p| p.parse().unwrap_or(0))
            .collect();
        let at = |i: usize| n.get(i).copied().unwrap_or(0);
        o.insert("version".into(), json!(at(0) * 10000 + at(1) * 100 + at(2)));
    }
    if let Some(s) = o.get("localservices").and_then(Value::as_str) {
        let bits = u64::from_str_radix(s, 16).unwrap_or(0);
        o.insert("localservices".into(), json!(format!("{bits:016x}")));
        // Core's protocol.cpp serviceFlagToStr.
        let names: Vec<&str> = [
            (1, "NETWORK"),
            (4, "BLOOM"),
            (8, "WITNESS"),
            (64, "COMPACT_FILTERS"),
            (1024, "NETWORK_LIMITED"),
            (2048, "P2P_V2"),
        ]
        .into_iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| n)
        .collect();
        o.insert("localservicesnames".into(), json!(names));
    }
    match o.get("warnings") {
        Some(Value::String(s)) if s.is_empty() => {
            o.insert("warnings".into(), json!([]));
        }
        Some(Value::String(s)) => {
            let w = json!([s]);
            o.insert("warnings".into(), w);
        }
        _ => {}
    }
    // No connections: none in, none out. Otherwise [`complete`] counts
    // them from getpeerinfo.
    if o.get("connections").and_then(Value::as_u64) == Some(0) {
        o.entry("connections_in").or_insert(json!(0));
        o.entry("connections_out").or_insert(json!(0));
    }
}
