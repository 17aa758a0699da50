//! The words the rollout targets and the engine share: a node as any
//! target reports it, what it is given besides its image, and why it was
//! not moved. Apart from the targets, so that a target and the dispatcher
//! over them (`target`) do not import each other.

use bollard::auth::DockerCredentials;

/// A node as any target reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The pinned image it runs.
    pub image: Option<String>,
    /// Running (and, on Kubernetes, Ready).
    pub running: bool,
    /// Its RPC URL (`http://127.0.0.1:18500/`, `https://…` for a TLS fleet).
    pub rpc_url: Option<String>,
    /// The address the URL's host is reached at, when it is a name no
    /// resolver knows (a pod's name, at its IP): the certificate is
    /// checked against the name.
    pub rpc_resolve: Option<(String, std::net::SocketAddr)>,
}

/// What a node is given besides its image.
#[derive(Debug, Clone)]
pub struct NodeEnv {
    /// Environment (`NETWORK`, `RPC_USER`): never a secret.
    pub env: Vec<String>,
    /// Its files (config with the RPC credentials, TLS material), mounted
    /// read-only under [`NODE_FILES_DIR`] (see [`super::conf`]).
    pub files: Vec<NodeFile>,
    /// Credentials to pull from the registry.
    pub credentials: Option<DockerCredentials>,
}

/// Why a node was not moved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// The target refused or the node did not come back: the rollout turns
    /// back (or, going back, fails).
    #[error("{0}")]
    Failed(String),
    /// Moving on would change nodes behind hab's gates (the target changed
    /// under the rollout): the rollout is paused for an operator.
    #[error("{0}")]
    Hold(String),
}

/// Where a node finds its files.
pub const NODE_FILES_DIR: &str = "/run/hab";

/// A file given to a node.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeFile {
    /// Its name under [`NODE_FILES_DIR`].
    pub name: String,
    /// Its bytes.
    pub contents: Vec<u8>,
}

impl std::fmt::Debug for NodeFile {
    // Never the contents: they are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeFile({}, {} bytes)", self.name, self.contents.len())
    }
}
