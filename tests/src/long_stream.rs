//! A long-lived TCP stream for rotation tests (`ambit-tls-probe stream`, run inside a
//! pod): one connection to an echo port, one message every interval, each answer
//! checked; one JSON line per exchange. It ends at the first failure, after the time
//! limit, or when its standard input closes (the test's way to stop it cleanly).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One line of output.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Exchange {
    /// 1, 2, ... on the same connection; 0 for the final line.
    pub n: u64,
    /// Milliseconds since the connection was made.
    pub at_ms: u64,
    pub ok: bool,
    pub error: Option<String>,
}

fn print(exchange: &Exchange) {
    if let Ok(line) = serde_json::to_string(exchange) {
        println!("{line}");
    }
}

/// Runs the stream; see the module documentation.
pub async fn run(addr: SocketAddr, interval: Duration, limit: Duration) {
    let started = Instant::now();
    let at = |started: Instant| started.elapsed().as_millis() as u64;
    let mut tcp = match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return print(&Exchange { error: Some(format!("connect: {e}")), ..Default::default() }),
        Err(_) => return print(&Exchange { error: Some("connect: timed out".into()), ..Default::default() }),
    };
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut n = 0;
    while started.elapsed() < limit {
        n += 1;
        let message = format!("message {n}\n");
        let outcome = tokio::time::timeout(Duration::from_secs(5), exchange(&mut tcp, message.as_bytes())).await;
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("no echo within 5 s".into()),
        };
        let failed = error.is_some();
        print(&Exchange { n, at_ms: at(started), ok: !failed, error });
        if failed {
            return;
        }
        let pause = tokio::time::sleep(interval);
        tokio::pin!(pause);
        while stdin_open {
            tokio::select! {
                _ = &mut pause => break,
                line = stdin.next_line() => if !matches!(line, Ok(Some(_))) { stdin_open = false },
            }
        }
        if !stdin_open {
            break;
        }
    }
    let _ = tcp.shutdown().await;
    print(&Exchange { n: 0, at_ms: at(started), ok: true, error: None });
}

async fn exchange(tcp: &mut TcpStream, message: &[u8]) -> std::io::Result<()> {
    tcp.write_all(message).await?;
    let mut echoed = vec![0u8; message.len()];
    tcp.read_exact(&mut echoed).await?;
    if echoed != message {
        return Err(std::io::Error::other(format!("echoed {:?}", String::from_utf8_lossy(&echoed))));
    }
    Ok(())
}
