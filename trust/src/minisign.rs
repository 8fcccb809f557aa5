//! Minisign-format Ed25519 keys and signatures, so authors and operators can use the stock
//! `minisign` tool (seed 004) interchangeably with `stockade keygen`.
//!
//! Hand-written over `ed25519-dalek` rather than using the `minisign` crate: that crate bundles
//! its own Ed25519 implementation and offers no strict verification, and we require
//! `verify_strict` (it rejects small-order keys and non-canonical signatures, which closes the
//! malleability gaps of plain RFC 8032 verification).
//!
//! Formats (as written by minisign 0.11):
//! - public key: `untrusted comment: …` line, then base64(`Ed` ‖ key_id\[8\] ‖ pk\[32\]);
//! - secret key: comment line, then base64(`Ed` ‖ kdf\[2\] ‖ `B2` ‖ salt\[32\] ‖ ops\[8\] ‖ mem\[8\]
//!   ‖ key_id\[8\] ‖ sk\[64\] ‖ checksum\[32\]), checksum = BLAKE2b-256(`Ed` ‖ key_id ‖ sk), or all
//!   zero as minisign 0.11 writes it for `-W` keys. kdf is `0,0` for an unencrypted key
//!   (`minisign -G -W`, `stockade keygen`) or `Sc` for a password-encrypted one (`minisign -G`'s
//!   default): then key_id ‖ sk ‖ checksum (104 bytes) are XORed with as many bytes of scrypt
//!   (libsodium's `crypto_pwhash_scryptsalsa208sha256`) of the password with that salt, ops and
//!   mem, and the checksum, always computed, is what tells a wrong password (see
//!   [`EncryptedSecretKey`]). Getting the password (a file, a terminal) is the caller's business;
//! - signature: comment line, base64(`ED` ‖ key_id ‖ sig\[64\]) where sig signs BLAKE2b-512(data),
//!   `trusted comment: …`, then base64(global_sig) where global_sig signs sig ‖ trusted comment.
//!
//! Legacy `Ed` (non-prehashed) signatures are refused: we never produce them, and `minisign`
//! itself has produced `ED` by default since 0.10, so accepting them would only widen the
//! attack surface.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use blake2::digest::consts::U32;
use blake2::{Blake2b, Blake2b512, Digest};
use ed25519_dalek::{Signature as EdSig, Signer, SigningKey, VerifyingKey};
use std::fmt;
use zeroize::{Zeroize as _, ZeroizeOnDrop, Zeroizing};

/// Largest key or signature file we parse.
pub const MAX_TEXT_BYTES: usize = 4096;

/// An 8-byte key identifier, random at key generation (as minisign).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    /// Uppercase hex of the little-endian integer, exactly as `minisign` prints key ids.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}
impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl std::str::FromStr for KeyId {
    type Err = MinisignError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 {
            return Err(MinisignError::KeyIdSyntax);
        }
        let v = u64::from_str_radix(s, 16).map_err(|_| MinisignError::KeyIdSyntax)?;
        Ok(KeyId(v.to_le_bytes()))
    }
}

/// Why a key or signature was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MinisignError {
    /// Larger than [`MAX_TEXT_BYTES`].
    #[error("input is larger than {MAX_TEXT_BYTES} bytes")]
    TooLarge,
    /// Lines missing or not in the expected order.
    #[error("not in minisign format: {0}")]
    Layout(&'static str),
    /// A base64 line does not decode.
    #[error("invalid base64")]
    Base64(#[source] base64::DecodeError),
    /// Decoded data has the wrong length.
    #[error("wrong length: {0} bytes")]
    Length(usize),
    /// An algorithm tag we do not accept.
    #[error("unsupported algorithm {0:?}")]
    Algorithm(String),
    /// A scrypt-encrypted secret key given to [`SecretKey::parse`], which reads unencrypted keys
    /// only (read it with [`SecretKeyFile::parse`] and decrypt it with its password).
    #[error("the secret key is password-encrypted")]
    Encrypted,
    /// An encrypted key's scrypt parameters are beyond what we derive (see [`KdfLimits::cost`]).
    #[error(
        "the key's scrypt parameters (opslimit {opslimit}, memlimit {memlimit}) are refused: {why}"
    )]
    KdfLimits {
        /// libsodium's opslimit, as in the file.
        opslimit: u64,
        /// libsodium's memlimit, as in the file.
        memlimit: u64,
        /// Which bound they pass.
        why: &'static str,
    },
    /// The password does not decrypt the key: the decrypted checksum does not match (a wrong
    /// password, or an encrypted key file altered after it was written: the two cannot be told
    /// apart).
    #[error("wrong password for the encrypted secret key (its checksum does not match)")]
    WrongPassword,
    /// The secret key's checksum does not match.
    #[error("secret key checksum mismatch (corrupt key file)")]
    Checksum,
    /// The secret key's embedded public half does not match its seed.
    #[error("secret key is inconsistent (public half does not match)")]
    Inconsistent,
    /// The point is not a valid Ed25519 public key.
    #[error("invalid Ed25519 public key")]
    BadPoint(#[source] ed25519_dalek::SignatureError),
    /// Signature key id differs from the public key's.
    #[error("signature was made by key {signer}, not by key {expected}")]
    KeyMismatch {
        /// Key id in the signature.
        signer: KeyId,
        /// Key id of the key we verified with.
        expected: KeyId,
    },
    /// The signature does not verify.
    #[error("signature does not verify")]
    Invalid(#[source] ed25519_dalek::SignatureError),
    /// The global signature over the trusted comment does not verify.
    #[error("trusted comment signature does not verify")]
    InvalidTrustedComment(#[source] ed25519_dalek::SignatureError),
    /// A trusted comment containing a newline.
    #[error("trusted comment must be one line")]
    Multiline,
    /// A trusted comment holding a control character other than tab.
    #[error("trusted comment holds a control character (only tab is allowed)")]
    ControlCharacter,
    /// Key id not 16 hex digits.
    #[error("key id must be 16 hex digits")]
    KeyIdSyntax,
}

/// A minisign public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// Key identifier.
    pub key_id: KeyId,
    key: VerifyingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id)
    }
}

/// A minisign secret key (decrypted). Wiped on drop: its one secret field is `ed25519-dalek`'s
/// [`SigningKey`], which zeroizes itself on drop with the crate's `zeroize` feature (the
/// workspace turns it on; [`_SECRETS_WIPE_ON_DROP`] stops the build if it ever is not).
pub struct SecretKey {
    /// Key identifier.
    pub key_id: KeyId,
    key: SigningKey,
}

/// Nothing secret besides `key`, which wipes itself on drop ([`SecretKey`]'s doc).
impl ZeroizeOnDrop for SecretKey {}

/// Every type here holding secret-key bytes wipes them when dropped — checked when this crate
/// is built, not in a test: the key a process read or made is otherwise left in freed heap
/// memory, where a later allocation, a swap-out or a core file (`keyfile::guard_secrets` keeps
/// those out) may meet it. A test reading memory after a drop cannot show it (that would be
/// undefined behaviour), so the types are what is held to it; `SigningKey` fails this the day
/// `ed25519-dalek`'s `zeroize` feature goes missing.
const _SECRETS_WIPE_ON_DROP: () = {
    const fn wipes<T: ZeroizeOnDrop + ?Sized>() {}
    wipes::<SigningKey>();
    wipes::<SecretKey>();
    wipes::<EncryptedSecretKey>();
    wipes::<SecretText>();
    wipes::<Zeroizing<Vec<u8>>>();
};

/// A secret key file's text ([`SecretKey::to_text`], [`SecretKey::to_encrypted_text`]): wiped
/// when dropped.
pub type SecretText = Zeroizing<String>;

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.key_id)
    }
}

/// A parsed minisign signature file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Untrusted comment (not covered by any signature).
    pub untrusted_comment: String,
    /// Key id of the signer.
    pub key_id: KeyId,
    sig: [u8; 64],
    /// Trusted comment (covered by the global signature).
    pub trusted_comment: String,
    global_sig: [u8; 64],
}

/// `line`'s bytes (a trailing carriage return ignored), decoded into a buffer that wipes itself
/// on drop, whatever the outcome. base64's own `decode` returns a fresh Vec, but on a decode
/// error drops it, the bytes decoded before the bad character still in it — a secret key's,
/// freed unwiped. `decode_vec` into a [`Zeroizing`] buffer instead: it resizes the empty buffer
/// to the length estimate once, before any byte is written (so no unwiped copy is left by a
/// reallocation), and the buffer is wiped on drop, spare capacity included, on an error too.
fn decode(line: &str) -> Result<Zeroizing<Vec<u8>>, MinisignError> {
    let mut out = Zeroizing::new(Vec::new());
    B64.decode_vec(line.trim_end_matches('\r'), &mut out)
        .map_err(MinisignError::Base64)?;
    Ok(out)
}

fn lines(text: &str) -> Result<Vec<&str>, MinisignError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(MinisignError::TooLarge);
    }
    Ok(text.lines().collect())
}

/// Whether a trusted comment holds only characters a terminal shows as text: no control
/// character (C0, DEL, C1) except tab. The comment is signed, but by whoever made the
/// signature, and it is printed to operators (`verify`, `inspect`): an escape sequence or a
/// carriage return in it could repaint what they read. minisign itself writes one line, its
/// default comment separated by tabs (`timestamp:…\tfile:…\thashed`), so nothing it produces
/// is refused.
fn trusted_comment_chars_ok(comment: &str) -> bool {
    !comment.chars().any(|c| c.is_control() && c != '\t')
}

/// The untrusted comment of the first line, or a layout error.
fn untrusted(line: Option<&&str>) -> Result<String, MinisignError> {
    line.and_then(|l| l.strip_prefix("untrusted comment: "))
        .map(|s| s.trim_end_matches('\r').to_string())
        .ok_or(MinisignError::Layout(
            "first line must start with `untrusted comment: `",
        ))
}

impl PublicKey {
    /// Parse a `.pub` file's text.
    pub fn parse(text: &str) -> Result<Self, MinisignError> {
        let l = lines(text)?;
        untrusted(l.first())?;
        let b64 = l.get(1).ok_or(MinisignError::Layout("missing key line"))?;
        Self::from_base64(b64)
    }

    /// Parse the bare base64 line (as embedded in certificates, or given to `minisign -P`).
    pub fn from_base64(b64: &str) -> Result<Self, MinisignError> {
        let raw = decode(b64)?;
        if raw.len() != 42 {
            return Err(MinisignError::Length(raw.len()));
        }
        if &raw[..2] != b"Ed" {
            return Err(MinisignError::Algorithm(
                String::from_utf8_lossy(&raw[..2]).into(),
            ));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&raw[2..10]);
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&raw[10..42]);
        let key = VerifyingKey::from_bytes(&pk).map_err(MinisignError::BadPoint)?;
        Ok(Self {
            key_id: KeyId(id),
            key,
        })
    }

    /// The bare base64 line.
    pub fn to_base64(&self) -> String {
        let mut raw = Vec::with_capacity(42);
        raw.extend_from_slice(b"Ed");
        raw.extend_from_slice(&self.key_id.0);
        raw.extend_from_slice(self.key.as_bytes());
        B64.encode(raw)
    }

    /// The full `.pub` file text, as `minisign -G` writes it.
    pub fn to_text(&self) -> String {
        format!(
            "untrusted comment: minisign public key {}\n{}\n",
            self.key_id,
            self.to_base64()
        )
    }

    /// Verify `sig` over `data`: key id must match, the `ED` signature over BLAKE2b-512(data)
    /// and the global signature over (signature ‖ trusted comment) must both pass
    /// `verify_strict`.
    pub fn verify(&self, data: &[u8], sig: &Signature) -> Result<(), MinisignError> {
        if sig.key_id != self.key_id {
            return Err(MinisignError::KeyMismatch {
                signer: sig.key_id,
                expected: self.key_id,
            });
        }
        let digest = Blake2b512::digest(data);
        self.key
            .verify_strict(&digest, &EdSig::from_bytes(&sig.sig))
            .map_err(MinisignError::Invalid)?;
        let mut global = sig.sig.to_vec();
        global.extend_from_slice(sig.trusted_comment.as_bytes());
        self.key
            .verify_strict(&global, &EdSig::from_bytes(&sig.global_sig))
            .map_err(MinisignError::InvalidTrustedComment)
    }
}

fn checksum(key_id: &KeyId, sk: &[u8; 64]) -> [u8; 32] {
    let mut h = Blake2b::<U32>::new();
    h.update(b"Ed");
    h.update(key_id.0);
    h.update(sk);
    h.finalize().into()
}

/// Length of the decoded secret key line.
const SECRET_KEY_BYTES: usize = 158;
/// Offset of key_id ‖ sk ‖ checksum (minisign's `keynum_sk`), the part the KDF encrypts.
const KEYNUM_SK_AT: usize = 54;
/// Length of `keynum_sk`: key id (8), secret key (64), checksum (32).
const KEYNUM_SK_BYTES: usize = 104;

/// libsodium's scrypt cost parameters as a minisign key file stores them: `opslimit` (a CPU
/// budget, in Salsa20/8 core calls) and `memlimit` (bytes). libsodium turns them into scrypt's
/// N, r and p ([`KdfLimits::cost`]); minisign writes [`KdfLimits::MINISIGN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfLimits {
    /// `crypto_pwhash_scryptsalsa208sha256`'s opslimit.
    pub opslimit: u64,
    /// `crypto_pwhash_scryptsalsa208sha256`'s memlimit, in bytes.
    pub memlimit: u64,
}

/// scrypt's own parameters (RFC 7914), as libsodium derives them from [`KdfLimits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScryptCost {
    /// log2 of the CPU/memory cost N.
    pub log_n: u8,
    /// Block size r (always 8 from libsodium).
    pub r: u32,
    /// Parallelism p.
    pub p: u32,
}

impl ScryptCost {
    /// Bytes scrypt's large array takes: 128 · r · N.
    pub fn memory_bytes(&self) -> u64 {
        (128 * u64::from(self.r)) << self.log_n
    }
}

/// Largest scrypt memory we agree to spend on a key file's say-so: 1 GiB, the memory of
/// minisign's own parameters ([`KdfLimits::MINISIGN`]: N = 2^20, r = 8), which it writes for
/// every encrypted key and has no option to raise. A hostile or corrupt key file could otherwise
/// ask for N = 2^62: memory we would try to allocate before the checksum could tell us anything.
pub const MAX_KDF_MEMORY: u64 = 1 << 30;

/// Largest scrypt work we agree to do, as N · p (r being fixed at 8): four times minisign's
/// (N = 2^20, p = 1), some ten seconds. A file's opslimit otherwise raises p up to 2^27, hours
/// of CPU, with no more memory.
pub const MAX_KDF_WORK: u64 = 1 << 22;

impl KdfLimits {
    /// What `minisign -G` writes: libsodium's `OPSLIMIT_SENSITIVE` and `MEMLIMIT_SENSITIVE`
    /// (N = 2^20, r = 8, p = 1: 1 GiB and a few seconds). `stockade keygen` writes these too.
    pub const MINISIGN: KdfLimits = KdfLimits {
        opslimit: 33_554_432,
        memlimit: 1_073_741_824,
    };

    /// The smallest cost libsodium derives (N = 2^10, r = 8, p = 1: 1 MiB, a millisecond), for
    /// tests that write keys and are not about the cost.
    pub const CHEAPEST: KdfLimits = KdfLimits {
        opslimit: 32_768,
        memlimit: 1 << 20,
    };

    /// scrypt's N, r and p for these limits, as libsodium's `pickparams` computes them
    /// (`crypto_pwhash/scryptsalsa208sha256/pwhash_scryptsalsa208sha256.c`), refused past
    /// [`MAX_KDF_MEMORY`] or [`MAX_KDF_WORK`] — checked here, before anything is allocated.
    ///
    /// Written out by hand because no crate does it: RustCrypto's `scrypt` takes N, r and p
    /// (RFC 7914), and the `minisign` crate that knows the mapping brings its own Ed25519 (see
    /// the module doc). The mapping is part of minisign's file format: the same opslimit and
    /// memlimit must give the same N, r, p, or the same password gives another key stream.
    pub fn cost(&self) -> Result<ScryptCost, MinisignError> {
        let refuse = |why| MinisignError::KdfLimits {
            opslimit: self.opslimit,
            memlimit: self.memlimit,
            why,
        };
        // The smallest n ≥ 1 with 2^n > max_n / 2 (63 at most), as libsodium's loop.
        let log2_above_half =
            |max_n: u64| (1u32..63).find(|&n| 1u64 << n > max_n / 2).unwrap_or(63);
        let opslimit = self.opslimit.max(32_768);
        let r: u64 = 8;
        let (log_n, p) = if opslimit < self.memlimit / 32 {
            (log2_above_half(opslimit / (r * 4)), 1u64)
        } else {
            let log_n = log2_above_half(self.memlimit / (r * 128));
            let maxrp = ((opslimit / 4) >> log_n).min(0x3fff_ffff);
            (log_n, maxrp / r)
        };
        if p == 0 {
            return Err(refuse("they give scrypt p = 0"));
        }
        if log_n > 20 || (128 * r) << log_n > MAX_KDF_MEMORY {
            return Err(refuse(
                "scrypt would need more than 1 GiB of memory (minisign's default is 1 GiB)",
            ));
        }
        if (1u64 << log_n).saturating_mul(p) > MAX_KDF_WORK {
            return Err(refuse(
                "scrypt would do more than 4 times the work of minisign's default parameters",
            ));
        }
        let cost = ScryptCost {
            log_n: u8::try_from(log_n).map_err(|_| refuse("N out of range"))?,
            r: 8,
            p: u32::try_from(p).map_err(|_| refuse("p out of range"))?,
        };
        // The scrypt crate's own checks (none refuses what the caps let through).
        // `len` is that of its PHC strings, unused by `scrypt::scrypt`.
        scrypt::Params::new(cost.log_n, cost.r, cost.p, 32)
            .map_err(|_| refuse("the scrypt crate refuses them"))?;
        Ok(cost)
    }

    /// [`Self::cost`] as the scrypt crate takes it.
    fn scrypt_params(&self) -> Result<scrypt::Params, MinisignError> {
        let cost = self.cost()?;
        scrypt::Params::new(cost.log_n, cost.r, cost.p, 32).map_err(|_| MinisignError::KdfLimits {
            opslimit: self.opslimit,
            memlimit: self.memlimit,
            why: "the scrypt crate refuses them",
        })
    }
}

/// The key stream: `KEYNUM_SK_BYTES` of scrypt(password, salt) at `limits`' cost.
fn key_stream(
    password: &[u8],
    salt: &[u8; 32],
    limits: KdfLimits,
) -> Result<Zeroizing<[u8; KEYNUM_SK_BYTES]>, MinisignError> {
    let params = limits.scrypt_params()?;
    let mut stream = Zeroizing::new([0u8; KEYNUM_SK_BYTES]);
    scrypt::scrypt(password, salt, &params, &mut stream[..])
        .expect("a 104-byte output is within scrypt's bounds");
    Ok(stream)
}

/// A password-encrypted secret key, parsed and its KDF parameters checked
/// ([`KdfLimits::cost`]), not yet decrypted.
pub struct EncryptedSecretKey {
    salt: [u8; 32],
    limits: KdfLimits,
    cost: ScryptCost,
    keynum_sk: [u8; KEYNUM_SK_BYTES],
}

impl fmt::Debug for EncryptedSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptedSecretKey({:?})", self.limits)
    }
}

impl EncryptedSecretKey {
    /// The file's KDF parameters.
    pub fn limits(&self) -> KdfLimits {
        self.limits
    }

    /// scrypt's parameters for them (within the caps).
    pub fn cost(&self) -> ScryptCost {
        self.cost
    }

    /// Decrypt with `password` (the bytes minisign would hash: the line typed, without its
    /// newline). A wrong password is [`MinisignError::WrongPassword`]; the key stream and the
    /// decrypted bytes are zeroized.
    pub fn decrypt(&self, password: &[u8]) -> Result<SecretKey, MinisignError> {
        let stream = key_stream(password, &self.salt, self.limits)?;
        let mut plain = Zeroizing::new(self.keynum_sk);
        for (b, k) in plain.iter_mut().zip(stream.iter()) {
            *b ^= k;
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&plain[..8]);
        let key_id = KeyId(id);
        let mut sk = Zeroizing::new([0u8; 64]);
        sk.copy_from_slice(&plain[8..72]);
        if checksum(&key_id, &sk)[..] != plain[72..] {
            return Err(MinisignError::WrongPassword);
        }
        SecretKey::from_keypair(key_id, &sk)
    }
}

/// Whether `data` is a minisign secret key file (what `pack` refuses to ship): a first line
/// `untrusted comment:` and a second that decodes to the [`SECRET_KEY_BYTES`]-byte secret key
/// layout (`Ed`, a KDF of none or `Sc`rypt, `B2`), as `minisign -G` and `stockade keygen` write
/// it. More lenient than [`SecretKeyFile::parse`] on purpose: the key is not parsed further and
/// its KDF parameters are not judged — a damaged key, or one [`KdfLimits::cost`] refuses, is no
/// less someone's.
pub fn looks_like_secret_key(data: &[u8]) -> bool {
    if data.len() > MAX_TEXT_BYTES {
        return false;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let mut lines = text.lines();
    if !lines
        .next()
        .is_some_and(|l| l.starts_with("untrusted comment:"))
    {
        return false;
    }
    let Some(line) = lines.next() else {
        return false;
    };
    // A copy of someone's secret key, if it is one: wiped like the keys read to sign (a line
    // that does not decode too: `decode`).
    decode(line.trim()).is_ok_and(|raw| {
        raw.len() == SECRET_KEY_BYTES
            && &raw[..2] == b"Ed"
            && matches!(&raw[2..4], [0, 0] | b"Sc")
            && &raw[4..6] == b"B2"
    })
}

/// A secret key file: unencrypted, or encrypted and waiting for its password.
#[derive(Debug)]
pub enum SecretKeyFile {
    /// `kdf` 0,0: usable as it is.
    Plain(SecretKey),
    /// `kdf` `Sc`: [`EncryptedSecretKey::decrypt`] it.
    Encrypted(EncryptedSecretKey),
}

impl SecretKeyFile {
    /// Parse a secret key file, encrypted or not. An encrypted key's KDF parameters are checked
    /// here ([`KdfLimits::cost`]), before any work is done for its password.
    pub fn parse(text: &str) -> Result<Self, MinisignError> {
        let l = lines(text)?;
        untrusted(l.first())?;
        let raw = decode(l.get(1).ok_or(MinisignError::Layout("missing key line"))?)?;
        if raw.len() != SECRET_KEY_BYTES {
            return Err(MinisignError::Length(raw.len()));
        }
        if &raw[..2] != b"Ed" {
            return Err(MinisignError::Algorithm(
                String::from_utf8_lossy(&raw[..2]).into(),
            ));
        }
        let encrypted = match &raw[2..4] {
            [0, 0] => false,
            b"Sc" => true,
            other => {
                return Err(MinisignError::Algorithm(
                    String::from_utf8_lossy(other).into(),
                ))
            }
        };
        if &raw[4..6] != b"B2" {
            return Err(MinisignError::Algorithm(
                String::from_utf8_lossy(&raw[4..6]).into(),
            ));
        }
        if encrypted {
            let mut salt = [0u8; 32];
            salt.copy_from_slice(&raw[6..38]);
            let le = |at: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&raw[at..at + 8]);
                u64::from_le_bytes(b)
            };
            let limits = KdfLimits {
                opslimit: le(38),
                memlimit: le(46),
            };
            let cost = limits.cost()?;
            // Copied into the wiping struct itself, not through a local array left unwiped.
            let mut enc = EncryptedSecretKey {
                salt,
                limits,
                cost,
                keynum_sk: [0u8; KEYNUM_SK_BYTES],
            };
            enc.keynum_sk.copy_from_slice(&raw[KEYNUM_SK_AT..]);
            return Ok(Self::Encrypted(enc));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&raw[54..62]);
        let key_id = KeyId(id);
        let mut sk = Zeroizing::new([0u8; 64]);
        sk.copy_from_slice(&raw[62..126]);
        // minisign 0.11 `-G -W` leaves the checksum zeroed for unencrypted keys (it is only
        // computed as part of encryption), so a zero checksum is accepted; anything else must
        // match. The consistency check still catches a corrupted key.
        let stored = &raw[126..158];
        if stored.iter().any(|&b| b != 0) && checksum(&key_id, &sk)[..] != *stored {
            return Err(MinisignError::Checksum);
        }
        SecretKey::from_keypair(key_id, &sk).map(Self::Plain)
    }
}

impl Drop for EncryptedSecretKey {
    fn drop(&mut self) {
        // Encrypted, but it is the secret key all the same to whoever learns the password.
        self.keynum_sk.zeroize();
    }
}

impl ZeroizeOnDrop for EncryptedSecretKey {}

/// The lines of a key file: `comment`, then base64 of `raw`, built in a [`SecretText`] of the
/// exact size, so it never reallocates (leaving an unwiped copy behind), and base64 written
/// through a wiped buffer rather than base64's own `encode_string`, whose stack chunk buffer
/// is not.
fn secret_text(comment: &str, raw: &[u8; SECRET_KEY_BYTES]) -> SecretText {
    const B64_LEN: usize = SECRET_KEY_BYTES.div_ceil(3) * 4;
    let mut b64 = Zeroizing::new([0u8; B64_LEN]);
    let n = B64
        .encode_slice(raw, &mut b64[..])
        .expect("the buffer is base64's exact length");
    debug_assert_eq!(n, B64_LEN);
    let mut text = Zeroizing::new(String::with_capacity(
        "untrusted comment: \n\n".len() + comment.len() + B64_LEN,
    ));
    text.push_str("untrusted comment: ");
    text.push_str(comment);
    text.push('\n');
    text.push_str(std::str::from_utf8(&b64[..]).expect("base64 is ASCII"));
    text.push('\n');
    text
}

impl SecretKey {
    /// Build a key from 32 random seed bytes and 8 random key-id bytes (the caller supplies the
    /// randomness, keeping this crate free of I/O).
    /// The seed is borrowed, not copied: the caller keeps it in a wiped buffer.
    pub fn from_seed(seed: &[u8; 32], key_id: [u8; 8]) -> Self {
        Self {
            key_id: KeyId(key_id),
            key: SigningKey::from_bytes(seed),
        }
    }

    /// seed ‖ public key, checked for consistency.
    fn from_keypair(key_id: KeyId, sk: &[u8; 64]) -> Result<Self, MinisignError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&sk[..32]);
        let key = SigningKey::from_bytes(&seed);
        if key.verifying_key().as_bytes()[..] != sk[32..] {
            return Err(MinisignError::Inconsistent);
        }
        Ok(Self { key_id, key })
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// Parse an unencrypted secret key file; an encrypted one is [`MinisignError::Encrypted`]
    /// (read those with [`SecretKeyFile::parse`]).
    pub fn parse(text: &str) -> Result<Self, MinisignError> {
        match SecretKeyFile::parse(text)? {
            SecretKeyFile::Plain(k) => Ok(k),
            SecretKeyFile::Encrypted(_) => Err(MinisignError::Encrypted),
        }
    }

    /// The secret key file text, in the format `minisign -G -W` writes; wiped when dropped.
    pub fn to_text(&self) -> SecretText {
        let sk = Zeroizing::new(self.key.to_keypair_bytes());
        let mut raw = Zeroizing::new([0u8; SECRET_KEY_BYTES]);
        raw[..2].copy_from_slice(b"Ed");
        // raw[2..4]: KDF none (0, 0); raw[6..54]: salt, opslimit, memlimit, unused without one.
        raw[4..6].copy_from_slice(b"B2");
        raw[KEYNUM_SK_AT..KEYNUM_SK_AT + 8].copy_from_slice(&self.key_id.0);
        raw[KEYNUM_SK_AT + 8..KEYNUM_SK_AT + 72].copy_from_slice(&sk[..]);
        raw[KEYNUM_SK_AT + 72..].copy_from_slice(&checksum(&self.key_id, &sk));
        secret_text("minisign encrypted secret key", &raw)
    }

    /// The secret key file text encrypted with `password`, as `minisign -G` writes it: `salt`
    /// must be fresh random bytes (the caller's, keeping this crate free of I/O), `limits`
    /// normally [`KdfLimits::MINISIGN`] (refused past the caps a reader applies).
    pub fn to_encrypted_text(
        &self,
        password: &[u8],
        salt: [u8; 32],
        limits: KdfLimits,
    ) -> Result<SecretText, MinisignError> {
        let stream = key_stream(password, &salt, limits)?;
        let sk = Zeroizing::new(self.key.to_keypair_bytes());
        // keynum_sk is put together in place, in the file's own (wiped) bytes, then encrypted.
        let mut raw = Zeroizing::new([0u8; SECRET_KEY_BYTES]);
        raw[..2].copy_from_slice(b"Ed");
        raw[2..4].copy_from_slice(b"Sc");
        raw[4..6].copy_from_slice(b"B2");
        raw[6..38].copy_from_slice(&salt);
        raw[38..46].copy_from_slice(&limits.opslimit.to_le_bytes());
        raw[46..54].copy_from_slice(&limits.memlimit.to_le_bytes());
        let keynum_sk = &mut raw[KEYNUM_SK_AT..];
        keynum_sk[..8].copy_from_slice(&self.key_id.0);
        keynum_sk[8..72].copy_from_slice(&sk[..]);
        keynum_sk[72..].copy_from_slice(&checksum(&self.key_id, &sk));
        for (b, k) in keynum_sk.iter_mut().zip(stream.iter()) {
            *b ^= k;
        }
        Ok(secret_text("minisign encrypted secret key", &raw))
    }

    /// Sign `data` (prehashed `ED`) with a one-line trusted comment.
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> Result<Signature, MinisignError> {
        if trusted_comment.contains(['\n', '\r']) {
            return Err(MinisignError::Multiline);
        }
        if !trusted_comment_chars_ok(trusted_comment) {
            return Err(MinisignError::ControlCharacter);
        }
        let sig = self.key.sign(&Blake2b512::digest(data)).to_bytes();
        let mut global = sig.to_vec();
        global.extend_from_slice(trusted_comment.as_bytes());
        let global_sig = self.key.sign(&global).to_bytes();
        Ok(Signature {
            untrusted_comment: "signature from minisign secret key".into(),
            key_id: self.key_id,
            sig,
            trusted_comment: trusted_comment.into(),
            global_sig,
        })
    }
}

impl Signature {
    /// Parse a `.minisig` text (four lines).
    pub fn parse(text: &str) -> Result<Self, MinisignError> {
        let l = lines(text)?;
        let untrusted_comment = untrusted(l.first())?;
        let raw = decode(
            l.get(1)
                .ok_or(MinisignError::Layout("missing signature line"))?,
        )?;
        if raw.len() != 74 {
            return Err(MinisignError::Length(raw.len()));
        }
        if &raw[..2] != b"ED" {
            return Err(MinisignError::Algorithm(
                String::from_utf8_lossy(&raw[..2]).into(),
            ));
        }
        let trusted_comment = l
            .get(2)
            .and_then(|t| t.strip_prefix("trusted comment: "))
            .ok_or(MinisignError::Layout(
                "third line must start with `trusted comment: `",
            ))?
            .trim_end_matches('\r')
            .to_string();
        if !trusted_comment_chars_ok(&trusted_comment) {
            return Err(MinisignError::ControlCharacter);
        }
        let g = decode(
            l.get(3)
                .ok_or(MinisignError::Layout("missing global signature"))?,
        )?;
        if g.len() != 64 {
            return Err(MinisignError::Length(g.len()));
        }
        if l.len() > 4 && l[4..].iter().any(|x| !x.trim().is_empty()) {
            return Err(MinisignError::Layout(
                "trailing data after the global signature",
            ));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&raw[2..10]);
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&raw[10..74]);
        let mut global_sig = [0u8; 64];
        global_sig.copy_from_slice(&g);
        Ok(Self {
            untrusted_comment,
            key_id: KeyId(id),
            sig,
            trusted_comment,
            global_sig,
        })
    }

    /// The `.minisig` text.
    pub fn to_text(&self) -> String {
        let mut raw = Vec::with_capacity(74);
        raw.extend_from_slice(b"ED");
        raw.extend_from_slice(&self.key_id.0);
        raw.extend_from_slice(&self.sig);
        format!(
            "untrusted comment: {}\n{}\ntrusted comment: {}\n{}\n",
            self.untrusted_comment,
            B64.encode(raw),
            self.trusted_comment,
            B64.encode(self.global_sig)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed(&[n; 32], [n; 8])
    }

    #[test]
    fn sign_verify_round_trip_through_text() {
        let sk = SecretKey::parse(&key(1).to_text()).unwrap();
        let pk = PublicKey::parse(&sk.public_key().to_text()).unwrap();
        let sig = Signature::parse(&sk.sign(b"data", "timestamp:1").unwrap().to_text()).unwrap();
        pk.verify(b"data", &sig).unwrap();
        assert!(matches!(
            pk.verify(b"datA", &sig),
            Err(MinisignError::Invalid(_))
        ));
        let mut tc = sig.clone();
        tc.trusted_comment = "timestamp:2".into();
        assert!(matches!(
            pk.verify(b"data", &tc),
            Err(MinisignError::InvalidTrustedComment(_))
        ));
        let other = key(2).public_key();
        assert!(matches!(
            other.verify(b"data", &sig),
            Err(MinisignError::KeyMismatch { .. })
        ));
    }

    /// What holds a secret key's bytes wipes them when dropped: the key types are held to it at
    /// build time (`_SECRETS_WIPE_ON_DROP`); here the key file texts, which are [`SecretText`]
    /// and made at their final size (a `String` that grows leaves its outgrown copies behind),
    /// and still read back as the same key.
    #[test]
    fn secret_key_texts_wipe_themselves_and_read_back() {
        let sk = key(8);
        fn wipes<T: ZeroizeOnDrop>(_: &T) {}
        wipes(&sk);
        let plain: SecretText = sk.to_text();
        let encrypted: SecretText = sk
            .to_encrypted_text(b"pw", [4; 32], KdfLimits::CHEAPEST)
            .unwrap();
        for text in [&plain, &encrypted] {
            assert_eq!(text.len(), text.capacity(), "{:?}", &text[..40]);
        }
        assert_eq!(
            SecretKey::parse(&plain).unwrap().public_key(),
            sk.public_key()
        );
        let SecretKeyFile::Encrypted(e) = SecretKeyFile::parse(&encrypted).unwrap() else {
            panic!("read as plain");
        };
        assert_eq!(e.decrypt(b"pw").unwrap().public_key(), sk.public_key());
        // minisign's own layout, byte for byte as before.
        assert!(plain.starts_with("untrusted comment: minisign encrypted secret key\n"));
        assert!(looks_like_secret_key(plain.as_bytes()));
    }

    #[test]
    fn parses_minisign_generated_files() {
        // Produced by `minisign -G -W` and `minisign -S -t tc` (minisign 0.11, Debian 12).
        let pk = PublicKey::parse("untrusted comment: minisign public key C603685EE3C43B1B\nRWQbO8TjXmgDxnJKjT6HsHZydM+7ev++9LXLH20PMsCxPFxzbdmNFUwA\n").unwrap();
        assert_eq!(pk.key_id.to_string(), "C603685EE3C43B1B");
        let sk = SecretKey::parse("untrusted comment: minisign encrypted secret key\nRWQAAEIyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAGzvE415oA8b+5iSlKn+KoBirlAd80dGQabrAh+TiB0RQ+gwJX9vVoXJKjT6HsHZydM+7ev++9LXLH20PMsCxPFxzbdmNFUwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").unwrap();
        assert_eq!(sk.public_key(), pk);
        let sig = Signature::parse("untrusted comment: signature from minisign secret key\nRUQbO8TjXmgDxnIlIqaU3mEoBLTg2jFPUIzr+Sfx3N5w5OiPsHdrHoSHq8i3imzCwSNSeXDMW384W2SSmqr4UDk59x3JzeDh6wk=\ntrusted comment: tc\nrETPww0c4C32c/ERtddhHYBDDl89mQbayljQefmv3mctn6IwGcEcibqrK2o5V7HVat1TaHeSZ7j2JVikw7q7Dg==\n").unwrap();
        pk.verify(b"hi\n", &sig).unwrap();
    }

    /// `printf 'correct horse\ncorrect horse\n' | minisign -G -p k.pub -s k.key` (minisign 0.11,
    /// Debian 13): the password-encrypted key stock minisign writes by default, at its default
    /// cost (1 GiB, a few seconds: the one test here that pays it), and a signature it made with
    /// it (`minisign -S -t tc` of "hi\n").
    const MINISIGN_ENCRYPTED_KEY: &str = "untrusted comment: minisign encrypted secret key\nRWRTY0IyixSRdk3LYXF9SS9GA28ug62kn8+/tlJR+BuLGN8iGmkAAAACAAAAAAAAAEAAAAAAn7NXv1HNbLxduYWtnkwiBLW5oyyO7v4Lin/9eqfDDjdZcnZA+0VD5F6+jM6gc3i4u3IQ+ap6bGKkgW2pjmG28m4pZbRZNDNAvJgfAghvh5qL1TyyFY6a/C/rEf9y7IDrupFbdAX+sl8=\n";
    const MINISIGN_ENCRYPTED_PUB: &str = "untrusted comment: minisign public key 2428E9CF506BE723\nRWQj52tQz+koJFDEJ7bLgLnqlvf7LA5LiXeBji50U4/6tLfHPyDSIuYK\n";
    const MINISIGN_ENCRYPTED_SIG: &str = "untrusted comment: signature from minisign secret key\nRUQj52tQz+koJHIKtm93Joq/EcuUAqDKscIbI1GkHCuun9nTIeUuftWtIt6LbDZFcKFQhha9hgV8C4k0JwhHZHq8hLwD/ybUBw4=\ntrusted comment: tc\nMkeB/bvhH4/1Wewyl6mkTKPGA7603FeAULak6iRRL2DoUxgiTn5suV4/9sX3bme9x9+aKzNNJSoki9B1NubNBg==\n";

    #[test]
    fn decrypts_a_key_stock_minisign_encrypted() {
        let SecretKeyFile::Encrypted(enc) = SecretKeyFile::parse(MINISIGN_ENCRYPTED_KEY).unwrap()
        else {
            panic!("not read as encrypted");
        };
        assert_eq!(enc.limits(), KdfLimits::MINISIGN);
        assert_eq!(
            enc.cost(),
            ScryptCost {
                log_n: 20,
                r: 8,
                p: 1
            }
        );
        assert!(matches!(
            SecretKey::parse(MINISIGN_ENCRYPTED_KEY),
            Err(MinisignError::Encrypted)
        ));
        let sk = enc.decrypt(b"correct horse").unwrap();
        let pk = PublicKey::parse(MINISIGN_ENCRYPTED_PUB).unwrap();
        assert_eq!(sk.public_key(), pk);
        pk.verify(b"hi\n", &Signature::parse(MINISIGN_ENCRYPTED_SIG).unwrap())
            .unwrap();
        // And what stockade signs with it, minisign's public key verifies.
        pk.verify(b"x", &sk.sign(b"x", "t").unwrap()).unwrap();
    }

    /// libsodium's pickparams, worked by hand from its C for each branch.
    #[test]
    fn kdf_limits_map_to_scrypt_as_libsodium_does() {
        let cost = |opslimit, memlimit| KdfLimits { opslimit, memlimit }.cost();
        let c = |log_n, p| ScryptCost { log_n, r: 8, p };
        // minisign's (OPSLIMIT/MEMLIMIT_SENSITIVE): memory-bound branch.
        assert_eq!(cost(33_554_432, 1_073_741_824).unwrap(), c(20, 1));
        assert_eq!(KdfLimits::MINISIGN.cost().unwrap().memory_bytes(), 1 << 30);
        assert_eq!(KdfLimits::CHEAPEST.cost().unwrap(), c(10, 1));
        // libsodium's INTERACTIVE (524288, 16777216): opslimit < memlimit/32, so the CPU-bound
        // branch: maxN = 524288 / 32 = 16384, first 2^n > 8192 is n = 14, p = 1.
        assert_eq!(cost(524_288, 16_777_216).unwrap(), c(14, 1));
        // An opslimit below 32768 counts as 32768.
        assert_eq!(cost(0, 1 << 20).unwrap(), cost(32_768, 1 << 20).unwrap());
        // Memory-bound with CPU to spare: p grows. maxN = 2^20/1024 = 1024 → n = 10; maxrp =
        // (2^20/4)/2^10 = 256 → p = 32.
        assert_eq!(cost(1 << 20, 1 << 20).unwrap(), c(10, 32));
    }

    #[test]
    fn absurd_kdf_limits_are_refused_at_parse() {
        let stockade_written = key(5)
            .to_encrypted_text(b"pw", [9; 32], KdfLimits::CHEAPEST)
            .unwrap();
        let mut raw = B64
            .decode(stockade_written.lines().nth(1).unwrap())
            .unwrap();
        for (ops, mem) in [
            // 2^62 of memory: no allocation is tried (this test would abort, not fail).
            (u64::MAX, u64::MAX),
            (1 << 40, 1 << 40),
            // 2 GiB.
            (1 << 26, 1 << 31),
            // 1 GiB, but p = 64: minutes of CPU.
            (1 << 31, 1 << 30),
        ] {
            raw[38..46].copy_from_slice(&u64::to_le_bytes(ops));
            raw[46..54].copy_from_slice(&u64::to_le_bytes(mem));
            let text = format!("untrusted comment: x\n{}\n", B64.encode(&raw));
            assert!(
                matches!(
                    SecretKeyFile::parse(&text),
                    Err(MinisignError::KdfLimits { .. })
                ),
                "{ops} {mem} accepted"
            );
            assert!(key(5)
                .to_encrypted_text(
                    b"pw",
                    [9; 32],
                    KdfLimits {
                        opslimit: ops,
                        memlimit: mem
                    }
                )
                .is_err());
        }
    }

    #[test]
    fn stockade_encrypted_keys_decrypt_and_refuse_a_wrong_password_or_tampering() {
        let sk = key(6);
        let text = sk
            .to_encrypted_text(b"s3cret", [1; 32], KdfLimits::CHEAPEST)
            .unwrap();
        let enc = |t: &str| match SecretKeyFile::parse(t).unwrap() {
            SecretKeyFile::Encrypted(e) => e,
            SecretKeyFile::Plain(_) => panic!("read as plain"),
        };
        let back = enc(&text).decrypt(b"s3cret").unwrap();
        assert_eq!(back.public_key(), sk.public_key());
        assert_eq!(back.key_id, sk.key_id);
        for wrong in [&b"s3cre"[..], b"s3cret\n", b"", b"S3cret"] {
            assert!(matches!(
                enc(&text).decrypt(wrong),
                Err(MinisignError::WrongPassword)
            ));
        }
        // Another salt, another key stream: the same key and password make another file.
        let salted = sk
            .to_encrypted_text(b"s3cret", [2; 32], KdfLimits::CHEAPEST)
            .unwrap();
        assert_ne!(salted, text);
        // A byte of the encrypted key id, secret key or checksum altered: the checksum no longer
        // matches after decryption.
        let raw = B64.decode(text.lines().nth(1).unwrap()).unwrap();
        for at in [KEYNUM_SK_AT, KEYNUM_SK_AT + 20, SECRET_KEY_BYTES - 1] {
            let mut bad = raw.clone();
            bad[at] ^= 0x40;
            let t = format!("untrusted comment: x\n{}\n", B64.encode(&bad));
            assert!(matches!(
                enc(&t).decrypt(b"s3cret"),
                Err(MinisignError::WrongPassword)
            ));
        }
        // An altered salt derives another stream: the same.
        let mut bad = raw.clone();
        bad[10] ^= 1;
        let t = format!("untrusted comment: x\n{}\n", B64.encode(&bad));
        assert!(matches!(
            enc(&t).decrypt(b"s3cret"),
            Err(MinisignError::WrongPassword)
        ));
    }

    #[test]
    fn rejects_encrypted_corrupt_and_garbage() {
        let text = key(3).to_text();
        let mut raw = B64.decode(text.lines().nth(1).unwrap()).unwrap();
        raw[2..4].copy_from_slice(b"Sc");
        let enc = format!("untrusted comment: x\n{}\n", B64.encode(&raw));
        assert!(matches!(
            SecretKey::parse(&enc),
            Err(MinisignError::Encrypted)
        ));
        raw[2..4].copy_from_slice(&[0, 0]);
        raw[100] ^= 1;
        let bad = format!("untrusted comment: x\n{}\n", B64.encode(&raw));
        assert!(matches!(
            SecretKey::parse(&bad),
            Err(MinisignError::Checksum)
        ));
        assert!(PublicKey::parse("hello").is_err());
        assert!(Signature::parse("untrusted comment: x\n!!!\n").is_err());
        assert!(key(1).sign(b"x", "a\nb").is_err());
    }

    #[test]
    fn trusted_comment_control_characters_are_refused_tab_is_not() {
        let sk = key(4);
        // minisign's own default comment separates its fields with tabs.
        let tabbed = "timestamp:1\tfile:x\thashed";
        let sig = Signature::parse(&sk.sign(b"x", tabbed).unwrap().to_text()).unwrap();
        assert_eq!(sig.trusted_comment, tabbed);
        for bad in ["a\x1b[31mred", "a\rb", "a\u{7f}", "a\u{9b}31m", "a\0b"] {
            assert!(
                matches!(
                    sk.sign(b"x", bad),
                    Err(MinisignError::ControlCharacter | MinisignError::Multiline)
                ),
                "{bad:?} signed"
            );
            // A signature made elsewhere (forged layout, same bytes signed): refused at parse.
            let mut s = sk.sign(b"x", "placeholder").unwrap();
            s.trusted_comment = bad.into();
            assert!(
                matches!(
                    Signature::parse(&s.to_text()),
                    Err(MinisignError::ControlCharacter)
                ),
                "{bad:?} parsed"
            );
        }
    }

    #[test]
    fn key_id_display_round_trip() {
        let id = KeyId([0x1b, 0x3b, 0xc4, 0xe3, 0x5e, 0x68, 0x03, 0xc6]);
        assert_eq!(id.to_string(), "C603685EE3C43B1B");
        assert_eq!("C603685EE3C43B1B".parse::<KeyId>().unwrap(), id);
    }

    /// The operator policy's `[signer."<key id>"]` sections are matched against this text, and
    /// the policy crate refuses any other spelling: the two must agree.
    #[test]
    fn key_id_display_is_the_form_signer_sections_use() {
        for id in [
            [0u8; 8],
            [0xff; 8],
            [0x1b, 0x3b, 0xc4, 0xe3, 0x5e, 0x68, 0x03, 0xc6],
        ] {
            let shown = KeyId(id).to_string();
            assert_eq!(
                stockade_policy::operator::check_signer_id(&shown),
                Ok(()),
                "{shown}"
            );
        }
    }
}
