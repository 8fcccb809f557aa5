//! The program to run: resolved on the host like `execvp`, opened once, checked (regular file,
//! executable by the caller) and later executed from that descriptor, never re-resolved by path.

use super::LaunchError;
use crate::sys;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The program to run: opened once on the host, executed from the descriptor.
#[derive(Debug)]
pub struct Program {
    /// What messages and the report (`process.program`) call it: the path it was opened at,
    /// or another name given with [`Program::named`] (a packaged entrypoint: the manifest's
    /// path, not the `/proc/self/fd/N/.work-…` the runtime reached it through).
    pub path: PathBuf,
    /// The open file (O_RDONLY, close-on-exec).
    pub fd: OwnedFd,
    /// Starts with `#!`.
    pub is_script: bool,
}

impl Program {
    /// The same program, called `shown` in messages and the report from now on.
    pub fn named(self, shown: impl Into<PathBuf>) -> Program {
        Program {
            path: shown.into(),
            ..self
        }
    }

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
    /// `search_path` in order), open it, and check that it is an executable regular file. Both
    /// are bytes, as the kernel's paths are: a directory of `$PATH` that is not UTF-8 is
    /// searched as it is, never as a lossy look-alike nor replaced by the default search path
    /// (audit-171). An empty entry of `search_path` is
    /// skipped, not taken for the current directory as `execvp` does: POSIX calls it a legacy
    /// spelling, and a stray `::` or trailing `:` would run a file planted in whatever directory
    /// the runtime was started from (`./name` says so when that is meant).
    pub fn open(
        name: impl AsRef<std::ffi::OsStr>,
        search_path: impl AsRef<std::ffi::OsStr>,
    ) -> Result<Program, LaunchError> {
        use std::os::unix::ffi::OsStrExt;
        let name = name.as_ref();
        let search_path = search_path.as_ref().as_bytes();
        // An empty name would be joined onto each $PATH directory and name the directory
        // itself (`/bin/`): no program, as execvp says (ENOENT).
        if name.is_empty() {
            return Err(LaunchError::NotFound {
                path: PathBuf::new(),
            });
        }
        let candidates: Vec<PathBuf> = if name.as_bytes().contains(&b'/') {
            vec![PathBuf::from(name)]
        } else {
            search_path
                .split(|b| *b == b':')
                .filter(|d| !d.is_empty())
                .map(|d| Path::new(std::ffi::OsStr::from_bytes(d)).join(name))
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
                last_denied = Some(denied(path, cause, fd.as_fd()));
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

/// The error for `path` (open at `fd`), whose execution was refused with `cause`: when its
/// file system is mounted `noexec` ([`LaunchError::NoExec`], the mount named), that is why —
/// its modes allow it or not, the kernel refuses every `execve` from such a mount —, else
/// [`LaunchError::CannotExecute`] with the cause.
fn denied(path: PathBuf, cause: io::Error, fd: BorrowedFd<'_>) -> LaunchError {
    let noexec = sys::fstatvfs_flags(fd).is_ok_and(|f| f & libc::ST_NOEXEC != 0);
    if !noexec {
        return LaunchError::CannotExecute { path, cause };
    }
    let mount = fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .ok()
        .and_then(|info| {
            let id = info.lines().find_map(|l| l.strip_prefix("mnt_id:"))?;
            let id = id.trim().parse().ok()?;
            mount_point_in(&super::cgroup::read_mountinfo().ok()?, id)
        });
    LaunchError::NoExec { path, mount }
}

/// The mount point of mount `id` in the text of `/proc/self/mountinfo` (pure).
fn mount_point_in(mountinfo: &str, id: u64) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let mut fields = line.split(' ');
        if fields.next()?.parse::<u64>().ok()? != id {
            return None;
        }
        let point = fields.nth(3)?;
        Some(super::cgroup::unescape_mountinfo(point))
    })
}

/// ` at X` (the mount point) for [`LaunchError::NoExec`]'s message, nothing when not found.
pub(super) fn mounted_at(mount: Option<&Path>) -> String {
    mount.map_or_else(String::new, |m| format!(" at {}", m.display()))
}

/// What a program needs the kernel to find before it can run it: the interpreter of a `#!`
/// line, or the dynamic loader an ELF file names (`PT_INTERP`). When `execveat` of a program the
/// runtime holds open fails with `ENOENT`, this is what was missing inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interpreter {
    /// A `#!` line's interpreter path; `crlf`: the line ends in `\r\n` (the `\r` is then part
    /// of the name the kernel looks for).
    Script {
        /// The path, without a trailing `\r`.
        path: String,
        /// Whether the line ended in CR LF.
        crlf: bool,
    },
    /// An ELF file's dynamic loader.
    Loader(String),
}

impl std::fmt::Display for Interpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Interpreter::Script { path, crlf: true } => write!(
                f,
                "its `#!` line ends in CR LF (Windows line endings), so the kernel looks for \
                 an interpreter named `{path}\\r`, which does not exist"
            ),
            Interpreter::Script { path, crlf: false } => write!(
                f,
                "its `#!` interpreter `{path}` does not exist inside the sandbox"
            ),
            Interpreter::Loader(path) => write!(
                f,
                "its dynamic loader `{path}` (ELF PT_INTERP) does not exist inside the sandbox"
            ),
        }
    }
}

impl Interpreter {
    /// The interpreter `fd`'s file names, read from its start (`None`: neither a `#!` line nor
    /// an ELF file with a `PT_INTERP`, or unreadable). Read only after a launch failed.
    pub fn of(fd: &OwnedFd) -> Option<Interpreter> {
        let file = fs::File::from(fd.try_clone().ok()?);
        let read = |off: u64, len: usize| -> Option<Vec<u8>> {
            let mut buf = vec![0u8; len];
            let n = std::os::unix::fs::FileExt::read_at(&file, &mut buf, off).ok()?;
            buf.truncate(n);
            Some(buf)
        };
        // The kernel reads at most 256 bytes of a `#!` line (BINPRM_BUF_SIZE).
        let head = read(0, 256)?;
        if let Some(line) = head.strip_prefix(b"#!") {
            let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
            let crlf = line.ends_with(b"\r");
            let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
            let path = line.trim_start_matches([' ', '\t']);
            let path = path.split([' ', '\t']).next().unwrap_or_default();
            return Some(Interpreter::Script {
                path: path.to_string(),
                crlf,
            });
        }
        Self::elf_loader(&head, read).map(Interpreter::Loader)
    }

    /// The `PT_INTERP` path of an ELF file whose first bytes are `head`.
    fn elf_loader(head: &[u8], read: impl Fn(u64, usize) -> Option<Vec<u8>>) -> Option<String> {
        if head.len() < 64 || &head[..4] != b"\x7fELF" {
            return None;
        }
        let wide = head[4] == 2; // ELFCLASS64
        let big = head[5] == 2; // ELFDATA2MSB
        let n = |at: usize, len: usize| uint(head, at, len, big);
        let (phoff, phentsize, phnum) = if wide {
            (n(32, 8)?, n(54, 2)?, n(56, 2)?)
        } else {
            (n(28, 4)?, n(42, 2)?, n(44, 2)?)
        };
        let phentsize = usize::try_from(phentsize).ok()?;
        let size = phentsize.checked_mul(usize::try_from(phnum).ok()?)?;
        // As the kernel reads it (`elf_read_phdrs`): a table over 64 KiB is no program it runs
        // (ENOEXEC), and 65535 entries of 65535 bytes claimed in 64 bytes of header asked for a
        // 4 GiB buffer here — `pack` reads every entrypoint, and aborted where that failed.
        if size > MAX_PROGRAM_HEADERS {
            return None;
        }
        let table = read(phoff, size)?;
        for ph in table.chunks_exact(phentsize.max(1)) {
            let f = |at: usize, len: usize| uint(ph, at, len, big);
            if f(0, 4)? != 3 {
                continue; // not PT_INTERP
            }
            let (off, size) = if wide {
                (f(8, 8)?, f(32, 8)?)
            } else {
                (f(4, 4)?, f(16, 4)?)
            };
            let path = read(off, usize::try_from(size.min(4096)).ok()?)?;
            let path = path.split(|&b| b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(path).into_owned());
        }
        None
    }
}

/// The most of an ELF program header table the kernel reads (`elf_read_phdrs`: 64 KiB).
const MAX_PROGRAM_HEADERS: usize = 65536;

/// The `len`-byte unsigned integer at `at` of `b`, big- or little-endian (`None`: past its end).
fn uint(b: &[u8], at: usize, len: usize, big: bool) -> Option<u64> {
    let b = b.get(at..at.checked_add(len)?)?;
    let fold = |v: u64, &byte: &u8| (v << 8) | u64::from(byte);
    Some(if big {
        b.iter().fold(0, fold)
    } else {
        b.iter().rev().fold(0, fold)
    })
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

    /// A mount's point is found by its id (the first field), escaped names unescaped; an id
    /// that is not there, or a line too short, finds none.
    #[test]
    fn a_mount_point_is_found_by_its_id() {
        let info = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                    221 22 0:58 / /var/lib/my\\040state rw,noexec shared:9 - tmpfs tmpfs rw\n\
                    7 1\n";
        assert_eq!(
            mount_point_in(info, 221),
            Some(PathBuf::from("/var/lib/my state"))
        );
        assert_eq!(mount_point_in(info, 22), Some(PathBuf::from("/proc")));
        assert_eq!(mount_point_in(info, 2), None);
        assert_eq!(mount_point_in(info, 7), None);
        assert_eq!(mounted_at(None), "");
        assert_eq!(mounted_at(Some(Path::new("/t"))), " at /t");
    }

    fn interpreter_of(content: &[u8]) -> Option<Interpreter> {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("p");
        fs::write(&f, content).unwrap();
        Interpreter::of(&OwnedFd::from(fs::File::open(&f).unwrap()))
    }

    #[test]
    fn the_interpreter_a_program_needs_is_read_from_it() {
        assert_eq!(
            interpreter_of(b"#! /opt/venv/bin/python3 -u\nprint()\n"),
            Some(Interpreter::Script {
                path: "/opt/venv/bin/python3".into(),
                crlf: false
            })
        );
        let crlf = interpreter_of(b"#!/bin/sh\r\necho\r\n").unwrap();
        assert_eq!(
            crlf,
            Interpreter::Script {
                path: "/bin/sh".into(),
                crlf: true
            }
        );
        assert!(crlf.to_string().contains("CR LF"), "{crlf}");
        assert_eq!(interpreter_of(b"plain data"), None);
        // This test binary is a dynamically linked ELF file: its loader is named.
        let exe = fs::read("/proc/self/exe").unwrap();
        match interpreter_of(&exe) {
            Some(Interpreter::Loader(l)) => assert!(l.contains("ld-"), "{l}"),
            other => panic!("{other:?}"),
        }
        // A truncated ELF header or program header table is no loader, not a panic.
        assert_eq!(interpreter_of(&exe[..40]), None);
        assert_eq!(interpreter_of(&exe[..100]), None);
    }

    #[test]
    fn an_elf_header_claiming_a_huge_program_header_table_is_read_no_further() {
        // 65535 entries of 65535 bytes: a 4 GiB buffer was allocated for them (pack reads every
        // entrypoint: it aborted where the allocation failed — a small VM, vm.overcommit_memory
        // 2, a ulimit -v). The kernel reads at most 64 KiB of it, and refuses such a file
        // (ENOEXEC); nothing past that is asked for, and no loader named.
        let mut head = vec![0u8; 64];
        head[..4].copy_from_slice(b"\x7fELF");
        head[4] = 2; // ELFCLASS64
        head[5] = 1; // little-endian
        head[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        head[54..56].copy_from_slice(&u16::MAX.to_le_bytes()); // e_phentsize
        head[56..58].copy_from_slice(&u16::MAX.to_le_bytes()); // e_phnum
        let asked = std::cell::Cell::new(0usize);
        let read = |_: u64, len: usize| -> Option<Vec<u8>> {
            asked.set(asked.get().max(len));
            Some(Vec::new())
        };
        assert_eq!(Interpreter::elf_loader(&head, read), None);
        assert!(asked.get() <= 65536, "asked for {} bytes", asked.get());
        // And through a file, as pack and a failed launch read one.
        let mut file = head.clone();
        file.resize(4096, 0);
        assert_eq!(interpreter_of(&file), None);
    }

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
