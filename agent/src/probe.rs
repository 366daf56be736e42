//! `ambit-agent probe`: asks this pod's own agent, over its admin unix socket
//! (`--admin-socket`), for `/ready` or `/healthz`; exit status 0 on a 200.
//!
//! The kubelet's probes use it (exec) instead of the admin TCP port: during a surge
//! rollout two agents share that port (SO_REUSEPORT), so an HTTP probe of the new pod
//! could be answered by the old agent. The socket lives in the pod's own `emptyDir`, so
//! it always reaches the agent of the pod being probed.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};

/// How long a probe waits for the agent.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// GETs `path` from the admin API at the unix socket `socket`; Ok on 200.
pub fn probe(socket: &Path, path: &str) -> anyhow::Result<()> {
    if !path.starts_with('/') || path.contains(char::is_whitespace) {
        bail!("probe path must start with / and hold no spaces, got {path:?}");
    }
    let mut stream =
        UnixStream::connect(socket).with_context(|| format!("connecting to the admin socket {}", socket.display()))?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).context("reading the admin answer")?;
    let status = std::str::from_utf8(&head[..n])
        .ok()
        .and_then(|s| s.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .context("the admin socket answered something other than HTTP")?;
    if status != 200 {
        bail!("{path} answered {status}");
    }
    Ok(())
}
