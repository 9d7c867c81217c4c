//! In-process caches that keep chat inside its budget of store round trips: site and tenant records for
//! a few seconds (a changed widget or plan shows within that), and loaded indexes until the site's
//! `index_version` moves.

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

/// A cached index: its version, when it was last used, the index.
type IndexEntry<V> = (u64, Instant, Arc<V>);

/// Loaded indexes by (site, version): an entry never goes stale, it is only replaced by a newer version.
#[derive(Debug)]
pub struct IndexCache<V> {
    capacity: usize,
    entries: Mutex<HashMap<String, IndexEntry<V>>>,
}

impl<V> IndexCache<V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The cached index of `site` at exactly `version`.
    pub fn get(&self, site: &str, version: u64) -> Option<Arc<V>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get_mut(site).filter(|(v, _, _)| *v == version)?;
        entry.1 = Instant::now();
        Some(entry.2.clone())
    }

    pub fn insert(&self, site: &str, version: u64, index: Arc<V>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(site) {
            // Least recently used goes first.
            if let Some(lru) = entries
                .iter()
                .min_by_key(|(_, (_, used, _))| *used)
                .map(|(k, _)| k.clone())
            {
                entries.remove(&lru);
            }
        }
        entries.insert(site.to_string(), (version, Instant::now(), index));
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
    fn index_entries_match_their_version() {
        let cache = IndexCache::new(1);
        cache.insert("site_a", 3, Arc::new("v3"));
        assert!(cache.get("site_a", 3).is_some());
        assert!(cache.get("site_a", 4).is_none(), "a new version is a miss");
        cache.insert("site_b", 1, Arc::new("b"));
        assert!(
            cache.get("site_a", 3).is_none(),
            "least recently used evicted"
        );
    }
}
