//! Bringing the loopback interface of a fresh network namespace up (`SIOCSIFFLAGS` on `lo`), the
//! only network configuration the sandbox ever does. A netlink library would be far more code
//! than these two ioctls. The socket comes from `nix`; the interface ioctls stay raw (`nix` only
//! offers macros that generate `unsafe` ioctl functions, no `SIOCSIFFLAGS` wrapper).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// Set `IFF_UP` on `lo` in the current network namespace.
pub fn loopback_up() -> io::Result<()> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock: OwnedFd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)?;
    // SAFETY: an all-zero ifreq is a valid value (C struct of integers/arrays/unions).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = libc::c_char::from_ne_bytes([*src]);
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes ifru_flags inside `req`, which we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS just initialised the ifru_flags member of the union.
    unsafe {
        // IFF_UP | IFF_RUNNING = 0x41 fits the 16-bit flags field.
        #[allow(clippy::cast_possible_truncation)]
        let up = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        req.ifr_ifru.ifru_flags |= up;
    }
    // SAFETY: SIOCSIFFLAGS reads the name and flags from `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
