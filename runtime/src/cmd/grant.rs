//! `stockade grant issue|verify`: signed authorization grants for high-risk items (seed 001's
//! authorization bundle; format in `stockade_trust::grant`).
//!
//! `verify` exits 0 when the grant authorises the target for the binding, else 65 with the
//! refusal's own kind (`grant_missing`, `grant_expired`, `grant_wrong_plugin`,
//! `grant_wrong_version`, `grant_wrong_scope`, `grant_wrong_signer`, `grant_tampered`,
//! `grant_malformed`); 66 when a file cannot be read.

use crate::cli::{GrantIssueArgs, GrantVerifyArgs};
use crate::error::CmdError;
use crate::exit::Exit;
use crate::fileio::read_capped;
use crate::keyfile::{load_public, load_secret, secret_key_hint, unix_now};
use crate::output::Output;
use serde::Serialize;
use stockade_trust::grant::{authorise, Binding, Grant, GrantBody, MAX_GRANT_BYTES};

#[derive(Serialize)]
struct Issued {
    ok: bool,
    file: String,
    grant: GrantBody,
}

/// `grant issue`.
pub fn issue(a: GrantIssueArgs, out: Output) -> Result<Exit, CmdError> {
    let key = load_secret(&a.key).map_err(|e| {
        let hint = secret_key_hint(&e);
        CmdError::new(Exit::DataErr, "key", e).hint(hint)
    })?;
    let now = a.now.unwrap_or_else(unix_now);
    let body = GrantBody {
        format: 1,
        plugin: a.plugin,
        plugin_version: a.plugin_version,
        scope: a.scope,
        targets: a.targets,
        issued_at: now,
        expires_at: now + u64::from(a.days.max(1)) * 86_400,
        issuer_key_id: key.public_key().key_id.to_string(),
    };
    let bytes = Grant::issue(&body, &key).map_err(|e| {
        CmdError::new(Exit::Usage, "grant_invalid", e)
            .hint("targets are capability:<cap>, network:loopback or writable:<absolute path>; the version is semver")
    })?;
    crate::cmd::write_output(&a.output, &bytes, a.force)?;
    let r = Issued {
        ok: true,
        file: a.output.display().to_string(),
        grant: body,
    };
    out.emit(&r, |r| {
        format!(
            "wrote {}: {} {} ({}) may have {} until {}",
            r.file,
            r.grant.plugin,
            r.grant.plugin_version,
            r.grant.scope,
            r.grant.targets.join(", "),
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
    let mut keys = Vec::new();
    for k in &a.operator_keys {
        keys.push(load_public(k).map_err(|e| CmdError::new(Exit::DataErr, "key", e))?);
    }
    let bytes = read_capped(&a.file, MAX_GRANT_BYTES as u64)
        .map_err(|e| CmdError::new(Exit::NoInput, "grant_unreadable", e))?;
    let g = Grant::parse(&bytes).map_err(|e| CmdError::new(Exit::DataErr, e.kind(), e))?;
    let binding = Binding {
        plugin: &a.plugin,
        version: &a.plugin_version,
        scope: &a.scope,
    };
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
            r.grant.plugin, r.grant.plugin_version, r.target, r.grant.expires_at
        )
    });
    Ok(Exit::Ok)
}
