//! A bounded cache with a time-to-live per entry. When full, expired entries go first,
//! then the oldest. Lookups take a short shared (read) lock, so concurrent reviews do not
//! queue behind one another; they never wait on I/O.

use std::collections::{HashMap, VecDeque};
use std::sync::RwLock;
use std::time::{Duration, Instant};

struct Entry<V> {
    value: V,
    expires: Instant,
    seq: u64,
}

struct Inner<V> {
    entries: HashMap<String, Entry<V>>,
    /// Insertion order; an item whose seq no longer matches its entry is stale.
    order: VecDeque<(u64, String)>,
    next_seq: u64,
}

/// Lookups under one shared lock of a [`Cache`].
pub struct Reader<'c, V>(std::sync::RwLockReadGuard<'c, Inner<V>>);

impl<V: Clone> Reader<'_, V> {
    /// The live value under `key`.
    pub fn get(&self, key: &str, now: Instant) -> Option<V> {
        self.peek(key, now).cloned()
    }
}

impl<V> Reader<'_, V> {
    /// The live value under `key`, borrowed for as long as this lock is held.
    pub fn peek(&self, key: &str, now: Instant) -> Option<&V> {
        self.0
            .entries
            .get(key)
            .filter(|e| e.expires > now)
            .map(|e| &e.value)
    }
}

/// The cache.
pub struct Cache<V> {
    inner: RwLock<Inner<V>>,
    capacity: usize,
}

impl<V: Clone> Cache<V> {
    /// A cache holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Cache {
            inner: RwLock::new(Inner {
                entries: HashMap::new(),
                order: VecDeque::new(),
                next_seq: 0,
            }),
            capacity: capacity.max(1),
        }
    }

    /// The live value under `key`.
    pub fn get(&self, key: &str, now: Instant) -> Option<V> {
        self.read().get(key, now)
    }

    /// A view for several lookups under one shared lock: a review reads all its images'
    /// facts at once, and each lock taken is a write to a line every core shares. Held
    /// only while looking up (never across a wait: it cannot be sent between threads).
    pub fn read(&self) -> Reader<'_, V> {
        Reader(self.inner.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Store `value` under `key` for `ttl`.
    pub fn insert(&self, key: String, value: V, ttl: Duration, now: Instant) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.order.push_back((seq, key.clone()));
        inner.entries.insert(
            key,
            Entry {
                value,
                expires: now + ttl,
                seq,
            },
        );
        if inner.entries.len() > self.capacity {
            inner.entries.retain(|_, e| e.expires > now);
        }
        while inner.entries.len() > self.capacity {
            let Some((seq, key)) = inner.order.pop_front() else {
                break;
            };
            if inner.entries.get(&key).is_some_and(|e| e.seq == seq) {
                inner.entries.remove(&key);
            }
        }
        // Keep the order queue from growing without bound under overwrites.
        if inner.order.len() > self.capacity * 4 {
            let Inner { entries, order, .. } = &mut *inner;
            order.retain(|(seq, key)| entries.get(key).is_some_and(|e| e.seq == *seq));
        }
    }

    /// Drop the entries whose keys `forget` picks; returns how many went.
    pub fn forget(&self, forget: impl Fn(&str) -> bool) -> usize {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let before = inner.entries.len();
        inner.entries.retain(|key, _| !forget(key));
        let gone = before - inner.entries.len();
        if gone > 0 {
            let Inner { entries, order, .. } = &mut *inner;
            order.retain(|(seq, key)| entries.get(key).is_some_and(|e| e.seq == *seq));
        }
        gone
    }

    /// Number of entries (live or expired but not yet evicted).
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
