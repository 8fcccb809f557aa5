//! `stockade grant issue|verify`: signed authorization grants for high-risk items (seed 001's
//! authorization bundle; format in `stockade_trust::grant`).
//!
//! `verify` exits 0 when the grant authorises the target for the binding, else 65 with the
//! refusal's own kind (`grant_missing`, `grant_expired`, `grant_wrong_plugin`,
//! `grant_wrong_version`, `grant_wrong_scope`, `grant_wrong_signer`, `grant_tampered`,
//! `grant_malformed`); 66 when a file cannot be read.
//!
//! Both refuse, with 64 (`grant_invalid`), a plugin name, version, scope or target that no
//! plugin or item could ever have (`stockade_trust::grant::{check_binding, check_target}`):
//! `issue` would otherwise sign a grant that never matches, and `verify` answer "missing" for
//! what is a typo. `issue --days 0` is 64 too, as for `ca` (it was silently one day), and so
//! is a `--now` so late that `--days` ends past the largest time (`usage`, as for `ca`; the
//! grant's expiry was silently cut short at `u64::MAX`). `issue` judges all its arguments, and
//! refuses an existing output without `--force`, before it reads the key: a password is never
//! asked for a grant that will be refused.

use crate::cli::{GrantIssueArgs, GrantVerifyArgs};
use crate::error::CmdError;
use crate::exit::Exit;
use crate::fileio::read_capped;
use crate::keyfile::{load_public, load_secret, secret_key_error, unix_now};
use crate::output::{term, Output};
use serde::Serialize;
use stockade_trust::grant::{
    authorise, check_binding, check_request, check_target, Binding, Grant, GrantBody, GrantError,
    MAX_GRANT_BYTES,
};

const TARGET_HINT: &str = "targets are capability:<log|emit_event|get_config_value|register_hook|kv_get|kv_put>, network:loopback or writable:<absolute normalised path>; the plugin is a manifest name, the version semver, the scope any, license:<serial> or hardware:<id>";

fn invalid(e: GrantError) -> CmdError {
    CmdError::new(Exit::Usage, "grant_invalid", e).hint(TARGET_HINT)
}

#[derive(Serialize)]
struct Issued {
    ok: bool,
    file: String,
    grant: GrantBody,
}

/// `grant issue`.
pub fn issue(a: GrantIssueArgs, out: Output) -> Result<Exit, CmdError> {
    // Every argument is judged before the key is read: a bad one must not cost a password
    // typed for nothing (or a key decrypted for nothing).
    if a.days == 0 {
        return Err(
            CmdError::msg(Exit::Usage, "usage", "--days must be at least 1")
                .hint("a grant always expires; pass the number of days it is valid"),
        );
    }
    let now = a.now.unwrap_or_else(unix_now);
    let expires_at = crate::cmd::valid_until(now, a.days)?;
    let binding = Binding {
        plugin: &a.plugin,
        version: &a.plugin_version,
        scope: &a.scope,
    };
    check_request(&binding, &a.targets).map_err(invalid)?;
    crate::cmd::refuse_existing_output(&a.output, a.force)?;
    let key = load_secret(&a.key, a.password_file.as_deref()).map_err(secret_key_error)?;
    let body = GrantBody {
        format: 1,
        plugin: a.plugin,
        plugin_version: a.plugin_version,
        scope: a.scope,
        targets: a.targets,
        issued_at: now,
        expires_at,
        issuer_key_id: key.public_key().key_id.to_string(),
    };
    let bytes = Grant::issue(&body, &key).map_err(invalid)?;
    crate::cmd::write_output(&a.output, &bytes, a.force)?;
    let r = Issued {
        ok: true,
        file: a.output.display().to_string(),
        grant: body,
    };
    out.emit(&r, |r| {
        format!(
            "wrote {}: {} {} ({}) may have {} until {}",
            term(&r.file),
            term(&r.grant.plugin),
            term(&r.grant.plugin_version),
            term(&r.grant.scope),
            r.grant
                .targets
                .iter()
                .map(|t| term(t))
                .collect::<Vec<_>>()
                .join(", "),
            r.grant.expires_at
        )
    });
    Ok(Exit::Ok)
}

#[derive(Serialize)]
struct Verified {
    ok: bool,
    target: String,
    grant: GrantBody,
}

/// `grant verify`.
pub fn verify(a: GrantVerifyArgs, out: Output) -> Result<Exit, CmdError> {
    let binding = Binding {
        plugin: &a.plugin,
        version: &a.plugin_version,
        scope: &a.scope,
    };
    check_binding(&binding).map_err(invalid)?;
    check_target(&a.target).map_err(invalid)?;
    let mut keys = Vec::new();
    for k in &a.operator_keys {
        keys.push(load_public(k).map_err(|e| CmdError::new(Exit::DataErr, "key", e))?);
    }
    let bytes = read_capped(&a.file, MAX_GRANT_BYTES as u64)
        .map_err(|e| CmdError::new(Exit::NoInput, "grant_unreadable", e))?;
    let g = Grant::parse(&bytes).map_err(|e| CmdError::new(Exit::DataErr, e.kind(), e))?;
    let now = a.now.unwrap_or_else(unix_now);
    authorise(std::slice::from_ref(&g), &keys, &binding, &a.target, now).map_err(|e| {
        CmdError::new(Exit::DataErr, e.kind(), e)
            .hint("issue a new grant with `stockade grant issue` bound to this plugin, version, scope and target")
    })?;
    let r = Verified {
        ok: true,
        target: a.target,
        grant: g.body,
    };
    out.emit(&r, |r| {
        format!(
            "grant ok: {} {} may have {} until {}",
            term(&r.grant.plugin),
            term(&r.grant.plugin_version),
            term(&r.target),
            r.grant.expires_at
        )
    });
    Ok(Exit::Ok)
}
