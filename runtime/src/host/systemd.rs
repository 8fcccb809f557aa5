//! The two systemd protocols `stockade serve` speaks, by hand: each is a few lines over the
//! standard library (an environment variable and one datagram), which is less code and less
//! trust than a crate for it.
//!
//! - Socket activation (`sd_listen_fds(3)`): `LISTEN_PID` names this process and `LISTEN_FDS`
//!   counts descriptors from 3. `serve` takes exactly one (its agent socket).
//! - Readiness (`sd_notify(3)`): `READY=1` / `STOPPING=1` / `STATUS=…` as one datagram to
//!   `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). Without the variable it
//!   does nothing, so `serve` runs the same outside systemd.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The variables are consumed (removed) so nothing started later inherits them.
fn take_var(k: &str) -> Option<String> {
    let v = std::env::var(k).ok();
    std::env::remove_var(k);
    v
}

/// How many descriptors systemd passed to this process (0 when not socket-activated).
/// `LISTEN_FDNAMES` is ignored: `serve` takes one socket.
pub fn listen_fds() -> Result<usize, String> {
    let pid = take_var("LISTEN_PID");
    let fds = take_var("LISTEN_FDS");
    take_var("LISTEN_FDNAMES");
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(0);
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(0); // meant for another process (a parent that did not unset them)
    }
    fds.trim()
        .parse::<usize>()
        .map_err(|_| format!("LISTEN_FDS is not a number: `{fds}`"))
}

fn notify_addr(v: &str) -> io::Result<SocketAddr> {
    if let Some(name) = v.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())
    } else {
        SocketAddr::from_pathname(v)
    }
}

/// Send `state` to the service manager if it asked for notifications.
pub fn notify(state: &str) -> io::Result<()> {
    let Ok(v) = std::env::var("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let addr = notify_addr(&v)?;
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abstract_and_path_addresses() {
        assert!(notify_addr("@x/y").unwrap().as_pathname().is_none());
        assert_eq!(
            notify_addr("/run/a").unwrap().as_pathname(),
            Some(std::path::Path::new("/run/a"))
        );
    }
}
