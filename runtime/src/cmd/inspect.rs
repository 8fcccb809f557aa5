//! `stockade inspect FILE|NAME`: show the manifest, signer, chain, scope and file list without
//! verifying trust and without extracting. The container is still parsed strictly and with size
//! caps (the same step 1 as `verify`), so inspecting a hostile file is safe.

use crate::cli::InspectArgs;
use crate::error::CmdError;
use crate::exit::Exit;
use crate::fileio::{read_capped, FileError};
use crate::output::{term, term_text, Output};
use crate::package::container::{self, MAX_PACKAGE_BYTES};
use crate::package::report::CertInfo;
use crate::package::verify::{error_chain, runtime_version};
use crate::package::VerifyError;
use serde::Serialize;
use sha2::{Digest, Sha256};
use stockade_trust::cert::Certificate;
use stockade_trust::minisign::Signature;
use stockade_trust::statement::{FileEntry, Statement};

#[derive(Serialize)]
struct FileInfo {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    symlink: Option<String>,
}

#[derive(Serialize)]
struct Report {
    file: String,
    verified: bool,
    /// Always `not_checked`: inspect never verifies (see `stockade verify`).
    signature_status: &'static str,
    name: String,
    version: String,
    manifest: serde_json::Value,
    signer_key_id: Option<String>,
    trusted_comment: Option<String>,
    chain: Vec<CertInfo>,
    certificate_errors: Vec<String>,
    scope: Option<String>,
    payload_sha256: String,
    payload_size: u64,
    package_sha256: String,
    files: Vec<FileInfo>,
}

/// Run `stockade inspect`.
pub fn run(a: InspectArgs, out: Output) -> Result<Exit, CmdError> {
    // An installed plugin's name means its stored package, as for `run` and `verify`.
    // As installed when it is read, should an upgrade or removal commit meanwhile
    // (store::with_package).
    let (file, bytes) = crate::store::with_package(
        &a.state_dir,
        &a.file,
        |f| read_capped(f, MAX_PACKAGE_BYTES),
        FileError::is_not_found,
    )
    .map_err(crate::cmd::store::store_err)?;
    let bytes = bytes.map_err(|e| VerifyError::into_cmd(VerifyError::Read(e)))?;
    let c =
        container::parse(&bytes).map_err(|e| VerifyError::into_cmd(VerifyError::Container(e)))?;
    let st = Statement::parse(&c.statement, &runtime_version())
        .map_err(|e| VerifyError::into_cmd(VerifyError::Statement(e)))?;
    let mut chain = Vec::new();
    let mut certificate_errors = Vec::new();
    let mut scope = None;
    for (what, b) in [
        ("developer", &c.developer_cert),
        ("intermediate", &c.intermediate_cert),
    ] {
        match Certificate::parse(b) {
            Ok(cert) => {
                if what == "developer" {
                    scope = Some(cert.body.scope.to_string());
                }
                chain.push(CertInfo::from(&cert));
            }
            Err(e) => certificate_errors.push(format!("{what} certificate: {}", error_chain(&e))),
        }
    }
    let sig = Signature::parse(&String::from_utf8_lossy(&c.signature)).ok();
    let files = st
        .files
        .iter()
        .map(|(p, e)| match e {
            FileEntry::File { mode, sha256, size } => FileInfo {
                path: p.clone(),
                mode: Some(format!("{mode:04o}")),
                size: Some(*size),
                sha256: Some(hex::encode(sha256)),
                symlink: None,
            },
            FileEntry::Symlink { target } => FileInfo {
                path: p.clone(),
                mode: None,
                size: None,
                sha256: None,
                symlink: Some(target.clone()),
            },
        })
        .collect();
    let r = Report {
        file: file.display().to_string(),
        verified: false,
        signature_status: "not_checked",
        name: st.manifest.name().to_string(),
        version: st.manifest.version().to_string(),
        manifest: st.manifest_value.clone(),
        signer_key_id: sig.as_ref().map(|s| s.key_id.to_string()),
        trusted_comment: sig.map(|s| s.trusted_comment),
        chain,
        certificate_errors,
        scope,
        payload_sha256: hex::encode(st.payload_sha256),
        payload_size: st.payload_size,
        package_sha256: hex::encode(Sha256::digest(&bytes)),
        files,
    };
    out.emit(&r, |r| {
        // Everything below but our own labels comes from the package, which anyone can make:
        // each string is escaped for the terminal (`term`). The manifest is shown as JSON, whose
        // string escapes leave format characters (a bidi override in `author`) as they are.
        let mut t = format!("package: {} {} ({})\nNOT VERIFIED: inspect shows what the package claims; run `stockade verify` to check it\n", term(&r.name), term(&r.version), term(&r.file));
        t.push_str(&format!(
            "manifest: {}\n",
            term_text(&serde_json::to_string_pretty(&r.manifest).unwrap_or_default()).replace('\n', "\n  ")
        ));
        t.push_str(&format!("signer: key {}", r.signer_key_id.as_deref().unwrap_or("(unreadable signature)")));
        if let Some(c) = &r.trusted_comment {
            t.push_str(&format!(" (trusted comment: {})", term(c)));
        }
        t.push('\n');
        for c in &r.chain {
            t.push_str(&format!(
                "  {:<12} \"{}\" serial {} key {} issuer {} scope {} capabilities [{}] valid {}..{}\n",
                c.kind,
                term(&c.subject),
                term(&c.serial),
                term(&c.key_id),
                term(&c.issuer_key_id),
                term(&c.scope),
                c.capabilities.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "),
                c.not_before,
                c.not_after
            ));
        }
        for e in &r.certificate_errors {
            t.push_str(&format!("  error: {}\n", term(e)));
        }
        if let Some(s) = &r.scope {
            t.push_str(&format!("scope: {}\n", term(s)));
        }
        t.push_str(&format!("payload: {} bytes, sha256 {}\nfiles ({}):\n", r.payload_size, r.payload_sha256, r.files.len()));
        for f in &r.files {
            match &f.symlink {
                Some(target) => t.push_str(&format!("  {} -> {}\n", term(&f.path), term(target))),
                None => t.push_str(&format!(
                    "  {} {} {:>9} {}\n",
                    f.mode.as_deref().unwrap_or(""),
                    f.sha256.as_deref().unwrap_or(""),
                    f.size.unwrap_or(0),
                    term(&f.path)
                )),
            }
        }
        t
    });
    Ok(Exit::Ok)
}
