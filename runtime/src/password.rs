//! The password of an encrypted secret key: from a file named on the command line
//! (`--password-file`), or typed at the controlling terminal.
//!
//! Non-interactive first: agents and CI have no terminal, and a command that waits for a
//! password nobody can type hangs their pipeline. So the order is
//! 1. `--password-file PATH`: the file's first line (its `\n`, and a `\r` before it, stripped,
//!    as minisign strips what is typed). A regular file or a pipe (`<(pass show ca)`,
//!    `/dev/stdin` when the caller says so); at most [`MAX_PASSWORD_FILE`] bytes. Its mode is
//!    not checked: the secrets a CI or a container runtime mounts are 0444 or 0644 in a
//!    directory only the job can reach, and refusing them would only push the password into an
//!    unencrypted key; keep the file as private as the key.
//! 2. otherwise the controlling terminal, `/dev/tty` (never standard input, which is a data
//!    channel for several commands and may be anything in a pipeline), echo off;
//! 3. otherwise no password: the caller fails with `key.password_required`, naming the flag.
//!
//! The terminal's settings are restored on every way out of the prompt: a return, an error, and
//! SIGINT, SIGTERM, SIGHUP or SIGQUIT while it waits — those are blocked and read from a
//! signalfd instead, so the prompt restores the terminal and then raises the signal again, and
//! the process ends as it would have. Ctrl-Z (SIGTSTP) stops it as usual, the shell then puts
//! back its own terminal settings; SIGCONT, watched the same way (blocking it does not delay
//! the continuing), turns echo off again and shows the prompt again when the job goes on.
//! Everything here is nix's safe API: no `unsafe`.

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{pthread_sigmask, raise, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg, Termios};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Largest password file read (a password is one line; the rest is not read).
pub const MAX_PASSWORD_FILE: u64 = 4096;

/// A password, wiped from memory when dropped.
pub type Password = Zeroizing<Vec<u8>>;

/// Why no password could be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// The password file cannot be opened or read.
    #[error("cannot read the password file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The password file is neither a regular file nor a pipe.
    #[error("the password file {} is neither a regular file nor a pipe", .0.display())]
    NotFile(PathBuf),
    /// The password file's first line is longer than [`MAX_PASSWORD_FILE`].
    #[error("the password file {} has no line end in its first {MAX_PASSWORD_FILE} bytes", .0.display())]
    TooLong(PathBuf),
    /// The terminal could not be used (set up, read or restored).
    #[error("cannot read the password from the terminal")]
    Terminal(#[source] std::io::Error),
    /// A signal came while the prompt waited, and its disposition did not end the process.
    #[error("interrupted while reading the password")]
    Interrupted,
}

/// The first line of `path`, without its line end.
pub fn from_file(path: &Path) -> Result<Password, PasswordError> {
    let rd = |source| PasswordError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Blocking: a pipe's writer may not have written yet.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(rd)?;
    let ty = file.metadata().map_err(rd)?.file_type();
    if !(ty.is_file() || ty.is_fifo()) {
        return Err(PasswordError::NotFile(path.to_path_buf()));
    }
    // Into one buffer, never grown: a growing `Vec` leaves unwiped copies behind.
    let buf = crate::fileio::read_secret_to_end(&file, MAX_PASSWORD_FILE).map_err(rd)?;
    let line_end = buf.iter().position(|&b| b == b'\n');
    if line_end.is_none() && buf.len() as u64 > MAX_PASSWORD_FILE {
        return Err(PasswordError::TooLong(path.to_path_buf()));
    }
    Ok(first_line(&buf))
}

/// `bytes` up to its first `\n`, a `\r` before it stripped.
fn first_line(bytes: &[u8]) -> Password {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Zeroizing::new(line.to_vec())
}

/// Ask for a password on the controlling terminal, with `prompt`. `Ok(None)` when the process
/// has no controlling terminal (a daemon, CI, an agent's pipeline).
pub fn prompt(prompt: &str) -> Result<Option<Password>, PasswordError> {
    let tty = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY)
        .open("/dev/tty")
    {
        Ok(f) => f,
        // ENXIO: no controlling terminal; the others: no usable /dev/tty at all (a minimal
        // container, a sandbox): no terminal to ask on either way.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENXIO | libc::ENODEV | libc::ENOENT | libc::EACCES | libc::EPERM)
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(PasswordError::Terminal(e)),
    };
    let saved = match tcgetattr(tty.as_fd()) {
        Ok(t) => t,
        Err(Errno::ENOTTY) => return Ok(None),
        Err(e) => return Err(PasswordError::Terminal(e.into())),
    };
    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGCONT,
    ] {
        signals.add(s);
    }
    let mut old_mask = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&signals), Some(&mut old_mask))
        .map_err(|e| PasswordError::Terminal(e.into()))?;
    // From here on, `Restore` puts back the mask and (once changed) the terminal on any return.
    let mut guard = Restore {
        tty: &tty,
        saved: None,
        mask: old_mask,
    };
    let sfd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| PasswordError::Terminal(e.into()))?;
    let mut quiet = saved.clone();
    // No echo, but the newline that ends the line is shown (ECHONL), as getpass(3) does.
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet
        .local_flags
        .insert(LocalFlags::ECHONL | LocalFlags::ICANON);
    // TCSANOW, not TCSAFLUSH: what was typed ahead of the prompt is kept.
    tcsetattr(tty.as_fd(), SetArg::TCSANOW, &quiet)
        .map_err(|e| PasswordError::Terminal(e.into()))?;
    guard.saved = Some(saved);
    // Shown once echo is off: what is typed after the prompt appeared is never echoed.
    (&tty)
        .write_all(prompt.as_bytes())
        .map_err(PasswordError::Terminal)?;
    let line = loop {
        match read_line(&tty, &sfd)? {
            // Continued after a stop: the shell may have turned echo back on meanwhile.
            Line::Signal(Signal::SIGCONT) => {
                tcsetattr(tty.as_fd(), SetArg::TCSANOW, &quiet)
                    .map_err(|e| PasswordError::Terminal(e.into()))?;
                (&tty)
                    .write_all(prompt.as_bytes())
                    .map_err(PasswordError::Terminal)?;
            }
            other => break other,
        }
    };
    match line {
        Line::Text(p) => Ok(Some(p)),
        Line::Signal(sig) => {
            drop(guard);
            let _ = (&tty).write_all(b"\n");
            // The mask is back as it was: a signal with its default disposition ends the
            // process here, as it would have without the prompt.
            let _ = raise(sig);
            Err(PasswordError::Interrupted)
        }
    }
}

enum Line {
    Text(Password),
    Signal(Signal),
}

/// Read one line from the terminal (canonical mode hands it over whole), or the first of the
/// blocked signals to come.
fn read_line(tty: &File, sfd: &SignalFd) -> Result<Line, PasswordError> {
    let term = |e: Errno| PasswordError::Terminal(e.into());
    let mut chunk = Zeroizing::new([0u8; 256]);
    // Room for the longest line read (the check below comes after a chunk is added): it is
    // never grown, which would leave an unwiped copy of what was typed behind.
    let mut line = Zeroizing::new(Vec::with_capacity(
        usize::try_from(MAX_PASSWORD_FILE).expect("4096 fits") + chunk.len(),
    ));
    loop {
        let mut fds = [
            PollFd::new(tty.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(term(e)),
        }
        let signalled = fds[1].revents().is_some_and(|r| !r.is_empty());
        let readable = fds[0].revents().is_some_and(|r| !r.is_empty());
        if signalled {
            if let Ok(Some(info)) = sfd.read_signal() {
                let sig = i32::try_from(info.ssi_signo)
                    .ok()
                    .and_then(|n| Signal::try_from(n).ok())
                    .unwrap_or(Signal::SIGINT);
                return Ok(Line::Signal(sig));
            }
        }
        if readable {
            let n = match (&*tty).read(&mut chunk[..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(PasswordError::Terminal(e)),
            };
            if n == 0 {
                // End of input (Ctrl-D on an empty line, or the terminal hung up).
                return Ok(Line::Text(first_line(&line)));
            }
            line.extend_from_slice(&chunk[..n]);
            if line.contains(&b'\n') || line.len() as u64 > MAX_PASSWORD_FILE {
                return Ok(Line::Text(first_line(&line)));
            }
        }
    }
}

/// Puts back the signal mask and, once it was changed, the terminal's settings.
struct Restore<'a> {
    tty: &'a File,
    saved: Option<Termios>,
    mask: SigSet,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(self.tty.as_fd(), SetArg::TCSANOW, saved);
        }
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.mask), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_is_the_password() {
        assert_eq!(&first_line(b"pw\n")[..], b"pw");
        assert_eq!(&first_line(b"pw\r\nrest\n")[..], b"pw");
        assert_eq!(&first_line(b"pw")[..], b"pw");
        assert_eq!(&first_line(b" p w \n")[..], b" p w ");
        assert_eq!(&first_line(b"\n")[..], b"");
        assert_eq!(&first_line(b"")[..], b"");
    }

    #[test]
    fn password_files_are_read_and_bounded() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("pw");
        std::fs::write(&f, b"hunter2\nnot this\n").unwrap();
        assert_eq!(&from_file(&f).unwrap()[..], b"hunter2");
        std::fs::write(&f, vec![b'a'; 5000]).unwrap();
        assert!(matches!(from_file(&f), Err(PasswordError::TooLong(_))));
        let mut long_after = b"short\n".to_vec();
        long_after.extend(vec![b'a'; 5000]);
        std::fs::write(&f, long_after).unwrap();
        assert_eq!(&from_file(&f).unwrap()[..], b"short");
        assert!(matches!(
            from_file(d.path()),
            Err(PasswordError::NotFile(_))
        ));
        assert!(matches!(
            from_file(&d.path().join("missing")),
            Err(PasswordError::Read { .. })
        ));
    }
}
