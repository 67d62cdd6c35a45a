//! The server on a real socket: serves, logs, and on shutdown finishes what is in flight.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use usageflow_api::{ApiConfig, AppState, KeyRing};

async fn get(addr: &str, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_on_a_socket_and_shuts_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let store = usageflow_lake::open_store(&usageflow_lake::StoreConfig::local(dir.path())).unwrap();
    let catalogue = Arc::new(
        usageflow_catalog::load_dir(
            &Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../../config/catalog"),
        )
        .unwrap(),
    );
    let service = usageflow_files::FileService::new(
        store.clone(),
        usageflow_workflow::WorkflowStore::new(store, Arc::new(usageflow_workflow::SystemClock)),
        catalogue.clone(),
    );
    let state = AppState::new(service, KeyRing::default());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = ApiConfig { listen: format!("127.0.0.1:{port}"), ..ApiConfig::default() };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        usageflow_api::serve(state, &config, async {
            stopped.await.ok();
        })
        .await
    });
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = get(&addr, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let unauthorized = get(&addr, "/public/v1/usage/files").await;
    assert!(unauthorized.starts_with("HTTP/1.1 401"), "{unauthorized}");
    assert!(unauthorized.contains("\"error_code\":\"AUTH_001\""), "{unauthorized}");
    stop.send(()).unwrap();
    let served = tokio::time::timeout(Duration::from_secs(10), server).await.expect("stops").unwrap().unwrap();
    assert_eq!(served.port(), port);
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err(), "the socket is closed after shutdown");
}
