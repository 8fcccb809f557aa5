//! The program to run: resolved on the host like `execvp`, opened once, checked (regular file,
//! executable by the caller) and later executed from that descriptor, never re-resolved by path.

use super::LaunchError;
use crate::sys;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The program to run: opened once on the host, executed from the descriptor.
#[derive(Debug)]
pub struct Program {
    /// The path it was opened at (for messages only).
    pub path: PathBuf,
    /// The open file (O_RDONLY, close-on-exec).
    pub fd: OwnedFd,
    /// Starts with `#!`.
    pub is_script: bool,
}

impl Program {
    /// A file that is not written yet: the entrypoint `stockade run` reserves before extracting
    /// the package, so that the sandbox can be built around its descriptor meanwhile. Nothing
    /// is checked here (the file is empty); before the sandbox is let go, the caller opens the
    /// written file with [`Program::open`], which checks it, and compares the two (cmd/run.rs).
    pub fn reserved(path: &Path) -> Result<Program, LaunchError> {
        let fd = sys::open(&c_path(path)?, libc::O_RDONLY | libc::O_NOFOLLOW).map_err(|cause| {
            LaunchError::CannotExecute {
                path: path.to_path_buf(),
                cause,
            }
        })?;
        Ok(Program {
            path: path.to_path_buf(),
            fd,
            is_script: false,
        })
    }

    /// Resolve `name` like `execvp` would (a name with a slash is a path; otherwise each entry of
    /// `search_path` in order), open it, and check that it is an executable regular file.
    pub fn open(name: &str, search_path: &str) -> Result<Program, LaunchError> {
        // An empty name would be joined onto each $PATH directory and name the directory
        // itself (`/bin/`): no program, as execvp says (ENOENT).
        if name.is_empty() {
            return Err(LaunchError::NotFound {
                path: PathBuf::new(),
            });
        }
        let candidates: Vec<PathBuf> = if name.contains('/') {
            vec![PathBuf::from(name)]
        } else {
            search_path
                .split(':')
                .filter(|d| !d.is_empty())
                .map(|d| Path::new(d).join(name))
                .collect()
        };
        let mut last_denied = None;
        for path in candidates {
            let c = c_path(&path)?;
            // O_RDONLY so a `#!` line can be read; an execute-only file falls back to O_PATH
            // (then it cannot be a script: the interpreter could not read it either).
            let fd = match sys::open(&c, libc::O_RDONLY).or_else(|e| match e.raw_os_error() {
                Some(libc::EACCES) => sys::open(&c, libc::O_PATH),
                _ => Err(e),
            }) {
                Ok(fd) => fd,
                Err(e)
                    if e.raw_os_error() == Some(libc::ENOENT)
                        || e.raw_os_error() == Some(libc::ENOTDIR) =>
                {
                    continue
                }
                Err(cause) => {
                    last_denied = Some(LaunchError::CannotExecute { path, cause });
                    continue;
                }
            };
            let mode = sys::fstat_mode(fd.as_fd()).map_err(|cause| LaunchError::CannotExecute {
                path: path.clone(),
                cause,
            })?;
            if mode & libc::S_IFMT != libc::S_IFREG {
                last_denied = Some(LaunchError::CannotExecute {
                    path,
                    cause: io::Error::from_raw_os_error(libc::EACCES),
                });
                continue;
            }
            if let Err(cause) = sys::can_execute(fd.as_fd()) {
                last_denied = Some(LaunchError::CannotExecute { path, cause });
                continue;
            }
            let mut magic = [0u8; 2];
            let is_script = std::os::unix::fs::FileExt::read_exact_at(
                &fs::File::from(fd.try_clone().map_err(|cause| LaunchError::CannotExecute {
                    path: path.clone(),
                    cause,
                })?),
                &mut magic,
                0,
            )
            .is_ok()
                && &magic == b"#!";
            return Ok(Program {
                path,
                fd,
                is_script,
            });
        }
        Err(last_denied.unwrap_or(LaunchError::NotFound {
            path: PathBuf::from(name),
        }))
    }
}

/// `path` for a system call (a NUL byte in it: no such program).
fn c_path(path: &Path) -> Result<CString, LaunchError> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| LaunchError::NotFound {
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn resolves_like_execvp_and_detects_scripts() {
        let t = tempfile::tempdir().unwrap();
        let script = t.path().join("tool");
        fs::write(&script, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let search = format!("/nonexistent:{}", t.path().display());
        let p = Program::open("tool", &search).unwrap();
        assert_eq!(p.path, script);
        assert!(p.is_script);
        assert!(!Program::open("/bin/sh", "").unwrap().is_script);
        assert!(matches!(
            Program::open("tool", "/nonexistent"),
            Err(LaunchError::NotFound { .. })
        ));
        // An empty name is no program (not the first $PATH directory).
        assert!(matches!(
            Program::open("", "/bin:/usr/bin"),
            Err(LaunchError::NotFound { .. })
        ));
        assert!(matches!(
            Program::open(t.path().to_str().unwrap(), ""),
            Err(LaunchError::CannotExecute { .. })
        ));
        let data = t.path().join("data");
        fs::write(&data, "x").unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Program::open(data.to_str().unwrap(), ""),
            Err(LaunchError::CannotExecute { .. })
        ));
    }
}
