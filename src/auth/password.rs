//! Passwords: verify the original's bcrypt hashes exactly as it did, hash new passwords with
//! argon2id (or bcrypt, to run beside the old system), upgrade bcrypt hashes at the next good
//! login, and never let hashing block the async threads or reveal whether a user exists.
//!
//! The original cut the Python string to its first 72 characters, encoded it as UTF-8, and bcrypt
//! used the first 72 bytes of that. A multi-byte password can therefore differ after byte 72 and
//! still verify; we reproduce that rule for `$2a$/$2b$/$2y$` hashes so every existing password
//! keeps working. argon2id has no such limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::PasswordHash;

pub const MIN_LEN: usize = 8;
/// Longer inputs are refused before hashing (argon2 of megabytes is a denial of service).
pub const MAX_BYTES: usize = 1024;
/// bcrypt's cost for new hashes when `EF__PASSWORD_HASH=bcrypt` (the original's default).
const BCRYPT_COST: u32 = 12;

/// argon2id with OWASP's recommended minimum: 19 MiB, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The bytes the original fed to bcrypt.
pub fn bcrypt_input(password: &str) -> Vec<u8> {
    let first_72_chars: String = password.chars().take(72).collect();
    let mut bytes = first_72_chars.into_bytes();
    bytes.truncate(72);
    bytes
}

fn is_bcrypt(hash: &str) -> bool {
    hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$")
}

/// Whether a stored hash should be replaced by one in the configured scheme.
pub fn needs_upgrade(hash: &str, scheme: PasswordHash) -> bool {
    match scheme {
        PasswordHash::Argon2id => !hash.starts_with("$argon2id$"),
        PasswordHash::Bcrypt => false,
    }
}

/// Synchronous verification (call through [`Passwords`]). Unknown formats verify as false.
pub fn verify_blocking(password: &str, hash: &str) -> bool {
    if is_bcrypt(hash) {
        return bcrypt::verify(bcrypt_input(password), hash).unwrap_or(false);
    }
    if hash.starts_with("$argon2") {
        return argon2::PasswordHash::new(hash)
            .map(|parsed| {
                argon2()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
    }
    false
}

pub fn hash_blocking(password: &str, scheme: PasswordHash) -> anyhow::Result<String> {
    match scheme {
        PasswordHash::Argon2id => argon2()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2id hashing failed: {e}")),
        PasswordHash::Bcrypt => bcrypt::hash(bcrypt_input(password), BCRYPT_COST)
            .map_err(|e| anyhow::anyhow!("bcrypt hashing failed: {e}")),
    }
}

/// Why a new password is refused.
pub fn policy_violation(password: &str) -> Option<&'static str> {
    if password.len() > MAX_BYTES {
        Some("The password may be at most 1024 bytes")
    } else if password.chars().count() < MIN_LEN {
        Some("The password must have at least 8 characters")
    } else {
        None
    }
}

/// A bcrypt hash at the original's cost (12), verified once to learn what the slowest stored hash
/// costs on this machine. Its password does not matter.
const CALIBRATION_HASH: &str = "$2b$12$wogTz4VFiwKv4AlnYzBwzehangBN0j7GguuEJdYNwb1lG8DmCJSxu";
/// Margin over the calibrated bcrypt time, for its jitter.
const FLOOR_MARGIN: f64 = 1.25;

/// How many logins may wait for (or run) a password check per hashing slot; more are refused at
/// once ([`Passwords::admit`]) instead of queueing for seconds with their requests open.
const QUEUE_PER_SLOT: usize = 16;

/// How much lower the hashing threads' CPU priority is than the rest of the process (Linux nice
/// levels). Under contention (a login flood, or anything else busy on the machine) the request
/// handlers then get the CPU first; a hash takes longer, which only the login waiting for it
/// notices, and the queue in front of it refuses the excess at once.
const HASHING_NICENESS: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// The threads that hash: as many as there are hashing slots, started at the first hash, at a
/// lower CPU priority than everything else (`HASHING_NICENESS`). Tokio's blocking pool is not
/// used: its threads serve file and DNS work as well, and a thread's priority cannot be raised
/// again once lowered.
struct Hashers {
    jobs: mpsc::Sender<Job>,
}

impl Hashers {
    fn start(threads: usize) -> Hashers {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            let started = std::thread::Builder::new()
                .name(format!("ef-password-{i}"))
                .spawn(move || {
                    // Linux: the calling thread only (nice is per thread there).
                    #[cfg(target_os = "linux")]
                    if let Err(e) = rustix::process::setpriority_process(None, HASHING_NICENESS) {
                        tracing::debug!(error = %e, "password hashing keeps its CPU priority");
                    }
                    loop {
                        let job = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        // A panic fails that one check (its answer is dropped); the thread
                        // stays for the next.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            if let Err(e) = started {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        Hashers { jobs }
    }
}

/// A login's place in the password-check queue (see [`Passwords::admit`]).
pub struct Ticket {
    _place: OwnedSemaphorePermit,
}

/// Hashing off the async threads, at most a few at a time — half the cores, rounded up: a login
/// storm must not take every core, one stays for serving everything else — on threads of lower
/// CPU priority ([`Hashers`]), with a dummy hash to spend the same time on unknown users.
///
/// A dummy hash alone is not enough: an imported database holds bcrypt hashes (cost 12, ~10x
/// slower than our argon2id) until each user logs in again, so "unknown user" (argon2id dummy)
/// and "dormant imported user, wrong password" (bcrypt) would be told apart by their time. Every
/// failed verification therefore lasts at least the calibrated bcrypt time (a sleep, not CPU).
#[derive(Clone)]
pub struct Passwords {
    scheme: PasswordHash,
    slots: Arc<Semaphore>,
    parallel: usize,
    hashers: Arc<OnceLock<Hashers>>,
    /// Places in the queue of logins waiting for a slot (or in one).
    queue: Arc<Semaphore>,
    dummy: Arc<String>,
    failure_floor: Arc<OnceCell<Duration>>,
    /// Password verifications started (real or dummy): what a lockout must keep bounded.
    verifications: Arc<AtomicU64>,
}

impl Passwords {
    pub fn new(scheme: PasswordHash) -> anyhow::Result<Self> {
        // Half the cores (at least one): a flood of logins must leave CPU for other requests.
        let parallel = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .div_ceil(2);
        let dummy = hash_blocking("a password nobody has: timing equaliser", scheme)?;
        Ok(Passwords {
            scheme,
            slots: Arc::new(Semaphore::new(parallel)),
            parallel,
            hashers: Arc::new(OnceLock::new()),
            queue: Arc::new(Semaphore::new(parallel * QUEUE_PER_SLOT)),
            dummy: Arc::new(dummy),
            failure_floor: Arc::new(OnceCell::new()),
            verifications: Arc::new(AtomicU64::new(0)),
        })
    }

    /// How long every failed verification takes at least (see the type's documentation).
    pub async fn failure_floor(&self) -> Duration {
        *self
            .failure_floor
            .get_or_init(|| async {
                let started = Instant::now();
                let _ = self
                    .run(|| verify_blocking("calibration", CALIBRATION_HASH))
                    .await;
                let floor = started.elapsed().mul_f64(FLOOR_MARGIN);
                tracing::debug!(
                    floor_ms = floor.as_millis() as u64,
                    "failed logins take at least this long"
                );
                floor
            })
            .await
    }

    /// How many password verifications this process has started.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    pub fn scheme(&self) -> PasswordHash {
        self.scheme
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| anyhow::anyhow!("password hashing is shut down"))?;
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.hashers
            .get_or_init(|| Hashers::start(self.parallel))
            .jobs
            .send(Box::new(move || {
                let _ = answer.send(f());
            }))
            .map_err(|_| anyhow::anyhow!("no password hashing thread is running"))?;
        answered
            .await
            .map_err(|_| anyhow::anyhow!("password hashing failed (the check panicked)"))
    }

    /// A place in the password-check queue, or `None` when it is full (the caller answers "busy"
    /// at once). A login takes its place before it reads the user, so a flood of logins holds
    /// neither database connections nor requests open beyond the queue.
    pub fn admit(&self) -> Option<Ticket> {
        self.queue
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|place| Ticket { _place: place })
    }

    /// Whether the password-check queue is full right now. A login looks before it does any
    /// other work (its rate-limit reservation is a Redis round trip, and a second one to give it
    /// back when [`admit`](Self::admit) then refuses): in a flood nearly every login is refused,
    /// and each costs the server, and every other request queued behind it, as little as possible.
    pub fn is_full(&self) -> bool {
        self.queue.available_permits() == 0
    }

    /// [`verify`](Self::verify) for an admitted login: the queue place is given up as soon as the
    /// hash is computed, before the failure floor's sleep.
    pub async fn verify_admitted(
        &self,
        ticket: Ticket,
        password: &str,
        hash: Option<&str>,
    ) -> anyhow::Result<bool> {
        self.verify_inner(Some(ticket), password, hash).await
    }

    /// Verify against `hash`, or against the dummy hash when the user does not exist (same cost,
    /// always false).
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> anyhow::Result<bool> {
        self.verify_inner(None, password, hash).await
    }

    async fn verify_inner(
        &self,
        ticket: Option<Ticket>,
        password: &str,
        hash: Option<&str>,
    ) -> anyhow::Result<bool> {
        let password = password.to_owned();
        let (hash, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (self.dummy.as_str().to_owned(), false),
        };
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        // The floor is measured once, beside the first verification (not at start-up: most
        // processes that build this never check a password).
        let (ok, floor) = tokio::join!(
            self.run(move || verify_blocking(&password, &hash)),
            self.failure_floor()
        );
        drop(ticket);
        let ok = ok? && real;
        if !ok {
            tokio::time::sleep_until(started + floor).await;
        }
        Ok(ok)
    }

    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let password = password.to_owned();
        let scheme = self.scheme;
        self.run(move || hash_blocking(&password, scheme)).await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with Python's bcrypt 4.0.1 exactly as the original did:
    /// `bcrypt.hashpw(password[:72].encode("utf-8"), bcrypt.gensalt())`.
    const PY_ASCII: (&str, &str) = (
        "EuraFlow-pass-2025",
        "$2b$12$wogTz4VFiwKv4AlnYzBwzehangBN0j7GguuEJdYNwb1lG8DmCJSxu",
    );
    /// 42 characters, 126 bytes: bcrypt used the first 72 bytes (24 characters).
    const PY_CJK: (&str, &str) = (
        "跨境电商平台密码测试跨境电商平台密码测试跨境电商平台密码测试跨境电商平台密码测试尾巴",
        "$2b$12$d54UTmW0ENxSreV.JCdAAOJeFLJ2zGM2iGTrNLCFgCRAH7fxFH5W2",
    );

    /// Unknown user, wrong argon2id password and wrong bcrypt password all last at least the
    /// floor, so their times do not tell which accounts exist (or were imported and not migrated).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_failed_verification_lasts_at_least_the_floor() {
        let p = Passwords::new(PasswordHash::Argon2id).unwrap();
        let floor = p.failure_floor().await;
        let argon = p.hash("right-password").await.unwrap();
        for hash in [None, Some(argon.as_str()), Some(CALIBRATION_HASH)] {
            let started = Instant::now();
            assert!(!p.verify("wrong-password", hash).await.unwrap());
            assert!(
                started.elapsed() >= floor,
                "{hash:?}: {:?} < {floor:?}",
                started.elapsed()
            );
        }
        assert!(p.verify("right-password", Some(&argon)).await.unwrap());
    }

    #[test]
    fn python_bcrypt_hashes_verify() {
        assert!(verify_blocking(PY_ASCII.0, PY_ASCII.1));
        assert!(!verify_blocking("EuraFlow-pass-2026", PY_ASCII.1));
        // $2a$ and $2y$ spellings of the same hash verify the same way.
        assert!(verify_blocking(
            PY_ASCII.0,
            &PY_ASCII.1.replacen("$2b$", "$2a$", 1)
        ));
        assert!(verify_blocking(
            PY_ASCII.0,
            &PY_ASCII.1.replacen("$2b$", "$2y$", 1)
        ));
    }

    #[test]
    fn non_ascii_over_72_bytes_follows_the_original_rule() {
        assert!(verify_blocking(PY_CJK.0, PY_CJK.1));
        // Only the first 72 bytes count: a different ending still verifies...
        let same_prefix: String = PY_CJK
            .0
            .chars()
            .take(24)
            .chain("不同的结尾".chars())
            .collect();
        assert!(verify_blocking(&same_prefix, PY_CJK.1));
        // ...but a change inside them does not.
        let changed: String = std::iter::once('改')
            .chain(PY_CJK.0.chars().skip(1))
            .collect();
        assert!(!verify_blocking(&changed, PY_CJK.1));
        assert_eq!(bcrypt_input(PY_CJK.0).len(), 72);
    }

    #[test]
    fn argon2id_round_trip_and_upgrade_rule() {
        let h = hash_blocking("correct horse battery", PasswordHash::Argon2id).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_blocking("correct horse battery", &h));
        assert!(!verify_blocking("correct horse batterY", &h));
        assert!(!needs_upgrade(&h, PasswordHash::Argon2id));
        assert!(needs_upgrade(PY_ASCII.1, PasswordHash::Argon2id));
        assert!(!needs_upgrade(PY_ASCII.1, PasswordHash::Bcrypt));
        assert!(!verify_blocking("x", "not-a-hash"));
    }

    #[test]
    fn policy() {
        assert!(policy_violation("short").is_some());
        assert!(policy_violation("长度够八个字符了吗").is_none());
        assert!(policy_violation(&"a".repeat(1025)).is_some());
        assert!(policy_violation(&"a".repeat(1024)).is_none());
    }
}
