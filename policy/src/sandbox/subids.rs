//! Subordinate id delegations (`/etc/subuid`, `/etc/subgid`, shadow-utils' `NAME:START:COUNT`
//! lines) that reach into the plugins' uid range (`[identity]`).
//!
//! A user holding subordinate ids can become them with `newuidmap`/`newgidmap` in a user
//! namespace of its own. Where any of those ids is a plugin's host uid, that user can signal or
//! trace the plugin's processes and use whatever the plugin may write: the per-plugin uid is not
//! the plugin's alone. The packages register the range for the service user (`stockade`), which
//! keeps `useradd` from handing it out later, but a range handed out *before* the install (or
//! by hand) is not taken back: the runtime checks, and this is the pure half of that check.

/// One delegation of subordinate ids that overlaps the plugins' range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    /// The user it is delegated to, as written (a name or a numeric uid).
    pub owner: String,
    /// Its first id.
    pub start: u64,
    /// How many ids.
    pub count: u64,
}

/// The delegations in `text` (the contents of `/etc/subuid` or `/etc/subgid`) that overlap the
/// `count` ids from `first`, but those of the owners `trusted` says may hold them (root, the
/// runtime's own user, the service user). Comments, empty and malformed lines delegate nothing
/// (shadow-utils skips them too), so they are skipped here.
pub fn overlapping(
    text: &str,
    first: u32,
    count: u32,
    trusted: impl Fn(&str) -> bool,
) -> Vec<Delegation> {
    let (lo, hi) = (u64::from(first), u64::from(first) + u64::from(count));
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let mut f = line.split(':');
            let (owner, start, n) = (f.next()?, f.next()?, f.next()?);
            if f.next().is_some() || owner.is_empty() {
                return None;
            }
            let (start, n): (u64, u64) = (start.parse().ok()?, n.parse().ok()?);
            let end = start.checked_add(n)?;
            (n > 0 && start < hi && lo < end && !trusted(owner)).then(|| Delegation {
                owner: owner.to_string(),
                start,
                count: n,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(text: &str) -> Vec<String> {
        overlapping(text, 200_000, 65_536, |o| o == "stockade" || o == "0")
            .into_iter()
            .map(|d| d.owner)
            .collect()
    }

    /// The auditor's case: two users added before the package, the second one's range
    /// (165536–231071) reaching into the plugins' (200000–265535).
    #[test]
    fn a_range_reaching_into_the_plugins_is_found_and_trusted_owners_are_not() {
        let text = "alice:100000:65536\nbob:165536:65536\nstockade:200000:65536\n";
        assert_eq!(owners(text), ["bob"]);
        assert_eq!(
            overlapping(text, 200_000, 65_536, |_| false),
            [
                Delegation {
                    owner: "bob".into(),
                    start: 165_536,
                    count: 65_536
                },
                Delegation {
                    owner: "stockade".into(),
                    start: 200_000,
                    count: 65_536
                }
            ]
        );
    }

    #[test]
    fn ranges_that_only_touch_the_edges_do_not_overlap() {
        // Ends at 199999; starts at 265536.
        assert!(owners("a:134464:65536\nb:265536:65536\n").is_empty());
        assert_eq!(owners("a:134465:65536\nb:265535:1\n"), ["a", "b"]);
        // Numeric owners are owners too; a range covering the whole one is found.
        assert_eq!(owners("1001:0:4294967295\n0:0:4294967295\n"), ["1001"]);
    }

    #[test]
    fn comments_blank_and_malformed_lines_delegate_nothing() {
        let text = "# bob:200000:10\n\n   \nbob:200000\nbob:x:10\nbob:200000:10:extra\n\
                    :200000:10\nbob:200000:0\nbob:18446744073709551615:2\n";
        assert!(owners(text).is_empty());
    }
}
