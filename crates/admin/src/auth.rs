//! Who may connect to the admin namespace: the reference's basic auth (a username and a
//! bcrypt hash of the password) and the session ids a password login gives out.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard::{ConnectError, Namespace, Socket};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::forward::Shared;

/// The reference's answer to any wrong credential; the UI shows it as "Invalid credentials".
pub(crate) const INVALID_CREDENTIALS: &str = "invalid credentials";

/// Password checks running at once: bcrypt is slow on purpose, so a flood of logins must not
/// take every core.
const CONCURRENT_CHECKS: usize = 2;

/// How long a login waits for a free check before it is refused as busy.
const CHECK_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Logins waiting for a check at most; past it a login is refused at once, so a flood holds
/// a bounded number of waiting connections.
const MAX_WAITING_CHECKS: usize = 16;

/// Who may connect to the admin namespace.
#[derive(Clone, PartialEq, Eq)]
pub enum AdminAuth {
    /// Anyone (the reference's `auth: false`): only for a server the UI reaches on a trusted
    /// network.
    Disabled,
    /// A username and the bcrypt hash of the password (`$2a$`, `$2b$` or `$2y$`).
    Basic {
        /// The username.
        username: String,
        /// The password's bcrypt hash.
        password_hash: String,
    },
}

impl fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminAuth::Disabled => f.write_str("Disabled"),
            AdminAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password_hash", &"***")
                .finish(),
        }
    }
}

/// The password hash given to [`AdminAuth::basic`] is not a bcrypt hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the admin password must be a bcrypt hash ($2a$, $2b$ or $2y$ and a cost, as `htpasswd -nbB` or bcryptjs make)")]
pub struct InvalidHash;

impl AdminAuth {
    /// Basic auth with `username` and the bcrypt `password_hash`, checked now (the reference
    /// refuses to start with a bad hash too).
    pub fn basic(
        username: impl Into<String>,
        password_hash: impl Into<String>,
    ) -> Result<AdminAuth, InvalidHash> {
        let password_hash = password_hash.into();
        let known_prefix = ["$2a$", "$2b$", "$2y$"]
            .iter()
            .any(|prefix| password_hash.starts_with(prefix));
        if !known_prefix || bcrypt::HashParts::from_str(&password_hash).is_err() {
            return Err(InvalidHash);
        }
        Ok(AdminAuth::Basic {
            username: username.into(),
            password_hash,
        })
    }
}

/// Session ids given out by password logins, with when they were made.
pub(crate) struct Sessions {
    ids: Mutex<HashMap<String, Instant>>,
    max: usize,
    ttl: Duration,
}

impl Sessions {
    pub(crate) fn new(max: usize, ttl: Duration) -> Sessions {
        Sessions {
            ids: Mutex::default(),
            max,
            ttl,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        self.ids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new session id: 16 hex digits, as the reference makes them.
    pub(crate) fn create(&self) -> String {
        let id = format!("{:016x}", rand::random::<u64>());
        let now = Instant::now();
        let mut ids = self.lock();
        ids.retain(|_, made| now.duration_since(*made) < self.ttl);
        if ids.len() >= self.max {
            let oldest = ids
                .iter()
                .min_by_key(|(_, made)| **made)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                ids.remove(&oldest);
            }
        }
        ids.insert(id.clone(), now);
        id
    }

    /// Whether `id` was given out and is not too old.
    pub(crate) fn valid(&self, id: &str) -> bool {
        let mut ids = self.lock();
        match ids.get(id) {
            Some(made) if made.elapsed() < self.ttl => true,
            Some(_) => {
                ids.remove(id);
                false
            }
            None => false,
        }
    }
}

/// The session id a password login made, stored on the admin socket until it is sent.
#[derive(Clone)]
pub(crate) struct NewSession(pub(crate) String);

/// Checks credentials: the configured auth, the session ids, the bounded password checks.
pub(crate) struct Authenticator {
    auth: AdminAuth,
    pub(crate) sessions: Sessions,
    checks: Arc<Semaphore>,
    /// A seat per login waiting for, or in, a password check: a permit, so a login whose
    /// CONNECT is dropped mid-check gives its seat back.
    seats: Semaphore,
}

impl Authenticator {
    pub(crate) fn new(auth: AdminAuth, sessions: Sessions) -> Authenticator {
        Authenticator {
            auth,
            sessions,
            checks: Arc::new(Semaphore::new(CONCURRENT_CHECKS)),
            seats: Semaphore::new(MAX_WAITING_CHECKS + CONCURRENT_CHECKS),
        }
    }

    /// Whether the socket's CONNECT may join; a password login leaves a [`NewSession`] on it.
    async fn admit(&self, socket: &Socket) -> Result<(), ConnectError> {
        let AdminAuth::Basic {
            username,
            password_hash,
        } = &self.auth
        else {
            return Ok(());
        };
        let auth = &socket.handshake().auth;
        if let Some(id) = auth.get("sessionId").and_then(Value::as_str) {
            if self.sessions.valid(id) {
                return Ok(());
            }
        }
        let given_user = auth.get("username").and_then(Value::as_str);
        let given_password = auth.get("password").and_then(Value::as_str);
        let (Some(given_user), Some(given_password)) = (given_user, given_password) else {
            return Err(refused(socket, "no username and password"));
        };
        // The hash is checked whatever the username, so the time taken does not tell
        // whether the username is right.
        let password_ok = self.verify(given_password, password_hash).await?;
        if password_ok && given_user == username {
            let id = self.sessions.create();
            socket.insert_data(NewSession(id));
            info!(address = %address(socket), "admin logged in");
            return Ok(());
        }
        Err(refused(socket, "wrong username or password"))
    }

    /// Runs bcrypt on a blocking thread, at most [`CONCURRENT_CHECKS`] at once.
    async fn verify(&self, password: &str, hash: &str) -> Result<bool, ConnectError> {
        let busy = || {
            warn!("admin login refused: too many password checks waiting");
            ConnectError::new("too many login attempts, try again later")
        };
        let Ok(_seat) = self.seats.try_acquire() else {
            return Err(busy());
        };
        self.check(password, hash).await.ok_or_else(busy)
    }

    /// The bcrypt check; `None` when no check was free within [`CHECK_QUEUE_WAIT`].
    async fn check(&self, password: &str, hash: &str) -> Option<bool> {
        let permit = tokio::time::timeout(CHECK_QUEUE_WAIT, self.checks.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)?;
        let (password, hash) = (password.to_owned(), hash.to_owned());
        let checked = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            bcrypt::verify(password, &hash)
        })
        .await;
        match checked {
            Ok(Ok(matches)) => Some(matches),
            Ok(Err(error)) => {
                warn!(%error, "admin password check failed");
                Some(false)
            }
            Err(error) => {
                warn!(%error, "admin password check did not finish");
                Some(false)
            }
        }
    }
}

fn address(socket: &Socket) -> String {
    socket
        .handshake()
        .address()
        .map(|address| address.ip().to_string())
        .unwrap_or_default()
}

fn refused(socket: &Socket, why: &str) -> ConnectError {
    warn!(address = %address(socket), why, "admin connection refused");
    ConnectError::new(INVALID_CREDENTIALS)
}

/// Puts the credentials check in front of the admin namespace.
pub(crate) fn guard(namespace: &Namespace, shared: Arc<Shared>) {
    namespace.use_middleware(move |socket: Socket| {
        let shared = shared.clone();
        async move {
            if shared.observer.stopped() {
                return Err(ConnectError::new("the admin namespace is stopped"));
            }
            shared.auth.admit(&socket).await
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bcrypt_hashes_are_accepted() {
        // The three prefixes bcryptjs verifies (cost 4, password "secret").
        let hash = bcrypt::hash_with_result("secret", 4).unwrap();
        let b = hash.format_for_version(bcrypt::Version::TwoB);
        let a = hash.format_for_version(bcrypt::Version::TwoA);
        let y = hash.format_for_version(bcrypt::Version::TwoY);
        for good in [&a, &b, &y] {
            assert!(AdminAuth::basic("admin", good.as_str()).is_ok(), "{good}");
            assert!(bcrypt::verify("secret", good).unwrap());
        }
        let x = hash.format_for_version(bcrypt::Version::TwoX);
        for bad in ["", "secret", "$2b$10$short", x.as_str()] {
            assert_eq!(AdminAuth::basic("admin", bad), Err(InvalidHash), "{bad}");
        }
    }

    #[test]
    fn the_hash_is_not_printed() {
        let auth = AdminAuth::Basic {
            username: "admin".into(),
            password_hash: "$2b$04$secretsecret".into(),
        };
        let printed = format!("{auth:?}");
        assert!(printed.contains("admin") && !printed.contains("secretsecret"));
    }

    #[tokio::test]
    async fn a_login_dropped_mid_check_gives_its_seat_back() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let auth = Authenticator::new(
            AdminAuth::basic("admin", &hash).unwrap(),
            Sessions::new(4, Duration::from_secs(60)),
        );
        let seats = MAX_WAITING_CHECKS + CONCURRENT_CHECKS;
        // Every check slot taken, so each login waits in its seat; then every login is dropped.
        let held = auth
            .checks
            .clone()
            .acquire_many_owned(CONCURRENT_CHECKS as u32)
            .await;
        let mut logins: Vec<_> = (0..seats)
            .map(|_| Box::pin(auth.verify("secret", &hash)))
            .collect();
        for login in &mut logins {
            let pending = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(std::future::Future::poll(login.as_mut(), cx).is_pending())
            })
            .await;
            assert!(pending);
        }
        assert_eq!(auth.seats.available_permits(), 0);
        assert!(auth.verify("secret", &hash).await.is_err(), "no seat left");
        drop(logins);
        drop(held);
        assert_eq!(auth.seats.available_permits(), seats);
        assert_eq!(auth.verify("secret", &hash).await.ok(), Some(true));
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let sessions = Sessions::new(2, Duration::from_secs(60));
        let first = sessions.create();
        assert_eq!(first.len(), 16);
        assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
        let second = sessions.create();
        assert!(sessions.valid(&first) && sessions.valid(&second));
        let third = sessions.create();
        assert!(!sessions.valid(&first), "the oldest goes past the bound");
        assert!(sessions.valid(&second) && sessions.valid(&third));
        assert!(!sessions.valid("0123456789abcdef"));

        let short = Sessions::new(10, Duration::ZERO);
        let id = short.create();
        assert!(!short.valid(&id), "expired at once");
    }
}
