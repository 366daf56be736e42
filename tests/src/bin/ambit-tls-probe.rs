//! A TLS 1.3 peer for a node's HBONE port (see `ambit_e2e::tls_probe`): `client`
//! prints one JSON report, `server` one JSON line per event; `stream` (inside a pod)
//! holds one long-lived TCP exchange through the mesh.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ambit_e2e::tls_probe;
use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ambit-tls-probe", about = "TLS 1.3 client or impostor server for an HBONE port")]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Handshake with `addr` presenting `--cert`/`--key`, then one HTTP/2 CONNECT.
    Client {
        #[arg(long)]
        addr: SocketAddr,
        /// The SNI (`<sa>.<ns>.identity.ambit` names the identity the server presents).
        #[arg(long, default_value = "probe.invalid")]
        sni: String,
        #[arg(long, required_unless_present = "plaintext")]
        cert: Option<PathBuf>,
        #[arg(long, required_unless_present = "plaintext")]
        key: Option<PathBuf>,
        /// The CONNECT authority (`ip:port`).
        #[arg(long, default_value = "127.0.0.1:1")]
        connect: String,
        /// Send these bytes without TLS instead.
        #[arg(long)]
        plaintext: Option<String>,
    },
    /// (Run inside a pod.) One long-lived TCP connection to an echo port, a message
    /// every `--interval-ms`, until stdin closes or `--seconds` pass.
    Stream {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 3000)]
        interval_ms: u64,
        #[arg(long, default_value_t = 240)]
        seconds: u64,
    },
    /// Listen on `addr` presenting `--cert`/`--key`; require (any) client certificate.
    Server {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Mode::Client { addr, plaintext: Some(bytes), .. } => {
            println!("{}", serde_json::to_string(&tls_probe::plaintext(addr, bytes.as_bytes()).await)?);
        }
        Mode::Client { addr, sni, cert, key, connect, plaintext: None } => {
            let (Some(cert), Some(key)) = (cert, key) else { anyhow::bail!("--cert and --key are required") };
            let identity = tls_probe::load_identity(&cert, &key)?;
            let report = tls_probe::client(addr, &sni, identity, &connect).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Mode::Stream { addr, interval_ms, seconds } => {
            ambit_e2e::long_stream::run(addr, Duration::from_millis(interval_ms), Duration::from_secs(seconds)).await;
        }
        Mode::Server { addr, cert, key, seconds } => {
            let identity = tls_probe::load_identity(&cert, &key)?;
            tls_probe::server(addr, identity, Duration::from_secs(seconds)).await?;
        }
    }
    Ok(())
}
