//! Connect's own software against `usageflow serve`: the official Connect Python client
//! (`connect-openapi-client`, pinned in deploy/compat/requirements.txt, in a virtualenv made by
//! deploy/compat/venv.sh) runs tests/compat/connect_client.py against a server started
//! here, as a vendor and as a provider, with workbooks written the way Connect's SDKs and
//! platform write them. Every check the script makes is listed in its output.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `usageflow` with the example configuration over a fresh store and keys file.
fn usageflow(dir: &Path) -> Command {
    let root = root();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_usageflow"));
    cmd.args(["--config", root.join("config/usageflow.toml").to_str().unwrap()])
        .env_remove("USAGEFLOW_CONFIG")
        .env("USAGEFLOW__STORE__URL", dir.join("lake"))
        .env("USAGEFLOW__CATALOG__DIR", root.join("config/catalog"))
        .env("USAGEFLOW__API__KEYS_FILE", dir.join("api-keys.toml"))
        .env("USAGEFLOW__API__EVENTS_ENABLED", "false")
        .env("USAGEFLOW__API__MAX_BODY_BYTES", (8 << 20).to_string())
        .env("RUST_LOG", "warn");
    cmd
}

fn add_key(dir: &Path, account: &str, role: &str) -> String {
    let out = usageflow(dir).args(["api-key", "add", "--account", account, "--role", role]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn healthy(addr: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_official_connect_python_client_works_unchanged() {
    let root = root();
    let python = Command::new(root.join("deploy/compat/venv.sh")).arg("python").output().unwrap();
    assert!(python.status.success(), "cannot install the Connect client: {}", String::from_utf8_lossy(&python.stderr));
    let python = String::from_utf8(python.stdout).unwrap().trim().to_owned();

    let dir = tempfile::tempdir().unwrap();
    let vendor = add_key(dir.path(), "VA-200-002", "vendor");
    let provider = add_key(dir.path(), "PA-500-001", "provider");
    let other_vendor = add_key(dir.path(), "VA-300-003", "vendor");

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let server = Server(
        usageflow(dir.path()).args(["serve", "--listen", &addr]).stdout(Stdio::null()).stderr(log).spawn().unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !healthy(&addr) {
        assert!(Instant::now() < deadline, "usageflow serve did not answer on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let out = Command::new(&python)
        .arg(root.join("tests/compat/connect_client.py"))
        .env("USAGEFLOW_URL", format!("http://{addr}/public/v1"))
        .env("USAGEFLOW_VENDOR_KEY", &vendor)
        .env("USAGEFLOW_PROVIDER_KEY", &provider)
        .env("USAGEFLOW_OTHER_VENDOR_KEY", &other_vendor)
        .env("USAGEFLOW_FIXTURE", root.join("tests/fixtures/processed-usage-file-qt.xlsx"))
        .output()
        .unwrap();
    drop(server);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    assert!(out.status.success(), "{stdout}\n{stderr}\nserver log:\n{log}");
    assert!(stdout.contains("17 checks passed"), "{stdout}");
    // What was checked, in the test's output (shown with --nocapture).
    #[allow(clippy::print_stdout)]
    {
        println!("{stdout}");
    }
    assert!(!log.contains("panicked"), "{log}");
}
