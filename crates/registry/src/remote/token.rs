//! Bearer tokens and their cache: which scopes a token grants and until when to trust it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A value that must never reach a log: its `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for building a header or a request body.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A set of scopes (`repository:app:pull,push repository:base:pull`), with actions merged per
/// resource so that sets compare and cover one another regardless of spelling.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Scopes(BTreeMap<String, BTreeSet<String>>);

impl Scopes {
    /// `repository:<name>:<actions>` for each action.
    pub fn repository(name: &str, actions: &[&str]) -> Self {
        let mut scopes = Scopes::default();
        scopes.add(&format!("repository:{name}"), actions.iter().copied());
        scopes
    }

    /// Adds scope strings as found in a challenge (`type:name:action,action`, several separated
    /// by spaces). A name may itself hold a colon (`repository:host:5000/app:pull`), so the
    /// actions are after the last one.
    pub fn add_str(&mut self, scopes: &str) {
        for scope in scopes.split_whitespace() {
            if let Some((resource, actions)) = scope.rsplit_once(':') {
                self.add(resource, actions.split(',').filter(|a| !a.is_empty()));
            }
        }
    }

    fn add<'a>(&mut self, resource: &str, actions: impl Iterator<Item = &'a str>) {
        self.0
            .entry(resource.to_owned())
            .or_default()
            .extend(actions.map(str::to_owned));
    }

    pub fn union(&self, other: &Scopes) -> Scopes {
        let mut merged = self.clone();
        for (resource, actions) in &other.0 {
            merged.add(resource, actions.iter().map(String::as_str));
        }
        merged
    }

    /// Whether a token granted for `self` also serves a request needing `needed`.
    pub fn covers(&self, needed: &Scopes) -> bool {
        needed.0.iter().all(|(resource, actions)| {
            self.0
                .get(resource)
                .is_some_and(|granted| actions.is_subset(granted))
        })
    }

    /// One string per resource, as sent in repeated `scope=` query parameters.
    pub fn to_strings(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(resource, actions)| {
                let actions: Vec<&str> = actions.iter().map(String::as_str).collect();
                format!("{resource}:{}", actions.join(","))
            })
            .collect()
    }
}

/// A bearer token and the moment after which it is no longer offered.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub value: Secret,
    /// When the exchange that issued it started.
    requested_at: Instant,
    use_until: Instant,
}

/// Registries that omit `expires_in` mean 60 seconds; shorter values are not to be believed.
const MINIMUM_LIFETIME: Duration = Duration::from_secs(60);
/// Longer lifetimes are cut to this: no run lasts as long, and `Instant` arithmetic stays far
/// from overflow whatever a token service answers (`expires_in` of 2^64-1).
const MAXIMUM_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// Stop offering a token this long before it expires, so it does not die in flight.
const SAFETY_MARGIN: Duration = Duration::from_secs(10);

impl Token {
    /// A token issued no earlier than `requested_at` (the moment the exchange started).
    pub fn new(value: Secret, expires_in: Option<u64>, requested_at: Instant) -> Self {
        let lifetime = expires_in
            .map(Duration::from_secs)
            .unwrap_or(MINIMUM_LIFETIME)
            .clamp(MINIMUM_LIFETIME, MAXIMUM_LIFETIME);
        Token {
            value,
            requested_at,
            use_until: requested_at + lifetime - SAFETY_MARGIN,
        }
    }

    fn is_fresh(&self, now: Instant) -> bool {
        now < self.use_until
    }
}

/// Tokens of one registry by scope set. A request reuses any fresh token whose scopes cover its
/// own; concurrent requests for the same scopes wait for one exchange instead of each running one.
#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<Scopes, Token>>,
    exchanges: Mutex<HashMap<Scopes, Arc<tokio::sync::Mutex<()>>>>,
}

impl TokenCache {
    /// A fresh token covering `scopes`, from the cache or from `exchange`.
    pub async fn get_or_exchange<E, F>(&self, scopes: &Scopes, exchange: F) -> Result<Token, E>
    where
        F: std::future::Future<Output = Result<Token, E>>,
    {
        if let Some(token) = self.lookup(scopes, Instant::now()) {
            return Ok(token);
        }
        let gate = self
            .exchanges
            .lock()
            .expect("token cache poisoned")
            .entry(scopes.clone())
            .or_default()
            .clone();
        let _exclusive = gate.lock().await;
        if let Some(token) = self.lookup(scopes, Instant::now()) {
            return Ok(token);
        }
        let token = exchange.await?;
        self.insert(scopes.clone(), token.clone());
        Ok(token)
    }

    fn lookup(&self, scopes: &Scopes, now: Instant) -> Option<Token> {
        let tokens = self.tokens.lock().expect("token cache poisoned");
        if let Some(token) = tokens.get(scopes).filter(|t| t.is_fresh(now)) {
            return Some(token.clone());
        }
        tokens
            .iter()
            .find(|(granted, token)| token.is_fresh(now) && granted.covers(scopes))
            .map(|(_, token)| token.clone())
    }

    fn insert(&self, scopes: Scopes, token: Token) {
        let mut tokens = self.tokens.lock().expect("token cache poisoned");
        let now = Instant::now();
        tokens.retain(|_, token| token.is_fresh(now));
        tokens.insert(scopes, token);
    }

    /// Forgets every token obtained before `moment` (when a refused request was sent): a
    /// registry that cut one token short refuses the others of that age too, while tokens
    /// obtained since (by concurrent requests that met the same refusal) are kept.
    pub fn forget_obtained_before(&self, moment: Instant) {
        self.tokens
            .lock()
            .expect("token cache poisoned")
            .retain(|_, token| token.requested_at >= moment);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn secrets_do_not_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        let token = Token::new(secret, None, Instant::now());
        assert!(!format!("{token:?}").contains("hunter2"));
    }

    #[test]
    fn scope_strings_merge_actions_per_resource() {
        let mut scopes = Scopes::repository("app", &["push", "pull"]);
        scopes.add_str("repository:base:pull");
        scopes.add_str("repository:app:pull");
        assert_eq!(
            scopes.to_strings(),
            ["repository:app:pull,push", "repository:base:pull"]
        );
    }

    #[test]
    fn scope_names_may_contain_colons() {
        let mut scopes = Scopes::default();
        scopes.add_str("repository:localhost:5000/app:pull");
        assert_eq!(scopes, Scopes::repository("localhost:5000/app", &["pull"]));
    }

    #[test]
    fn push_scopes_cover_pull_but_not_the_reverse() {
        let push = Scopes::repository("app", &["pull", "push"]);
        let pull = Scopes::repository("app", &["pull"]);
        assert!(push.covers(&pull));
        assert!(!pull.covers(&push));
        assert!(!push.covers(&Scopes::repository("other", &["pull"])));
        let mount = push.union(&Scopes::repository("base", &["pull"]));
        assert!(mount.covers(&push) && mount.covers(&Scopes::repository("base", &["pull"])));
    }

    #[test]
    fn lifetimes_default_to_and_never_go_below_sixty_seconds_minus_margin() {
        let start = Instant::now();
        for expires_in in [None, Some(0), Some(5), Some(60)] {
            let token = Token::new(Secret::new("t"), expires_in, start);
            assert!(
                token.is_fresh(start + Duration::from_secs(49)),
                "{expires_in:?}"
            );
            assert!(
                !token.is_fresh(start + Duration::from_secs(50)),
                "{expires_in:?}"
            );
        }
        let long = Token::new(Secret::new("t"), Some(300), start);
        assert!(long.is_fresh(start + Duration::from_secs(289)));
        assert!(!long.is_fresh(start + Duration::from_secs(290)));
    }

    #[test]
    fn huge_lifetimes_are_cut_to_a_day_without_overflow() {
        let start = Instant::now();
        let token = Token::new(Secret::new("t"), Some(u64::MAX), start);
        let day = Duration::from_secs(24 * 60 * 60);
        assert!(token.is_fresh(start + day - SAFETY_MARGIN - Duration::from_secs(1)));
        assert!(!token.is_fresh(start + day));
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_exchange_and_covering_tokens_are_reused() {
        let cache = Arc::new(TokenCache::default());
        let exchanges = Arc::new(AtomicUsize::new(0));
        let push = Scopes::repository("app", &["pull", "push"]);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (cache, exchanges, push) = (cache.clone(), exchanges.clone(), push.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_exchange(&push, async {
                            exchanges.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Ok::<_, ()>(Token::new(Secret::new("t1"), None, Instant::now()))
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().value.expose(), "t1");
        }
        assert_eq!(exchanges.load(Ordering::SeqCst), 1);

        let pull = Scopes::repository("app", &["pull"]);
        let reused = cache
            .get_or_exchange(&pull, async { Err::<Token, _>("must not exchange") })
            .await
            .unwrap();
        assert_eq!(reused.value.expose(), "t1");

        // A token for other scopes obtained earlier is forgotten with the refused one.
        let other = Scopes::repository("base", &["pull"]).union(&pull);
        cache.insert(
            other.clone(),
            Token::new(
                Secret::new("t0"),
                None,
                Instant::now() - Duration::from_secs(1),
            ),
        );
        cache.forget_obtained_before(Instant::now());
        assert!(cache.lookup(&other, Instant::now()).is_none());
        let renewed = cache
            .get_or_exchange(&pull, async {
                Ok::<_, ()>(Token::new(Secret::new("t2"), None, Instant::now()))
            })
            .await
            .unwrap();
        assert_eq!(renewed.value.expose(), "t2");
    }

    #[test]
    fn tokens_obtained_after_the_refused_request_was_sent_are_kept() {
        let cache = TokenCache::default();
        let start = Instant::now();
        let pull = Scopes::repository("app", &["pull"]);
        let push = Scopes::repository("app", &["pull", "push"]);
        cache.insert(pull.clone(), Token::new(Secret::new("old"), None, start));
        let sent_at = start + Duration::from_millis(5);
        cache.insert(
            push.clone(),
            Token::new(Secret::new("new"), None, start + Duration::from_millis(10)),
        );
        cache.forget_obtained_before(sent_at);
        assert_eq!(cache.lookup(&pull, start).unwrap().value.expose(), "new");
        assert!(cache.lookup(&push, start).is_some());
    }
}
