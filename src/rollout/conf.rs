//! What a node is given besides its image, and how the gates reach it.
//!
//! A node's secrets are files, never arguments or environment (both are
//! readable by every process on the host: `ps -eo args`,
//! `/proc/<pid>/environ`): its implementation's own config file with the
//! RPC credentials, and for a fleet whose nodes serve RPC over TLS the
//! server certificate and key. The Docker target mounts them read-only at
//! [`NODE_FILES_DIR`], mode 0400, owned by the image's user; the chart
//! does the same from Secrets. The recipes' entrypoints pass only the
//! files' paths:
//!
//! | implementation | file | read by |
//! |---|---|---|
//! | bitcoind | `bitcoin.conf` (`rpcuser`, `rpcpassword`) | `-conf=/run/hab/bitcoin.conf` |
//! | btcd | `btcd.conf` (`[Application Options]` `rpcuser`, `rpcpass`), `rpc.cert`, `rpc.key` | `--configfile`, `--rpccert`, `--rpckey` |
//! | bcoin | `bcoin.conf` (`api-key`) | `--config=/run/hab/bcoin.conf` |
//!
//! For a TLS fleet on a Docker target hab makes the fleet's own CA and a
//! server certificate naming 127.0.0.1, ::1 and localhost (where the gates
//! reach the nodes), under `<state>/fleets/<fleet>/rpc-tls/`, once; the
//! CA's key is never kept. The gates then trust that CA only (no system roots), and check
//! the name as well as the chain.

use std::path::{Path, PathBuf};

pub use super::node::{NodeFile, NODE_FILES_DIR};
use crate::config::{FleetConfig, Implementation};

fn file(name: &str, contents: impl Into<Vec<u8>>) -> NodeFile {
    NodeFile {
        name: name.into(),
        contents: contents.into(),
    }
}

/// A fleet's RPC server certificate and key, as PEM.
#[derive(Clone)]
pub struct ServerTls {
    /// Certificate.
    pub cert_pem: String,
    /// Key.
    pub key_pem: String,
}

/// The files a node of `implementation` gets: its config file with the
/// RPC credentials, and the server certificate and key when `tls`.
pub fn node_files(
    implementation: Implementation,
    user: &str,
    password: &str,
    tls: Option<&ServerTls>,
) -> Vec<NodeFile> {
    const HEADER: &str = "# Written by hab for this node: its RPC credentials. Read-only.\n";
    let mut files = match implementation {
        Implementation::Bitcoind => vec![file(
            "bitcoin.conf",
            format!("{HEADER}rpcuser={user}\nrpcpassword={password}\n"),
        )],
        Implementation::Btcd => vec![file(
            "btcd.conf",
            format!("{HEADER}[Application Options]\nrpcuser={user}\nrpcpass={password}\n"),
        )],
        Implementation::Bcoin => vec![file("bcoin.conf", format!("{HEADER}api-key: {password}\n"))],
        // A fleet never runs hab's own pipeline (the config refuses it).
        Implementation::Hab => Vec::new(),
    };
    if let Some(t) = tls {
        files.push(file("rpc.cert", t.cert_pem.clone()));
        files.push(file("rpc.key", t.key_pem.clone()));
    }
    files
}

/// Where a Docker-target fleet's own RPC TLS material lives.
pub fn tls_dir(state_dir: &Path, fleet: &str) -> PathBuf {
    state_dir.join("fleets").join(fleet).join("rpc-tls")
}

/// The CA the gates pin for `fleet`: the one the config names, else the
/// one hab made for it on a Docker target.
pub fn pinned_ca(state_dir: &Path, fleet: &FleetConfig) -> PathBuf {
    fleet
        .rpc_tls_ca
        .clone()
        .unwrap_or_else(|| tls_dir(state_dir, &fleet.name).join("ca.pem"))
}

/// The names a Docker-target fleet's server certificate carries: where the
/// gates reach the nodes (their RPC is published on 127.0.0.1 only). Never
/// the fleet's size: a certificate made again for a third node would come
/// with a new CA, and the nodes still on the old one would fail their gates.
fn server_names() -> Vec<String> {
    vec!["127.0.0.1".into(), "::1".into(), "localhost".into()]
}

/// The server certificate and key of a Docker-target TLS fleet, made
/// (with a new CA) when missing, or when they name other hosts than
/// [`server_names`] (a habd of another version made them).
///
/// # Errors
/// The material could not be made or written.
pub fn fleet_server_tls(state_dir: &Path, fleet: &FleetConfig) -> Result<ServerTls, String> {
    let dir = tls_dir(state_dir, &fleet.name);
    let names = server_names();
    let read = |f: &str| std::fs::read_to_string(dir.join(f));
    if let (Ok(cert_pem), Ok(key_pem), Ok(_), Ok(named)) = (
        read("server.pem"),
        read("server.key"),
        read("ca.pem"),
        read("names"),
    ) {
        if named == names.join("\n") {
            return Ok(ServerTls { cert_pem, key_pem });
        }
    }
    let ca = crate::tls::Authority::new(&format!("hab RPC CA of fleet {}", fleet.name))
        .map_err(|e| e.to_string())?;
    let leaf = ca.server(&names).map_err(|e| e.to_string())?;
    let write = |f: &str, bytes: &str| {
        crate::secrets::write_private(&dir.join(f), bytes.as_bytes()).map_err(|e| {
            format!(
                "cannot keep the RPC TLS material of fleet {}: {e}",
                fleet.name
            )
        })
    };
    // The CA last but one and the names last: a crash in between leaves a
    // set that is made again next time, never a CA that signed nothing
    // here trusted for a certificate it did not sign.
    write("server.key", &leaf.key_pem)?;
    write("server.pem", &leaf.cert_pem)?;
    write("ca.pem", &ca.cert_pem)?;
    write("names", &names.join("\n"))?;
    Ok(ServerTls {
        cert_pem: leaf.cert_pem,
        key_pem: leaf.key_pem,
    })
}

/// An HTTP client for a TLS fleet's RPC: trusts the pinned CA only (no
/// system roots), and, when `connect` is given, reaches `host` at that
/// address (a pod's name resolved to its IP), checking the certificate
/// against the name.
///
/// # Errors
/// The CA cannot be read or is not a PEM certificate.
pub fn tls_client(
    ca: &Path,
    connect: Option<(&str, std::net::SocketAddr)>,
) -> Result<reqwest::Client, String> {
    let pem =
        std::fs::read(ca).map_err(|e| format!("cannot read the RPC CA {}: {e}", ca.display()))?;
    let cert = reqwest::Certificate::from_pem(&pem)
        .map_err(|e| format!("the RPC CA {} is not a PEM certificate: {e}", ca.display()))?;
    let mut b = reqwest::Client::builder().tls_certs_only([cert]);
    if let Some((host, addr)) = connect {
        b = b.resolve(host, addr);
    }
    b.build()
        .map_err(|e| format!("cannot make an RPC client for CA {}: {e}", ca.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_implementation_gets_its_own_config_file() {
        let tls = ServerTls {
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
        };
        let names = |i, t| {
            node_files(i, "hab", "pw", t)
                .into_iter()
                .map(|f| f.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(Implementation::Bitcoind, None), ["bitcoin.conf"]);
        assert_eq!(
            names(Implementation::Btcd, Some(&tls)),
            ["btcd.conf", "rpc.cert", "rpc.key"]
        );
        assert_eq!(names(Implementation::Bcoin, None), ["bcoin.conf"]);
        let btcd = &node_files(Implementation::Btcd, "hab", "pw", None)[0];
        let text = String::from_utf8(btcd.contents.clone()).unwrap();
        assert!(text.contains("[Application Options]\nrpcuser=hab\nrpcpass=pw\n"));
        let bcoin = &node_files(Implementation::Bcoin, "hab", "pw", None)[0];
        assert!(String::from_utf8_lossy(&bcoin.contents).contains("api-key: pw\n"));
        // Debug never shows a secret.
        assert!(!format!("{btcd:?}").contains("pw"));
    }
}
