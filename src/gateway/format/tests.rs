//! Unit tests of the translations, on answers a real bcoin 1.0.2 gave.
use super::*;

const B: Dialect = Dialect::Bcoin;
const BLOCK1: &str = "3dbcbb6d6f5c58e1d5a23c3e8b7609ba9a9f11ec16da90226601233c33b543c9";
/// bcoin's getblock [block1, false] (tests/bcoin_real.rs's record).
const RAW_BLOCK1: &str = "0000002006226e46111a0b59caaf126043eb5bbf28c34f3a5e332a1fc7b2b73cf188910fb957468e1ef1913e9e7c0df2b5a46261eba3c781fd105abdb8f30d69b8df664e4f040e6bffff7f20000000000101000000010000000000000000000000000000000000000000000000000000000000000000ffffffff1e510e6d696e65642062792062636f696e0442839f4c080000000000000000ffffffff0100f2052a0100000017a914da1745e9b549bd0bfa1a569971c77eba30cd5a4b8700000000";
const SPEND: &str = "0100000001b957468e1ef1913e9e7c0df2b5a46261eba3c781fd105abdb8f30d69b8df664e00000000020151ffffffff01606b042a0100000017a914da1745e9b549bd0bfa1a569971c77eba30cd5a4b8700000000";

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[test]
fn bcoins_chain_info_gets_cores_fields() {
    let bcoin = json!({"chain": "regtest", "blocks": 103, "headers": 103, "bestblockhash": "ab",
        "difficulty": 4.6e-10, "mediantime": 1_796_080_737, "verificationprogress": 1,
        "chainwork": "00d0", "pruned": false, "softforks": [], "bip9_softforks": {}, "pruneheight": null});
    let core = result_for(B, "getblockchaininfo", bcoin);
    for k in ["softforks", "bip9_softforks", "pruneheight"] {
        assert!(core.get(k).is_none(), "{k}");
    }
    assert_eq!(core["initialblockdownload"], false);
    assert_eq!(core["time"], 1_796_080_737);
    assert_eq!(core["warnings"], json!([]));
    // Core's own answer is left as it is.
    let v = json!({"blocks": 1, "initialblockdownload": true});
    assert_eq!(result_for(Dialect::Core, "getblockchaininfo", v.clone()), v);
    assert!(in_initial_block_download(Dialect::Core, &v));
}

#[test]
fn params_are_bcoins_forms() {
    let p = |m, v: Value| params_for(B, m, &v);
    assert_eq!(p("getblock", json!(["h", 0])), json!(["h", false]));
    assert_eq!(p("getblock", json!(["h", 1])), json!(["h", true]));
    assert_eq!(p("getblock", json!(["h"])), json!(["h"]));
    assert_eq!(
        p("getblock", json!({"blockhash": "h", "verbosity": 0})),
        json!(["h", false])
    );
    assert_eq!(
        p("getrawtransaction", json!(["t", 1, "h"])),
        json!(["t", true])
    );
    assert_eq!(
        p("getrawtransaction", json!(["t", false])),
        json!(["t", false])
    );
    assert_eq!(
        p("getrawtransaction", json!({"txid": "t", "verbose": true})),
        json!(["t", true])
    );
    assert_eq!(p("getblockhash", json!([-1])), json!([u32::MAX]));
    assert_eq!(p("getblockhash", json!({"height": 5})), json!([5]));
    assert_eq!(
        p("estimatesmartfee", json!([6, "CONSERVATIVE"])),
        json!([6])
    );
    assert_eq!(p("sendrawtransaction", json!(["00", 0.1])), json!(["00"]));
    assert_eq!(p("getrawmempool", json!([true, false])), json!([true]));
    assert_eq!(
        p("getrawmempool", json!([false, true])),
        json!([false, true])
    );
    assert_eq!(p("getblockcount", json!({})), json!([]));
    // Verbosity 2 is left for bcoin to refuse (and error_for to say so).
    assert_eq!(p("getblock", json!(["h", 2])), json!(["h", 2]));
    // Core's own parameters untouched.
    let v = json!(["h", 2]);
    assert_eq!(params_for(Dialect::Core, "getblock", &v), v);
}

#[test]
fn header_and_block_get_cores_fields() {
    let header = json!({"hash": BLOCK1,"confirmations":103,"height":1,"version":536870912,"versionHex":"20000000",
        "merkleroot":"4e66dfb8690df3b8bd5a10fd81c7a3eb6162a4b5f20d7c9e3e91f11e8e4657b9","time":1796080719,"mediantime":1796080719,"bits":545259519,
        "difficulty":4.6565423739069247e-10,"chainwork":"0000000000000000000000000000000000000000000000000000000000000004",
        "previousblockhash":"0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206","nextblockhash":null});
    let h = result_for(B, "getblockheader", header);
    assert_eq!(h["bits"], "207fffff");
    assert!(h.get("nextblockhash").is_none());
    assert!(h["previousblockhash"].is_string());
    let f = follow_up(B, "getblockheader", &h).unwrap();
    assert_eq!((f.method, &f.params), ("getblock", &json!([BLOCK1, false])));
    let h = complete(B, "getblockheader", h, Ok(json!(RAW_BLOCK1))).unwrap();
    assert_eq!(h["nonce"], 0);
    assert_eq!(h["nTx"], 1);
    // The verbose=false header is Core's already.
    assert_eq!(result_for(B, "getblockheader", json!("00")), json!("00"));

    let block = json!({"hash": BLOCK1,"confirmations":103,"strippedsize":194,"size":194,"weight":776,"height":1,
        "version":536870912,"versionHex":"20000000","merkleroot":"4e66","coinbase":"510e6d69",
        "tx":["4e66dfb8690df3b8bd5a10fd81c7a3eb6162a4b5f20d7c9e3e91f11e8e4657b9"],"time":1796080719,"mediantime":1796080719,
        "bits":545259519,"difficulty":4.6e-10,"chainwork":"0004","previousblockhash":"0f91","nextblockhash":"4e84"});
    let b = result_for(B, "getblock", block);
    assert!(b.get("coinbase").is_none());
    assert_eq!(b["nTx"], 1);
    assert_eq!(b["bits"], "207fffff");
    let f = follow_up(B, "getblock", &b).unwrap();
    assert_eq!(
        (f.method, &f.params),
        ("getblockheader", &json!([BLOCK1, false]))
    );
    let b = complete(B, "getblock", b, Ok(json!(&RAW_BLOCK1[..160]))).unwrap();
    assert_eq!(b["nonce"], 0);
    assert_eq!(
        keys(&b),
        [
            "bits",
            "chainwork",
            "confirmations",
            "difficulty",
            "hash",
            "height",
            "mediantime",
            "merkleroot",
            "nTx",
            "nextblockhash",
            "nonce",
            "previousblockhash",
            "size",
            "strippedsize",
            "time",
            "tx",
            "version",
            "versionHex",
            "weight"
        ]
    );
    // Verbosity 0's raw block passes; no follow-up for it.
    assert!(follow_up(B, "getblock", &json!(RAW_BLOCK1)).is_none());
    assert!(follow_up(Dialect::Core, "getblock", &b).is_none());
}

#[test]
fn transactions_get_cores_fields() {
    let spk = json!({"asm":"OP_HASH160 da1745e9b549bd0bfa1a569971c77eba30cd5a4b OP_EQUAL",
        "hex":"a914da1745e9b549bd0bfa1a569971c77eba30cd5a4b87","type":"SCRIPTHASH","reqSigs":1,
        "addresses":["Gdj5bzLLUhMjQFe3WiukAMfxBTHTuWgw7f"]});
    let mempool_tx = json!({"txid":"ae3f","hash":"ae3f","size":85,"vsize":85,"version":1,"locktime":0,
        "vin":[{"txid":"4e66","scriptSig":{"asm":"81","hex":"0151"},"sequence":4294967295u32,"vout":0}],
        "vout":[{"value":49.999,"n":0,"scriptPubKey": spk}],
        "blockhash":null,"confirmations":0,"time":1796080719,"blocktime":0,"hex": SPEND});
    let t = result_for(B, "getrawtransaction", mempool_tx);
    for k in ["blockhash", "confirmations", "time", "blocktime"] {
        assert!(t.get(k).is_none(), "{k}: {t}");
    }
    assert_eq!(t["weight"], 85 * 4);
    let spk = &t["vout"][0]["scriptPubKey"];
    assert_eq!(keys(spk), ["address", "asm", "desc", "hex", "type"]);
    assert_eq!(spk["type"], "scripthash");
    assert_eq!(spk["address"], "Gdj5bzLLUhMjQFe3WiukAMfxBTHTuWgw7f");
    assert!(spk["desc"]
        .as_str()
        .unwrap()
        .starts_with("raw(a914da1745e9b549bd0bfa1a569971c77eba30cd5a4b87)#"));
    // A confirmed one keeps its block fields.
    let confirmed = json!({"txid":"4e66","blockhash": BLOCK1,"confirmations":103,"time":1,"blocktime":1,"vout":[]});
    let t = result_for(B, "getrawtransaction", confirmed);
    assert_eq!(t["confirmations"], 103);
    assert!(t["blockhash"].is_string());
}

#[test]
fn descriptor_checksum_and_weight() {
    // BIP 380's test vector.
    assert_eq!(with_checksum("raw(deadbeef)"), "raw(deadbeef)#89f8spxm");
    assert_eq!(tx_weight(SPEND), Some(85 * 4));
    // A segwit transaction: 1 input, 1 output, a witness of one 2-byte
    // item; 4+2+1+41+1+9+4+4 = 66 bytes, stripped (no marker, flag
    // or witness) 60.
    let sw = format!(
        "02000000 0001 01 {} 00000000 00 ffffffff 01 e803000000000000 00 01 02 abcd 00000000",
        "11".repeat(32)
    )
    .replace(' ', "");
    assert_eq!(tx_weight(&sw), Some(60 * 3 + 66));
    assert_eq!(tx_weight("0100"), Some(8));
    assert_eq!(tx_weight("zz"), None);
}

#[test]
fn mempool_answers_get_cores_fields() {
    let verbose = json!({"ae3f":{"size":85,"fee":0.001,"modifiedfee":0,"time":1796080719,"height":103,
        "startingpriority":6000000000u64,"currentpriority":6000000000u64,"descendantcount":0,"descendantsize":85,
        "descendantfees":100000,"ancestorcount":0,"ancestorsize":0,"ancestorfees":0,"depends":[]},
        "c0de":{"size":100,"fee":0.0002,"modifiedfee":0,"time":1796080720,"height":103,"descendantcount":0,
        "descendantsize":100,"descendantfees":20000,"ancestorcount":0,"ancestorsize":0,"ancestorfees":0,"depends":["ae3f"]}});
    let core = result_for(B, "getrawmempool", verbose.clone());
    let e = &core["ae3f"];
    assert_eq!(
        keys(e),
        [
            "ancestorcount",
            "ancestorsize",
            "depends",
            "descendantcount",
            "descendantsize",
            "fees",
            "height",
            "spentby",
            "time",
            "unbroadcast",
            "vsize",
            "weight"
        ]
    );
    assert_eq!(e["vsize"], 85);
    assert_eq!(e["descendantcount"], 1);
    assert_eq!(e["ancestorcount"], 1);
    assert_eq!(e["ancestorsize"], 85);
    assert_eq!(e["fees"]["base"], 0.001);
    assert_eq!(e["fees"]["descendant"], 0.001);
    assert_eq!(e["spentby"], json!(["c0de"]));
    assert_eq!(core["c0de"]["depends"], json!(["ae3f"]));
    // The txid list is Core's already.
    assert_eq!(
        result_for(B, "getrawmempool", json!(["ae3f"])),
        json!(["ae3f"])
    );

    let info =
        json!({"size":2,"bytes":2088,"usage":2088,"maxmempool":100000000,"mempoolminfee":0.00001});
    let info = result_for(B, "getmempoolinfo", info);
    assert_eq!(info["loaded"], true);
    assert_eq!(info["minrelaytxfee"], 0.00001);
    let f = follow_up(B, "getmempoolinfo", &info).unwrap();
    assert_eq!((f.method, &f.params), ("getrawmempool", &json!([true])));
    let info = complete(B, "getmempoolinfo", info, Ok(verbose)).unwrap();
    assert_eq!(info["bytes"], 185, "total vsize, not bcoin's memory");
    assert_eq!(info["total_fee"], 0.0012);
    assert_eq!(info["usage"], 2088);
}

#[test]
fn fee_estimate_network_and_uptime_get_cores_fields() {
    assert_eq!(
        result_for(B, "estimatesmartfee", json!({"fee": -1, "blocks": 6})),
        json!({"errors": ["Insufficient data or no feerate found"], "blocks": 6})
    );
    assert_eq!(
        result_for(B, "estimatesmartfee", json!({"fee": 0.0002, "blocks": 2})),
        json!({"feerate": 0.0002, "blocks": 2})
    );
    let net = json!({"version":"v1.0.2","subversion":"/bcoin:v1.0.2/","protocolversion":70015,"localservices":"00000009",
        "localrelay":true,"timeoffset":0,"networkactive":true,"connections":0,"networks":[],
        "relayfee":0.00001,"incrementalfee":0,"localaddresses":[],"warnings":""});
    let n = result_for(B, "getnetworkinfo", net.clone());
    assert_eq!(n["version"], 10002);
    assert_eq!(n["localservices"], "0000000000000009");
    assert_eq!(n["localservicesnames"], json!(["NETWORK", "WITNESS"]));
    assert_eq!(n["warnings"], json!([]));
    assert_eq!(
        (&n["connections_in"], &n["connections_out"]),
        (&json!(0), &json!(0))
    );
    assert!(follow_up(B, "getnetworkinfo", &n).is_none());
    let mut busy = net;
    busy["connections"] = json!(3);
    let n = result_for(B, "getnetworkinfo", busy);
    let f = follow_up(B, "getnetworkinfo", &n).unwrap();
    assert_eq!(f.method, "getpeerinfo");
    let peers = json!([{"inbound": true}, {"inbound": false}, {"inbound": false}]);
    let n = complete(B, "getnetworkinfo", n, Ok(peers)).unwrap();
    assert_eq!(
        (&n["connections_in"], &n["connections_out"]),
        (&json!(1), &json!(2))
    );

    // uptime: bcoin's REST GET / (lib/node/http.js) instead.
    assert_eq!(rest_instead(B, "uptime"), Some("/"));
    assert_eq!(rest_instead(Dialect::Core, "uptime"), None);
    let root = json!({"version":"1.0.2","time":{"uptime":42,"system":1796080719,"adjusted":1796080719,"offset":0}});
    assert_eq!(result_for(B, "uptime", root), json!(42));
}

#[test]
fn errors_get_cores_codes() {
    let e = |m, code: i64, msg: &str| error_for(B, m, json!({"message": msg, "code": code}));
    assert_eq!(
        e("getblock", -1, "Block not found"),
        json!({"code": -5, "message": "Block not found"})
    );
    assert_eq!(e("getblockheader", -1, "Block not found")["code"], -5);
    assert_eq!(
        e("getrawtransaction", -1, "Transaction not found."),
        json!({"code": -5, "message": "No such mempool or blockchain transaction. Use gettransaction for wallet transactions."})
    );
    assert_eq!(
        e("getblockhash", -8, "Block height out of range."),
        json!({"code": -8, "message": "Block height out of range"})
    );
    assert_eq!(
        e("getblockheader", -3, "Param #0 must be a hex string.")["code"],
        -8
    );
    assert_eq!(e("getblock", -3, "Param #1 must be a boolean.")["code"], -8);
    let decode = json!({"code": -22, "message": "TX decode failed. Make sure the tx has at least one input."});
    assert_eq!(
        e("sendrawtransaction", -3, "Param #0 must be a hex string."),
        decode
    );
    assert_eq!(
        e("sendrawtransaction", -22, "Out of bounds read (offset=0)."),
        decode
    );
    assert_eq!(
        e("estimatesmartfee", -3, "Param #0 must be a u32.")["code"],
        -8
    );
    assert_eq!(
        e("getrawmempool", -1, "getrawmempool ( verbose )")["code"],
        -8
    );
    assert_eq!(
        e("nosuch", -32601, "Method not found: nosuch."),
        json!({"code": -32601, "message": "Method not found"})
    );
    assert_eq!(
        e("uptime", -32601, "Method not found: uptime.")["code"],
        -32601
    );
    // Anything else: bcoin's code and message, in Core's key order.
    assert_eq!(
        e("getblockcount", -1, "getblockcount"),
        json!({"code": -1, "message": "getblockcount"})
    );
    let v = json!({"code": -5, "message": "x"});
    assert_eq!(error_for(Dialect::Core, "getblock", v.clone()), v);
}

#[test]
fn a_send_bcoin_did_not_take_is_refused() {
    let txid = json!("ae3f");
    let f = follow_up(B, "sendrawtransaction", &txid).unwrap();
    assert_eq!(
        (f.method, &f.params),
        ("getrawtransaction", &json!(["ae3f", true]))
    );
    assert!(f.settle > std::time::Duration::ZERO);
    // In the mempool: its txid.
    let in_pool = json!({"txid": "ae3f", "confirmations": 0});
    assert_eq!(
        complete(B, "sendrawtransaction", txid.clone(), Ok(in_pool)),
        Ok(txid.clone())
    );
    // Nowhere (inputs missing, or dropped by policy): -26.
    let gone = json!({"code": -1, "message": "Transaction not found."});
    assert_eq!(
        complete(B, "sendrawtransaction", txid.clone(), Err(gone)).unwrap_err()["code"],
        -26
    );
    // Already confirmed: -27.
    let mined = json!({"txid": "ae3f", "blockhash": BLOCK1, "confirmations": 3});
    assert_eq!(
        complete(B, "sendrawtransaction", txid, Ok(mined)).unwrap_err(),
        json!({"code": -27, "message": "Transaction outputs already in utxo set"})
    );
    assert!(follow_up(Dialect::Core, "sendrawtransaction", &json!("ae3f")).is_none());
}
