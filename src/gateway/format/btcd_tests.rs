//! Unit tests of the btcd translations, on answers written as btcd's
//! structs serialise them (btcjson/chainsvrresults.go json tags,
//! omitempty fields left out when zero), against Core's shapes (a
//! compact copy of tests/gateway_formats.rs `SHAPES`).
use super::*;

const D: Dialect = Dialect::Btcd;
const H0: &str = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206";
const H1: &str = "3dbcbb6d6f5c58e1d5a23c3e8b7609ba9a9f11ec16da90226601233c33b543c9";
const H2: &str = "4e84ba6d6f5c58e1d5a23c3e8b7609ba9a9f11ec16da90226601233c33b543c9";
const T1: &str = "ae3f4b2a6f5c58e1d5a23c3e8b7609ba9a9f11ec16da90226601233c33b543c9";
const MERKLE: &str = "4e66dfb8690df3b8bd5a10fd81c7a3eb6162a4b5f20d7c9e3e91f11e8e4657b9";
const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// A legacy transaction of 85 bytes (tests.rs SPEND).
const SPEND: &str = "0100000001b957468e1ef1913e9e7c0df2b5a46261eba3c781fd105abdb8f30d69b8df664e00000000020151ffffffff01606b042a0100000017a914da1745e9b549bd0bfa1a569971c77eba30cd5a4b8700000000";
const P2SH: &str = "a914da1745e9b549bd0bfa1a569971c77eba30cd5a4b87";
const P2SH_ADDRESS: &str = "2NDGkwXZ5Sq3DdTG1S5RLzAaf4F3JzZ3wxV";

/// Core's (required, optional) keys per case, a compact copy of
/// tests/gateway_formats.rs SHAPES (which cites Core's sources): `key:t`
/// with t a JSON type, `n` number (amounts too), `s` string, `h` a
/// 64-digit hash, `x` hex, `b` bool, `a` array, `o` object.
fn shape(case: &str) -> (&'static str, &'static str) {
    match case {
        "getblockchaininfo" => ("chain:s blocks:n headers:n bestblockhash:h difficulty:n time:n mediantime:n verificationprogress:n initialblockdownload:b chainwork:x size_on_disk:n pruned:b warnings:a", "pruneheight:n automatic_pruning:b prune_target_size:n signet_challenge:x bits:x target:x"),
        "getblockheader verbose" => ("hash:h confirmations:n height:n version:n versionHex:x merkleroot:h time:n mediantime:n nonce:n bits:x difficulty:n chainwork:x nTx:n", "previousblockhash:h nextblockhash:h target:x"),
        "getblock verbosity 1" => ("hash:h confirmations:n size:n strippedsize:n weight:n height:n version:n versionHex:x merkleroot:h tx:a time:n mediantime:n nonce:n bits:x difficulty:n chainwork:x nTx:n", "previousblockhash:h nextblockhash:h target:x"),
        "getrawtransaction verbose, confirmed" => ("blockhash:h confirmations:n blocktime:n time:n hex:x txid:h hash:h size:n vsize:n weight:n version:n locktime:n vin:a vout:a", "in_active_chain:b"),
        "getrawtransaction verbose, in the mempool" => ("hex:x txid:h hash:h size:n vsize:n weight:n version:n locktime:n vin:a vout:a", ""),
        "scriptPubKey" => ("asm:s desc:s hex:x type:s", "address:s"),
        "getmempoolinfo" => ("loaded:b size:n bytes:n usage:n total_fee:n maxmempool:n mempoolminfee:n minrelaytxfee:n incrementalrelayfee:n unbroadcastcount:n permitbaremultisig:b maxdatacarriersize:n", "fullrbf:b limitclustercount:n limitclustersize:n optimal:b"),
        "getrawmempool verbose entry" => ("vsize:n weight:n time:n height:n descendantcount:n descendantsize:n ancestorcount:n ancestorsize:n wtxid:h fees:o depends:a spentby:a unbroadcast:b", "bip125-replaceable:b vsize_bip141:n vsize_adjusted:n chunkweight:n"),
        "getrawmempool verbose entry fees" => ("base:n modified:n ancestor:n descendant:n", "chunk:n"),
        "estimatesmartfee" => ("blocks:n", "feerate:n errors:a"),
        "getnetworkinfo" => ("version:n subversion:s protocolversion:n localservices:x localservicesnames:a localrelay:b timeoffset:n connections:n connections_in:n connections_out:n networkactive:b networks:a relayfee:n incrementalfee:n localaddresses:a warnings:a", ""),
        other => panic!("no shape {other}"),
    }
}

/// Whether `v` is of the JSON type `t` (see [`shape`]).
fn fits(t: &str, v: &Value) -> bool {
    let hex = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit());
    match t {
        "n" => v.is_number(),
        "s" => v.is_string(),
        "h" => v.as_str().is_some_and(|s| s.len() == 64 && hex(s)),
        "x" => v.as_str().is_some_and(hex),
        "b" => v.is_boolean(),
        "a" => v.is_array(),
        "o" => v.is_object(),
        other => panic!("no type {other}"),
    }
}

/// `v` has Core's required keys for `case` (but those BTCD_GAPS says
/// btcd cannot give), each of its type, and no key Core does not have.
fn assert_shape(case: &str, v: &Value) {
    let (required, optional) = shape(case);
    let fields = |s: &'static str| s.split_whitespace().filter_map(|f| f.rsplit_once(':'));
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("{case}: not an object: {v}"));
    for (k, t) in fields(required) {
        match o.get(k) {
            Some(x) => assert!(fits(t, x), "{case}: {k} is {x}, not {t}"),
            None => assert!(
                BTCD_GAPS.iter().any(|(c, f, _)| *c == case && *f == k),
                "{case}: no {k}, and no gap says why: {v}"
            ),
        }
    }
    for (k, x) in o {
        match fields(required)
            .chain(fields(optional))
            .find(|(name, _)| name == k)
        {
            Some((_, t)) => assert!(fits(t, x), "{case}: {k} is {x}, not {t}"),
            None => panic!("{case}: {k} is not Core's: {v}"),
        }
    }
}

fn btcd_chain_info(mediantime: u64) -> Value {
    // handleGetBlockChainInfo: verificationprogress, initialblockdownload,
    // pruneheight, chainwork and size_on_disk are never set (omitempty).
    json!({"chain": "regtest", "blocks": 103, "headers": 103, "bestblockhash": H1,
        "difficulty": 4.656542373906925e-10, "mediantime": mediantime, "pruned": false,
        "softforks": [{"id": "bip34", "version": 2, "reject": {"status": true}}],
        "bip9_softforks": {"csv": {"status": "active", "bit": 0, "startTime": 0, "start_time": 0,
            "timeout": 9223372036854775807u64, "since": 0, "min_activation_height": 0}}})
}

#[test]
fn chain_info_gets_cores_fields_and_ibd_from_the_tips_age() {
    let now = now_secs();
    let raw = btcd_chain_info(now - 600);
    assert!(!in_initial_block_download(D, &raw));
    let info = result_for(D, "getblockchaininfo", raw.clone());
    assert_eq!(info["initialblockdownload"], false);
    assert_eq!(info["warnings"], json!([]));
    assert!(info.get("bip9_softforks").is_none() && info.get("softforks").is_none());
    let f = follow_up(D, "getblockchaininfo", &raw).unwrap();
    assert_eq!(
        (f.method, &f.params),
        ("getblockheader", &json!([H1, true]))
    );
    let tip = json!({"hash": H1, "confirmations": 1, "height": 103, "time": 1_796_080_719});
    let info = complete(D, "getblockchaininfo", info, Ok(tip)).unwrap();
    assert_eq!(info["time"], 1_796_080_719);
    assert_shape("getblockchaininfo", &info);

    // A tip more than 24 hours old (btcd's isCurrent) is IBD; so is a
    // regtest chain at its genesis block.
    let stale = btcd_chain_info(now - 25 * 3600);
    assert!(in_initial_block_download(D, &stale));
    assert!(in_initial_block_download(
        D,
        &btcd_chain_info(1_296_688_602)
    ));
    assert_eq!(
        result_for(D, "getblockchaininfo", stale)["initialblockdownload"],
        true
    );
    assert!(in_initial_block_download(D, &json!({"blocks": 1})));
    let (day, old) = (24 * 3600, json!({"mediantime": 100}));
    assert!(!btcd::in_initial_block_download(&old, 100 + day));
    assert!(btcd::in_initial_block_download(&old, 101 + day));
    assert!(!btcd::in_initial_block_download(
        &json!({"verificationprogress": 1.0}),
        u64::MAX
    ));
    // Core's names for btcd's chains.
    let mut main = btcd_chain_info(now);
    main["chain"] = json!("mainnet");
    assert_eq!(result_for(D, "getblockchaininfo", main)["chain"], "main");
}

#[test]
fn params_are_btcds_forms() {
    let p = |m, v: Value| params_for(D, m, &v);
    // getblock: Verbosity *int; getrawtransaction: Verbose *int.
    assert_eq!(p("getblock", json!([H1, false])), json!([H1, 0]));
    assert_eq!(p("getblock", json!([H1, true])), json!([H1, 1]));
    assert_eq!(
        p("getblock", json!({"blockhash": H1, "verbosity": 0})),
        json!([H1, 0])
    );
    assert_eq!(
        p("getrawtransaction", json!([T1, true, H1])),
        json!([T1, 1])
    );
    assert_eq!(
        p("getrawtransaction", json!({"txid": T1, "verbose": false})),
        json!([T1, 0])
    );
    // getblockheader: Verbose *bool.
    assert_eq!(p("getblockheader", json!([H1, 0])), json!([H1, false]));
    assert_eq!(p("getblockheader", json!([H1])), json!([H1]));
    // int32(c.Index) would wrap 2^32 + 1 onto height 1.
    assert_eq!(p("getblockhash", json!([4_294_967_297u64])), json!([-1]));
    assert_eq!(p("getblockhash", json!([-5])), json!([-1]));
    assert_eq!(p("getblockhash", json!({"height": 5})), json!([5]));
    assert_eq!(
        p("sendrawtransaction", json!([SPEND, 0.1, 0])),
        json!([SPEND])
    );
    assert_eq!(p("getrawmempool", json!([true, false])), json!([true]));
    assert_eq!(
        p("getrawmempool", json!([false, true])),
        json!([false, true])
    );
    // estimatesmartfee as estimatefee numblocks: 2..=25.
    assert_eq!(method_for(D, "estimatesmartfee"), "estimatefee");
    assert_eq!(
        p("estimatesmartfee", json!([6, "CONSERVATIVE"])),
        json!([6])
    );
    assert_eq!(p("estimatesmartfee", json!([1])), json!([2]));
    assert_eq!(p("estimatesmartfee", json!([144])), json!([25]));
    assert_eq!(p("estimatesmartfee", json!([0])), json!([0]));
    assert_eq!(p("estimatesmartfee", json!([1009])), json!([0]));
    assert_eq!(method_for(D, "getnetworkinfo"), "getinfo");
    assert_eq!(p("getnetworkinfo", json!([])), json!([]));
    assert_eq!(method_for(D, "getblock"), "getblock");
    assert_eq!(
        method_for(Dialect::Bcoin, "estimatesmartfee"),
        "estimatesmartfee"
    );
}

#[test]
fn header_and_block_get_cores_fields() {
    // GetBlockHeaderVerboseResult at the tip (nextblockhash omitempty).
    let header = json!({"hash": H1.to_uppercase(), "confirmations": 1, "height": 1, "version": 536870912,
        "versionHex": "20000000", "merkleroot": MERKLE, "time": 1_796_080_719, "nonce": 0, "bits": "207fffff",
        "difficulty": 4.656542373906925e-10, "previousblockhash": H0});
    let h = result_for(D, "getblockheader", header.clone());
    assert_eq!(h["hash"], H1);
    let f = follow_up(D, "getblockheader", &header).unwrap();
    assert_eq!(
        (f.method, &f.params),
        ("getblock", &json!([H1.to_uppercase(), 1]))
    );
    let block_answer = json!({"hash": H1, "tx": [MERKLE]});
    let h = complete(D, "getblockheader", h, Ok(block_answer)).unwrap();
    assert_eq!(h["nTx"], 1);
    assert_shape("getblockheader verbose", &h);
    assert_eq!(result_for(D, "getblockheader", json!("00")), json!("00"));
    assert!(follow_up(D, "getblockheader", &json!("00")).is_none());

    // GetBlockVerboseResult of the genesis block: btcd writes the zero
    // hash as previousblockhash (no omitempty) and bits unpadded.
    let genesis = json!({"hash": H0, "confirmations": 104, "strippedsize": 285, "size": 285, "weight": 1140,
        "height": 0, "version": 1, "versionHex": "00000001", "merkleroot": MERKLE, "tx": [MERKLE],
        "time": 1_296_688_602, "nonce": 2, "bits": "7fffff", "difficulty": 4.656542373906925e-10,
        "previousblockhash": ZERO, "nextblockhash": H1});
    let b = result_for(D, "getblock", genesis);
    assert!(b.get("previousblockhash").is_none());
    assert_eq!(b["bits"], "007fffff");
    assert_eq!(b["nTx"], 1);
    assert_shape("getblock verbosity 1", &b);
    assert!(follow_up(D, "getblock", &b).is_none());

    // Verbosity 2 (an older btcd's rawtx too): Core's transactions.
    let coinbase = json!({"hex": SPEND, "txid": T1, "hash": T1, "size": 85, "vsize": 85, "version": 1,
        "locktime": 0, "vin": [{"coinbase": "51", "sequence": 4294967295u32, "witness": [ZERO]}], "vout": []});
    let b = result_for(
        D,
        "getblock",
        json!({"hash": H1, "rawtx": [coinbase], "bits": "207fffff"}),
    );
    assert_eq!(b["nTx"], 1);
    assert_eq!(b["tx"][0]["weight"], 340);
    assert_eq!(b["tx"][0]["vin"][0]["txinwitness"], json!([ZERO]));
    assert!(b.get("rawtx").is_none());
}

fn spk(hex: &str, ty: &str, addresses: &[&str]) -> Value {
    let mut s = json!({"asm": "…", "hex": hex, "type": ty, "reqSigs": 1});
    if !addresses.is_empty() {
        s["addresses"] = json!(addresses);
    }
    s
}

#[test]
fn transactions_get_cores_fields() {
    let confirmed = json!({"hex": SPEND, "txid": T1, "hash": T1, "size": 85, "vsize": 85, "weight": 340,
        "version": 1, "locktime": 0,
        "vin": [{"txid": H0, "vout": 0, "scriptSig": {"asm": "1", "hex": "0151"}, "sequence": 4294967295u32}],
        "vout": [{"value": 49.999, "n": 0, "scriptPubKey": spk(P2SH, "scripthash", &[P2SH_ADDRESS])}],
        "blockhash": H1, "confirmations": 3, "time": 1_796_080_719, "blocktime": 1_796_080_719});
    let t = result_for(D, "getrawtransaction", confirmed);
    assert_shape("getrawtransaction verbose, confirmed", &t);
    let s = &t["vout"][0]["scriptPubKey"];
    assert_shape("scriptPubKey", s);
    assert_eq!(s["address"], P2SH_ADDRESS);
    let desc = s["desc"].as_str().unwrap();
    assert_eq!(desc, with_checksum(&format!("addr({P2SH_ADDRESS})")));

    // In the mempool: no block fields (omitempty), and an older btcd's
    // answer without weight.
    let mempool = json!({"hex": SPEND, "txid": T1, "hash": T1, "size": 85, "vsize": 85, "version": 1,
        "locktime": 0, "vin": [], "vout": []});
    let t = result_for(D, "getrawtransaction", mempool);
    assert_eq!(t["weight"], 340);
    assert_shape("getrawtransaction verbose, in the mempool", &t);
    assert_eq!(
        result_for(D, "getrawtransaction", json!(SPEND)),
        json!(SPEND)
    );

    // Descriptors as Core infers them, and no address where Core has none.
    let key = format!("02{}", "11".repeat(32));
    let cases = [
        (
            spk(
                &format!("21{key}ac"),
                "pubkey",
                &["mhx8ahR1MoQcqrknixrWC7Pvs2Dxzf3Z4j"],
            ),
            format!("pk({key})"),
            false,
        ),
        (
            spk(&format!("5121{key}21{key}52ae"), "multisig", &["a", "b"]),
            format!("multi(1,{key},{key})"),
            false,
        ),
        (
            spk(
                &format!("5120{}", "22".repeat(32)),
                "witness_v1_taproot",
                &["bcrt1p"],
            ),
            format!("rawtr({})", "22".repeat(32)),
            true,
        ),
        (
            spk("6a0568656c6c6f", "nulldata", &[]),
            "raw(6a0568656c6c6f)".to_string(),
            false,
        ),
        (spk("51", "nonstandard", &[]), "raw(51)".to_string(), false),
    ];
    for (btcd_spk, want, address) in cases {
        let t = result_for(
            D,
            "getrawtransaction",
            json!({"vout": [{"n": 0, "scriptPubKey": btcd_spk}]}),
        );
        let s = &t["vout"][0]["scriptPubKey"];
        assert_shape("scriptPubKey", s);
        assert_eq!(s["desc"], with_checksum(&want), "{s}");
        assert_eq!(s.get("address").is_some(), address, "{s}");
    }
}

#[test]
fn mempool_answers_get_cores_fields() {
    let (a, b, c, d) = (
        "a".repeat(64),
        "b".repeat(64),
        "c".repeat(64),
        "d".repeat(64),
    );
    // RawMempoolVerbose: a ← b ← c, and d alone; b's weight left 0.
    let entry = |size: u64, vsize: u64, weight: u64, fee: f64, depends: &[&str]| {
        json!({"size": size, "vsize": vsize, "weight": weight, "fee": fee, "time": 1_796_080_719,
            "height": 103, "startingpriority": 0, "currentpriority": 0, "depends": depends})
    };
    let mut pool = serde_json::Map::new();
    pool.insert(a.clone(), entry(200, 150, 600, 0.0001, &[]));
    pool.insert(b.clone(), entry(100, 100, 0, 0.0002, &[&a]));
    pool.insert(c.clone(), entry(120, 120, 480, 0.0003, &[&b]));
    pool.insert(d.clone(), entry(80, 80, 320, 0.00005, &[]));
    let pool = Value::Object(pool);
    let core = result_for(D, "getrawmempool", pool.clone());
    for txid in [&a, &b, &c, &d] {
        assert_shape("getrawmempool verbose entry", &core[txid]);
        assert_shape("getrawmempool verbose entry fees", &core[txid]["fees"]);
    }
    let e = &core[&b];
    assert_eq!((&e["vsize"], &e["weight"]), (&json!(100), &json!(400)));
    assert_eq!(
        (&e["ancestorcount"], &e["ancestorsize"]),
        (&json!(2), &json!(250))
    );
    assert_eq!(
        (&e["descendantcount"], &e["descendantsize"]),
        (&json!(2), &json!(220))
    );
    assert_eq!(
        e["fees"],
        json!({"base": 0.0002, "modified": 0.0002, "ancestor": 0.0003, "descendant": 0.0005})
    );
    assert_eq!((&e["depends"], &e["spentby"]), (&json!([a]), &json!([c])));
    assert_eq!(core[&a]["descendantcount"], 3);
    assert_eq!(core[&a]["fees"]["descendant"], 0.0006);
    assert_eq!(core[&d]["ancestorcount"], 1);
    assert_eq!(result_for(D, "getrawmempool", json!([a])), json!([a]));

    let info = result_for(D, "getmempoolinfo", json!({"size": 4, "bytes": 500}));
    let f = follow_up(D, "getmempoolinfo", &json!({"size": 4, "bytes": 500})).unwrap();
    assert_eq!((f.method, &f.params), ("getrawmempool", &json!([true])));
    let info = complete(D, "getmempoolinfo", info, Ok(pool)).unwrap();
    assert_eq!(info["bytes"], 450, "vsize, not btcd's serialized sizes");
    assert_eq!(info["total_fee"], 0.00065);
    assert_shape("getmempoolinfo", &info);
}

#[test]
fn fee_estimates_come_from_estimatefee() {
    let ask = |params: Value, answer| {
        let a = answer_for(D, "estimatesmartfee", &params, answer);
        a.map(|r| result_for(D, "estimatesmartfee", r))
    };
    let got = ask(json!([6]), Ok(json!(0.0002))).unwrap();
    assert_eq!(got, json!({"feerate": 0.0002, "blocks": 6}));
    assert_shape("estimatesmartfee", &got);
    assert_eq!(
        ask(json!({"conf_target": 144}), Ok(json!(0.0001))).unwrap()["blocks"],
        25
    );
    assert_eq!(
        ask(json!([6]), Ok(json!(-1.0))).unwrap(),
        json!({"errors": ["Insufficient data or no feerate found"], "blocks": 6})
    );
    // mempool/estimatefee.go with too few blocks: Core's no-data answer.
    let none = json!({"code": -32603, "message": "not enough blocks have been observed"});
    let got = ask(json!([6]), Err(none)).unwrap();
    assert_eq!(
        got,
        json!({"errors": ["Insufficient data or no feerate found"], "blocks": 0})
    );
    assert_shape("estimatesmartfee", &got);
    let zero = json!({"code": -32603, "message": "cannot confirm transaction in zero blocks"});
    let e = error_for(
        D,
        "estimatesmartfee",
        ask(json!([0]), Err(zero)).unwrap_err(),
    );
    assert_eq!(
        e,
        json!({"code": -8, "message": "Invalid conf_target, must be between 1 and 1008"})
    );
    // Others' answers are left as they are.
    let v = Ok(json!(0.0002));
    assert_eq!(
        answer_for(Dialect::Bcoin, "estimatesmartfee", &json!([6]), v.clone()),
        v
    );
}

#[test]
fn network_info_comes_from_getinfo() {
    // InfoChainResult (handleGetInfo) of btcd 0.24.2.
    let getinfo = json!({"version": 240200, "protocolversion": 70016, "blocks": 103, "timeoffset": 0,
        "connections": 0, "proxy": "", "difficulty": 4.656542373906925e-10, "testnet": false,
        "relayfee": 0.00001, "errors": ""});
    let n = result_for(D, "getnetworkinfo", getinfo.clone());
    assert_eq!(n["version"], 2402);
    assert_eq!(n["subversion"], "/btcwire:0.5.0/btcd:0.24.2/");
    assert_eq!(n["warnings"], json!([]));
    assert_eq!(
        (&n["connections_in"], &n["connections_out"]),
        (&json!(0), &json!(0))
    );
    assert!(follow_up(D, "getnetworkinfo", &getinfo).is_none());
    assert_shape("getnetworkinfo", &n);

    let mut busy = getinfo;
    busy["connections"] = json!(3);
    busy["errors"] = json!("disk space is low");
    let f = follow_up(D, "getnetworkinfo", &busy).unwrap();
    assert_eq!((f.method, &f.params), ("getpeerinfo", &json!([])));
    let n = result_for(D, "getnetworkinfo", busy);
    assert_eq!(n["warnings"], json!(["disk space is low"]));
    let peers = json!([{"inbound": true}, {"inbound": false}, {"inbound": false}]);
    let n = complete(D, "getnetworkinfo", n, Ok(peers)).unwrap();
    assert_eq!(
        (&n["connections_in"], &n["connections_out"]),
        (&json!(1), &json!(2))
    );
    assert_shape("getnetworkinfo", &n);
    // A failed second call leaves the answer as it was.
    let kept = complete(
        D,
        "getnetworkinfo",
        json!({"connections": 3}),
        Err(json!({"code": -1})),
    );
    assert_eq!(kept, Ok(json!({"connections": 3})));
}

#[test]
fn errors_get_cores_codes() {
    let e = |m, code: i64, msg: &str| error_for(D, m, json!({"code": code, "message": msg}));
    let block_not_found = json!({"code": -5, "message": "Block not found"});
    assert_eq!(e("getblock", -5, "Block not found"), block_not_found);
    assert_eq!(e("getblockheader", -5, "Block not found"), block_not_found);
    assert_eq!(
        e("getblockhash", -1, "Block number out of range"),
        json!({"code": -8, "message": "Block height out of range"})
    );
    assert_eq!(
        e(
            "getrawtransaction",
            -5,
            &format!("No information available about transaction {T1}")
        ),
        json!({"code": -5, "message": "No such mempool or blockchain transaction. Use gettransaction for wallet transactions."})
    );
    let no_index = e(
        "getrawtransaction",
        -5,
        "The transaction index must be enabled to query the blockchain (specify --txindex)",
    );
    assert_eq!(no_index["code"], -5);
    assert!(no_index["message"]
        .as_str()
        .unwrap()
        .starts_with("No such mempool transaction. Use -txindex"));
    assert_eq!(
        e(
            "getblockheader",
            -22,
            "Argument must be hexadecimal string (not \"zz\")"
        ),
        json!({"code": -8, "message": "blockhash must be of length 64 (not 2, for 'zz')"})
    );
    let bad = "z".repeat(64);
    assert_eq!(
        e(
            "getrawtransaction",
            -22,
            &format!("Argument must be hexadecimal string (not \"{bad}\")")
        ),
        json!({"code": -8, "message": format!("txid must be hexadecimal string (not '{bad}')")})
    );
    let decode = json!({"code": -22, "message": "TX decode failed. Make sure the tx has at least one input."});
    assert_eq!(
        e(
            "sendrawtransaction",
            -22,
            "Argument must be hexadecimal string (not \"0zz\")"
        ),
        decode
    );
    assert_eq!(
        e(
            "sendrawtransaction",
            -22,
            "TX decode failed: unexpected EOF"
        ),
        decode
    );
    // Rejections, before (-22) and after (-25/-26/-27) btcd PR #1428.
    assert_eq!(
        e(
            "sendrawtransaction",
            -27,
            "TX rejected: transaction already exists"
        ),
        json!({"code": -27, "message": "Transaction outputs already in utxo set"})
    );
    let orphan = format!("TX rejected: orphan transaction {T1} references outputs of unknown or fully-spent transaction {H0}");
    let missing = json!({"code": -25, "message": "bad-txns-inputs-missingorspent"});
    assert_eq!(e("sendrawtransaction", -25, &orphan), missing);
    assert_eq!(e("sendrawtransaction", -22, &orphan), missing);
    let low = format!("TX rejected: transaction {T1} has insufficient priority (1 <= 57600000)");
    let got = e("sendrawtransaction", -22, &low);
    assert_eq!(got["code"], -26);
    assert!(got["message"].as_str().unwrap().starts_with("transaction "));
    assert_eq!(
        e("sendrawtransaction", -25, "TX rejected: database failure")["code"],
        -25
    );
    // Unknown methods, btcd's rpcUnimplemented, and parameter types.
    let not_found = json!({"code": -32601, "message": "Method not found"});
    assert_eq!(e("nosuch", -32601, "Method not found"), not_found);
    assert_eq!(e("getnetworkinfo", -1, "Command unimplemented"), not_found);
    assert_eq!(
        e(
            "getrawmempool",
            -32602,
            "wrong number of params (expected 0 to 1, received 2)"
        ),
        json!({"code": -8, "message": "mempool_sequence is not served by this node (btcd)"})
    );
    assert_eq!(
        e(
            "getblock",
            -32602,
            "parameter #2 'verbosity' must be type int (got string)"
        )["code"],
        -3
    );
    // Anything else: btcd's code and message, in Core's key order.
    assert_eq!(
        e("getblockcount", -32603, "x"),
        json!({"code": -32603, "message": "x"})
    );
}

#[test]
fn a_send_btcd_already_has_answers_its_txid() {
    let params = json!([SPEND]);
    let dup =
        json!({"code": -26, "message": format!("TX rejected: already have transaction {T1}")});
    assert_eq!(
        answer_for(D, "sendrawtransaction", &params, Err(dup.clone())),
        Ok(json!(T1))
    );
    let old =
        json!({"code": -22, "message": format!("TX rejected: already have transaction {T1}")});
    assert_eq!(
        answer_for(D, "sendrawtransaction", &params, Err(old)),
        Ok(json!(T1))
    );
    // Other refusals stay errors; an accepted send is its txid.
    let gone = json!({"code": -26, "message": "TX rejected: transaction already exists"});
    assert_eq!(
        answer_for(D, "sendrawtransaction", &params, Err(gone.clone())),
        Err(gone)
    );
    assert_eq!(
        answer_for(D, "sendrawtransaction", &params, Ok(json!(T1))),
        Ok(json!(T1))
    );
    assert!(follow_up(D, "sendrawtransaction", &json!(T1)).is_none());
    assert_eq!(
        answer_for(
            Dialect::Core,
            "sendrawtransaction",
            &params,
            Err(dup.clone())
        ),
        Err(dup)
    );
}

#[test]
fn plain_answers_pass_and_every_gap_says_why() {
    assert_eq!(result_for(D, "getblockcount", json!(103)), json!(103));
    assert_eq!(result_for(D, "getbestblockhash", json!(H1)), json!(H1));
    assert_eq!(result_for(D, "getblockhash", json!(H2)), json!(H2));
    assert_eq!(result_for(D, "uptime", json!(42)), json!(42));
    assert_eq!(rest_instead(D, "uptime"), None);
    for (case, field, why) in BTCD_GAPS {
        assert!(
            !case.is_empty() && !field.is_empty() && why.len() > 10,
            "{case} {field}"
        );
    }
}
