//! A secret key line that does not decode leaves none of its decoded bytes in freed memory.
//!
//! base64's own `decode` drops its partly written buffer on an error: the bytes decoded before
//! the bad character (a secret key's, from a key file damaged near its end) went back to the
//! allocator unwiped. The check is done by an allocator that, while watching, looks at every
//! block given back for a marker the key's bytes carry. Its own test binary, so no other test's
//! allocations are watched.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use stockade_trust::minisign::{looks_like_secret_key, SecretKeyFile};

/// Bytes no other allocation of this test holds: the key's bytes are made of them.
const MARKER: [u8; 8] = *b"\xA7sEcReT\x5A";

static WATCHING: AtomicBool = AtomicBool::new(false);
static SEEN: AtomicBool = AtomicBool::new(false);

/// The system allocator, looking at each block freed while [`WATCHING`] for [`MARKER`].
struct Watching;

// SAFETY: every call is passed on to `System` with the caller's own arguments; `dealloc` only
// reads the block it is given (valid for `layout.size()` bytes until it is freed) before
// freeing it, and allocates nothing.
unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if WATCHING.load(Ordering::SeqCst) {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes until the `dealloc` below
            // (the caller's contract), and it is only read here.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if block.windows(MARKER.len()).any(|w| w == MARKER) {
                SEEN.store(true, Ordering::SeqCst);
            }
        }
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A reallocation moves the bytes and frees the old block without passing through
        // `dealloc`: looked at here too.
        if WATCHING.load(Ordering::SeqCst) {
            // SAFETY: as in `dealloc`: the old block is live until `System.realloc` below.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if block.windows(MARKER.len()).any(|w| w == MARKER) {
                SEEN.store(true, Ordering::SeqCst);
            }
        }
        // SAFETY: the caller's contract for `realloc`, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static WATCH: Watching = Watching;

/// A secret key file's text whose key line is 104 bytes of [`MARKER`], base64, damaged by a
/// character base64 refuses at its end: everything before it decodes first.
fn damaged_key_text() -> String {
    let mut raw = [0u8; 104];
    for (i, b) in raw.iter_mut().enumerate() {
        *b = MARKER[i % MARKER.len()];
    }
    let mut line = B64.encode(raw);
    // Replace the padding-free last quad's last character by one outside the alphabet.
    line.pop();
    line.push('*');
    format!("untrusted comment: damaged\n{line}\n")
}

#[test]
fn a_key_line_that_does_not_decode_is_wiped_before_it_is_freed() {
    let text = damaged_key_text();
    WATCHING.store(true, Ordering::SeqCst);
    let parsed = SecretKeyFile::parse(&text).map(|_| ());
    let looks = looks_like_secret_key(text.as_bytes());
    WATCHING.store(false, Ordering::SeqCst);
    assert!(parsed.is_err(), "the damaged line must not parse");
    assert!(!looks);
    assert!(
        !SEEN.load(Ordering::SeqCst),
        "decoded key bytes were freed unwiped"
    );
}
