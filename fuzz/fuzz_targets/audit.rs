//! The hash-chained audit log (`stockade audit verify`, and every writer's check of the log
//! before it appends): whatever the bytes, checking them must not panic, and what the checker
//! accepts must hold together — the count agrees across `verify_chain`, `check_chain` and
//! `verify_files`, and `verify_streams` (what `audit verify` runs: the same checks, line by line)
//! accepts and refuses exactly what `check_chain` does, with the same head verdicts; a head file
//! naming the last record (or the one before it: a crash between an
//! append and the head's replacement) is accepted, one naming more records is `Truncated`; and
//! deleting any record but the last from an accepted chain is always caught (the point of the
//! chain). The seeds are real logs, one starting at the genesis and one continuing it after
//! `stockade audit rotate`, and one of `stockade.audit/1` records followed by `/2` ones (an
//! upgrade: `configuration` and `bypass` events), so mutations reach the hash and link checks
//! and the schema order (a `/1` record after a `/2` one is refused).
#![no_main]
use libfuzzer_sys::fuzz_target;
use stockade_runtime::audit::{
    check_chain, verify_chain, verify_files, verify_streams, verify_with_head, ChainError,
    FilesError, Head, StreamError, HEAD_SCHEMA,
};

fn head(records: u64, last_hash: &str) -> Head {
    Head {
        schema: HEAD_SCHEMA.to_string(),
        records,
        last_hash: last_hash.to_string(),
    }
}

fuzz_target!(|data: &[u8]| {
    // `audit verify` and the writers read the log as UTF-8 text.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Any head at all (fuzzed counts included) against any text: no panic.
    if let Some((log, h)) = text.split_once("\n#head ") {
        if let Ok(h) = serde_json::from_str::<Head>(h) {
            let _ = verify_with_head(log, Some(&h));
        }
    }
    // The streamed check, as `audit verify` reads a log: one file, no head.
    let names = ["log".to_string()];
    let streamed = |h: Option<&Head>| verify_streams(&names, h, |_| Ok(text.as_bytes()));
    let Ok(chain) = check_chain(text) else {
        assert!(verify_chain(text).is_err());
        assert!(streamed(None).is_err(), "streamed verify accepted a broken chain");
        return;
    };
    let n = chain.hashes.len();
    assert_eq!(verify_chain(text), Ok(n));
    let files = [("log".to_string(), text.to_string())];
    let (chains, behind) = verify_files(&files, None).expect("one accepted file is a chain");
    assert_eq!((chains, behind), (vec![chain.clone()], false));
    let (summaries, behind) = streamed(None).expect("streamed verify refused an accepted chain");
    assert!(!behind);
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0].records, n);
    assert_eq!(summaries[0].last_hash, chain.last_hash());
    assert_eq!(summaries[0].continues, chain.continues);
    assert_eq!(summaries[0].schema_version, chain.schema_version);
    let streamed_head = |records: u64, last: &str| {
        streamed(Some(&head(records, last))).map(|(_, behind)| behind)
    };
    assert!(matches!(streamed_head(n as u64, chain.last_hash()), Ok(false)));
    assert!(matches!(
        streamed_head(n as u64 + 1, chain.last_hash()),
        Err(StreamError::Chain(FilesError {
            source: ChainError::Truncated { .. },
            ..
        }))
    ));

    assert_eq!(
        verify_with_head(text, Some(&head(n as u64, chain.last_hash()))),
        Ok((n, false))
    );
    if n >= 1 {
        let before = if n >= 2 {
            chain.hashes[n - 2].as_str()
        } else {
            stockade_runtime::audit::GENESIS
        };
        assert_eq!(
            verify_with_head(text, Some(&head(n as u64 - 1, before))),
            Ok((n, true))
        );
        assert!(matches!(streamed_head(n as u64 - 1, before), Ok(true)));
    }
    assert!(matches!(
        verify_with_head(text, Some(&head(n as u64 + 1, chain.last_hash()))),
        Err(ChainError::Truncated { .. })
    ));

    // Records are the non-blank lines; dropping one that another follows breaks the chain.
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), n);
    for k in 0..n {
        let without: String = lines
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != k)
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        let checked = check_chain(&without);
        if k + 1 == n {
            let kept = checked.expect("a prefix of a chain is a chain");
            assert_eq!(kept.hashes, chain.hashes[..n - 1]);
        } else {
            assert!(checked.is_err(), "record {k} of {n} deleted unnoticed");
        }
    }
});
