//! The node recipes' entrypoints start each implementation with the files
//! hab gives a node (`hab::rollout::conf`): the config file with the RPC
//! credentials and, for btcd, the RPC certificate and key, by path only. No
//! password reaches the command line. Each entrypoint runs here with a
//! stand-in for the node's binary that prints the arguments it was given.

use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};

use hab::{
    config::Implementation,
    rollout::conf::{node_files, ServerTls},
};

const PASSWORD: &str = "s3cret-rpc-password";

/// Runs `dockerfiles/<recipe>/entrypoint.sh <recipe>` for `network` with
/// the files of `implementation`; returns (exit code, the node's
/// arguments, stderr).
fn start(recipe: &str, implementation: Implementation, network: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("run-hab");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    let tls = ServerTls {
        cert_pem: "CERT".into(),
        key_pem: "KEY".into(),
    };
    let tls = (implementation == Implementation::Btcd).then_some(&tls);
    for f in node_files(implementation, "hab", PASSWORD, tls) {
        std::fs::write(files.join(&f.name), &f.contents).unwrap();
    }
    let stub = bin.join(recipe);
    std::fs::write(&stub, "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done\n").unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("sh")
        .arg(root.join(format!("dockerfiles/{recipe}/entrypoint.sh")))
        .arg(recipe)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("NETWORK", network)
        .env("HAB_NODE_FILES", &files)
        .output()
        .unwrap();
    let args = String::from_utf8_lossy(&out.stdout).replace(&*files.to_string_lossy(), "FILES");
    (
        out.status.code().unwrap_or(-1),
        args,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn btcd_starts_with_its_config_file_and_rpc_certificate_on_every_network() {
    for (network, flag, port) in [
        ("mainnet", None, 8334),
        ("testnet3", Some("--testnet"), 18334),
        ("testnet4", Some("--testnet4"), 48334),
        ("signet", Some("--signet"), 38332),
        ("regtest", Some("--regtest"), 18334),
        ("simnet", Some("--simnet"), 18556),
    ] {
        let (code, args, err) = start("btcd", Implementation::Btcd, network);
        assert_eq!(code, 0, "{network}: {err}");
        let args: Vec<&str> = args.lines().collect();
        for want in [
            "--configfile=FILES/btcd.conf",
            "--rpccert=FILES/rpc.cert",
            "--rpckey=FILES/rpc.key",
            &format!("--rpclisten=0.0.0.0:{port}"),
        ] {
            assert!(args.contains(&want), "{network}: {want} not in {args:?}");
        }
        assert_eq!(flag.is_some_and(|f| args.contains(&f)), flag.is_some());
        assert!(!args.join(" ").contains(PASSWORD), "{args:?}");
    }
}

#[test]
fn bitcoind_and_bcoin_read_their_credentials_from_files() {
    let (code, args, err) = start("bitcoind", Implementation::Bitcoind, "testnet4");
    assert_eq!(code, 0, "{err}");
    assert!(
        args.lines().any(|a| a == "-conf=FILES/bitcoin.conf"),
        "{args}"
    );
    assert!(args.lines().any(|a| a == "-testnet4"), "{args}");
    assert!(args.lines().any(|a| a == "-nodebuglogfile"), "{args}");
    let (code, bcoin, err) = start("bcoin", Implementation::Bcoin, "regtest");
    assert_eq!(code, 0, "{err}");
    assert!(
        bcoin.lines().any(|a| a == "--config=FILES/bcoin.conf"),
        "{bcoin}"
    );
    for a in [&args, &bcoin] {
        assert!(!a.contains(PASSWORD), "{a}");
        assert!(!a.contains("rpcpassword") && !a.contains("api-key"), "{a}");
    }
}

#[test]
fn a_node_without_its_files_does_not_start() {
    // The files of another implementation: the one it needs is missing.
    let (code, _, err) = start("btcd", Implementation::Bitcoind, "regtest");
    assert_eq!(code, 2);
    assert!(err.contains("btcd.conf"), "{err}");
    let (code, _, err) = start("bcoin", Implementation::Bcoin, "testnet4");
    assert_eq!(code, 2);
    assert!(err.contains("bcoin does not run network testnet4"), "{err}");
}
