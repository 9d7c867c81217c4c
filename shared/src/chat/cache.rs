//! In-process caches that keep chat inside its budget of store round trips: site and tenant records for
//! a few seconds (a changed widget or plan shows within that), and loaded indexes until the site's
//! `index_version` moves, within a memory budget.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A small map whose entries expire after a fixed time; the oldest entry goes when it is full.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.get_at(key, Instant::now())
    }

    pub fn insert(&self, key: K, value: V) {
        self.insert_at(key, value, Instant::now())
    }

    // `now` is a parameter so tests can step time instead of sleeping.
    fn get_at(&self, key: &K, now: Instant) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| now.saturating_duration_since(*at) < self.ttl)
            .map(|(_, v)| v.clone())
    }

    fn insert_at(&self, key: K, value: V, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (at, _)| now.saturating_duration_since(*at) < self.ttl);
            if entries.len() >= self.capacity
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (now, value));
    }

    pub fn remove(&self, key: &K) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// The memory a cached value holds, in bytes (an estimate is fine: it is a budget, not an allocator).
pub trait Weigh {
    fn weight(&self) -> usize;
}

impl Weigh for Vec<u8> {
    fn weight(&self) -> usize {
        self.len()
    }
}

/// A value with the bytes it is estimated to hold (for values that cannot weigh themselves cheaply).
#[derive(Debug)]
pub struct Weighed<T> {
    pub value: T,
    pub bytes: usize,
}

impl<T> Weigh for Weighed<T> {
    fn weight(&self) -> usize {
        self.bytes
    }
}

impl<T> std::ops::Deref for Weighed<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// A cached index: its version, when it was last used, its weight, the index.
type IndexEntry<V> = (u64, Instant, usize, Arc<V>);

/// Loaded indexes by (site, version): an entry never goes stale, it is only replaced by a newer version.
/// Bounded by bytes, not entries: a few large sites must not exhaust a 1 GB Lambda. An index larger than
/// the whole budget is served but not kept.
#[derive(Debug)]
pub struct IndexCache<V> {
    max_bytes: usize,
    entries: Mutex<(usize, HashMap<String, IndexEntry<V>>)>,
}

impl<V: Weigh> IndexCache<V> {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            entries: Mutex::new((0, HashMap::new())),
        }
    }

    /// The cached index of `site` at exactly `version`.
    pub fn get(&self, site: &str, version: u64) -> Option<Arc<V>> {
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = guard.1.get_mut(site).filter(|(v, ..)| *v == version)?;
        entry.1 = Instant::now();
        Some(entry.3.clone())
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    pub fn insert(&self, site: &str, version: u64, index: Arc<V>) {
        let weight = index.weight();
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (used, entries) = &mut *guard;
        if let Some((.., old, _)) = entries.remove(site) {
            *used -= old;
        }
        if weight > self.max_bytes {
            return;
        }
        // Least recently used go first until the new one fits.
        while *used + weight > self.max_bytes {
            let Some(lru) = entries
                .iter()
                .min_by_key(|(_, (_, used_at, ..))| *used_at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((.., w, _)) = entries.remove(&lru) {
                *used -= w;
            }
        }
        *used += weight;
        entries.insert(site.to_string(), (version, Instant::now(), weight, index));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_entries_expire_and_capacity_holds() {
        let ttl = Duration::from_secs(5);
        let cache = TtlCache::new(ttl, 2);
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        cache.insert_at("a", 1, t0);
        cache.insert_at("b", 2, t0 + ms(1));
        cache.insert_at("c", 3, t0 + ms(2));
        assert_eq!(cache.get_at(&"c", t0 + ms(2)), Some(3));
        assert_eq!(
            (
                cache.get_at(&"a", t0 + ms(2)),
                cache.get_at(&"b", t0 + ms(2))
            ),
            (None, Some(2)),
            "the oldest was evicted"
        );
        // Fresh until the TTL has passed since insertion, gone from then on.
        let inserted = t0 + ms(2);
        assert_eq!(cache.get_at(&"c", inserted + ttl - ms(1)), Some(3));
        assert_eq!(cache.get_at(&"c", inserted + ttl), None);
        // A full cache drops expired entries before evicting a fresh one.
        cache.insert_at("d", 4, inserted + ttl);
        cache.insert_at("e", 5, inserted + ttl + ms(1));
        assert_eq!(cache.get_at(&"d", inserted + ttl + ms(1)), Some(4));
        assert_eq!(cache.get_at(&"e", inserted + ttl + ms(1)), Some(5));
    }

    #[test]
    fn index_cache_is_bounded_by_bytes() {
        // A budget of 100 bytes holds one 60-byte index, not two, and never one larger than itself.
        let cache = IndexCache::new(100);
        cache.insert("site_a", 1, Arc::new(vec![0u8; 60]));
        cache.insert("site_b", 1, Arc::new(vec![0u8; 60]));
        assert!(cache.get("site_b", 1).is_some());
        assert!(
            cache.get("site_a", 1).is_none(),
            "two 60-byte indexes held in a 100-byte budget"
        );
        cache.insert("site_c", 1, Arc::new(vec![0u8; 500]));
        assert!(cache.get("site_c", 1).is_none(), "larger than the budget");
        assert!(
            cache.get("site_b", 1).is_some(),
            "kept: nothing was freed for it"
        );
        // Small ones fit side by side.
        cache.insert("site_d", 1, Arc::new(vec![0u8; 20]));
        cache.insert("site_e", 1, Arc::new(vec![0u8; 20]));
        assert!(cache.get("site_b", 1).is_some());
        assert!(cache.get("site_d", 1).is_some() && cache.get("site_e", 1).is_some());
    }

    #[test]
    fn index_entries_match_their_version() {
        let cache = IndexCache::new(10);
        cache.insert("site_a", 3, Arc::new(vec![3u8; 8]));
        assert!(cache.get("site_a", 3).is_some());
        assert!(cache.get("site_a", 4).is_none(), "a new version is a miss");
        cache.insert("site_a", 4, Arc::new(vec![4u8; 8]));
        assert_eq!(cache.bytes(), 8, "the old version's bytes were given back");
        cache.insert("site_a", 3, Arc::new(vec![3u8; 8]));
        cache.insert("site_b", 1, Arc::new(vec![1u8; 8]));
        assert!(
            cache.get("site_a", 3).is_none(),
            "least recently used evicted"
        );
    }
}
