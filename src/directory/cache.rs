//! The cache shared by all sessions in front of a directory backend.
//!
//! - LRU with a capacity; a positive entry lives `ttl`, "no such user" lives
//!   `negative_ttl`.
//! - Single flight: concurrent misses for one key wait for one query.
//! - Stale-if-error: when the backend fails, an expired entry younger than
//!   `ttl + stale_if_error` is served (and counted); otherwise the caller
//!   gets "directory unavailable". An outage is never cached, and never
//!   turns into "unknown user" or "not a member".
//! - A permanent fault (an answer no safe decision follows from) is cached
//!   for `negative_ttl`: it is a tempfail either way, and asking again on
//!   every transaction only loads the server and floods the log.
//! - A reload with other directory settings starts a new cache, which adopts
//!   the old one's entries as stale only: never served while the new
//!   directory answers, still there to bridge an outage.
//! - Invalidation (the directory change follower): entries a change can
//!   affect are dropped, stale copies included. An answer fetched while an
//!   invalidation happened may predate the change: it is returned to the
//!   callers that asked, never stored.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use tokio::sync::OnceCell;

use super::{DirectoryUnavailable, ResolvedUser};

/// What the cache is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserKey {
    Login(String),
    Address(String),
}

impl std::fmt::Display for UserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserKey::Login(l) => write!(f, "login {l}"),
            UserKey::Address(a) => write!(f, "address {a}"),
        }
    }
}

pub type Lookup<V = ResolvedUser> = Result<Option<Arc<V>>, DirectoryUnavailable>;

/// Where an answer came from, for `lookup` and the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Directory,
    /// Expired entry served because the directory is unavailable.
    Stale,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    pub capacity: usize,
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub stale_if_error: Duration,
    /// A found entry's lifetime while the change follower is up and has been
    /// since the entry was fetched (changes drop it earlier); `ttl` again the
    /// moment the follower is down. Never shorter than `ttl`.
    pub ttl_while_following: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            capacity: 10_000,
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(30),
            stale_if_error: Duration::from_secs(3600),
            // Opt-in: 0 = `ttl`, so following only ever shortens a lifetime.
            ttl_while_following: Duration::ZERO,
        }
    }
}

/// Whether the directory change follower is up, and since when: one slot
/// per followed subtree, up only while every one is.
#[derive(Debug, Default)]
pub struct Following {
    slots: Mutex<Vec<Option<Instant>>>,
    /// Whether the follower sees every change that can matter, so found
    /// entries may live `ttl_while_following` (not when, say, AD's deleted
    /// objects are hidden from the bind DN).
    complete: std::sync::atomic::AtomicBool,
}

impl Following {
    pub fn new(subtrees: usize) -> Self {
        Following {
            slots: Mutex::new(vec![None; subtrees]),
            complete: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// The follower misses some changes (`false`): entries keep plain `ttl`.
    pub fn set_complete(&self, complete: bool) {
        self.complete.store(complete, Ordering::Relaxed);
    }

    /// Since when entries may live `ttl_while_following`, if they may.
    pub fn extends_since(&self) -> Option<Instant> {
        if self.complete.load(Ordering::Relaxed) {
            self.since()
        } else {
            None
        }
    }

    /// Subtree `slot` is followed from now on (`true`) or no longer (`false`).
    pub fn set(&self, slot: usize, up: bool) {
        if let Some(s) = lock(&self.slots).get_mut(slot) {
            *s = up.then(Instant::now);
        }
    }

    pub fn is_up(&self, slot: usize) -> bool {
        lock(&self.slots).get(slot).is_some_and(Option::is_some)
    }

    /// Since when every subtree has been followed, if it is.
    pub fn since(&self) -> Option<Instant> {
        let mut latest: Option<Instant> = None;
        for slot in lock(&self.slots).iter() {
            let up = (*slot)?;
            latest = Some(latest.map_or(up, |l| l.max(up)));
        }
        latest
    }
}

#[derive(Debug, Default)]
pub struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub queries: AtomicU64,
    pub errors: AtomicU64,
    pub stale_served: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> [u64; 5] {
        [
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
            self.queries.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            self.stale_served.load(Ordering::Relaxed),
        ]
    }
}

struct Entry<V> {
    /// An answer, or a permanent fault.
    value: Lookup<V>,
    fetched: Instant,
    /// Adopted from the cache of an earlier configuration: only for stale-if-error.
    stale_only: bool,
}

impl<V> Clone for Entry<V> {
    fn clone(&self) -> Self {
        Entry {
            value: self.value.clone(),
            fetched: self.fetched,
            stale_only: self.stale_only,
        }
    }
}

type Flight<V> = Arc<OnceCell<Lookup<V>>>;

/// Keys `K` (a login or an address) to shared values `V` (a resolved user,
/// a recipient's stored restrictions).
pub struct Cache<K = UserKey, V = ResolvedUser> {
    settings: CacheSettings,
    entries: Mutex<LruCache<K, Entry<V>>>,
    in_flight: Mutex<HashMap<K, Flight<V>>>,
    /// Bumped by every invalidation: a fetch that saw it change does not store.
    invalidations: AtomicU64,
    following: Option<Arc<Following>>,
    pub counters: Counters,
}

impl<K: Hash + Eq + Clone, V> Cache<K, V> {
    pub fn settings(&self) -> CacheSettings {
        self.settings
    }

    pub fn new(settings: CacheSettings) -> Self {
        Cache::followed(settings, None)
    }

    /// A cache whose found entries live `ttl_while_following` while
    /// `following` says the change follower is up.
    pub fn followed(settings: CacheSettings, following: Option<Arc<Following>>) -> Self {
        let cap = NonZeroUsize::new(settings.capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        Cache {
            following,
            settings,
            entries: Mutex::new(LruCache::new(cap)),
            in_flight: Mutex::new(HashMap::new()),
            invalidations: AtomicU64::new(0),
            counters: Counters::default(),
        }
    }

    fn lifetime(&self, e: &Entry<V>) -> Duration {
        match e.value {
            Ok(Some(_)) => {
                // Only an entry fetched while the follower was up: one from
                // before may predate a change the follower never saw.
                let followed = self
                    .following
                    .as_ref()
                    .and_then(|f| f.extends_since())
                    .is_some_and(|since| e.fetched >= since);
                if followed {
                    self.settings.ttl_while_following.max(self.settings.ttl)
                } else {
                    self.settings.ttl
                }
            }
            Ok(None) | Err(_) => self.settings.negative_ttl,
        }
    }

    /// Answer from the cache, or run `fetch` once for all concurrent callers.
    pub async fn get_or_fetch<F, Fut>(&self, key: &K, now: Instant, fetch: F) -> (Lookup<V>, Source)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Lookup<V>>,
    {
        let cached = lock(&self.entries).get(key).cloned();
        if let Some(e) = cached.as_ref().filter(|e| !e.stale_only) {
            if now.saturating_duration_since(e.fetched) < self.lifetime(e) {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                return (e.value.clone(), Source::Cache);
            }
        }
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        let flight = lock(&self.in_flight).entry(key.clone()).or_default().clone();
        let result = flight
            .get_or_init(|| async {
                self.counters.queries.fetch_add(1, Ordering::Relaxed);
                let generation = self.invalidations.load(Ordering::Acquire);
                let r = fetch().await;
                if r.is_err() {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                }
                // Lock first, then compare: an invalidation either ran before
                // (and is seen here) or runs after the store (and drops it).
                let mut entries = lock(&self.entries);
                let unchanged = self.invalidations.load(Ordering::Acquire) == generation;
                if unchanged && r.as_ref().map_or_else(|e| e.is_permanent(), |_| true) {
                    let e = Entry {
                        value: r.clone(),
                        fetched: Instant::now(),
                        stale_only: false,
                    };
                    entries.put(key.clone(), e);
                }
                drop(entries);
                r
            })
            .await
            .clone();
        {
            let mut f = lock(&self.in_flight);
            if f.get(key).is_some_and(|x| Arc::ptr_eq(x, &flight)) {
                f.remove(key);
            }
        }
        match result {
            Ok(v) => (Ok(v), Source::Directory),
            // Stale answers bridge outages only: after an unusable answer the
            // old entry may be exactly what changed.
            Err(e) => match cached {
                Some(Entry {
                    value: Ok(value),
                    fetched,
                    ..
                }) if !e.is_permanent() && self.within_stale_bound(fetched, value.is_some(), now) => {
                    self.counters.stale_served.fetch_add(1, Ordering::Relaxed);
                    (Ok(value), Source::Stale)
                }
                _ => (Err(e), Source::Directory),
            },
        }
    }

    fn within_stale_bound(&self, fetched: Instant, found: bool, now: Instant) -> bool {
        let lifetime = if found {
            self.settings.ttl
        } else {
            self.settings.negative_ttl
        };
        now.saturating_duration_since(fetched) < lifetime.saturating_add(self.settings.stale_if_error)
    }

    /// Take over `old`'s answers as stale only (a reload with other
    /// directory settings): they bridge an outage of the new directory and
    /// are never served while it answers. Faults are not taken over.
    pub fn adopt_stale(&self, old: &Cache<K, V>) {
        if std::ptr::eq(self, old) {
            return;
        }
        let old = lock(&old.entries);
        let mut entries = lock(&self.entries);
        // Least recently used first, so the recency order survives.
        for (k, e) in old.iter().rev() {
            if e.value.is_ok() && !entries.contains(k) {
                let mut e = e.clone();
                e.stale_only = true;
                entries.put(k.clone(), e);
            }
        }
    }

    /// Drop every entry `affected` says a directory change can have
    /// altered (stale-only copies too: they would bridge an outage with
    /// exactly what changed). Returns how many were dropped.
    pub fn invalidate(&self, mut affected: impl FnMut(&K, &Lookup<V>) -> bool) -> usize {
        let mut entries = lock(&self.entries);
        self.invalidations.fetch_add(1, Ordering::AcqRel);
        // Queries under way may have read the old state: later callers
        // start their own instead of joining them.
        lock(&self.in_flight).clear();
        let doomed: Vec<K> = entries
            .iter()
            .filter(|(k, e)| affected(k, &e.value))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &doomed {
            entries.pop(k);
        }
        doomed.len()
    }

    /// A gap in the change stream that cannot be accounted for: every entry
    /// becomes stale only — never served while the directory answers, still
    /// bridging an outage (the gap is often one). Returns how many.
    pub fn demote_all(&self) -> usize {
        let mut entries = lock(&self.entries);
        self.invalidations.fetch_add(1, Ordering::AcqRel);
        lock(&self.in_flight).clear();
        let mut n = 0;
        for (_, e) in entries.iter_mut() {
            if e.value.is_ok() && !e.stale_only {
                e.stale_only = true;
                n += 1;
            }
        }
        // Faults are not worth keeping: they answer nothing stale.
        let faults: Vec<K> = entries
            .iter()
            .filter(|(_, e)| e.value.is_err())
            .map(|(k, _)| k.clone())
            .collect();
        for k in &faults {
            entries.pop(k);
        }
        n + faults.len()
    }

    /// Whether `key` has an entry (of any age), without touching its recency.
    pub fn contains(&self, key: &K) -> bool {
        lock(&self.entries).contains(key)
    }

    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A poisoned lock only means another task panicked mid-update of a cache;
/// the data is still a valid cache, so keep going.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn user(login: &str) -> Arc<ResolvedUser> {
        ResolvedUser::for_test(login, &format!("uid={login}"), &[], &[])
    }

    fn settings() -> CacheSettings {
        CacheSettings {
            capacity: 2,
            ttl: Duration::from_secs(10),
            negative_ttl: Duration::from_secs(2),
            stale_if_error: Duration::from_secs(100),
            ttl_while_following: Duration::from_secs(1000),
        }
    }

    #[tokio::test]
    async fn invalidation_drops_what_it_names_stale_copies_included() {
        let roomy = CacheSettings {
            capacity: 10,
            ..settings()
        };
        let c: Cache<String> = Cache::new(roomy);
        for login in ["alice", "bob"] {
            let _ = c
                .get_or_fetch(&login.to_string(), Instant::now(), || async move {
                    Ok(Some(user(login)))
                })
                .await;
        }
        let dropped = c.invalidate(|_, v| matches!(v, Ok(Some(u)) if u.entry.login == "alice"));
        assert_eq!((dropped, c.len()), (1, 1));
        // Dropped means asked again, and not bridged by an old copy when down.
        let (r, s) = c
            .get_or_fetch(&"alice".to_string(), Instant::now(), || async {
                Err(DirectoryUnavailable::outage("down"))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(s, Source::Directory);
        let (_, s) = c
            .get_or_fetch(&"bob".to_string(), Instant::now(), || async { unreachable!() })
            .await;
        assert_eq!(s, Source::Cache, "bob untouched");
        let newer: Cache<String> = Cache::new(roomy);
        newer.adopt_stale(&c);
        assert_eq!(
            newer.invalidate(|_, _| true),
            1,
            "stale-only copies are dropped too"
        );
        // A gap: bob is kept for outages only.
        assert_eq!(c.demote_all(), 1);
        let (r, s) = c
            .get_or_fetch(&"bob".to_string(), Instant::now(), || async {
                Err(DirectoryUnavailable::outage("down"))
            })
            .await;
        assert_eq!((r.unwrap().is_some(), s), (true, Source::Stale));
        let (_, s) = c
            .get_or_fetch(&"bob".to_string(), Instant::now(), || async {
                Ok(Some(user("bob")))
            })
            .await;
        assert_eq!(s, Source::Directory, "never served while the directory answers");
    }

    #[tokio::test]
    async fn an_answer_fetched_across_an_invalidation_is_returned_but_not_stored() {
        let c: Arc<Cache<String>> = Arc::new(Cache::new(settings()));
        let (fetching, fetched) = tokio::sync::oneshot::channel::<()>();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let c2 = c.clone();
        let lookup = tokio::spawn(async move {
            c2.get_or_fetch(&"alice".to_string(), Instant::now(), || async move {
                let _ = fetching.send(());
                let _ = released.await;
                Ok(Some(user("alice")))
            })
            .await
        });
        fetched.await.unwrap();
        // The change is followed while the old state is on its way.
        c.invalidate(|_, _| true);
        release.send(()).unwrap();
        let (r, _) = lookup.await.unwrap();
        assert!(r.unwrap().is_some(), "the caller gets its answer");
        assert!(c.is_empty(), "but it may predate the change: not cached");
        let (_, s) = c
            .get_or_fetch(&"alice".to_string(), Instant::now(), || async {
                Ok(Some(user("alice")))
            })
            .await;
        assert_eq!(s, Source::Directory);
    }

    #[tokio::test]
    async fn found_entries_live_ttl_while_following_only_while_the_follower_is_up() {
        let following = Arc::new(Following::new(1));
        let c: Cache<String> = Cache::followed(settings(), Some(following.clone()));
        let k = "alice".to_string();
        let fresh = || async { Ok(Some(user("alice"))) };
        // Fetched before the follower was up: plain ttl (10 s).
        let _ = c.get_or_fetch(&k, Instant::now(), fresh).await;
        following.set(0, true);
        let (_, s) = c
            .get_or_fetch(&k, Instant::now() + Duration::from_secs(11), fresh)
            .await;
        assert_eq!(s, Source::Directory, "fetched before the follower came up");
        // Fetched while up: ttl_while_following (1000 s).
        let (_, s) = c
            .get_or_fetch(&k, Instant::now() + Duration::from_secs(500), || async {
                unreachable!()
            })
            .await;
        assert_eq!(s, Source::Cache);
        // The follower goes down: back to ttl at once.
        following.set(0, false);
        let (_, s) = c
            .get_or_fetch(&k, Instant::now() + Duration::from_secs(11), fresh)
            .await;
        assert_eq!(s, Source::Directory);
    }

    #[tokio::test]
    async fn hit_miss_ttl_and_negative_ttl() {
        let c: Cache<String> = Cache::new(settings());
        let t0 = Instant::now();
        let k = "alice".to_string();
        let (r, s) = c.get_or_fetch(&k, t0, || async { Ok(Some(user("alice"))) }).await;
        assert_eq!(
            (r.unwrap().unwrap().entry.login.as_str(), s),
            ("alice", Source::Directory)
        );
        let (_, s) = c
            .get_or_fetch(&k, t0 + Duration::from_secs(9), || async { unreachable!() })
            .await;
        assert_eq!(s, Source::Cache);
        let (_, s) = c
            .get_or_fetch(&k, Instant::now() + Duration::from_secs(11), || async {
                Ok(Some(user("alice")))
            })
            .await;
        assert_eq!(s, Source::Directory, "expired after ttl");
        let nobody = "nobody".to_string();
        let (r, _) = c
            .get_or_fetch(&nobody, Instant::now(), || async { Ok(None) })
            .await;
        assert!(r.unwrap().is_none());
        let (_, s) = c
            .get_or_fetch(&nobody, Instant::now() + Duration::from_secs(1), || async {
                unreachable!()
            })
            .await;
        assert_eq!(s, Source::Cache, "negative answer cached");
        let (_, s) = c
            .get_or_fetch(&nobody, Instant::now() + Duration::from_secs(3), || async {
                Ok(None)
            })
            .await;
        assert_eq!(s, Source::Directory, "negative ttl is shorter");
        assert_eq!(c.counters.snapshot()[..3], [2, 4, 4]);
    }

    #[tokio::test]
    async fn errors_are_not_cached_and_stale_is_served_within_bounds() {
        let c: Cache<String> = Cache::new(settings());
        let k = "alice".to_string();
        let down = || async { Err(DirectoryUnavailable::outage("down")) };
        // Error with nothing cached: unavailable, and nothing stored.
        let (r, _) = c.get_or_fetch(&k, Instant::now(), down).await;
        assert!(r.is_err());
        assert!(c.is_empty());
        let _ = c
            .get_or_fetch(&k, Instant::now(), || async { Ok(Some(user("alice"))) })
            .await;
        // Expired but within stale_if_error: served stale.
        let later = Instant::now() + Duration::from_secs(50);
        let (r, s) = c.get_or_fetch(&k, later, down).await;
        assert_eq!(s, Source::Stale);
        assert!(r.unwrap().is_some());
        // Beyond ttl + stale_if_error: unavailable, never "unknown user".
        let much_later = Instant::now() + Duration::from_secs(200);
        let (r, _) = c.get_or_fetch(&k, much_later, down).await;
        assert!(r.is_err());
        let [_, _, _, errors, stale] = c.counters.snapshot();
        assert_eq!((errors, stale), (3, 1));
    }

    #[tokio::test]
    async fn a_permanent_fault_is_cached_for_the_negative_ttl_and_never_bridged() {
        let c: Cache<String> = Cache::new(settings());
        let k = "alice".to_string();
        let _ = c
            .get_or_fetch(&k, Instant::now(), || async { Ok(Some(user("alice"))) })
            .await;
        let later = Instant::now() + Duration::from_secs(11);
        let ambiguous = || async { Err(DirectoryUnavailable::permanent("two entries")) };
        let (r, s) = c.get_or_fetch(&k, later, ambiguous).await;
        assert!(r.unwrap_err().is_permanent(), "not bridged by the old entry");
        assert_eq!(s, Source::Directory);
        // Within negative_ttl (2 s) of being seen: answered from the cache.
        let (r, s) = c
            .get_or_fetch(&k, Instant::now() + Duration::from_secs(1), || async {
                unreachable!()
            })
            .await;
        assert!(r.unwrap_err().is_permanent());
        assert_eq!(s, Source::Cache);
        // After it, asked again; an outage then has nothing to bridge with.
        let (r, s) = c
            .get_or_fetch(&k, Instant::now() + Duration::from_secs(3), || async {
                Err(DirectoryUnavailable::outage("down"))
            })
            .await;
        assert!(!r.unwrap_err().is_permanent());
        assert_eq!(s, Source::Directory);
    }

    #[tokio::test]
    async fn adopted_entries_bridge_an_outage_and_are_never_served_while_the_directory_answers() {
        let roomy = CacheSettings {
            capacity: 10,
            ..settings()
        };
        let old: Cache<String> = Cache::new(roomy);
        for login in ["alice", "bob"] {
            let _ = old
                .get_or_fetch(&login.to_string(), Instant::now(), || async move {
                    Ok(Some(user(login)))
                })
                .await;
        }
        let _ = old
            .get_or_fetch(&"mallory".to_string(), Instant::now(), || async {
                Err(DirectoryUnavailable::permanent("two entries"))
            })
            .await;
        let new: Cache<String> = Cache::new(roomy);
        new.adopt_stale(&old);
        assert_eq!(new.len(), 2, "answers adopted, the fault not");
        // The new directory answers: its answer, not the adopted one.
        let (r, s) = new
            .get_or_fetch(&"alice".to_string(), Instant::now(), || async { Ok(None) })
            .await;
        assert_eq!((r.unwrap().is_none(), s), (true, Source::Directory));
        // The new directory is down: the adopted entry bridges it.
        let (r, s) = new
            .get_or_fetch(&"bob".to_string(), Instant::now(), || async {
                Err(DirectoryUnavailable::outage("down"))
            })
            .await;
        assert_eq!(
            (r.unwrap().unwrap().entry.login.as_str(), s),
            ("bob", Source::Stale)
        );
        let (r, _) = new
            .get_or_fetch(&"mallory".to_string(), Instant::now(), || async {
                Err(DirectoryUnavailable::outage("down"))
            })
            .await;
        assert!(r.is_err());
    }

    #[tokio::test]
    async fn concurrent_misses_cause_one_query() {
        let c: Arc<Cache<String>> = Arc::new(Cache::new(settings()));
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            let (c, calls, gate) = (c.clone(), calls.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                let k = "alice".to_string();
                c.get_or_fetch(&k, Instant::now(), || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    gate.notified().await;
                    Ok(Some(user("alice")))
                })
                .await
                .0
                .unwrap()
                .is_some()
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.notify_one();
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn capacity_evicts_least_recently_used() {
        let c: Cache<String> = Cache::new(settings());
        for k in ["a", "b", "c"] {
            let _ = c
                .get_or_fetch(&k.to_string(), Instant::now(), || async { Ok(None) })
                .await;
        }
        assert_eq!(c.len(), 2);
    }
}
