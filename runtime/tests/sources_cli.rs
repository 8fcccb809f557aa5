//! Signed indexes through the real CLI (seed 004 and issue 6): `source add` pinning the operator
//! key, install by id, each verification step's own failure and exit code, TOFU author pinning
//! and both rotation paths (author and operator) with and without proof, the explicit re-pin
//! flows, rollback and freeze, per-platform choice, delisting and `update`, dependencies fetched
//! from the index, and plain HTTP served from 127.0.0.1 (and refused elsewhere).

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use stockade_trust::index::fingerprint;

const PLATFORM: &str = "linux-x86_64";

/// A repository directory with an index signed by `op.key`.
struct Repo {
    dir: PathBuf,
    version: u64,
    expires: String,
    entries: Vec<Value>,
    extra: Value,
}

fn sign(fx: &Fixture, key: &str, data: &[u8]) -> String {
    fx.secret(key).sign(data, "test").unwrap().to_text()
}

impl Repo {
    fn new(fx: &Fixture) -> Self {
        let dir = fx.path("repo");
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            dir,
            version: 1,
            expires: "2099-01-01T00:00:00Z".into(),
            entries: Vec::new(),
            extra: json!({}),
        }
    }

    fn url(&self) -> String {
        format!("file://{}/index.json", self.dir.display())
    }

    /// Publish `pkg` (a file in the fixture) signed by `author` (a key name), as a
    /// linux-x86_64 build. Returns the entry for further editing.
    fn publish(
        &mut self,
        fx: &Fixture,
        pkg: &str,
        id: &str,
        version: &str,
        author: &str,
    ) -> &mut Value {
        let bytes = std::fs::read(fx.path(pkg)).unwrap();
        std::fs::write(self.dir.join(pkg), &bytes).unwrap();
        std::fs::write(
            self.dir.join(format!("{pkg}.minisig")),
            sign(fx, &format!("{author}.key"), &bytes),
        )
        .unwrap();
        let author_pub = fx.secret(&format!("{author}.key")).public_key().to_base64();
        self.entries.push(json!({
            "id": id, "name": id, "version": version,
            "description": "test plugin", "homepage": "https://example.org", "icon_url": "https://example.org/i.png",
            "author": {"name": author, "pubkey": author_pub, "previous_pubkeys": [], "verified": true},
            "platforms": {PLATFORM: {
                "url": pkg, "sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
                "size": bytes.len(), "signature_url": format!("{pkg}.minisig")
            }}
        }));
        self.entries.last_mut().unwrap()
    }

    /// Write index.json and its signature by `op`.
    fn write(&self, fx: &Fixture, op: &str) -> Vec<u8> {
        let mut doc = json!({
            "format": 1, "name": "Test Index", "operator": "tester",
            "operator_pubkey": fx.secret(&format!("{op}.key")).public_key().to_base64(),
            "generated_at": "2026-12-01T00:00:00Z", "previous_operator_pubkeys": [],
            "version": self.version, "expires": self.expires,
            "a_field_from_the_future": [1, 2, 3],
            "plugins": self.entries,
        });
        if let (Some(o), Some(e)) = (doc.as_object_mut(), self.extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        let bytes = serde_json::to_vec_pretty(&doc).unwrap();
        std::fs::write(self.dir.join("index.json"), &bytes).unwrap();
        std::fs::write(
            self.dir.join("index.json.minisig"),
            sign(fx, &format!("{op}.key"), &bytes),
        )
        .unwrap();
        let _ = std::fs::remove_file(self.dir.join("index.json.minisig.prev"));
        bytes
    }
}

/// The index source `name`'s cache in `state` holds (`indexes/<name>.index`: the index's text
/// and its signature in one file).
fn cached_index(state: &Path, name: &str) -> Value {
    let doc: Value = serde_json::from_slice(
        &std::fs::read(state.join(format!("indexes/{name}.index"))).unwrap(),
    )
    .unwrap();
    serde_json::from_str(doc["index"].as_str().unwrap()).unwrap()
}

fn setup() -> (Fixture, Repo) {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("policy-root")).unwrap();
    ok(fx.dir(), &["keygen", "-o", "op"]);
    let repo = Repo::new(&fx);
    (fx, repo)
}

fn add_source(fx: &Fixture, url: &str, key: &str) -> Run {
    fx.run(&[
        "--json",
        "source",
        "add",
        "main",
        url,
        "--operator-key",
        key,
        "--state-dir",
        "state",
    ])
}

fn update(fx: &Fixture) -> Run {
    let mut args = vec!["--json", "update"];
    args.extend_from_slice(&STORE_FLAGS);
    fx.run(&args)
}

fn hello(fx: &Fixture, version: &str) -> String {
    fx.pack_plugin("hello", version, &[])
}

/// A source `main` listing `hello` 0.1.0 by dev, added, and `hello` installed from it.
fn hello_installed() -> (Fixture, Repo) {
    let (fx, repo) = setup();
    hello_installed_in(fx, repo)
}

/// [`hello_installed`] on a fixture already set up (the packaged layout's, say).
fn hello_installed_in(fx: Fixture, mut repo: Repo) -> (Fixture, Repo) {
    let pkg = hello(&fx, "0.1.0");
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev");
    repo.write(&fx, "op");
    expect(&add_source(&fx, &repo.url(), "op.pub"), 0, "");
    expect(&fx.store_install(&["hello"], &[]), 0, "");
    (fx, repo)
}

/// `[GLOBAL…] source repin-author ID --author-key KEY [EXTRA…] --state-dir state`.
fn repin_author(fx: &Fixture, global: &[&str], id: &str, key: &str, extra: &[&str]) -> Run {
    let mut args = global.to_vec();
    args.extend(["source", "repin-author", id, "--author-key", key]);
    args.extend_from_slice(extra);
    args.extend(["--state-dir", "state"]);
    fx.run(&args)
}

/// A source listing `hello` 0.1.0 by dev under author name `hello_author` and `other` 1.0.0 by
/// dev2 under `other_author`, added (nothing installed yet).
fn two_authors(hello_author: &str, other_author: &str) -> (Fixture, Repo) {
    let (fx, mut repo) = setup();
    fx.add_developer("dev2");
    let pkg = hello(&fx, "0.1.0");
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev")["author"]["name"] = json!(hello_author);
    let other = fx.pack_custom("other", "1.0.0", &[], json!({}), "dev2", "other.stockade");
    repo.publish(&fx, &other, "other", "1.0.0", "dev2")["author"]["name"] = json!(other_author);
    repo.write(&fx, "op");
    expect(&add_source(&fx, &repo.url(), "op.pub"), 0, "");
    (fx, repo)
}

#[test]
fn add_pins_the_operator_key_and_install_by_id_pins_the_author() {
    let (fx, mut repo) = setup();
    let pkg = hello(&fx, "0.1.0");
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev");
    repo.write(&fx, "op");
    let r = add_source(&fx, &repo.url(), "op.pub");
    expect(&r, 0, "");
    let op_pub = fx.secret("op.key").public_key();
    assert_eq!(r.json()["operator_fingerprint"], fingerprint(&op_pub));
    assert_eq!(r.json()["index"]["version"], 1);
    let t = ok(fx.dir(), &["source", "list", "--state-dir", "state"]);
    assert!(t.stdout.contains(&fingerprint(&op_pub)), "{}", t.stdout);
    // Same name again.
    expect(&add_source(&fx, &repo.url(), "op.pub"), 73, "source.exists");
    // Install by id: the author key is pinned on first use and shown.
    let r = fx.store_install(&["hello"], &[]);
    expect(&r, 0, "");
    let item = &r.json()["installed"][0];
    assert_eq!(item["source"], "index:main");
    assert_eq!(item["author_pin"]["status"], "first-use");
    let dev_pub = fx.secret("dev.key").public_key();
    assert_eq!(item["author_pin"]["fingerprint"], fingerprint(&dev_pub));
    let l = fx.installed();
    assert_eq!(l["hello"]["source"], "index:main");
    assert!(l["hello"]["delisted"].is_null());
    let r = fx.store_install(&["hello@0.1.0"], &[]);
    expect(&r, 0, "");
    assert_eq!(r.json()["installed"][0]["action"], "already installed");
    assert_eq!(r.json()["installed"][0]["author_pin"]["status"], "pinned");
    // Unknown ids and versions.
    expect(&fx.store_install(&["nope"], &[]), 94, "index.not_found");
    expect(
        &fx.store_install(&["hello@9.9.9"], &[]),
        94,
        "index.not_found",
    );
}

/// The fixture's operator policy (`policy-root`) with an `[audit]` file sink: the log's path.
fn audit_to_file(fx: &Fixture) -> PathBuf {
    let log = fx.path("audit.log");
    std::fs::create_dir_all(fx.path("policy-root/etc/stockade")).unwrap();
    std::fs::write(
        fx.path("policy-root/etc/stockade/policy.toml"),
        format!("version = 1\n[audit]\nfile = \"{}\"\n", log.display()),
    )
    .unwrap();
    log
}

/// `source CMD ARGS… --state-dir state --policy-root policy-root`, `--json`.
fn source_cmd(fx: &Fixture, args: &[&str]) -> Run {
    let mut all = vec!["--json", "source"];
    all.extend_from_slice(args);
    all.extend(["--state-dir", "state", "--policy-root", "policy-root"]);
    fx.run(&all)
}

/// The log's records as (event, outcome, detail).
fn records(log: &Path) -> Vec<(String, String, Value)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["schema"], "stockade.audit/2", "{v}");
            (
                v["event"].as_str().unwrap().to_string(),
                v["outcome"].as_str().unwrap().to_string(),
                v["detail"].clone(),
            )
        })
        .collect()
}

/// audit-135 row 10 (high): replacing a pinned key left no record — a supply-chain pivot a
/// security team could not see. Every change of the trust configuration `stockade source`
/// makes is a `configuration` record (schema `stockade.audit/2`): who (`uid`), what (source,
/// old and new key ids), `begun` before the change and `ok` after; one refused (no `--yes`, an
/// unknown source, an index that does not verify) is `refused`, nothing changed.
#[test]
fn source_changes_are_recorded_with_the_keys_replaced() {
    let (fx, mut repo) = setup();
    let log = audit_to_file(&fx);
    let pkg = hello(&fx, "0.1.0");
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev");
    repo.write(&fx, "op");
    let url = repo.url();
    ok(fx.dir(), &["keygen", "-o", "op2"]);
    ok(fx.dir(), &["keygen", "-o", "dev2"]);
    let key_id = |k: &str| {
        stockade_trust::minisign::PublicKey::parse(&std::fs::read_to_string(fx.path(k)).unwrap())
            .unwrap()
            .key_id
            .to_string()
    };
    let (op, op2, dev2) = (key_id("op.pub"), key_id("op2.pub"), key_id("dev2.pub"));
    // An index that does not verify against the key given: refused, recorded so.
    expect(
        &source_cmd(&fx, &["add", "main", &url, "--operator-key", "op2.pub"]),
        91,
        "",
    );
    expect(
        &source_cmd(&fx, &["add", "main", &url, "--operator-key", "op.pub"]),
        0,
        "",
    );
    expect(
        &source_cmd(&fx, &["repin", "main", "--operator-key", "op2.pub"]),
        64,
        "usage",
    );
    expect(
        &source_cmd(
            &fx,
            &["repin", "nope", "--operator-key", "op2.pub", "--yes"],
        ),
        64,
        "source.unknown",
    );
    expect(
        &source_cmd(
            &fx,
            &["repin", "main", "--operator-key", "op2.pub", "--yes"],
        ),
        0,
        "",
    );
    expect(
        &source_cmd(
            &fx,
            &["repin-author", "hello", "--author-key", "dev2.pub", "--yes"],
        ),
        0,
        "",
    );
    expect(&source_cmd(&fx, &["remove", "main"]), 0, "");
    let uid = nix::unistd::getuid().as_raw();
    let got: Vec<(String, String, String, Value, Value)> = records(&log)
        .into_iter()
        .map(|(e, o, d)| {
            assert_eq!(e, "configuration");
            assert_eq!(d["uid"], uid, "{d}");
            let c = d["change"].as_str().unwrap().to_string();
            (
                c,
                o,
                d["kind"].as_str().unwrap_or("").to_string(),
                d["old_key_id"].clone(),
                d["new_key_id"].clone(),
            )
        })
        .collect();
    let r = |c: &str, o: &str, k: &str, old: Value, new: Value| {
        (c.to_string(), o.to_string(), k.to_string(), old, new)
    };
    let n = Value::Null;
    let refused_add = &got[0];
    assert_eq!(
        (refused_add.0.as_str(), refused_add.1.as_str()),
        ("source_add", "refused"),
        "{got:?}"
    );
    assert!(!refused_add.2.is_empty(), "{got:?}");
    assert_eq!(
        got[1..].to_vec(),
        vec![
            r("source_add", "begun", "", n.clone(), json!(op)),
            r("source_add", "ok", "", n.clone(), json!(op)),
            r("source_repin", "refused", "usage", json!(op), json!(op2)),
            r(
                "source_repin",
                "refused",
                "source.unknown",
                n.clone(),
                json!(op2)
            ),
            r("source_repin", "begun", "", json!(op), json!(op2)),
            r("source_repin", "ok", "", json!(op), json!(op2)),
            r("author_repin", "begun", "", n.clone(), json!(dev2)),
            r("author_repin", "ok", "", n.clone(), json!(dev2)),
            r("source_remove", "begun", "", json!(op2), n.clone()),
            r("source_remove", "ok", "", json!(op2), n.clone()),
        ],
    );
    ok(fx.dir(), &["audit", "verify", log.to_str().unwrap()]);
}

/// A change whose record cannot be written is not made (74 `audit`): no unrecorded re-pin.
#[test]
fn a_repin_whose_record_cannot_be_written_changes_nothing() {
    let (fx, _repo) = hello_installed();
    // The log's directory is a file: nothing can be appended.
    std::fs::write(fx.path("not-a-dir"), "").unwrap();
    std::fs::create_dir_all(fx.path("policy-root/etc/stockade")).unwrap();
    std::fs::write(
        fx.path("policy-root/etc/stockade/policy.toml"),
        format!(
            "version = 1\n[audit]\nfile = \"{}/audit.log\"\n",
            fx.path("not-a-dir").display()
        ),
    )
    .unwrap();
    ok(fx.dir(), &["keygen", "-o", "op2"]);
    ok(fx.dir(), &["keygen", "-o", "dev2"]);
    let before = ok(
        fx.dir(),
        &["--json", "source", "list", "--state-dir", "state"],
    )
    .stdout;
    let pins = std::fs::read(fx.path("state/pins.json")).ok();
    expect(
        &source_cmd(
            &fx,
            &["repin", "main", "--operator-key", "op2.pub", "--yes"],
        ),
        74,
        "audit",
    );
    expect(
        &source_cmd(
            &fx,
            &["repin-author", "hello", "--author-key", "dev2.pub", "--yes"],
        ),
        74,
        "audit",
    );
    expect(&source_cmd(&fx, &["remove", "main"]), 74, "audit");
    let after = ok(
        fx.dir(),
        &["--json", "source", "list", "--state-dir", "state"],
    )
    .stdout;
    assert_eq!(before, after);
    assert_eq!(pins, std::fs::read(fx.path("state/pins.json")).ok());
}

#[test]
fn corrupt_source_state_is_refused_and_left_as_it_is() {
    use std::os::unix::fs::PermissionsExt;
    let (fx, _repo) = hello_installed();
    // No secret in either file: readable by the operator's tools without root.
    for f in ["sources.json", "pins.json"] {
        let mode = std::fs::metadata(fx.path("state").join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "{f}");
    }
    // A file that does not parse stops the command (78) and is not rewritten.
    for f in ["sources.json", "pins.json"] {
        let path = fx.path("state").join(f);
        let good = std::fs::read(&path).unwrap();
        std::fs::write(&path, b"{ not json").unwrap();
        if f == "sources.json" {
            let r = fx.run(&["--json", "source", "list", "--state-dir", "state"]);
            expect(&r, 78, "source.corrupt");
            assert!(r.stdout.contains(f), "{}", r.stdout);
        }
        // The install by id reads both (the source's index, then the author's pin).
        let r = fx.store_install(&["hello"], &[]);
        expect(&r, 78, "source.corrupt");
        assert!(r.stdout.contains(f), "{f}: {}", r.stdout);
        assert_eq!(std::fs::read(&path).unwrap(), b"{ not json", "{f}");
        std::fs::write(&path, good).unwrap();
    }
    expect(&update(&fx), 0, "");
}

/// `sources.json`, `pins.json` and `sources-seen.json` a newer Stockade wrote (`"format": 2`, with
/// a field this build does not know, as a downgraded node has) are refused as such — 78
/// `source.newer_format`, the hint not to move them aside (the author pins and rollback floors
/// would be forgotten) — and left as they are; they were 78 `source.corrupt`, "move it aside and
/// add the sources again". `"format": 1` reads as its absence, and this build writes none.
#[test]
fn source_state_of_a_newer_stockade_is_refused_as_such_and_left_as_it_is() {
    let (fx, _repo) = hello_installed();
    expect(&update(&fx), 0, "");
    for f in ["sources.json", "pins.json", "sources-seen.json"] {
        let path = fx.path("state").join(f);
        let good = std::fs::read(&path).unwrap();
        let v: Value = serde_json::from_slice(&good).unwrap();
        assert!(v.get("format").is_none(), "{f}: {v}");
        let mut newer = v.clone();
        newer["format"] = 2.into();
        newer["pin_policy"] = "strict".into();
        let newer = serde_json::to_vec(&newer).unwrap();
        std::fs::write(&path, &newer).unwrap();
        let mut runs = vec![("update", update(&fx))];
        if f != "sources-seen.json" {
            runs.push(("install", fx.store_install(&["hello"], &["--force"])));
        }
        if f == "sources.json" {
            let list = fx.run(&["--json", "source", "list", "--state-dir", "state"]);
            runs.push(("source list", list));
        }
        for (what, r) in runs {
            expect(&r, 78, "source.newer_format");
            let j = r.json();
            assert!(
                r.stdout.contains(f)
                    && j["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("newer Stockade"))
                    && j["error"]["hint"]
                        .as_str()
                        .is_some_and(|h| h.contains("Do not move it aside")),
                "{f}, {what}: {}",
                r.stdout
            );
            assert_eq!(std::fs::read(&path).unwrap(), newer, "{f}, {what}");
        }
        let mut one = v.clone();
        one["format"] = 1.into();
        std::fs::write(&path, serde_json::to_vec(&one).unwrap()).unwrap();
        expect(&update(&fx), 0, "");
        std::fs::write(&path, good).unwrap();
    }
}

#[test]
fn a_bad_index_signature_is_refused_at_add_and_at_install() {
    let (fx, mut repo) = setup();
    ok(fx.dir(), &["keygen", "-o", "mallory"]);
    let pkg = hello(&fx, "0.1.0");
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev");
    repo.write(&fx, "mallory");
    // Signed by someone else (who names themselves as operator): the source is not added.
    expect(
        &add_source(&fx, &repo.url(), "op.pub"),
        91,
        "index.operator_key",
    );
    let r = ok(
        fx.dir(),
        &["--json", "source", "list", "--state-dir", "state"],
    );
    assert_eq!(r.json()["sources"].as_array().unwrap().len(), 0);
    // Added while good, then swapped.
    repo.write(&fx, "op");
    expect(&add_source(&fx, &repo.url(), "op.pub"), 0, "");
    repo.write(&fx, "mallory");
    // mallory's index names mallory as operator but has no rotation proof from op.
    expect(&fx.store_install(&["hello"], &[]), 91, "index.operator_key");
    // A tampered byte under a valid-looking signature.
    let bytes = repo.write(&fx, "op");
    let mut t = bytes.clone();
    let pos = t.windows(9).position(|w| w == b"Test Inde").unwrap();
    t[pos] = b'B';
    std::fs::write(repo.dir.join("index.json"), &t).unwrap();
    expect(&fx.store_install(&["hello"], &[]), 91, "index.signature");
    assert!(fx.installed().is_empty());
}

#[test]
fn rollback_changed_content_and_freeze() {
    let (fx, mut repo) = setup();
    let pkg = hello(&fx, "0.1.0");
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev");
    repo.version = 5;
    repo.write(&fx, "op");
    expect(&add_source(&fx, &repo.url(), "op.pub"), 0, "");
    // An older, validly signed index.
    repo.version = 4;
    repo.write(&fx, "op");
    let r = fx.store_install(&["hello"], &[]);
    expect(&r, 92, "index.rollback");
    assert!(
        r.stdout.contains("version 4") && r.stdout.contains("version 5"),
        "{}",
        r.stdout
    );
    // Version 5 again but different content.
    repo.version = 5;
    repo.extra = json!({"name": "Changed"});
    repo.write(&fx, "op");
    expect(&fx.store_install(&["hello"], &[]), 92, "index.changed");
    // A newer one that has expired: freeze.
    repo.version = 6;
    repo.expires = "2020-01-01T00:00:00Z".into();
    repo.write(&fx, "op");
    expect(&fx.store_install(&["hello"], &[]), 93, "index.expired");
    // Fresh again.
    repo.expires = "2099-01-01T00:00:00Z".into();
    repo.write(&fx, "op");
    expect(&fx.store_install(&["hello"], &[]), 0, "");
    // A new source whose index is already expired is not added.
    repo.version = 7;
    repo.expires = "2021-01-01T00:00:00Z".into();
    repo.write(&fx, "op");
    let r = fx.run(&[
        "--json",
        "source",
        "add",
        "other",
        &repo.url(),
        "--operator-key",
        "op.pub",
        "--state-dir",
        "state",
    ]);
    expect(&r, 93, "index.expired");
}

#[test]
fn artifact_digest_size_signature_and_manifest_agreement() {
    let (fx, mut repo) = setup();
    fx.add_developer("dev2");
    let pkg = hello(&fx, "0.1.0");
    // Wrong digest.
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev")["platforms"][PLATFORM]["sha256"] =
        json!("00".repeat(32));
    repo.write(&fx, "op");
    expect(&add_source(&fx, &repo.url(), "op.pub"), 0, "");
    let mut version = 1;
    let mut republish = |repo: &mut Repo, f: &dyn Fn(&mut Value)| {
        repo.entries.clear();
        let e = repo.publish(&fx, &pkg, "hello", "0.1.0", "dev");
        f(e);
        version += 1;
        repo.version = version;
        repo.write(&fx, "op");
    };
    expect(
        &fx.store_install(&["hello"], &[]),
        96,
        "index.artifact_digest",
    );
    // Wrong size (smaller and larger than the bytes).
    republish(&mut repo, &|e| {
        let s = e["platforms"][PLATFORM]["size"].as_u64().unwrap();
        e["platforms"][PLATFORM]["size"] = json!(s - 1);
    });
    expect(
        &fx.store_install(&["hello"], &[]),
        96,
        "index.artifact_digest",
    );
    republish(&mut repo, &|e| {
        let s = e["platforms"][PLATFORM]["size"].as_u64().unwrap();
        e["platforms"][PLATFORM]["size"] = json!(s + 1);
    });
    expect(
        &fx.store_install(&["hello"], &[]),
        96,
        "index.artifact_digest",
    );
    // Signature by another key than the entry's author.
    republish(&mut repo, &|_| {});
    std::fs::write(
        repo.dir.join(format!("{pkg}.minisig")),
        sign(&fx, "dev2.key", &std::fs::read(fx.path(&pkg)).unwrap()),
    )
    .unwrap();
    expect(
        &fx.store_install(&["hello"], &[]),
        97,
        "index.artifact_signature",
    );
    // Manifest agreement: version, tier, and the signer being the author.
    republish(&mut repo, &|e| e["version"] = json!("0.2.0"));
    expect(&fx.store_install(&["hello"], &[]), 99, "index.mismatch");
    republish(&mut repo, &|e| e["tier"] = json!("A"));
    let r = fx.store_install(&["hello"], &[]);
    expect(&r, 99, "index.mismatch");
    assert!(r.stdout.contains("tier"), "{}", r.stdout);
    // The artifact signed (detached) by dev2, listed with dev2 as author, but the package
    // inside is signed by dev: refused.
    repo.entries.clear();
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev2");
    version += 1;
    repo.version = version;
    repo.write(&fx, "op");
    let r = fx.store_install(&["hello"], &[]);
    expect(&r, 99, "index.mismatch");
    assert!(r.stdout.contains("developer key"), "{}", r.stdout);
    assert!(fx.installed().is_empty());
    // Tier agreement when both say B.
    let tiered = fx.pack_custom(
        "tiered",
        "1.0.0",
        &[],
        json!({"tier": "B"}),
        "dev",
        "tiered.stockade",
    );
    repo.publish(&fx, &tiered, "tiered", "1.0.0", "dev")["tier"] = json!("B");
    version += 1;
    repo.version = version;
    repo.write(&fx, "op");
    expect(&fx.store_install(&["tiered"], &[]), 0, "");
    assert_eq!(fx.installed()["tiered"]["tier"], "B");
}

#[test]
fn platform_choice_and_unavailable() {
    let (fx, mut repo) = setup();
    let pkg = hello(&fx, "0.1.0");
    // Only a windows build (the bare artifact) and an aarch64 one.
    let e = repo.publish(&fx, &pkg, "hello", "0.1.0", "dev");
    let art = e["platforms"][PLATFORM].clone();
    e["platforms"] = json!({"linux-aarch64": art.clone()});
    e["artifact"] = art;
    repo.write(&fx, "op");
    expect(&add_source(&fx, &repo.url(), "op.pub"), 0, "");
    let r = fx.store_install(&["hello"], &[]);
    expect(&r, 95, "index.unavailable");
    assert!(
        r.stdout.contains("linux-aarch64") && r.stdout.contains("windows-x86_64"),
        "{}",
        r.stdout
    );
    // Add this platform's build: chosen.
    repo.entries[0]["platforms"][PLATFORM] = repo.entries[0]["artifact"].clone();
    repo.version = 2;
    repo.write(&fx, "op");
    expect(&fx.store_install(&["hello"], &[]), 0, "");
}

#[test]
fn author_key_rotation_with_and_without_proof() {
    let (fx, mut repo) = setup();
    fx.add_developer("dev2");
    let v1 = hello(&fx, "0.1.0");
    repo.publish(&fx, &v1, "hello", "0.1.0", "dev");
    repo.write(&fx, "op");
    expect(&add_source(&fx, &repo.url(), "op.pub"), 0, "");
    expect(&fx.store_install(&["hello"], &[]), 0, "");
    // 0.2.0 signed by a new key, no proof: blocked, both fingerprints named.
    let v2 = fx.pack_custom(
        "hello",
        "0.2.0",
        &[],
        json!({}),
        "dev2",
        "hello-0.2.0-dev2.stockade",
    );
    repo.publish(&fx, &v2, "hello", "0.2.0", "dev2");
    repo.version = 2;
    repo.write(&fx, "op");
    let r = update(&fx);
    expect(&r, 98, "index.author_pin");
    let (old, new) = (
        fx.secret("dev.key").public_key(),
        fx.secret("dev2.key").public_key(),
    );
    assert!(
        r.stdout.contains(&old.key_id.to_string()) && r.stdout.contains(&new.key_id.to_string()),
        "{}",
        r.stdout
    );
    assert_eq!(fx.installed()["hello"]["version"], "0.1.0");
    // Listed as previous but no .prev signature: still blocked.
    repo.entries[1]["author"]["previous_pubkeys"] = json!([old.to_base64()]);
    repo.version = 3;
    repo.write(&fx, "op");
    expect(&update(&fx), 98, "index.author_pin");
    // With the proof: re-pinned silently, updated.
    std::fs::write(
        repo.dir.join(format!("{v2}.minisig.prev")),
        sign(&fx, "dev.key", &std::fs::read(fx.path(&v2)).unwrap()),
    )
    .unwrap();
    let r = update(&fx);
    expect(&r, 0, "");
    let u = &r.json()["updated"][0];
    assert_eq!(u["version"], "0.2.0");
    assert_eq!(
        u["author_pin"]["status"],
        format!("rotated from {}", old.key_id)
    );
    // The explicit flow: a third key without proof needs repin-author --yes.
    fx.add_developer("dev3");
    let v3 = fx.pack_custom(
        "hello",
        "0.3.0",
        &[],
        json!({}),
        "dev3",
        "hello-0.3.0-dev3.stockade",
    );
    repo.publish(&fx, &v3, "hello", "0.3.0", "dev3");
    repo.version = 4;
    repo.write(&fx, "op");
    expect(&update(&fx), 98, "index.author_pin");
    let r = repin_author(&fx, &[], "hello", "dev3.pub", &[]);
    assert_eq!(r.code, 64);
    assert!(r.stderr.contains("WARNING"), "{}", r.stderr);
    // A name that shows nothing (or reorders what is shown) is no author name: refused.
    for name in ["\u{200B} ", "Ali\u{202E}ce"] {
        let r = repin_author(&fx, &[], "hello", "dev3.pub", &["--author", name, "--yes"]);
        assert_eq!(r.code, 64, "{}", r.stderr);
        assert!(r.stderr.contains("not an author name"), "{}", r.stderr);
    }
    let r = repin_author(&fx, &[], "hello", "dev3.pub", &["--yes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    expect(&update(&fx), 0, "");
    assert_eq!(fx.installed()["hello"]["version"], "0.3.0");
    // File installs honour the pin too: a package of that name by dev (no longer pinned).
    let v4 = hello(&fx, "0.4.0");
    expect(&fx.store_install(&[&v4], &[]), 98, "index.author_pin");
}

#[test]
fn a_known_authors_name_is_pinned_too_so_a_new_plugin_under_it_needs_its_key() {
    // Another plugin id, never installed, published under the same author name with another
    // key: its id pin would be first-use, but the author's is not.
    // Spelled otherwise (case, spaces, a zero-width space, a Cyrillic "А" for the "A"): still
    // the same author.
    let (fx, _repo) = two_authors("acme", " \u{0410}C\u{200B}ME ");
    // Both in one command, nothing pinned yet: the name's first use cannot pin two keys.
    let r = fx.store_install(&["hello", "other"], &[]);
    expect(&r, 98, "index.author_pin");
    assert!(
        r.stdout.contains("another package of this command"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("--author NAME"), "{}", r.stdout);
    assert!(fx.installed().is_empty());
    assert!(
        !fx.path("state/pins.json").exists() || {
            let pins: Value =
                serde_json::from_slice(&std::fs::read(fx.path("state/pins.json")).unwrap())
                    .unwrap();
            pins["authors"].is_null()
        }
    );
    let r = fx.store_install(&["hello"], &[]);
    expect(&r, 0, "");
    let item = &r.json()["installed"][0];
    assert_eq!(item["author_name_pin"]["name"], "acme", "{item}");
    assert_eq!(item["author_name_pin"]["status"], "first-use", "{item}");
    let r = fx.store_install(&["other"], &[]);
    expect(&r, 98, "index.author_pin");
    assert!(
        r.stdout.contains("author ` \u{0410}C\u{200B}ME `"),
        "{}",
        r.stdout
    );
    assert!(!fx.installed().contains_key("other"));
    // The explicit flow re-pins the name as well as the id.
    let r = repin_author(
        &fx,
        &[],
        "other",
        "dev2.pub",
        &["--author", "Acme", "--yes"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = fx.store_install(&["other"], &[]);
    expect(&r, 0, "");
    assert_eq!(
        r.json()["installed"][0]["author_name_pin"]["status"],
        "pinned"
    );
    let pins: Value =
        serde_json::from_slice(&std::fs::read(fx.path("state/pins.json")).unwrap()).unwrap();
    assert_eq!(pins["authors"]["acme"]["how"], "manual", "{pins}");
}

/// Pins an earlier build kept for two look-alike spellings with different keys (before names
/// were compared by skeleton) refuse any install under either name until one is re-pinned;
/// `repin-author` says which spellings it replaces.
#[test]
fn look_alike_author_pins_that_disagree_refuse_until_repinned() {
    let (fx, mut repo) = two_authors("acme", "zed");
    expect(&fx.store_install(&["hello", "other"], &[]), 0, "");
    // As an earlier build could have left it: dev2's pin under a Cyrillic "аcme".
    let path = fx.path("state/pins.json");
    let mut pins: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let zed = pins["authors"]["zed"].take();
    let authors = pins["authors"].as_object_mut().unwrap();
    authors.remove("zed");
    authors.insert("\u{0430}cme".into(), zed);
    std::fs::write(&path, pins.to_string()).unwrap();
    let v2 = hello(&fx, "0.2.0");
    repo.publish(&fx, &v2, "hello", "0.2.0", "dev")["author"]["name"] = json!("acme");
    repo.version = 2;
    repo.write(&fx, "op");
    let r = update(&fx);
    expect(&r, 98, "index.author_pin");
    assert!(r.stdout.contains("look-alike author names"), "{}", r.stdout);
    let r = repin_author(
        &fx,
        &["--json"],
        "hello",
        "dev.pub",
        &["--author", "Acme", "--yes"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["replaced_author_pins"], json!(["\u{0430}cme"]));
    expect(&update(&fx), 0, "");
}

#[test]
fn a_name_with_nothing_visible_pins_no_author() {
    let (fx, _repo) = two_authors("  ", "\u{200B}\u{3164}");
    // Two keys, two names that show nothing: not one author (each id is pinned on its own).
    let r = fx.store_install(&["hello", "other"], &[]);
    expect(&r, 0, "");
    for item in r.json()["installed"].as_array().unwrap() {
        assert!(item["author_name_pin"].is_null(), "{item}");
        assert_eq!(item["author_pin"]["status"], "first-use", "{item}");
    }
}

#[test]
fn operator_key_rotation_with_and_without_proof() {
    let (fx, mut repo) = setup();
    ok(fx.dir(), &["keygen", "-o", "op2"]);
    let pkg = hello(&fx, "0.1.0");
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev");
    repo.write(&fx, "op");
    expect(&add_source(&fx, &repo.url(), "op.pub"), 0, "");
    // Signed by op2, op listed as previous, but no .prev: refused naming both keys.
    let op = fx.secret("op.key").public_key();
    repo.extra = json!({"previous_operator_pubkeys": [op.to_base64()]});
    repo.version = 2;
    repo.write(&fx, "op2");
    let r = fx.store_install(&["hello"], &[]);
    expect(&r, 91, "index.operator_key");
    let op2 = fx.secret("op2.key").public_key();
    assert!(
        r.stdout.contains(&op.key_id.to_string()) && r.stdout.contains(&op2.key_id.to_string())
    );
    // With index.json.minisig.prev by op: accepted, and op2 is now pinned.
    let bytes = repo.write(&fx, "op2");
    std::fs::write(
        repo.dir.join("index.json.minisig.prev"),
        sign(&fx, "op.key", &bytes),
    )
    .unwrap();
    expect(&fx.store_install(&["hello"], &[]), 0, "");
    let l = ok(
        fx.dir(),
        &["--json", "source", "list", "--state-dir", "state"],
    );
    assert_eq!(
        l.json()["sources"][0]["operator_key_id"],
        op2.key_id.to_string()
    );
    // A third key without proof; the explicit re-pin.
    ok(fx.dir(), &["keygen", "-o", "op3"]);
    repo.extra = json!({});
    repo.version = 3;
    repo.write(&fx, "op3");
    expect(&update(&fx), 91, "index.operator_key");
    let r = fx.run(&[
        "source",
        "repin",
        "main",
        "--operator-key",
        "op3.pub",
        "--state-dir",
        "state",
    ]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    ok(
        fx.dir(),
        &[
            "source",
            "repin",
            "main",
            "--operator-key",
            "op3.pub",
            "--yes",
            "--state-dir",
            "state",
        ],
    );
    expect(&update(&fx), 0, "");
}

#[test]
fn update_and_delisting() {
    let (fx, mut repo) = setup();
    let v1 = hello(&fx, "0.1.0");
    let file_only = fx.pack_plugin("local", "1.0.0", &[]);
    repo.publish(&fx, &v1, "hello", "0.1.0", "dev");
    repo.write(&fx, "op");
    expect(&add_source(&fx, &repo.url(), "op.pub"), 0, "");
    expect(&fx.store_install(&["hello", &file_only], &[]), 0, "");
    let r = update(&fx);
    expect(&r, 0, "");
    let skipped = r.json()["skipped"].to_string();
    assert!(
        skipped.contains("up to date") && skipped.contains("installed from a file"),
        "{skipped}"
    );
    let v2 = hello(&fx, "0.2.0");
    repo.publish(&fx, &v2, "hello", "0.2.0", "dev");
    repo.version = 2;
    repo.write(&fx, "op");
    let r = update(&fx);
    expect(&r, 0, "");
    assert_eq!(r.json()["updated"][0]["action"], "upgraded from 0.1.0");
    // Delisted: stays installed, flagged with the reason, no update, no new install.
    let v3 = hello(&fx, "0.3.0");
    repo.publish(&fx, &v3, "hello", "0.3.0", "dev");
    for e in &mut repo.entries {
        e["delisted"] = json!({"reason": "exceeded its declared capabilities"});
    }
    repo.version = 3;
    repo.write(&fx, "op");
    let r = update(&fx);
    expect(&r, 0, "");
    assert!(r.json()["updated"].as_array().unwrap().is_empty());
    assert!(r.json()["skipped"]
        .to_string()
        .contains("exceeded its declared capabilities"));
    let l = fx.installed();
    assert_eq!(l["hello"]["version"], "0.2.0");
    assert_eq!(l["hello"]["delisted"], "exceeded its declared capabilities");
    let t = ok(fx.dir(), &["list", "--state-dir", "state"]);
    assert!(t.stdout.contains("DELISTED"), "{}", t.stdout);
    expect(
        &fx.store_install(&["hello@0.3.0"], &[]),
        94,
        "index.delisted",
    );
    // `source refresh` (what the timer runs) verifies the index without installing anything
    // and names the installed plugins it delists; a rolled-back index fails it (the cached one
    // stays the last good one).
    let refresh = || fx.run(&["--json", "source", "refresh", "--state-dir", "state"]);
    repo.version = 4;
    repo.write(&fx, "op");
    let r = refresh();
    expect(&r, 0, "");
    let s = &r.json()["refreshed"][0];
    assert_eq!(
        (s["name"].clone(), s["version"].clone()),
        (json!("main"), json!(4))
    );
    assert_eq!(s["delisted_installed"][0]["plugin"], "hello", "{s}");
    repo.version = 3;
    repo.write(&fx, "op");
    let r = refresh();
    assert_eq!(r.code, 92, "{}", r.stdout);
    let s = &r.json()["refreshed"][0];
    assert_eq!(
        (&s["ok"], &s["error"]["kind"]),
        (&json!(false), &json!("index.rollback")),
        "{s}"
    );
    let l = ok(
        fx.dir(),
        &["--json", "source", "list", "--state-dir", "state"],
    );
    assert_eq!(l.json()["sources"][0]["seen_version"], 4);
    // One source unreachable: reported with its code, and the others refreshed all the same
    // (sources go in name order: `aaa` first).
    let mirror = fx.path("mirror");
    std::fs::create_dir_all(&mirror).unwrap();
    for f in ["index.json", "index.json.minisig"] {
        std::fs::copy(repo.dir.join(f), mirror.join(f)).unwrap();
    }
    let url = format!("file://{}/index.json", mirror.display());
    let add = [
        "--json",
        "source",
        "add",
        "aaa",
        &url,
        "--operator-key",
        "op.pub",
    ];
    expect(
        &fx.run(&[&add[..], &["--state-dir", "state"]].concat()),
        0,
        "",
    );
    std::fs::remove_dir_all(&mirror).unwrap();
    repo.version = 5;
    repo.write(&fx, "op");
    let r = refresh();
    assert_eq!(r.code, 90, "{}", r.stdout);
    let items = &r.json()["refreshed"];
    assert_eq!(items[0]["name"], "aaa", "{items}");
    assert_eq!(items[0]["ok"], false, "{items}");
    assert_eq!(items[0]["error"]["exit"], 90, "{items}");
    assert_eq!(items[1]["name"], "main", "{items}");
    assert_eq!(items[1]["version"], 5, "{items}");
    assert_eq!(
        items[1]["delisted_installed"][0]["plugin"], "hello",
        "{items}"
    );
    let t = fx.run(&["source", "refresh", "--state-dir", "state"]);
    assert!(
        t.stdout.contains("aaa: FAILED, cached index kept")
            && t.stdout.contains("main: index version 5 verified"),
        "{}",
        t.stdout
    );
    expect(
        &fx.run(&[
            "--json",
            "source",
            "refresh",
            "nope",
            "--state-dir",
            "state",
        ]),
        64,
        "source.unknown",
    );
}

#[test]
fn dependencies_come_from_the_index() {
    let (fx, mut repo) = setup();
    let lib = fx.pack_plugin("lib", "1.2.0", &[]);
    let lib2 = fx.pack_plugin("lib", "2.0.0", &[]);
    let app = fx.pack_plugin("app", "1.0.0", &[("lib", "^1")]);
    let orphan = fx.pack_plugin("orphan", "1.0.0", &[("missing", "^1")]);
    repo.publish(&fx, &lib, "lib", "1.2.0", "dev");
    repo.publish(&fx, &lib2, "lib", "2.0.0", "dev");
    repo.publish(&fx, &app, "app", "1.0.0", "dev");
    repo.publish(&fx, &orphan, "orphan", "1.0.0", "dev");
    repo.write(&fx, "op");
    expect(&add_source(&fx, &repo.url(), "op.pub"), 0, "");
    let r = fx.store_install(&["app"], &[]);
    expect(&r, 0, "");
    let names: Vec<String> = r.json()["installed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{} {}",
                i["name"].as_str().unwrap(),
                i["version"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(names, ["lib 1.2.0", "app 1.0.0"]);
    let r = fx.store_install(&["orphan"], &[]);
    expect(&r, 101, "store.dependency");
    assert!(
        r.stdout.contains("orphan 1.0.0 -> missing ^1"),
        "{}",
        r.stdout
    );
}

/// Serve `root` over plain HTTP on 127.0.0.1 (one thread, `Connection: close`).
fn serve(root: PathBuf) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = line
                .split(' ')
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/');
            let mut s = s;
            match std::fs::read(root.join(Path::new(path))) {
                Ok(b) => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        b.len()
                    );
                    let _ = s.write_all(&b);
                }
                Err(_) => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        }
    });
    port
}

#[test]
fn http_on_loopback_only() {
    let (fx, mut repo) = setup();
    let pkg = hello(&fx, "0.1.0");
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev");
    repo.write(&fx, "op");
    let port = serve(repo.dir.clone());
    let url = format!("http://127.0.0.1:{port}/index.json");
    expect(&add_source(&fx, &url, "op.pub"), 0, "");
    expect(&fx.store_install(&["hello"], &[]), 0, "");
    // A missing artifact (404) is a fetch error.
    std::fs::remove_file(repo.dir.join(&pkg)).unwrap();
    fx.run(&[
        "remove",
        "hello",
        "--state-dir",
        "state",
        "--policy-root",
        "policy-root",
    ]);
    expect(&fx.store_install(&["hello"], &[]), 90, "index.fetch");
    let other = fx.run(&[
        "--json",
        "source",
        "add",
        "lan",
        "http://10.1.2.3/index.json",
        "--operator-key",
        "op.pub",
        "--state-dir",
        "state",
    ]);
    expect(&other, 64, "index.url");
    // https to a host that does not resolve here: a fetch error (90), nothing added.
    let r = fx.run(&[
        "--json",
        "source",
        "add",
        "far",
        "https://stockade-test.invalid/index.json",
        "--operator-key",
        "op.pub",
        "--state-dir",
        "state",
    ]);
    expect(&r, 90, "index.fetch");
}

#[test]
fn an_index_signed_by_stock_minisign() {
    if !require_tool(
        "minisign",
        "operators sign indexes with the stock minisign tool",
    ) {
        return;
    }
    let (fx, mut repo) = setup();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("minisign")
            .args(args)
            .current_dir(fx.dir())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["-G", "-W", "-p", "msop.pub", "-s", "msop.key"]);
    let pkg = hello(&fx, "0.1.0");
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev");
    // `write` signs with our code; replace the signature with minisign's own, over the same
    // bytes, with msop as the operator.
    repo.write(&fx, "msop");
    std::fs::remove_file(repo.dir.join("index.json.minisig")).unwrap();
    let index = repo.dir.join("index.json");
    run(&["-S", "-s", "msop.key", "-m", index.to_str().unwrap()]);
    expect(&add_source(&fx, &repo.url(), "msop.pub"), 0, "");
    expect(&fx.store_install(&["hello"], &[]), 0, "");
}

/// `(inode, bytes)` of `state/sources.json`, `None` when it does not exist.
fn sources_file(fx: &Fixture) -> Option<(u64, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt;
    let p = fx.path("state/sources.json");
    let m = std::fs::metadata(&p).ok()?;
    Some((m.ino(), std::fs::read(&p).unwrap()))
}

/// `source add` verifies the index against the source in memory and saves `sources.json` only
/// after: a refused index leaves it exactly as it was (not even rewritten), and no cached index.
#[test]
fn source_add_writes_nothing_until_the_index_verifies() {
    let (fx, mut repo) = setup();
    ok(fx.dir(), &["keygen", "-o", "mallory"]);
    let pkg = hello(&fx, "0.1.0");
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev");
    repo.write(&fx, "mallory");
    std::fs::create_dir_all(fx.path("state")).unwrap();
    // No sources.json before: none after.
    expect(
        &add_source(&fx, &repo.url(), "op.pub"),
        91,
        "index.operator_key",
    );
    assert_eq!(sources_file(&fx), None);
    assert!(!fx.path("state/indexes/main.index").exists());
    // With another source configured: the file is not touched (same inode, same bytes).
    repo.write(&fx, "op");
    let r = fx.run(&[
        "--json",
        "source",
        "add",
        "first",
        &repo.url(),
        "--operator-key",
        "op.pub",
        "--state-dir",
        "state",
    ]);
    expect(&r, 0, "");
    let before = sources_file(&fx).unwrap();
    repo.write(&fx, "mallory");
    expect(
        &add_source(&fx, &repo.url(), "op.pub"),
        91,
        "index.operator_key",
    );
    assert_eq!(sources_file(&fx).unwrap(), before);
    assert!(!fx.path("state/indexes/main.index").exists());
    // A malformed signature file (refused after the point the old code had saved) likewise.
    std::fs::write(repo.dir.join("index.json.minisig"), "not a signature").unwrap();
    expect(
        &add_source(&fx, &repo.url(), "op.pub"),
        91,
        "index.signature",
    );
    assert_eq!(sources_file(&fx).unwrap(), before);
}

/// A signed index whose `expires` is a well-formed time before 1970 is refused (65,
/// `index.malformed`, nothing added) with a message that says so: it was called "not an RFC
/// 3339 UTC time", sending the operator looking for a syntax error in a valid time.
#[test]
fn an_index_expiring_before_1970_is_refused_as_such() {
    let (fx, mut repo) = setup();
    let pkg = hello(&fx, "0.1.0");
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev");
    repo.expires = "1969-12-31T23:59:59Z".into();
    repo.write(&fx, "op");
    std::fs::create_dir_all(fx.path("state")).unwrap();
    let r = add_source(&fx, &repo.url(), "op.pub");
    expect(&r, 65, "index.malformed");
    let text = format!("{}{}", r.stdout, r.stderr);
    assert!(text.contains("before 1970"), "{text}");
    assert!(!text.contains("not an RFC 3339"), "{text}");
    assert_eq!(sources_file(&fx), None);
    assert!(!fx.path("state/indexes/main.index").exists());
}

/// `source add` killed while it fetches the index (a server that accepts and never answers)
/// leaves no source behind: nothing was saved before the index verified, so a later install by
/// id is not failed closed by a half-added source, and the same `source add` works (not 73).
#[test]
fn source_add_killed_while_fetching_adds_nothing() {
    let (fx, mut repo) = setup();
    let pkg = hello(&fx, "0.1.0");
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev");
    repo.write(&fx, "op");
    std::fs::create_dir_all(fx.path("state")).unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/index.json",
        silent.local_addr().unwrap().port()
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args([
            "source",
            "add",
            "main",
            &url,
            "--operator-key",
            "op.pub",
            "--state-dir",
            "state",
        ])
        .current_dir(fx.dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The connection is accepted once the command is fetching: past the point where the old
    // code had saved the source. It is never answered.
    let (_conn, _) = silent.accept().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(sources_file(&fx), None);
    let r = ok(
        fx.dir(),
        &["--json", "source", "list", "--state-dir", "state"],
    );
    assert_eq!(r.json()["sources"].as_array().unwrap().len(), 0);
    // Installing by id is "not found", not a fail-closed fetch of a half-added source; and the
    // source can be added now.
    expect(&fx.store_install(&["hello"], &[]), 94, "index.not_found");
    expect(&add_source(&fx, &repo.url(), "op.pub"), 0, "");
    expect(&fx.store_install(&["hello"], &[]), 0, "");
}

/// A signed entry of an index served over HTTP may not point its artifact or signature at a
/// `file://` URL: `install ID` refuses it (64, `index.url`) before reading the file, so neither
/// the error nor anything else says the file's size or digest. A `file://` index may name
/// `file://` URLs (local mirrors), and a loopback index loopback ones.
#[test]
fn an_index_may_not_point_at_urls_more_local_than_itself() {
    let (fx, mut repo) = setup();
    let pkg = hello(&fx, "0.1.0");
    // A local file standing for /etc/machine-id: its digest must not come out.
    let secret = fx.path("secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").unwrap();
    let secret_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        std::fs::read(&secret).unwrap(),
    ));
    let secret_url = format!("file://{}", secret.display());
    // Its size given, so that without the rule the download passes the size check and the
    // mismatch error would carry the file's SHA-256.
    let e = &mut repo.publish(&fx, &pkg, "hello", "0.1.0", "dev")["platforms"][PLATFORM];
    e["url"] = json!(secret_url);
    e["size"] = json!(std::fs::metadata(&secret).unwrap().len());
    repo.write(&fx, "op");
    let port = serve(repo.dir.clone());
    let url = format!("http://127.0.0.1:{port}/index.json");
    expect(&add_source(&fx, &url, "op.pub"), 0, "");
    let r = fx.store_install(&["hello"], &[]);
    expect(&r, 64, "index.url");
    assert!(r.stdout.contains("file://"), "{}", r.stdout);
    assert!(!r.stdout.contains(&secret_sha), "{}", r.stdout);
    assert!(!r.stderr.contains(&secret_sha), "{}", r.stderr);
    // The signature URL likewise (the artifact itself being fine).
    repo.entries.clear();
    let sig = format!(
        "file://{}",
        repo.dir.join(format!("{pkg}.minisig")).display()
    );
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev")["platforms"][PLATFORM]["signature_url"] =
        json!(sig);
    repo.version = 2;
    repo.write(&fx, "op");
    expect(&fx.store_install(&["hello"], &[]), 64, "index.url");
    assert!(fx.installed().is_empty());
    // Loopback from a loopback index is fine.
    repo.entries.clear();
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev")["platforms"][PLATFORM]["url"] =
        json!(format!("http://localhost:{port}/{pkg}"));
    repo.version = 3;
    repo.write(&fx, "op");
    expect(&fx.store_install(&["hello"], &[]), 0, "");
    // A file:// index may name absolute file:// URLs.
    let (fx, mut repo) = setup();
    let pkg = hello(&fx, "0.1.0");
    let dir = repo.dir.clone();
    let e = repo.publish(&fx, &pkg, "hello", "0.1.0", "dev");
    e["platforms"][PLATFORM]["url"] = json!(format!("file://{}", dir.join(&pkg).display()));
    e["platforms"][PLATFORM]["signature_url"] = json!(format!(
        "file://{}",
        dir.join(format!("{pkg}.minisig")).display()
    ));
    repo.write(&fx, "op");
    expect(&add_source(&fx, &repo.url(), "op.pub"), 0, "");
    expect(&fx.store_install(&["hello"], &[]), 0, "");
}

/// The index cache is written through its directory, opened without following a symlink: the
/// daemon's user owns the state directory and could make `indexes` point at any directory root
/// writes to (root then wrote `<name>.json` there, handed to the directory's owner). Refused
/// (78 `source.unsafe`), nothing written there, no source added.
#[test]
fn a_symlinked_index_cache_is_refused_and_its_target_untouched() {
    let (fx, mut repo) = setup();
    let pkg = hello(&fx, "0.1.0");
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev");
    repo.write(&fx, "op");
    let victim = fx.path("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::create_dir_all(fx.path("state")).unwrap();
    std::os::unix::fs::symlink(&victim, fx.path("state/indexes")).unwrap();
    let r = add_source(&fx, &repo.url(), "op.pub");
    expect(&r, 78, "source.unsafe");
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
    assert_eq!(sources_file(&fx), None);
    // A real directory works.
    std::fs::remove_file(fx.path("state/indexes")).unwrap();
    expect(&add_source(&fx, &repo.url(), "op.pub"), 0, "");
    assert!(fx.path("state/indexes/main.index").exists());
}

/// The index cache is written through its directory's descriptor, but a write that fails names
/// `<state>/indexes/<name>.json`, not the `/proc/self/fd/N/…` it went through.
#[test]
fn an_index_cache_write_that_fails_names_the_cache_path() {
    let (fx, mut repo) = setup();
    let pkg = hello(&fx, "0.1.0");
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev");
    repo.write(&fx, "op");
    // A directory where the cached index goes: it cannot be replaced by a file.
    std::fs::create_dir_all(fx.path("state/indexes/main.index")).unwrap();
    let r = add_source(&fx, &repo.url(), "op.pub");
    expect(&r, 74, "source.io");
    assert!(
        r.stdout.contains("state/indexes/main.index") && !r.stdout.contains("/proc/self/fd"),
        "{}",
        r.stdout
    );
    assert_eq!(sources_file(&fx), None);
}

/// The service user of the packaged layout (tests use 65534).
const NOBODY: u32 = 65534;

/// The packaged layout: `state` belongs to the daemon's user (0750), and the fixture directory
/// (the repository, the public keys) is readable by that user. Root's configuration is then in
/// the fixture's sources directory ([`SOURCES_DIR`], standing for `/etc/stockade/sources`).
fn packaged_state(fx: &Fixture) -> PathBuf {
    use std::os::unix::fs::{chown, PermissionsExt};
    std::fs::set_permissions(fx.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = fx.path("state");
    std::fs::create_dir(&state).unwrap();
    chown(&state, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o750)).unwrap();
    state
}

/// `source refresh` as the daemon's user, as the shipped timer runs it.
fn timer_refresh(fx: &Fixture) -> Run {
    stockade_as(
        NOBODY,
        fx.dir(),
        &["--json", "source", "refresh", "--state-dir", "state"],
    )
}

/// What the daemon's user can do in the state directory it owns: put a file of its own, with
/// any contents, at any name (a rename over whatever is there).
fn plant(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("planted");
    std::fs::write(&tmp, bytes).unwrap();
    std::os::unix::fs::chown(&tmp, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Run `sh -c SCRIPT` in the fixture as the daemon's user: what that user can really do, not
/// what a test running as root stands in for. Whether it succeeded.
fn as_daemons_user(fx: &Fixture, script: &str) -> bool {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("sh")
        .args(["-c", script])
        .current_dir(fx.dir())
        .uid(NOBODY)
        .gid(NOBODY)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Root's configuration file `name` in the packaged layout.
fn config(fx: &Fixture, name: &str) -> PathBuf {
    fx.path(SOURCES_DIR).join(name)
}

/// `(owner, inode, bytes)` of a file.
fn file_state(path: &Path) -> (u32, u64, Vec<u8>) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.uid(), m.ino(), std::fs::read(path).unwrap())
}

/// The packaged layout: root's `source add` in the state directory of the daemon's user, then
/// `source refresh` as that user (the shipped timer runs it so). The index cache root made must
/// be that user's, or every refresh fails: root made `indexes/` 0700 for itself, and the files
/// in it took that directory's owner. The configuration is root's, in root's sources directory
/// (made 0755 by the first write; never in the state directory, whose owner could rename it):
/// the timer reads it there, changes none of it, and records what it saw in the shared memory,
/// which raises root's rollback floor; a rotation of the operator key it finds it leaves to
/// root.
#[test]
fn the_daemons_user_refreshes_what_root_added() {
    use std::os::unix::fs::MetadataExt;
    if !require_root() {
        return;
    }
    let (fx, mut repo) = setup();
    let pkg = hello(&fx, "0.1.0");
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev");
    repo.write(&fx, "op");
    let state = packaged_state(&fx);
    assert!(!fx.path(SOURCES_DIR).exists());
    expect(&add_source(&fx, &repo.url(), "op.pub"), 0, "");
    let dir = std::fs::metadata(fx.path(SOURCES_DIR)).unwrap();
    assert_eq!((dir.uid(), dir.mode() & 0o7777), (0, 0o755));
    let cfg = std::fs::metadata(config(&fx, "sources.json")).unwrap();
    assert_eq!((cfg.uid(), cfg.mode() & 0o7777), (0, 0o644));
    assert!(!state.join("sources.json").exists());
    for (p, owner) in [
        ("indexes", NOBODY),
        ("indexes/main.index", NOBODY),
        ("sources-seen.json", NOBODY),
    ] {
        assert_eq!(
            std::fs::metadata(state.join(p)).unwrap().uid(),
            owner,
            "{p}"
        );
    }
    let config = file_state(&self::config(&fx, "sources.json"));
    repo.version = 2;
    repo.write(&fx, "op");
    let o = timer_refresh(&fx);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    let cached = cached_index(&state, "main");
    assert_eq!(cached["version"], 2);
    assert_eq!(file_state(&self::config(&fx, "sources.json")), config);
    let seen: Value =
        serde_json::from_slice(&std::fs::read(state.join("sources-seen.json")).unwrap()).unwrap();
    assert_eq!(seen["sources"]["main"]["version"], 2, "{seen}");
    let l = ok(
        fx.dir(),
        &["--json", "source", "list", "--state-dir", "state"],
    );
    assert_eq!(l.json()["sources"][0]["seen_version"], 2);
    // What the timer saw raises root's floor: version 1 again (the very bytes root accepted
    // before) is a rollback now.
    repo.version = 1;
    repo.write(&fx, "op");
    expect(&fx.store_install(&["hello"], &[]), 92, "index.rollback");
    // A rotation proof the timer finds: it cannot pin the new key in root's configuration, so
    // the refresh fails for that source and keeps the last verified index; root's refresh
    // takes it.
    ok(fx.dir(), &["keygen", "-o", "op2"]);
    let op = fx.secret("op.key").public_key();
    repo.extra = json!({"previous_operator_pubkeys": [op.to_base64()]});
    repo.version = 3;
    let bytes = repo.write(&fx, "op2");
    std::fs::write(
        repo.dir.join("index.json.minisig.prev"),
        sign(&fx, "op.key", &bytes),
    )
    .unwrap();
    let o = timer_refresh(&fx);
    assert_eq!(o.code, 91, "{}{}", o.stdout, o.stderr);
    let item = &o.json()["refreshed"][0];
    assert_eq!(
        item["error"]["kind"], "index.rotation_needs_owner",
        "{item}"
    );
    assert_eq!(file_state(&self::config(&fx, "sources.json")), config);
    let cached = cached_index(&state, "main");
    assert_eq!(cached["version"], 2);
    let r = fx.run(&["--json", "source", "refresh", "--state-dir", "state"]);
    expect(&r, 0, "");
    assert_eq!(r.json()["refreshed"][0]["rotated_operator_key"], true);
    let op2 = fx.secret("op2.key").public_key();
    let l = ok(
        fx.dir(),
        &["--json", "source", "list", "--state-dir", "state"],
    );
    assert_eq!(
        l.json()["sources"][0]["operator_key_id"],
        op2.key_id.to_string()
    );
    assert_eq!(
        std::fs::metadata(self::config(&fx, "sources.json"))
            .unwrap()
            .uid(),
        0
    );
    assert!(!state.join("sources.json").exists());
    // And the timer goes on with the key root pinned.
    repo.version = 4;
    repo.write(&fx, "op2");
    let o = timer_refresh(&fx);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
}

/// Root's command refused configuration file `name` in the state directory, owned by `owner`,
/// as a stray copy (78 `source.stray_copy`): the sources directory holds the current one, so
/// the hint says to remove it and not to move it (moving it would put an older copy of root's
/// file back over the current one), and names no `mv`.
fn stray_copy_refused(r: &Run, name: &str, owner: u32) {
    expect(r, 78, "source.stray_copy");
    let v = r.json();
    let (message, hint) = (
        v["error"]["message"].as_str().unwrap_or(""),
        v["error"]["hint"].as_str().unwrap_or(""),
    );
    assert!(
        message.contains(&format!("state/{name} (uid {owner})"))
            && message.contains(&format!("{SOURCES_DIR}/{name}")),
        "{}",
        r.stdout
    );
    assert!(
        hint.contains("remove it, do not move it") && !hint.contains("mv "),
        "{}",
        r.stdout
    );
}

/// `hello` 0.2.0 by another developer (dev2), listed in index version 2: an update that only a
/// changed author pin lets in. Returns the package file.
fn publish_by_dev2(fx: &Fixture, repo: &mut Repo) -> String {
    fx.add_developer("dev2");
    let v2 = fx.pack_custom(
        "hello",
        "0.2.0",
        &[],
        json!({}),
        "dev2",
        "hello-0.2.0-dev2.stockade",
    );
    repo.publish(fx, &v2, "hello", "0.2.0", "dev2");
    repo.version = 2;
    repo.write(fx, "op");
    v2
}

/// Root's configuration in the packaged layout, as the daemon's user finds it: a source added
/// and `hello` 0.1.0 (by dev) installed from it by root, so `sources.json` and `pins.json` hold
/// an operator key, a URL, a floor and an author pin of root's.
struct Planted {
    fx: Fixture,
    repo: Repo,
    state: PathBuf,
    registry: Vec<u8>,
}

impl Planted {
    fn new() -> Self {
        let (fx, repo) = setup();
        let state = packaged_state(&fx);
        let (fx, repo) = hello_installed_in(fx, repo);
        let registry = std::fs::read(state.join("store/registry.json")).unwrap();
        Self {
            fx,
            repo,
            state,
            registry,
        }
    }

    /// Where `NAME` is: root's sources directory for the configuration, the state directory for
    /// the shared memory.
    fn at(&self, name: &str) -> PathBuf {
        match name {
            "sources-seen.json" => self.state.join(name),
            _ => config(&self.fx, name),
        }
    }

    /// `NAME` as JSON.
    fn read(&self, name: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.at(name)).unwrap()).unwrap()
    }

    /// The daemon's user puts its own `NAME` (root's, changed by `edit`) where it can: in root's
    /// sources directory it cannot (tried as that user: refused by the kernel, root's file as it
    /// was), so in the state directory, where earlier builds kept the configuration and where
    /// it may put anything (the shared memory there is its to write). Returns root's bytes.
    fn plant(&self, name: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        let good = std::fs::read(self.at(name)).unwrap();
        let mut v = self.read(name);
        edit(&mut v);
        let mine = format!(".{name}.mine");
        plant(&self.state.join(&mine), v.to_string().as_bytes());
        if name != "sources-seen.json" {
            for attempt in [
                format!("mv -f state/{mine} {SOURCES_DIR}/{name}"),
                format!("cat state/{mine} > {SOURCES_DIR}/{name}"),
                format!("rm -f {SOURCES_DIR}/{name}"),
                format!("mv {SOURCES_DIR} {SOURCES_DIR}.away"),
            ] {
                assert!(!as_daemons_user(&self.fx, &attempt), "{attempt}");
            }
            assert_eq!(std::fs::read(self.at(name)).unwrap(), good);
        }
        assert!(as_daemons_user(
            &self.fx,
            &format!("mv -f state/{mine} state/{name}")
        ));
        good
    }

    /// Root's command refused the `NAME` the daemon's user put in the state directory (78
    /// `source.stray_copy`, naming it, its owner and root's current file, the hint saying to
    /// remove it and never to move it: root's sources directory has its own) and changed
    /// nothing: the planted file is still there, the store as it was.
    fn refused(&self, r: &Run, name: &str) {
        stray_copy_refused(r, name, NOBODY);
        assert_eq!(file_state(&self.state.join(name)).0, NOBODY);
        assert_eq!(
            std::fs::read(self.state.join("store/registry.json")).unwrap(),
            self.registry
        );
    }

    /// The operator, having looked at the planted `NAME`, removes it; root's configuration was
    /// never touched (`good`, its bytes).
    fn restore(&self, name: &str, good: &[u8]) {
        std::fs::remove_file(self.state.join(name)).unwrap();
        assert_eq!(std::fs::read(self.at(name)).unwrap(), good);
    }

    fn refresh(&self) -> Run {
        self.fx
            .run(&["--json", "source", "refresh", "--state-dir", "state"])
    }

    /// [`publish_by_dev2`] in this layout.
    fn publish_by_dev2(&mut self) -> String {
        publish_by_dev2(&self.fx, &mut self.repo)
    }
}

/// The daemon's user swaps the pinned operator key for its own: root's refresh and install by id
/// refuse the file (before: they trusted an index that user signed).
#[test]
fn the_daemons_user_cannot_change_the_pinned_operator_key() {
    if !require_root() {
        return;
    }
    let mut p = Planted::new();
    ok(p.fx.dir(), &["keygen", "-o", "mallory"]);
    let mallory = p.fx.secret("mallory.key").public_key();
    let good = p.plant("sources.json", |v| {
        v["sources"]["main"]["operator_pubkey"] = json!(mallory.to_base64())
    });
    p.repo.version = 2;
    p.repo.write(&p.fx, "mallory");
    p.refused(&p.refresh(), "sources.json");
    p.refused(&p.fx.store_install(&["hello"], &[]), "sources.json");
    // Root's own file refuses that index.
    p.restore("sources.json", &good);
    let r = p.refresh();
    expect(&r, 91, "");
    assert_eq!(
        r.json()["refreshed"][0]["error"]["kind"],
        "index.operator_key"
    );
}

/// The daemon's user points the source elsewhere (a copy of the index it signed itself, its key
/// pinned with it): refused (before: root fetched and installed from there).
#[test]
fn the_daemons_user_cannot_change_a_sources_url() {
    if !require_root() {
        return;
    }
    let p = Planted::new();
    ok(p.fx.dir(), &["keygen", "-o", "mallory"]);
    let mallory = p.fx.secret("mallory.key").public_key();
    let elsewhere = p.fx.path("elsewhere");
    let mut copy = Repo::new(&p.fx);
    copy.dir = elsewhere.clone();
    std::fs::create_dir(&elsewhere).unwrap();
    let v2 = hello(&p.fx, "0.2.0");
    copy.publish(&p.fx, &v2, "hello", "0.2.0", "dev");
    copy.version = 2;
    copy.write(&p.fx, "mallory");
    let good = p.plant("sources.json", |v| {
        v["sources"]["main"]["url"] = json!(copy.url());
        v["sources"]["main"]["operator_pubkey"] = json!(mallory.to_base64());
    });
    p.refused(&update(&p.fx), "sources.json");
    assert_eq!(p.fx.installed()["hello"]["version"], "0.1.0");
    p.restore("sources.json", &good);
    let r = update(&p.fx);
    expect(&r, 0, "");
    assert_eq!(p.fx.installed()["hello"]["version"], "0.1.0");
}

/// The daemon's user re-pins `hello` to another author key: root's update and file install
/// refuse the file (before: dev2's 0.2.0 replaced the plugin pinned to dev).
#[test]
fn the_daemons_user_cannot_change_an_author_pin() {
    if !require_root() {
        return;
    }
    let mut p = Planted::new();
    let v2 = p.publish_by_dev2();
    let dev2 = p.fx.secret("dev2.key").public_key();
    let good = p.plant("pins.json", |v| {
        let pin = &mut v["plugins"]["hello"];
        pin["pubkey"] = json!(dev2.to_base64());
        pin["key_id"] = json!(dev2.key_id.to_string());
        pin["fingerprint"] = json!(fingerprint(&dev2));
        pin["how"] = json!("manual");
    });
    p.refused(&update(&p.fx), "pins.json");
    p.refused(&p.fx.store_install(&[&v2], &[]), "pins.json");
    assert_eq!(p.fx.installed()["hello"]["version"], "0.1.0");
    p.restore("pins.json", &good);
    expect(&update(&p.fx), 98, "index.author_pin");
}

/// Nothing removes a pin, but `pins.json` can still be lost (removed by mistake, a backup
/// restored without it; with earlier builds, removed by the state directory's owner): the next
/// install would then pin whatever key comes on first use. An installed plugin always has its
/// pin, so a first use for one is refused (98 `index.author_pin_lost`), from a source and from
/// a file (before: dev2's 0.2.0 replaced the plugin pinned to dev).
#[test]
fn removing_pins_json_does_not_reset_an_installed_plugins_pin() {
    if !require_root() {
        return;
    }
    let mut p = Planted::new();
    let v2 = p.publish_by_dev2();
    let pins = config(&p.fx, "pins.json");
    std::fs::rename(&pins, p.fx.path("pins.json.away")).unwrap();
    for r in [update(&p.fx), p.fx.store_install(&[&v2], &[])] {
        expect(&r, 98, "index.author_pin_lost");
        assert!(r.stdout.contains("repin-author"), "{}", r.stdout);
    }
    assert_eq!(p.fx.installed()["hello"]["version"], "0.1.0");
    assert!(!pins.exists());
    // A plugin not installed yet is pinned on first use, as always.
    let other =
        p.fx.pack_custom("other", "1.0.0", &[], json!({}), "dev2", "other.stockade");
    expect(&p.fx.store_install(&[&other], &[]), 0, "");
}

/// The daemon's user lowers the remembered index version, in root's file (refused) or in the
/// shared memory it may write (lowers nothing): an older, validly signed index stays a rollback.
#[test]
fn the_daemons_user_cannot_lower_roots_rollback_floor() {
    if !require_root() {
        return;
    }
    let mut p = Planted::new();
    let v1 = std::fs::read(p.repo.dir.join("index.json")).unwrap();
    let v1_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&v1));
    p.repo.version = 3;
    p.repo.write(&p.fx, "op");
    expect(&p.refresh(), 0, "");
    // Version 1 served again, byte for byte.
    std::fs::write(p.repo.dir.join("index.json"), &v1).unwrap();
    let minisig = sign(&p.fx, "op.key", &v1);
    std::fs::write(p.repo.dir.join("index.json.minisig"), minisig).unwrap();
    let good = p.plant("sources.json", |v| {
        v["sources"]["main"]["seen_version"] = json!(1);
        v["sources"]["main"]["seen_sha256"] = json!(v1_sha);
    });
    p.refused(&p.refresh(), "sources.json");
    p.refused(&p.fx.store_install(&["hello"], &[]), "sources.json");
    p.restore("sources.json", &good);
    // The same in the shared memory, which that user may write: root's own floor stands.
    p.plant("sources-seen.json", |v| {
        v["sources"]["main"]["version"] = json!(1);
        v["sources"]["main"]["sha256"] = json!(v1_sha);
    });
    let r = p.refresh();
    expect(&r, 92, "");
    assert_eq!(r.json()["refreshed"][0]["error"]["kind"], "index.rollback");
    expect(&p.fx.store_install(&["hello"], &[]), 92, "index.rollback");
}

/// A state directory an earlier build used: `sources.json` and `pins.json` in it — the daemon's
/// user's (the oldest builds handed root's writes to it) or root's (the builds before the
/// sources directory). Root's commands and the timer refuse to work while they are there (78
/// `source.left_behind`, the hint saying how to move them after checking them) rather than read
/// them (that user could have changed or replaced them) or ignore them (root's sources and pins
/// would be dropped without a word), and change nothing; moved into the sources directory as
/// the hint says, and made root's where they were that user's, they are root's configuration
/// again (before: root read them where that user could replace them).
#[test]
fn an_earlier_builds_configuration_is_refused_until_moved() {
    use std::os::unix::fs::{chown, PermissionsExt};
    if !require_root() {
        return;
    }
    for owner in [NOBODY, 0] {
        // An earlier build's layout: the configuration in `state`, which is the daemon's user's.
        let (fx, mut repo) = hello_installed();
        let state = fx.path("state");
        for f in ["sources.json", "pins.json"] {
            chown(state.join(f), Some(owner), Some(owner)).unwrap();
        }
        chown(&state, Some(NOBODY), Some(NOBODY)).unwrap();
        chown(state.join("indexes"), Some(NOBODY), Some(NOBODY)).unwrap();
        std::fs::set_permissions(fx.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let files = || -> Vec<_> {
            ["sources.json", "pins.json"]
                .iter()
                .map(|f| file_state(&state.join(f)))
                .collect()
        };
        let before = files();
        let v2 = hello(&fx, "0.2.0");
        repo.publish(&fx, &v2, "hello", "0.2.0", "dev");
        repo.version = 2;
        repo.write(&fx, "op");
        for r in [
            update(&fx),
            fx.store_install(&["hello"], &[]),
            fx.run(&["--json", "source", "refresh", "--state-dir", "state"]),
            fx.run(&["--json", "source", "list", "--state-dir", "state"]),
            repin_author(&fx, &["--json"], "hello", "dev.pub", &["--yes"]),
            timer_refresh(&fx),
        ] {
            expect(&r, 78, "source.left_behind");
            assert!(
                r.stdout.contains("state/sources.json")
                    && r.stdout.contains(SOURCES_DIR)
                    && r.stdout.contains("mv -n /var/lib/stockade/"),
                "{}",
                r.stdout
            );
        }
        assert_eq!(files(), before);
        assert!(!fx.path(SOURCES_DIR).exists());
        assert_eq!(fx.installed()["hello"]["version"], "0.1.0");
        // The operator checks them and moves them into the sources directory (which the
        // packages make: tmpfiles.d), as the hint says.
        std::fs::create_dir(fx.path(SOURCES_DIR)).unwrap();
        std::fs::set_permissions(fx.path(SOURCES_DIR), PermissionsExt::from_mode(0o755)).unwrap();
        for f in ["sources.json", "pins.json"] {
            std::fs::rename(state.join(f), config(&fx, f)).unwrap();
        }
        if owner == NOBODY {
            let r = update(&fx);
            expect(&r, 78, "source.unsafe");
            assert!(
                r.stdout.contains("uid 65534") && r.stdout.contains("chown root:root"),
                "{}",
                r.stdout
            );
            for f in ["sources.json", "pins.json"] {
                chown(config(&fx, f), Some(0), Some(0)).unwrap();
            }
        }
        let r = update(&fx);
        expect(&r, 0, "");
        assert_eq!(r.json()["updated"][0]["version"], "0.2.0");
        // Root's floor is kept there now: version 1 again is a rollback.
        repo.version = 1;
        repo.write(&fx, "op");
        expect(&update(&fx), 92, "index.rollback");
        assert!(!state.join("sources.json").exists() && !state.join("pins.json").exists());
    }
}

/// Files that are not plain files of this user (or root) that no one else may write are not
/// configuration: a symlink (even to a good copy), a FIFO, a second hard link, a file others
/// may write, another user's. Each is refused (78 `source.unsafe`) without waiting or
/// following, and left as it is; a malformed shared memory is `source.corrupt`.
#[test]
fn planted_source_files_are_refused_and_left_as_they_are() {
    use std::os::unix::fs::{chown, symlink, PermissionsExt};
    if !require_root() {
        return;
    }
    let (fx, _repo) = hello_installed();
    let state = fx.path("state");
    let copies = fx.path("copies");
    std::fs::create_dir(&copies).unwrap();
    for f in ["sources.json", "pins.json", "sources-seen.json"] {
        let (path, copy) = (state.join(f), copies.join(f));
        std::fs::copy(&path, &copy).unwrap();
        let good = std::fs::read(&path).unwrap();
        let put_back = || {
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, &good).unwrap();
        };
        #[allow(clippy::type_complexity)]
        let mut cases: Vec<(&str, Box<dyn Fn()>)> = vec![
            (
                "symlink",
                Box::new(|| {
                    std::fs::remove_file(&path).unwrap();
                    symlink(&copy, &path).unwrap();
                }),
            ),
            (
                "fifo",
                Box::new(|| {
                    std::fs::remove_file(&path).unwrap();
                    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644))
                        .unwrap();
                }),
            ),
            (
                "hard link",
                Box::new(|| {
                    std::fs::remove_file(&path).unwrap();
                    std::fs::hard_link(&copy, &path).unwrap();
                }),
            ),
            (
                "writable by others",
                Box::new(|| {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
                        .unwrap();
                }),
            ),
        ];
        // (The shared memory may be the state directory's owner's too: here root's own.)
        cases.push((
            "another user's",
            Box::new(|| chown(&path, Some(NOBODY), Some(NOBODY)).unwrap()),
        ));
        for (what, make) in cases {
            make();
            let snapshot = std::fs::symlink_metadata(&path).unwrap();
            // Install by id reads all three: the sources and their floors, then the pins.
            let r = fx.store_install(&["hello"], &[]);
            assert_eq!(r.code, 78, "{f} {what}: {}{}", r.stdout, r.stderr);
            assert_eq!(r.kind(), "source.unsafe", "{f} {what}: {}", r.stdout);
            let now = std::fs::symlink_metadata(&path).unwrap();
            use std::os::unix::fs::MetadataExt;
            assert_eq!(
                (now.ino(), now.mode(), now.uid(), now.nlink()),
                (
                    snapshot.ino(),
                    snapshot.mode(),
                    snapshot.uid(),
                    snapshot.nlink()
                ),
                "{f} {what}"
            );
            assert_eq!(std::fs::read(&copy).unwrap(), good, "{f} {what}");
            put_back();
        }
        expect(&update(&fx), 0, "");
    }
    // A shared memory that does not parse: corrupt (78), not rewritten.
    let seen = state.join("sources-seen.json");
    std::fs::write(&seen, b"{ not json").unwrap();
    expect(&update(&fx), 78, "source.corrupt");
    assert_eq!(std::fs::read(&seen).unwrap(), b"{ not json");
}

/// The same layout: the daemon's user replaces `indexes` with a symlink to a directory of root's
/// holding `<source>.index` (or an earlier build's `<source>.json`); root's `source remove`
/// deleted those files through it. Now it is
/// refused (78 `source.unsafe`) before anything changes: the source stays, the files too.
#[test]
fn source_remove_deletes_nothing_through_an_indexes_symlink() {
    use std::os::unix::fs::symlink;
    if !require_root() {
        return;
    }
    let (fx, repo) = setup();
    repo.write(&fx, "op");
    let state = packaged_state(&fx);
    expect(&add_source(&fx, &repo.url(), "op.pub"), 0, "");
    let victim = fx.path("victim");
    std::fs::create_dir(&victim).unwrap();
    for f in ["main.index", "main.json", "main.json.minisig"] {
        std::fs::write(victim.join(f), "root's").unwrap();
    }
    std::fs::rename(state.join("indexes"), state.join("indexes.real")).unwrap();
    symlink(&victim, state.join("indexes")).unwrap();
    let r = fx.run(&["--json", "source", "remove", "main", "--state-dir", "state"]);
    expect(&r, 78, "source.unsafe");
    for f in ["main.index", "main.json", "main.json.minisig"] {
        assert!(victim.join(f).exists(), "{f} removed through the symlink");
    }
    let listed = ok(
        fx.dir(),
        &["--json", "source", "list", "--state-dir", "state"],
    );
    assert!(listed.stdout.contains("\"main\""), "{}", listed.stdout);
    // With the cache back in place, the source goes, and its cached index with it.
    std::fs::remove_file(state.join("indexes")).unwrap();
    std::fs::rename(state.join("indexes.real"), state.join("indexes")).unwrap();
    expect(
        &fx.run(&["--json", "source", "remove", "main", "--state-dir", "state"]),
        0,
        "",
    );
    assert!(!state.join("indexes/main.index").exists());
}

/// The daemon's user may rename any entry of its state directory. When root's configuration was
/// kept there, that user could keep root's `sources.json` and `pins.json` under other names,
/// let root write newer ones (a raised floor, a re-pinned author key), and put the old ones back
/// — still root's, one link, 0644 — or remove them. Now they are in root's sources directory:
/// that user, trying all of it for real (as its uid), can neither move, replace nor remove them
/// there, and what it can put in the state directory is refused, not read (78
/// `source.left_behind`); root's commands read the current pins and floor all along (before:
/// the replayed or missing file was refused only where root could record digests in a
/// `trusted.*` attribute, and read everywhere else).
#[test]
fn the_daemons_user_cannot_put_back_an_older_copy_of_roots_configuration() {
    if !require_root() {
        return;
    }
    let mut p = Planted::new();
    // That user keeps copies of root's files (it may read them: 0644) and tries to move the
    // originals aside wherever they are.
    let keep = |f: &str| {
        format!(
            "for d in state {SOURCES_DIR}; do [ -e $d/{f} ] && cp $d/{f} state/.old-{f}; done; \
             [ -e state/.old-{f} ]"
        )
    };
    for f in ["sources.json", "pins.json"] {
        assert!(as_daemons_user(&p.fx, &keep(f)), "{f}");
        let aside = format!("mv {SOURCES_DIR}/{f} {SOURCES_DIR}/.{f}.aside");
        assert!(!as_daemons_user(&p.fx, &aside), "{f}");
    }
    // Root writes newer ones: a raised floor (index version 2) and dev2's pin.
    let v2 = p.publish_by_dev2();
    let r = repin_author(&p.fx, &["--json"], "hello", "dev2.pub", &["--yes"]);
    expect(&r, 0, "");
    let r = update(&p.fx);
    expect(&r, 0, "");
    assert_eq!(r.json()["updated"][0]["version"], "0.2.0");
    let current: Vec<_> = ["sources.json", "pins.json"]
        .iter()
        .map(|f| file_state(&config(&p.fx, f)))
        .collect();
    // The old copies put back, or the current files removed: not in root's sources directory.
    for f in ["sources.json", "pins.json"] {
        for attempt in [
            format!("mv -f state/.old-{f} {SOURCES_DIR}/{f}"),
            format!("cp state/.old-{f} {SOURCES_DIR}/{f}"),
            format!("rm -f {SOURCES_DIR}/{f}"),
            format!("mv {SOURCES_DIR} state/.sources && mkdir {SOURCES_DIR}"),
        ] {
            assert!(!as_daemons_user(&p.fx, &attempt), "{attempt}");
        }
    }
    let now: Vec<_> = ["sources.json", "pins.json"]
        .iter()
        .map(|f| file_state(&config(&p.fx, f)))
        .collect();
    assert_eq!(now, current);
    // Root reads the current pins: dev's 0.1.0 (the package Planted installed, signed by the key
    // the old pin names) is refused, dev2's pin stands.
    expect(
        &p.fx.store_install(&["hello-0.1.0.stockade"], &[]),
        98,
        "index.author_pin",
    );
    expect(&update(&p.fx), 0, "");
    // In the state directory, where earlier builds kept them, that user may put them back
    // (root's own older files, still root's after the rename): refused, not read, and nothing
    // changed — and refused as stray copies, to be removed: the sources directory has the
    // current ones, so these are no leftovers of an upgrade, and moving them there as a
    // leftover's hint says (before: `mv` them in) would have put the old pin back.
    let registry = std::fs::read(p.state.join("store/registry.json")).unwrap();
    for f in ["sources.json", "pins.json"] {
        let back = format!("mv -f state/.old-{f} state/{f}");
        assert!(as_daemons_user(&p.fx, &back), "{f}");
        for r in [p.refresh(), p.fx.store_install(&[&v2], &[])] {
            stray_copy_refused(&r, f, NOBODY);
        }
        assert_eq!(
            std::fs::read(p.state.join("store/registry.json")).unwrap(),
            registry
        );
        std::fs::remove_file(p.state.join(f)).unwrap();
    }
    expect(&p.refresh(), 0, "");
}

/// The daemon's user (the refresh timer's, told where root's configuration is) running a
/// command that would change it — `source add`, `remove`, `repin`, `repin-author` — is refused
/// as not its owner (78 `source.not_owner`, naming root's file), before it fetches or locks
/// anything, and nothing changes. Before, it failed first with 74 in opening root's store for
/// writing, which said nothing of why.
#[test]
fn the_daemons_user_changing_roots_configuration_is_told_it_is_not_the_owner() {
    if !require_root() {
        return;
    }
    let p = Planted::new();
    let files = || -> Vec<_> {
        ["sources.json", "pins.json"]
            .iter()
            .map(|f| file_state(&config(&p.fx, f)))
            .collect()
    };
    let before = files();
    let url = p.repo.url();
    for (args, file) in [
        (
            vec!["source", "add", "other", &url, "--operator-key", "op.pub"],
            "sources.json",
        ),
        (vec!["source", "remove", "main"], "sources.json"),
        (
            vec![
                "source",
                "repin",
                "main",
                "--operator-key",
                "op.pub",
                "--yes",
            ],
            "sources.json",
        ),
        (
            vec![
                "source",
                "repin-author",
                "hello",
                "--author-key",
                "dev.pub",
                "--yes",
            ],
            "pins.json",
        ),
    ] {
        let mut all = vec!["--json"];
        all.extend(args);
        all.extend(["--state-dir", "state"]);
        let r = stockade_as(NOBODY, p.fx.dir(), &all);
        expect(&r, 78, "source.not_owner");
        assert!(
            r.stdout.contains(&format!("{SOURCES_DIR}/{file}")) && r.stdout.contains("uid 0"),
            "{all:?}: {}",
            r.stdout
        );
    }
    assert_eq!(files(), before);
    assert!(!p.state.join("indexes/other.index").exists());
}

/// `list` flags delisted plugins from the cached indexes, verified against the keys the
/// sources' configuration pins. A configuration that cannot be read (here root's
/// `sources.json` made writable by others) leaves it no flags to show: it says so — a warning
/// on stderr, `sources_error` with the refusal's kind and exit in JSON — and lists the plugins
/// all the same (before: silently no flags, as if nothing were delisted).
#[test]
fn list_says_when_the_sources_cannot_be_read() {
    use std::os::unix::fs::PermissionsExt;
    let (fx, mut repo) = hello_installed();
    // Delisted by the next index, which a refresh caches.
    repo.entries.last_mut().unwrap()["delisted"] = json!({"reason": "gone bad"});
    repo.version = 2;
    repo.write(&fx, "op");
    let r = fx.run(&["--json", "source", "refresh", "--state-dir", "state"]);
    expect(&r, 0, "");
    let list = |json: bool| {
        let args = ["--json", "list", "--state-dir", "state"];
        fx.run(if json { &args } else { &args[1..] })
    };
    let v = list(true).json();
    assert_eq!(v["plugins"][0]["delisted"], "gone bad", "{v}");
    assert_eq!(v["sources_error"], Value::Null, "{v}");
    let sources = fx.path("state/sources.json");
    std::fs::set_permissions(&sources, std::fs::Permissions::from_mode(0o666)).unwrap();
    let r = list(true);
    expect(&r, 0, "");
    let v = r.json();
    assert_eq!(v["plugins"][0]["name"], "hello", "{v}");
    assert_eq!(v["plugins"][0]["delisted"], Value::Null, "{v}");
    assert_eq!(v["sources_error"]["kind"], "source.unsafe", "{v}");
    assert_eq!(v["sources_error"]["exit"], 78, "{v}");
    let r = list(false);
    expect(&r, 0, "");
    assert!(
        r.stderr
            .contains("warning: delisted plugins cannot be flagged")
            && r.stderr.contains("state/sources.json"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("hello"), "{}", r.stdout);
}

/// A source's cached index that is there but cannot be used — not JSON, cut short, its index
/// changed so that it no longer verifies, a directory at its name — is said by `list`: a
/// warning on stderr naming the source and the file, `index_errors` in JSON (source, message,
/// hint), the plugins listed all the same, exit 0. It used to show the delisted plugin as
/// listed, saying nothing. A source never refreshed (no cache) is no error.
#[test]
fn list_says_when_a_sources_index_cache_is_damaged() {
    let (fx, mut repo) = hello_installed();
    repo.entries.last_mut().unwrap()["delisted"] = json!({"reason": "gone bad"});
    repo.version = 2;
    repo.write(&fx, "op");
    expect(
        &fx.run(&["--json", "source", "refresh", "--state-dir", "state"]),
        0,
        "",
    );
    let list = |json: bool| {
        let args = ["--json", "list", "--state-dir", "state"];
        fx.run(if json { &args } else { &args[1..] })
    };
    let v = list(true).json();
    assert_eq!(v["plugins"][0]["delisted"], "gone bad", "{v}");
    assert_eq!(v["index_errors"], json!([]), "{v}");
    let cache = fx.path("state/indexes/main.index");
    let good = std::fs::read(&cache).unwrap();
    let mut unverified: Value = serde_json::from_slice(&good).unwrap();
    let index = unverified["index"]
        .as_str()
        .unwrap()
        .replace("gone bad", "gone BAD");
    unverified["index"] = index.into();
    let damaged: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not JSON", b"{x".to_vec(), "is not an index cache"),
        (
            "cut short",
            good[..good.len() / 2].to_vec(),
            "is not an index cache",
        ),
        (
            "changed",
            serde_json::to_vec(&unverified).unwrap(),
            "does not verify against the source's pinned key",
        ),
    ];
    for (what, bytes, why) in damaged {
        std::fs::write(&cache, &bytes).unwrap();
        let r = list(true);
        expect(&r, 0, "");
        let v = r.json();
        assert_eq!(v["plugins"][0]["name"], "hello", "{what}: {v}");
        assert_eq!(v["plugins"][0]["delisted"], Value::Null, "{what}: {v}");
        let errors = v["index_errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{what}: {v}");
        assert_eq!(errors[0]["source"], "main", "{what}: {v}");
        let message = errors[0]["message"].as_str().unwrap();
        assert!(
            message.contains("state/indexes/main.index") && message.contains(why),
            "{what}: {message}"
        );
        assert!(errors[0]["hint"]
            .as_str()
            .unwrap()
            .contains("source refresh"));
        let r = list(false);
        expect(&r, 0, "");
        assert!(
            r.stderr
                .contains("warning: plugins from source `main` cannot be checked")
                && r.stderr.contains(why),
            "{what}: {}",
            r.stderr
        );
        assert!(r.stdout.contains("hello"), "{what}: {}", r.stdout);
        assert_eq!(std::fs::read(&cache).unwrap(), bytes, "{what}: changed");
    }
    // A cache someone else could have put there — a symlink at its name (to a good copy), or
    // one others may write — is not read: its content would be whoever's (the version floor
    // judges what it says; this, who could have written it).
    let elsewhere = fx.path("good-cache.index");
    std::fs::write(&elsewhere, &good).unwrap();
    std::fs::remove_file(&cache).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &cache).unwrap();
    let unsafe_cache = |what: &str| {
        let v = list(true).json();
        assert_eq!(v["plugins"][0]["delisted"], Value::Null, "{what}: {v}");
        let message = v["index_errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("state/indexes/main.index") && message.contains("cannot be read"),
            "{what}: {v}"
        );
    };
    unsafe_cache("a symlink");
    std::fs::remove_file(&cache).unwrap();
    std::fs::write(&cache, &good).unwrap();
    std::fs::set_permissions(&cache, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    unsafe_cache("writable by others");
    std::fs::remove_file(&cache).unwrap();
    std::fs::create_dir(&cache).unwrap();
    let v = list(true).json();
    assert!(
        v["index_errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot be read")),
        "{v}"
    );
    // Never refreshed (no cache at all): nothing to say.
    std::fs::remove_dir(&cache).unwrap();
    let v = list(true).json();
    assert_eq!(v["index_errors"], json!([]), "{v}");
    assert_eq!(v["plugins"][0]["delisted"], Value::Null, "{v}");
}

/// Root's sources directory is held like the files in it: a directory others may write, one of
/// another user's, a symlink in its place, or a parent others may write (and so rename it in)
/// is refused (78 `source.unsafe`, naming what is wrong and where) by every command that reads
/// the configuration, and nothing changes; a sticky parent (`/tmp`) is fine.
#[test]
fn a_sources_directory_others_could_change_is_refused() {
    use std::os::unix::fs::{chown, symlink, PermissionsExt};
    if !require_root() {
        return;
    }
    let p = Planted::new();
    let dir = p.fx.path(SOURCES_DIR);
    let mode = |path: &Path, m: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).unwrap()
    };
    let files = || -> Vec<_> {
        ["sources.json", "pins.json"]
            .iter()
            .map(|f| file_state(&config(&p.fx, f)))
            .collect()
    };
    let before = files();
    let refused = |shown: &Path, why: &str| {
        for r in [
            update(&p.fx),
            p.refresh(),
            p.fx.run(&["--json", "source", "list", "--state-dir", "state"]),
        ] {
            expect(&r, 78, "source.unsafe");
            assert!(
                r.stdout.contains(&shown.display().to_string()) && r.stdout.contains(why),
                "{}",
                r.stdout
            );
        }
    };
    let real = std::fs::canonicalize(&dir).unwrap();
    mode(&dir, 0o777);
    refused(&real, "writable by group or others");
    mode(&dir, 0o755);
    chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
    refused(&real, "belongs to uid 65534");
    chown(&dir, Some(0), Some(0)).unwrap();
    let parent = std::fs::canonicalize(p.fx.dir()).unwrap();
    mode(p.fx.dir(), 0o777);
    refused(&parent, "writable by group or others");
    std::fs::rename(&dir, p.fx.path("elsewhere")).unwrap();
    mode(p.fx.dir(), 0o755);
    symlink(p.fx.path("elsewhere"), &dir).unwrap();
    refused(&real, "is a symlink");
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(p.fx.path("elsewhere"), &dir).unwrap();
    assert_eq!(files(), before);
    // Sticky, as /tmp: others may add entries but not rename root's.
    mode(p.fx.dir(), 0o1777);
    expect(&update(&p.fx), 0, "");
    mode(p.fx.dir(), 0o755);
}

/// Run `ARGS` (a program and its arguments) in the fixture with a private `/etc`: an overlay,
/// in a private mount namespace, whose changes land in the fixture's `etc-upper`, so the
/// default sources directory `/etc/stockade/sources` (made first, as the packages' tmpfiles.d
/// does) is the fixture's and the host's `/etc` is never touched. `before`: shell commands run
/// as root in there first. No sources directory is given.
fn with_private_etc(fx: &Fixture, before: &str, args: &[&str]) -> Run {
    for d in ["etc-upper", "etc-work"] {
        let _ = std::fs::create_dir(fx.path(d));
    }
    let script = format!(
        "set -e; mount -t overlay overlay -o lowerdir=/etc,upperdir='{u}',workdir='{w}' /etc; \
         mkdir -p /etc/stockade/sources; {before} exec \"$@\"",
        u = fx.path("etc-upper").display(),
        w = fx.path("etc-work").display(),
    );
    let o = std::process::Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .args(args)
        .current_dir(fx.dir())
        .env_remove("STOCKADE_SOURCES_DIR")
        .env_remove("STOCKADE_STATE_DIR")
        .env_remove("STOCKADE_TRUST_DIR")
        .output()
        .unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A state directory of root's that a group may write (root:65534 2770): a member of the group
/// may rename root's files in it, as the owner of a foreign one may. Root's configuration is
/// kept out of it, in the default sources directory (here a private `/etc`'s), so the member's
/// replay — keep root's `pins.json`, let root re-pin the author after a compromise, put the old
/// one back — restores nothing: root's install of the package the old pin names is refused (98).
/// Before: where the configuration lived depended only on who owned the state directory, so it
/// stayed there, the old `pins.json` was put back and read, and dev's package was installed again
/// over root's re-pin. Named as the sources directory too, such a state directory is refused
/// (78 `source.unsafe`) rather than taken for the state directory and used.
#[test]
fn a_state_directory_a_group_may_write_keeps_no_configuration() {
    use std::os::unix::fs::{chown, PermissionsExt};
    if !require_root() || !require_tool("unshare", "a private /etc for the test") {
        return;
    }
    let (fx, mut repo) = setup();
    std::fs::set_permissions(fx.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = fx.path("state");
    std::fs::create_dir(&state).unwrap();
    chown(&state, Some(0), Some(NOBODY)).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o2770)).unwrap();
    let bin = env!("CARGO_BIN_EXE_stockade");
    let root = |args: &[&str]| {
        let mut all = vec![bin, "--json"];
        all.extend_from_slice(args);
        with_private_etc(&fx, "", &all)
    };
    let install = |target: &str| {
        let mut args = vec!["install", target, "--force"];
        args.extend_from_slice(&STORE_FLAGS);
        root(&args)
    };
    let url = repo.url();
    // Named as its own sources directory: refused, nothing written.
    let r = root(&[
        "source",
        "add",
        "main",
        &url,
        "--operator-key",
        "op.pub",
        "--state-dir",
        "state",
        "--sources-dir",
        "state",
    ]);
    expect(&r, 78, "source.unsafe");
    assert!(r.stdout.contains("is the state directory"), "{}", r.stdout);
    assert!(!state.join("sources.json").exists());
    let pkg = hello(&fx, "0.1.0");
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev");
    repo.write(&fx, "op");
    let args = [
        "source",
        "add",
        "main",
        &url,
        "--operator-key",
        "op.pub",
        "--state-dir",
        "state",
    ];
    expect(&root(&args), 0, "");
    expect(&install("hello"), 0, "");
    // The member moves root's pins aside, if it finds them in the state directory: still
    // root's, one link, 0644.
    let kept = as_daemons_user(
        &fx,
        "[ -e state/pins.json ] && mv state/pins.json state/.aside",
    );
    // Root re-pins hello to dev2 (dev's key compromised), and updates to dev2's 0.2.0.
    publish_by_dev2(&fx, &mut repo);
    let args = [
        "source",
        "repin-author",
        "hello",
        "--author-key",
        "dev2.pub",
        "--yes",
        "--state-dir",
        "state",
    ];
    expect(&root(&args), 0, "");
    let mut args = vec!["update"];
    args.extend_from_slice(&STORE_FLAGS);
    expect(&root(&args), 0, "");
    // The member puts the old pins back.
    if kept {
        assert!(as_daemons_user(&fx, "mv -f state/.aside state/pins.json"));
    }
    expect(&install("hello-0.1.0.stockade"), 98, "index.author_pin");
    assert!(!kept, "root's pins.json was in the state directory");
    let pins = fx.path("etc-upper/stockade/sources/pins.json");
    let v: Value = serde_json::from_slice(&std::fs::read(pins).unwrap()).unwrap();
    let dev2 = fx.secret("dev2.key").public_key().to_base64();
    assert_eq!(v["plugins"]["hello"]["pubkey"], dev2.as_str(), "{v}");
}

/// Root's command that would change a configuration file, or a sources directory, of the
/// service user's is told it is unsafe (78 `source.unsafe`, naming the owner), with the hint
/// for a file (chown it root's) or for a directory (no advice to chmod files) — before: for the
/// file, 78 `source.not_owner` saying to run the command "as the user the file belongs to
/// (root)"; for the directory, the files' `chmod 644` advice.
#[test]
fn root_is_told_a_service_users_file_or_directory_is_unsafe() {
    use std::os::unix::fs::chown;
    if !require_root() {
        return;
    }
    let p = Planted::new();
    let pins = config(&p.fx, "pins.json");
    chown(&pins, Some(NOBODY), Some(NOBODY)).unwrap();
    let before = file_state(&pins);
    let r = repin_author(&p.fx, &["--json"], "hello", "dev.pub", &["--yes"]);
    expect(&r, 78, "source.unsafe");
    let hint = r.json()["error"]["hint"].as_str().unwrap_or("").to_string();
    assert!(
        r.stdout.contains("uid 65534") && hint.contains("chown root:root"),
        "{}",
        r.stdout
    );
    assert_eq!(file_state(&pins), before);
    chown(&pins, Some(0), Some(0)).unwrap();
    let dir = p.fx.path(SOURCES_DIR);
    chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
    for r in [
        repin_author(&p.fx, &["--json"], "hello", "dev.pub", &["--yes"]),
        update(&p.fx),
    ] {
        expect(&r, 78, "source.unsafe");
        let hint = r.json()["error"]["hint"].as_str().unwrap_or("").to_string();
        assert!(
            r.stdout.contains("uid 65534")
                && hint.contains("sources directory")
                && !hint.contains("chmod 644"),
            "{}",
            r.stdout
        );
    }
}

/// Root's commands on two state directories of the service user's share one sources directory;
/// each locked only its own store, so concurrent `repin-author`s lost pins (40 + 40 kept 46).
/// Now every change of the configuration holds the sources directory's lock: after two loops
/// of 20 re-pins each, run side by side on `state` and `state2`, all 40 pins are there.
#[test]
fn concurrent_changes_from_two_state_directories_lose_no_pin() {
    use std::os::unix::fs::{chown, PermissionsExt};
    if !require_root() {
        return;
    }
    let (fx, _repo) = setup();
    let _state = packaged_state(&fx);
    let state2 = fx.path("state2");
    std::fs::create_dir(&state2).unwrap();
    chown(&state2, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(&state2, std::fs::Permissions::from_mode(0o750)).unwrap();
    let sources = fx.path(SOURCES_DIR);
    let bin = env!("CARGO_BIN_EXE_stockade");
    let spawn = |state: &str, prefix: &str| {
        let script = format!(
            "for i in $(seq 1 20); do STOCKADE_SOURCES_DIR='{}' '{bin}' source repin-author \
             {prefix}$i --author-key dev.pub --yes --state-dir {state} >/dev/null || exit 1; done",
            sources.display()
        );
        std::process::Command::new("sh")
            .args(["-c", &script])
            .current_dir(fx.dir())
            .env_remove("STOCKADE_STATE_DIR")
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn("state", "a"), spawn("state2", "b"));
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let pins: Value =
        serde_json::from_slice(&std::fs::read(config(&fx, "pins.json")).unwrap()).unwrap();
    let n = pins["plugins"].as_object().map_or(0, |m| m.len());
    assert_eq!(n, 40, "{pins}");
    // The lock file is root's alone: the service user cannot open it and hold root's commands.
    let lock = std::fs::metadata(config(&fx, ".lock")).unwrap();
    assert_eq!(lock.permissions().mode() & 0o777, 0o600);
    assert!(!as_daemons_user(
        &fx,
        &format!("exec 3<{SOURCES_DIR}/.lock")
    ));
}

/// A refresh timer whose unit lacks `STOCKADE_SOURCES_DIR` runs in its own state directory,
/// where nothing is configured: it said "no sources configured" and exited 0 while root's
/// sources in `/etc/stockade/sources` went unrefreshed. Now it warns on stderr, naming the
/// file it does not read and the variable. The host's `/etc` is not touched: the test runs in a
/// private mount namespace with an overlay on `/etc`, as the service user.
#[test]
fn a_refresh_that_reads_no_sources_while_the_default_has_some_says_so() {
    use std::os::unix::fs::{chown, PermissionsExt};
    if !require_root() || !require_tool("unshare", "a private /etc for the test") {
        return;
    }
    let (fx, _repo) = setup();
    std::fs::set_permissions(fx.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = fx.path("state");
    std::fs::create_dir(&state).unwrap();
    chown(&state, Some(NOBODY), Some(NOBODY)).unwrap();
    let run = |with_config: bool| {
        let make = if with_config {
            "echo '{\"sources\":{}}' > /etc/stockade/sources/sources.json;"
        } else {
            "rm -f /etc/stockade/sources/sources.json;"
        };
        let nobody = format!("--reuid={NOBODY}");
        let r = with_private_etc(
            &fx,
            make,
            &[
                "setpriv",
                &nobody,
                "--regid=65534",
                "--clear-groups",
                env!("CARGO_BIN_EXE_stockade"),
                "source",
                "refresh",
                "--state-dir",
                "state",
            ],
        );
        (Some(r.code), r.stdout, r.stderr)
    };
    let (code, stdout, stderr) = run(true);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("no sources configured"), "{stdout}");
    assert!(
        stderr.contains("/etc/stockade/sources/sources.json exists and is not read")
            && stderr.contains("STOCKADE_SOURCES_DIR"),
        "{stderr}"
    );
    // Without a configuration there, nothing to say.
    let (code, stdout, stderr) = run(false);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

/// A refresh killed while it writes the index cache or `sources-seen.json` leaves the atomic
/// write's `.stockade-tmp-…` file; nothing removed it, so every such kill left one for good in
/// `indexes/` (or the state directory). The next refresh (here `update`'s) removes a stale one.
#[test]
fn a_refresh_sweeps_what_a_killed_one_left_half_written() {
    let (fx, _repo) = hello_installed();
    let left = [
        fx.path("state/indexes/.stockade-tmp-killed"),
        fx.path("state/.stockade-tmp-killed"),
    ];
    for p in &left {
        std::fs::write(p, b"{\"format\": 1, \"na").unwrap();
        std::fs::File::open(p)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(600))
            .unwrap();
    }
    let mut args = vec!["--json", "source", "refresh"];
    args.extend(["--state-dir", "state"]);
    expect(&fx.run(&args), 0, "");
    for p in &left {
        assert!(!p.exists(), "{}", p.display());
    }
}

/// An index and its signature are two fetches; a publisher that replaced both in between (a
/// new version published while `update` read them) gave a pair that does not match, and the
/// update was refused with 91 "not signed by its pinned operator key" — a false tamper report
/// about an index the operator did sign. Held between the two fetches (SIGSTOP, the debug
/// build's `STOCKADE_TEST_STOP_AT=index-signature`) while the source publishes a new version:
/// the pair is fetched again and the update goes through.
#[test]
fn an_index_republished_between_its_two_fetches_is_fetched_again_not_refused() {
    let (fx, mut repo) = hello_installed();
    let pkg = hello(&fx, "0.2.0");
    repo.publish(&fx, &pkg, "hello", "0.2.0", "dev");
    repo.version = 2;
    repo.write(&fx, "op");
    let mut args = vec!["--json", "update"];
    args.extend_from_slice(&STORE_FLAGS);
    let held = stockade_stopped_at(fx.dir(), &args, "index-signature");
    // Published meanwhile: a new index version, signed anew.
    repo.version = 3;
    repo.write(&fx, "op");
    let r = resume(held);
    expect(&r, 0, "");
    assert_eq!(r.json()["updated"][0]["version"], "0.2.0", "{}", r.stdout);
    assert_eq!(fx.installed()["hello"]["version"], "0.2.0");
}

/// Review-98 L5: with a rotated operator key the index is three fetches — the index, its
/// signature by the new key, and the pinned key's `index.json.minisig.prev` — and only the
/// pair was fetched again when it did not agree: the `.prev` came afterwards, on its own. A
/// new version published between the pair and the `.prev` (a rotated index republished, with
/// its own proof) gave a proof over other bytes, and the rotation was refused as unproven (91,
/// `index.operator_key`). Held right there (`STOCKADE_TEST_STOP_AT=index-prev`) while the
/// source publishes: the three are fetched again together and the update goes through, the
/// new key pinned.
#[test]
fn a_rotated_index_republished_before_its_proof_is_fetched_again_not_refused() {
    let (fx, mut repo) = hello_installed();
    ok(fx.dir(), &["keygen", "-o", "op2"]);
    let pkg = hello(&fx, "0.2.0");
    repo.publish(&fx, &pkg, "hello", "0.2.0", "dev");
    let op = fx.secret("op.key").public_key();
    repo.extra = json!({"previous_operator_pubkeys": [op.to_base64()]});
    let publish = |repo: &mut Repo, version: u64| {
        repo.version = version;
        let bytes = repo.write(&fx, "op2");
        std::fs::write(
            repo.dir.join("index.json.minisig.prev"),
            sign(&fx, "op.key", &bytes),
        )
        .unwrap();
    };
    publish(&mut repo, 2);
    let mut args = vec!["--json", "update"];
    args.extend_from_slice(&STORE_FLAGS);
    let held = stockade_stopped_at(fx.dir(), &args, "index-prev");
    // Published meanwhile: a new index version, signed anew, with its own proof.
    publish(&mut repo, 3);
    let r = resume(held);
    expect(&r, 0, "");
    assert_eq!(r.json()["updated"][0]["version"], "0.2.0", "{}", r.stdout);
    let l = ok(
        fx.dir(),
        &["--json", "source", "list", "--state-dir", "state"],
    );
    let source = &l.json()["sources"][0];
    assert_eq!(
        source["operator_key_id"],
        fx.secret("op2.key").public_key().key_id.to_string(),
        "{source}"
    );
    assert_eq!(source["seen_version"], 3, "{source}");
}

/// helper-95: `list` and `source list` read the index cache by path, following a symlink at
/// `<state>/indexes` (the state directory is the daemon's user's in the packaged layout) that a
/// refresh and `source remove` refuse: root then read a cache elsewhere. Now through the
/// directory held as a refresh holds it: a symlink there is no cache.
#[test]
fn the_index_cache_is_not_read_through_a_symlink() {
    let (fx, _repo) = hello_installed();
    let sources = ["--json", "source", "list", "--state-dir", "state"];
    let source = || ok(fx.dir(), &sources).json()["sources"][0].clone();
    let plugins = || source()["plugins"].clone();
    assert_eq!(plugins(), 1);
    assert_eq!(source()["cache_error"], Value::Null);
    std::fs::rename(fx.path("state/indexes"), fx.path("elsewhere")).unwrap();
    std::os::unix::fs::symlink(fx.path("elsewhere"), fx.path("state/indexes")).unwrap();
    assert_eq!(plugins(), Value::Null);
    // `source list` says why there is no cache to read, as a never-refreshed source has none.
    let why = source()["cache_error"].clone();
    assert!(why.as_str().is_some_and(|w| w.contains("indexes")), "{why}");
    // `list`, which reads the cache to flag delistings, says it could not.
    let list = ok(fx.dir(), &["--json", "list", "--state-dir", "state"]).json();
    let errors = list["index_errors"].as_array().expect("index_errors");
    assert_eq!(errors.len(), 1, "{list}");
    assert_eq!(errors[0]["source"], "main", "{list}");
    assert!(
        errors[0]["message"].as_str().unwrap().contains("indexes"),
        "{list}"
    );
    std::fs::remove_file(fx.path("state/indexes")).unwrap();
    std::fs::rename(fx.path("elsewhere"), fx.path("state/indexes")).unwrap();
    assert_eq!(plugins(), 1);
}

/// The index cache was two files (`main.json`, `main.json.minisig`) written one after the
/// other: a `list` while a refresh wrote them, or after a kill between the two, read a pair
/// that did not verify and showed a delisted plugin as listed, saying nothing. It is one file
/// now, replaced by rename: held right after the refresh wrote its cache (the old build: after
/// the first of its two files), then killed, `list` shows the reason of one index or the
/// other, never none. An earlier build's two files are still read, until a refresh replaces
/// them with the one file.
#[test]
fn a_list_beside_a_refresh_writing_the_index_cache_flags_from_a_verified_index() {
    let (fx, mut repo) = hello_installed();
    let refresh = ["--json", "source", "refresh", "--state-dir", "state"];
    let delist = |repo: &mut Repo, version: u64, reason: &str| {
        for e in &mut repo.entries {
            e["delisted"] = json!({ "reason": reason });
        }
        repo.version = version;
        repo.write(&fx, "op");
    };
    delist(&mut repo, 2, "first reason");
    expect(&fx.run(&refresh), 0, "");
    assert_eq!(fx.installed()["hello"]["delisted"], "first reason");

    delist(&mut repo, 3, "second reason");
    let mut held = stockade_stopped_at(fx.dir(), &refresh, "index-cached");
    let flagged = || {
        let d = fx.installed()["hello"]["delisted"].clone();
        assert!(
            d == "first reason" || d == "second reason",
            "a delisted plugin shown as {d}"
        );
    };
    flagged();
    held.kill().unwrap();
    held.wait().unwrap();
    flagged();

    // An earlier build's cache: the two files, read while there is no `main.index`.
    let cache = fx.path("state/indexes");
    std::fs::remove_file(cache.join("main.index")).unwrap();
    delist(&mut repo, 4, "third reason");
    for (from, to) in [
        ("index.json", "main.json"),
        ("index.json.minisig", "main.json.minisig"),
    ] {
        std::fs::copy(repo.dir.join(from), cache.join(to)).unwrap();
    }
    assert_eq!(fx.installed()["hello"]["delisted"], "third reason");
    delist(&mut repo, 5, "fourth reason");
    expect(&fx.run(&refresh), 0, "");
    assert_eq!(fx.installed()["hello"]["delisted"], "fourth reason");
    assert!(!cache.join("main.json").exists() && !cache.join("main.json.minisig").exists());
}

/// Review-103 L2: in the packaged layout a user of the state directory's group (the state
/// directory 0750, `indexes` 0700 the daemon's user's) may run `list`, reading root's store,
/// but not the index cache: that is this user's permission, not damage a refresh repairs.
/// `list` says it so — the source named, "cannot be read by this user", a hint to run it as
/// root or as the state directory's owner — where it said the cache "cannot be opened" and
/// told the user to run `stockade source refresh`, which cannot help. Root's `list` reads it.
#[test]
fn list_by_a_user_who_may_not_read_the_index_cache_says_so() {
    use std::os::unix::process::CommandExt;
    if !require_root() {
        return;
    }
    let planted = Planted::new();
    let fx = &planted.fx;
    expect(&timer_refresh(fx), 0, "");
    let args = ["--json", "list", "--state-dir", "state"];
    let v = ok(fx.dir(), &args).json();
    assert_eq!(v["index_errors"], json!([]), "{v}");
    // A member of the daemon's group (65534), not the daemon's user.
    let member = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stockade"))
            .args(args)
            .current_dir(fx.dir())
            .env("STOCKADE_SOURCES_DIR", fx.path(SOURCES_DIR))
            .env_remove("STOCKADE_STATE_DIR")
            .uid(NOBODY - 1)
            .gid(NOBODY)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        (stdout, stderr)
    };
    let (stdout, _) = member(&args);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["plugins"][0]["name"], "hello", "{v}");
    let errors = v["index_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v}");
    assert_eq!(errors[0]["source"], "main", "{v}");
    let (message, hint) = (
        errors[0]["message"].as_str().unwrap(),
        errors[0]["hint"].as_str().unwrap(),
    );
    assert!(
        message.contains("cannot be read by this user") && message.contains("indexes"),
        "{v}"
    );
    assert!(
        !hint.contains("source refresh") && hint.contains("as root"),
        "{v}"
    );
    let (_, stderr) = member(&args[1..]);
    assert!(
        stderr.contains("cannot be read by this user") && !stderr.contains("source refresh"),
        "{stderr}"
    );
}

/// Review-103 L3: the index cache is the state directory owner's to write (the daemon's user
/// in the packaged layout), and `list` checked only that it verifies against the source's
/// pinned key: an older index of the source, still signed — kept from before a delisting — put
/// back in its place hid the delisting from root's `list`. Now a cache older than the version
/// this node recorded for the source (the floor a refresh keeps), or another index of that
/// version, is reported in `index_errors`, its plugins unflagged but said so. A refresh puts the
/// current index back.
#[test]
fn list_refuses_an_index_cache_older_than_the_source_floor() {
    let (fx, mut repo) = hello_installed();
    let cache = fx.path("state/indexes/main.index");
    let before = std::fs::read(&cache).unwrap();
    repo.entries.last_mut().unwrap()["delisted"] = json!({"reason": "withdrawn"});
    repo.version = 2;
    repo.write(&fx, "op");
    let refresh = ["--json", "source", "refresh", "--state-dir", "state"];
    expect(&fx.run(&refresh), 0, "");
    let list = || ok(fx.dir(), &["--json", "list", "--state-dir", "state"]).json();
    let v = list();
    assert_eq!(v["plugins"][0]["delisted"], "withdrawn", "{v}");
    assert_eq!(v["index_errors"], json!([]), "{v}");
    // The index of before the delisting, still signed by the operator key, put back.
    let current = std::fs::read(&cache).unwrap();
    std::fs::write(&cache, &before).unwrap();
    let v = list();
    assert_eq!(v["plugins"][0]["name"], "hello", "{v}");
    assert_eq!(v["plugins"][0]["delisted"], Value::Null, "{v}");
    let errors = v["index_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v}");
    assert_eq!(errors[0]["source"], "main", "{v}");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(
        message.contains("older than version 2") && message.contains("main.index"),
        "{v}"
    );
    // Another index signed under version 2 (the operator's key signs it; the node saw another).
    let mut other: Value = serde_json::from_slice(&current).unwrap();
    let mut index: Value = serde_json::from_str(other["index"].as_str().unwrap()).unwrap();
    index["plugins"][0]["delisted"] = Value::Null;
    let text = index.to_string();
    other["signature"] = json!(sign(&fx, "op.key", text.as_bytes()));
    other["index"] = json!(text);
    std::fs::write(&cache, other.to_string()).unwrap();
    let v = list();
    assert!(
        v["index_errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("another index of version 2")),
        "{v}"
    );
    // A refresh puts the current index back.
    expect(&fx.run(&refresh), 0, "");
    let v = list();
    assert_eq!(v["plugins"][0]["delisted"], "withdrawn", "{v}");
    assert_eq!(v["index_errors"], json!([]), "{v}");
}

/// A URL with credentials is refused (64 `index.url`), and the refusal — text on stderr, the
/// `--json` document — names it without them: a password typed into `source add` never reaches
/// a terminal log, a CI log or the journal. Nothing is kept.
#[test]
fn a_url_with_credentials_is_refused_without_repeating_them() {
    let (fx, _repo) = setup();
    for url in [
        "https://alice:hunter2@example.com/index.json",
        "http://alice:hunter2@10.0.0.1/index.json",
        "https://alice:hun/ter2@example.com/index.json",
    ] {
        let r = add_source(&fx, url, "op.pub");
        assert_eq!(
            (r.code, r.kind().as_str()),
            (64, "index.url"),
            "{}",
            r.stdout
        );
        assert!(r.stdout.contains("***@"), "{}", r.stdout);
        let mut args = vec!["source", "add", "main", url, "--operator-key", "op.pub"];
        args.extend_from_slice(&["--state-dir", "state"]);
        let text = fx.run(&args);
        assert_eq!(text.code, 64);
        for out in [&r.stdout, &r.stderr, &text.stdout, &text.stderr] {
            assert!(!out.contains("ter2"), "{url}: {out}");
        }
    }
    assert!(!fx.path("state/sources.json").exists());
}

/// A loopback source is fetched directly even where the environment names a proxy: plain http
/// is allowed there only because it stays on this host. The "proxy" here records whether anyone
/// came; through it, the index would have crossed the network in the clear.
#[test]
fn a_loopback_source_never_goes_through_a_proxy() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let (fx, mut repo) = setup();
    let pkg = hello(&fx, "0.1.0");
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev");
    repo.write(&fx, "op");
    let port = serve(repo.dir.clone());
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("http://127.0.0.1:{}", proxy.local_addr().unwrap().port());
    let came = Arc::new(AtomicUsize::new(0));
    let seen = came.clone();
    std::thread::spawn(move || {
        for s in proxy.incoming().flatten() {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    let url = format!("http://127.0.0.1:{port}/index.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args([
            "--json",
            "source",
            "add",
            "main",
            &url,
            "--operator-key",
            "op.pub",
        ])
        .args(["--state-dir", "state"])
        .current_dir(fx.dir())
        .env_remove("STOCKADE_SOURCES_DIR")
        .env_remove("STOCKADE_STATE_DIR")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env("ALL_PROXY", &proxy_url)
        .env("HTTP_PROXY", &proxy_url)
        .env("http_proxy", &proxy_url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(came.load(Ordering::SeqCst), 0, "the proxy was asked");
}

/// A plugin whose dependencies to fetch from the sources are more than the 256 one install
/// fetches is refused, with its own kind (101 `store.too_many_dependencies`), an `install`
/// `refused` record, and nothing installed — the install stopped fetching after 256 and went
/// on silently (audit-127), to a dependency check that named a chain it had not fetched.
/// (Slow: 258 packages packed, 256 of them fetched and verified.)
#[test]
fn more_dependencies_than_one_install_fetches_are_refused() {
    let (fx, mut repo) = setup();
    let deps: Vec<String> = (0..257).map(|i| format!("d{i:03}")).collect();
    for d in &deps {
        let p = fx.pack_plugin(d, "1.0.0", &[]);
        repo.publish(&fx, &p, d, "1.0.0", "dev");
    }
    let needs: Vec<(&str, &str)> = deps.iter().map(|d| (d.as_str(), "^1")).collect();
    let big = fx.pack_plugin("big", "1.0.0", &needs);
    repo.publish(&fx, &big, "big", "1.0.0", "dev");
    repo.write(&fx, "op");
    expect(&add_source(&fx, &repo.url(), "op.pub"), 0, "");
    let r = fx.store_install(&["big"], &[]);
    expect(&r, 101, "store.too_many_dependencies");
    assert!(
        r.stdout.contains("more than 256 dependencies"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("still missing after 256"), "{}", r.stdout);
    assert!(fx.installed().is_empty());
}

/// helper-143: a `source add` is three files written in turn (the index cache, `sources.json`,
/// the shared index memory); one whose save fails after the first leaves that one written. Its
/// `failed` record names the step it failed at (`detail.step`), so an auditor knows what of
/// the change is in place without reading the configuration. Held after the cache is written
/// (`STOCKADE_TEST_STOP_AT=index-cached`), a directory is put where `sources.json` goes: its
/// write fails there.
#[test]
fn a_failed_source_add_says_the_step_it_failed_at() {
    let (fx, mut repo) = setup();
    let log = audit_to_file(&fx);
    let pkg = hello(&fx, "0.1.0");
    repo.publish(&fx, &pkg, "hello", "0.1.0", "dev");
    repo.write(&fx, "op");
    let url = repo.url();
    let args = [
        "--json",
        "source",
        "add",
        "main",
        &url,
        "--operator-key",
        "op.pub",
        "--state-dir",
        "state",
        "--policy-root",
        "policy-root",
    ];
    let held = stockade_stopped_at(fx.dir(), &args, "index-cached");
    let config = fx.path("state/sources.json");
    assert!(!config.exists(), "{}", config.display());
    std::fs::create_dir(&config).unwrap();
    let r = resume(held);
    assert_ne!(r.code, 0, "{} {}", r.stdout, r.stderr);
    let recs = records(&log);
    let (event, outcome, detail) = recs.last().expect("records");
    assert_eq!(
        (event.as_str(), outcome.as_str()),
        ("configuration", "failed"),
        "{recs:?}"
    );
    assert_eq!(detail["change"], "source_add", "{detail}");
    assert_eq!(detail["step"], "sources_json", "{detail}");
    // The step before it was written: the index cache is there.
    assert!(
        std::fs::read_dir(fx.path("state/indexes")).unwrap().count() > 0,
        "the index cache was written first"
    );
}
