//! The server's live index of shared files: an inverted index from lower-cased words to
//! the files whose names contain them.
//!
//! A file name is cut into words at every character that is not an ASCII letter or digit
//! (non-ASCII characters stay inside words); ASCII letters are lower-cased. A search
//! matches a file when every word of every `FILENAME CONTAINS` phrase is one of the file's
//! words, no `FILENAME EXCLUDES` word is, and every numeric constraint holds. The search
//! walks the shortest posting list only, checks each candidate against the rest and stops at
//! the result cap, so its cost is bounded by the rarest query word, not by the index size.
//!
//! Removal is lazy: a removed file's slot gets a new generation, posting entries that name
//! the old generation are skipped and compacted away once they are half of a list.

use servent_core::FxMap;

use crate::wire::{Attr, FileInfo, SearchQuery};

/// Names one indexed file (slot and generation), stable until it is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileRef {
    slot: u32,
    generation: u32,
}

/// One indexed file.
#[derive(Debug, Clone)]
pub struct Entry<O> {
    /// Who shares it.
    pub owner: O,
    /// What they announced.
    pub info: FileInfo,
}

#[derive(Debug)]
struct Slot<O> {
    generation: u32,
    entry: Option<Entry<O>>,
}

#[derive(Debug, Default)]
struct Posting {
    refs: Vec<FileRef>,
    dead: usize,
}

/// The inverted index. `O` is whatever names the owner (the server uses its connection id).
#[derive(Debug)]
pub struct Index<O> {
    slots: Vec<Slot<O>>,
    free: Vec<u32>,
    terms: FxMap<Box<str>, Posting>,
    live: usize,
    bytes: u64,
}

impl<O> Default for Index<O> {
    fn default() -> Self {
        Index {
            slots: Vec::new(),
            free: Vec::new(),
            terms: FxMap::default(),
            live: 0,
            bytes: 0,
        }
    }
}

/// Calls `f` with each distinct lower-cased word of `name`, in order of first appearance.
pub fn words(name: &str, mut f: impl FnMut(&str)) {
    let mut seen: Vec<String> = Vec::new();
    for w in name.split(|c: char| c.is_ascii() && !c.is_ascii_alphanumeric()) {
        if w.is_empty() {
            continue;
        }
        let lw = w.to_ascii_lowercase();
        if !seen.contains(&lw) {
            f(&lw);
            seen.push(lw);
        }
    }
}

fn has_word(name: &str, word: &str) -> bool {
    name.split(|c: char| c.is_ascii() && !c.is_ascii_alphanumeric())
        .any(|w| w.eq_ignore_ascii_case(word))
}

impl<O: Copy> Index<O> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Total bytes of all files.
    pub fn total_bytes(&self) -> u64 {
        self.bytes
    }

    /// Number of distinct words.
    pub fn distinct_words(&self) -> usize {
        self.terms.len()
    }

    /// Adds a file.
    pub fn insert(&mut self, owner: O, info: FileInfo) -> FileRef {
        let r = match self.free.pop() {
            Some(slot) => FileRef {
                slot,
                generation: self.slots[slot as usize].generation,
            },
            None => {
                let slot = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                self.slots.push(Slot {
                    generation: 0,
                    entry: None,
                });
                FileRef {
                    slot,
                    generation: 0,
                }
            }
        };
        words(&info.name, |w| {
            self.terms.entry(w.into()).or_default().refs.push(r);
        });
        self.live += 1;
        self.bytes = self.bytes.saturating_add(info.size);
        if let Some(s) = self.slots.get_mut(r.slot as usize) {
            s.entry = Some(Entry { owner, info });
        }
        r
    }

    /// The file `r` names, if it is still indexed.
    pub fn get(&self, r: FileRef) -> Option<&Entry<O>> {
        self.slots
            .get(r.slot as usize)
            .filter(|s| s.generation == r.generation)
            .and_then(|s| s.entry.as_ref())
    }

    /// Removes a file; `None` if `r` is stale.
    pub fn remove(&mut self, r: FileRef) -> Option<Entry<O>> {
        let slot = self.slots.get_mut(r.slot as usize)?;
        if slot.generation != r.generation {
            return None;
        }
        let entry = slot.entry.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(r.slot);
        self.live -= 1;
        self.bytes = self.bytes.saturating_sub(entry.info.size);
        let slots = &self.slots;
        words(&entry.info.name, |w| {
            let mut empty = false;
            if let Some(p) = self.terms.get_mut(w) {
                p.dead += 1;
                if p.dead * 2 > p.refs.len() {
                    p.refs.retain(|x| {
                        slots
                            .get(x.slot as usize)
                            .is_some_and(|s| s.generation == x.generation && s.entry.is_some())
                    });
                    p.dead = 0;
                    empty = p.refs.is_empty();
                }
            }
            if empty {
                self.terms.remove(w);
            }
        });
        Some(entry)
    }

    /// Files matching `q` whose owner passes `owner_ok`, at most `limit`, in index order.
    pub fn search(
        &self,
        q: &SearchQuery,
        limit: usize,
        mut owner_ok: impl FnMut(O) -> bool,
    ) -> Vec<(FileRef, &Entry<O>)> {
        let mut want: Vec<String> = Vec::new();
        for p in &q.contains {
            words(p, |w| {
                if !want.iter().any(|x| x == w) {
                    want.push(w.to_string());
                }
            });
        }
        let mut exclude: Vec<String> = Vec::new();
        for p in &q.excludes {
            words(p, |w| exclude.push(w.to_string()));
        }
        let mut out = Vec::new();
        if want.is_empty() || limit == 0 {
            return out;
        }
        let mut lists = Vec::with_capacity(want.len());
        for w in &want {
            match self.terms.get(w.as_str()) {
                Some(p) => lists.push(p),
                None => return out,
            }
        }
        let Some(shortest) = lists.iter().min_by_key(|p| p.refs.len()) else {
            return out;
        };
        for &r in &shortest.refs {
            let Some(e) = self.get(r) else { continue };
            let name = e.info.name.as_str();
            if !want.iter().all(|w| has_word(name, w)) || exclude.iter().any(|w| has_word(name, w))
            {
                continue;
            }
            if !q.constraints.iter().all(|c| {
                let v = match c.attr {
                    Attr::Bitrate => u64::from(e.info.bitrate),
                    Attr::Freq => u64::from(e.info.freq),
                    Attr::Size => e.info.size,
                    Attr::Duration => u64::from(e.info.secs),
                    // The owner's link speed is checked by `owner_ok`.
                    Attr::LineSpeed => return true,
                };
                c.cmp.holds(v, c.value)
            }) {
                continue;
            }
            if !owner_ok(e.owner) {
                continue;
            }
            out.push((r, e));
            if out.len() >= limit {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Compare, Constraint};

    fn file(name: &str, size: u64) -> FileInfo {
        FileInfo {
            name: name.into(),
            md5: "0".repeat(32),
            size,
            bitrate: 128,
            freq: 44100,
            secs: 60,
        }
    }

    fn q(words: &str) -> SearchQuery {
        SearchQuery {
            contains: vec![words.into()],
            ..Default::default()
        }
    }

    #[test]
    fn all_words_must_match_case_insensitively() {
        let mut ix = Index::new();
        ix.insert(1u32, file("Pixies - Debaser.mp3", 10));
        ix.insert(2u32, file("pixies - where is my mind.mp3", 10));
        ix.insert(3u32, file("DEBASER (live).ogg", 10));
        let names = |q: &SearchQuery| -> Vec<String> {
            ix.search(q, 10, |_| true)
                .into_iter()
                .map(|(_, e)| e.info.name.clone())
                .collect()
        };
        assert_eq!(
            names(&q("debaser")),
            vec!["Pixies - Debaser.mp3", "DEBASER (live).ogg"]
        );
        assert_eq!(names(&q("PIXIES debaser")), vec!["Pixies - Debaser.mp3"]);
        assert!(names(&q("debaser mind")).is_empty());
        assert!(names(&q("deba")).is_empty(), "words match whole");
        let mut ex = q("debaser");
        ex.excludes.push("live".into());
        assert_eq!(names(&ex), vec!["Pixies - Debaser.mp3"]);
    }

    #[test]
    fn results_are_capped_and_constraints_hold() {
        let mut ix = Index::new();
        for i in 0..50u64 {
            ix.insert(0u8, file(&format!("song {i}.mp3"), i * 1000));
        }
        assert_eq!(ix.search(&q("song"), 7, |_| true).len(), 7);
        let mut big = q("song");
        big.constraints.push(Constraint {
            attr: Attr::Size,
            cmp: Compare::AtLeast,
            value: 45_000,
        });
        assert_eq!(ix.search(&big, 100, |_| true).len(), 5);
    }

    #[test]
    fn removed_files_vanish_and_slots_are_reused_safely() {
        let mut ix = Index::new();
        let a = ix.insert(1u32, file("alpha beta.mp3", 5));
        let b = ix.insert(2u32, file("alpha gamma.mp3", 7));
        assert_eq!(ix.total_bytes(), 12);
        assert!(ix.remove(a).is_some());
        assert!(ix.remove(a).is_none(), "stale refs are refused");
        let c = ix.insert(3u32, file("delta.mp3", 1));
        assert_ne!(a, c);
        assert!(ix.get(a).is_none());
        let hits = ix.search(&q("alpha"), 10, |_| true);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].0, b);
        assert!(ix.search(&q("beta"), 10, |_| true).is_empty());
        ix.remove(b);
        ix.remove(c);
        assert!(ix.is_empty());
        assert_eq!(ix.distinct_words(), 0, "posting lists are compacted away");
    }
}
