//! Live mode's instance storage, as a platform keeps it (WIT 0.2.0): the state file, the inbox
//! file beside it, and two locks.
//!
//! - `<state>.inbox.json`: `{"next_seq": n, "items": [{"seq", "item"}]}`. Every change to it (a
//!   webhook appending, a call dropping what it took together with writing the state) happens
//!   under the *inbox lock* (`<state>.inbox.lock`), held for a file write only.
//! - The *call lock* (`<state>.lock`) serializes every call but webhooks: a webhook never takes
//!   it, so its reply never waits behind a long resume.
//!
//! Files are replaced by rename, so a reader never sees half a file. Locks are advisory file
//! locks (`std::fs::File::lock`), released when their guard drops (or the process exits).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct InboxFile {
    next_seq: u64,
    items: Vec<Item>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Item {
    seq: u64,
    item: String,
}

/// One instance's files.
#[derive(Debug, Clone)]
pub struct Store {
    pub state_path: PathBuf,
}

/// A held lock; released on drop.
pub struct Held(#[allow(dead_code)] File);

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

fn lock_file(path: &Path) -> Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening lock {}", path.display()))
}

/// Writes `text` to `path` by rename, so no reader sees a partial file.
fn replace(path: &Path, text: &str) -> Result<()> {
    let tmp = with_suffix(path, ".tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

impl Store {
    pub fn new(state_path: PathBuf) -> Store {
        Store { state_path }
    }

    pub fn inbox_path(&self) -> PathBuf {
        with_suffix(&self.state_path, ".inbox.json")
    }

    /// The stored state, if any.
    pub fn state(&self) -> Result<Option<String>> {
        match std::fs::read_to_string(&self.state_path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.state_path.display())),
        }
    }

    /// Waits for the call lock (every call but a webhook holds it).
    pub fn serialize(&self) -> Result<Held> {
        let f = lock_file(&with_suffix(&self.state_path, ".lock"))?;
        f.lock().context("taking the call lock")?;
        Ok(Held(f))
    }

    /// The call lock if no one holds it.
    pub fn try_serialize(&self) -> Result<Option<Held>> {
        let f = lock_file(&with_suffix(&self.state_path, ".lock"))?;
        match f.try_lock() {
            Ok(()) => Ok(Some(Held(f))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e).context("taking the call lock"),
        }
    }

    fn inbox_lock(&self) -> Result<Held> {
        let f = lock_file(&with_suffix(&self.state_path, ".inbox.lock"))?;
        f.lock().context("taking the inbox lock")?;
        Ok(Held(f))
    }

    fn read_inbox(&self) -> Result<InboxFile> {
        let path = self.inbox_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(InboxFile {
                next_seq: 1,
                items: Vec::new(),
            }),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The inbox as it is now: (`seq`, item) in arrival order.
    pub fn inbox(&self) -> Result<Vec<(u64, String)>> {
        let _lock = self.inbox_lock()?;
        Ok(self
            .read_inbox()?
            .items
            .into_iter()
            .map(|i| (i.seq, i.item))
            .collect())
    }

    /// Appends a webhook's accepted items, each with the next `seq`.
    pub fn append(&self, items: Vec<String>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let _lock = self.inbox_lock()?;
        let mut inbox = self.read_inbox()?;
        for item in items {
            let seq = inbox.next_seq.max(1);
            inbox.items.push(Item { seq, item });
            inbox.next_seq = seq + 1;
        }
        replace(&self.inbox_path(), &serde_json::to_string(&inbox)?)
    }

    /// Stores a call's result in one step: its state (when it returned one) and the inbox
    /// without the items it took.
    pub fn commit(&self, state: Option<&str>, taken: &[u64]) -> Result<()> {
        let _lock = self.inbox_lock()?;
        if let Some(s) = state {
            replace(&self.state_path, s)?;
        }
        if !taken.is_empty() {
            let mut inbox = self.read_inbox()?;
            inbox.items.retain(|i| !taken.contains(&i.seq));
            replace(&self.inbox_path(), &serde_json::to_string(&inbox)?)?;
        }
        Ok(())
    }

    /// The platform forgets a deleted instance: its state and inbox.
    pub fn forget(&self) -> Result<()> {
        let _lock = self.inbox_lock()?;
        for path in [self.state_path.clone(), self.inbox_path()] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_get_increasing_seqs_and_a_commit_drops_exactly_the_taken_ones() {
        let dir = std::env::temp_dir().join(format!("inbox-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::new(dir.join("i.state.json"));
        store.forget().unwrap();
        store.append(vec!["a".into(), "b".into()]).unwrap();
        store.append(vec!["c".into()]).unwrap();
        let inbox = store.inbox().unwrap();
        assert_eq!(
            inbox,
            vec![(1, "a".into()), (2, "b".into()), (3, "c".into())]
        );
        store.commit(Some("{}"), &[1, 3]).unwrap();
        assert_eq!(store.inbox().unwrap(), vec![(2, "b".into())]);
        assert_eq!(store.state().unwrap().as_deref(), Some("{}"));
        // The call lock is exclusive; the webhook side only tries it.
        let held = store.serialize().unwrap();
        assert!(store.try_serialize().unwrap().is_none());
        drop(held);
        assert!(store.try_serialize().unwrap().is_some());
        store.forget().unwrap();
        assert!(store.state().unwrap().is_none());
    }
}
