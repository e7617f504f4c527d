//! Bounded listings: a paged Graph listing that loops (a `@odata.nextLink` naming a page
//! already read, directly or a few pages later) or that never ends is an error, never a call
//! or a sync that runs forever.
//!
//! Within one call a listing keeps the set of links it followed. A full sync's user listing
//! spans calls, so its checkpoint keeps the fingerprints of the last [`RECENT`] links (a few
//! hundred bytes), and the listing is capped at [`MAX_PAGES`] pages.

use crate::failure::Failure;

/// Link fingerprints a full sync's checkpoint keeps.
pub const RECENT: usize = 32;

/// The most pages one listing may have: 10,000 pages of 100 users is a tenant of a million,
/// beyond what Entra tenants with a ZenQMS subscription hold.
pub const MAX_PAGES: u32 = 10_000;

/// FNV-1a, 64 bits: stable across calls and builds (std's hasher is not promised to be), and
/// a collision only costs a false "loop" error that a redeploy clears.
pub fn fingerprint(link: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in link.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Records that a listing moves on to `link` as its page number `pages`. Errors (not
/// retryable): the link repeats one of the recent ones, or the listing passed [`MAX_PAGES`].
pub fn follow(recent: &mut Vec<u64>, link: &str, pages: u32, what: &str) -> Result<(), Failure> {
    let f = fingerprint(link);
    if recent.contains(&f) {
        return Err(repeated_link(what));
    }
    if pages >= MAX_PAGES {
        return Err(Failure::fatal(format!(
            "{what}: more than {MAX_PAGES} pages; the listing is not ending"
        )));
    }
    recent.push(f);
    if recent.len() > RECENT {
        recent.remove(0);
    }
    Ok(())
}

/// A listing whose next link repeats a page it already read: it would never end. Not
/// retryable: Graph would send the same loop again.
pub fn repeated_link(what: &str) -> Failure {
    Failure::fatal(format!(
        "{what}: Graph returned a nextLink that repeats an earlier page; the listing would never end"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_to_a_recent_page_is_a_loop() {
        let mut recent = Vec::new();
        follow(
            &mut recent,
            "https://graph.microsoft.com/v1.0/users?a",
            1,
            "x",
        )
        .unwrap();
        follow(
            &mut recent,
            "https://graph.microsoft.com/v1.0/users?b",
            2,
            "x",
        )
        .unwrap();
        let e = follow(
            &mut recent,
            "https://graph.microsoft.com/v1.0/users?a",
            3,
            "x",
        );
        assert!(e.is_err_and(|f| !f.retryable && f.message.contains("repeats")));
    }

    #[test]
    fn only_the_last_links_are_kept_and_the_listing_is_capped() {
        let mut recent = Vec::new();
        for i in 0..100 {
            follow(&mut recent, &format!("l{i}"), i + 1, "x").unwrap();
        }
        assert_eq!(recent.len(), RECENT);
        assert!(follow(&mut recent, "new", MAX_PAGES, "x").is_err());
    }
}
