//! HAProxy's runtime API (stats socket) and master CLI: one command per connection over a Unix socket.

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Sends `command` and returns HAProxy's whole answer.
pub(crate) async fn send(socket: &Path, command: &str) -> io::Result<String> {
    let exchange = async {
        let mut stream = UnixStream::connect(socket).await?;
        stream.write_all(format!("{command}\n").as_bytes()).await?;
        // Half-close, as socat does: the master CLI answers and closes only then.
        stream.shutdown().await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok::<_, io::Error>(answer)
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("runtime API command {command:?} timed out"),
            )
        })?
}

/// Worker pids from the master CLI's `show proc` (current and old workers).
pub(crate) fn parse_worker_pids(show_proc: &str) -> Vec<u32> {
    show_proc
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let pid = fields.next()?.parse().ok()?;
            (fields.next()? == "worker").then_some(pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_proc_lists_current_and_old_workers() {
        let out = "#<PID>          <type>          <reloads>       <uptime>        <version>\n\
                   1000            master          1 [failed: 0]   0d00h00m02s     2.8.25\n\
                   # workers\n\
                   1200            worker          0               0d00h00m01s     2.8.25\n\
                   # old workers\n\
                   1100            worker          1               0d00h00m02s     2.8.25\n\
                   # programs\n";
        assert_eq!(parse_worker_pids(out), [1200, 1100]);
    }
}
