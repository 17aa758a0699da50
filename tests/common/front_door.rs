//! The RPC front door (src/gateway) for the tests: served on a free port
//! of 127.0.0.1 before some nodes, with two users of its own.

use std::sync::Arc;

use hab::gateway::{access::User, Backend, Gateway, Settings};

/// The front door on a free port before `backends`, with a read-only
/// user `reader`/`rpass` and `sender`/`spass` allowed sendrawtransaction.
pub async fn front_door(backends: Vec<Backend>, settings: Settings) -> (Arc<Gateway>, String) {
    let users = vec![
        User::from_rpcauth(&User::rpcauth("reader", "c0ffee", "rpass"), vec![]).unwrap(),
        User::from_rpcauth(
            &User::rpcauth("sender", "5a17", "spass"),
            vec!["sendrawtransaction".into()],
        )
        .unwrap(),
    ];
    let g = Gateway::new(backends, users, settings);
    g.look().await;
    g.spawn_looks();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let app = g.router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (g, url)
}
