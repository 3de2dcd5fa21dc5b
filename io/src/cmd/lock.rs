//! `muster lock`: runs a child process while holding a lock (or one of `-n` semaphore slots)
//! in the KV store, as Consul's `lock` command does with its `api.Lock` and `api.Semaphore`:
//! a session with a TTL, renewed while the child runs; `<prefix>/.lock` acquired with the
//! session (one holder), or the semaphore's contender key `<prefix>/<session>` plus the
//! holder list in `<prefix>/.lock` written by check-and-set (`-n` holders). The child sees
//! `CONSUL_LOCK_HELD=true`; if the lock is lost it gets SIGTERM, then SIGKILL after 5 s.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Args;
use serde::{Deserialize, Serialize};

use super::{CliError, Client, ClientError, HandlerError, HttpArgs, Outcome};

/// The session's TTL (Consul's lock default); it is renewed every half of it.
const SESSION_TTL: Duration = Duration::from_secs(15);

/// How long a lost lock's child has between SIGTERM and SIGKILL (Consul's `killTimeout`).
const KILL_GRACE: Duration = Duration::from_secs(5);

/// The flags value Consul's lock writes on its key, so that other tools see it is a lock.
const LOCK_FLAG: u64 = 0x2ddc_cbc0_58a5_0c18;

/// The flags value Consul's semaphore writes on its keys.
const SEMAPHORE_FLAG: u64 = 0xe0f6_9a2b_aa41_4de0;

/// How long each blocking wait of the monitor may take before asking again.
const WAIT: &str = "15s";

/// How long each blocking wait for the lock during acquisition may take: short, so that
/// Ctrl-C and `-timeout` are noticed within it.
const ACQUIRE_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub(crate) struct LockArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// How many may hold the lock at once (a semaphore when more than 1).
    #[arg(short = 'n', long = "n", default_value_t = 1)]
    limit: u32,
    /// The session's name.
    #[arg(long, default_value = "")]
    name: String,
    /// Runs the command through `sh -c` (the default).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    shell: bool,
    /// Gives up acquiring after this long (`0s`: wait for ever). `-try` is its deprecated
    /// name, which Consul still takes.
    #[arg(long, alias = "try", default_value = "0s")]
    timeout: String,
    /// Exits 2 when the child fails, rather than 0.
    #[arg(long = "child-exit-code")]
    child_exit_code: bool,
    /// Passes this command's stdin to the child.
    #[arg(long = "pass-stdin")]
    pass_stdin: bool,
    /// Says what it is doing on stderr.
    #[arg(long)]
    verbose: bool,
    /// How many times to retry a failed check of the lock before treating it as lost.
    #[arg(long = "monitor-retry", default_value_t = 3)]
    monitor_retry: u32,
    /// The KV prefix, then the command.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// A KV entry, as much of it as a lock reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Pair {
    key: String,
    modify_index: u64,
    #[serde(default)]
    flags: u64,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

/// The holder list of a semaphore (Consul's `semaphoreLock`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Holders {
    limit: u32,
    holders: BTreeMap<String, bool>,
}

pub(crate) fn lock(args: &LockArgs) -> Outcome {
    let (prefix, command) = match args.args.as_slice() {
        [] | [_] => return Err(CliError::usage("Key prefix and child command must be specified")),
        [prefix, command @ ..] => (prefix.trim_start_matches('/').trim_end_matches('/').to_owned(), command),
    };
    if prefix.is_empty() {
        return Err(CliError::usage("Key prefix and child command must be specified"));
    }
    if args.limit == 0 {
        return Err(CliError::usage("Lock holder limit must be positive"));
    }
    let timeout = muster_core::duration::parse(&args.timeout).map_err(|source| CliError::Duration {
        flag: "timeout",
        text: args.timeout.clone(),
        source,
    })?;
    let client = Arc::new(Client::new(&args.http)?);
    let say = |text: &str| {
        if args.verbose {
            eprintln!("{text}");
        }
    };
    let name = if args.name.is_empty() {
        format!("Consul lock for '{}' at '{prefix}'", command.join(" "))
    } else {
        args.name.clone()
    };
    let session = create_session(&client, &name).map_err(|error| CliError::Lock(error.into()))?;
    // SIGINT or SIGTERM: stop the child (if any), release, destroy the session, exit 1.
    let interrupted = super::shutdown_signals();
    let lost = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let renewer = {
        let (client, session, lost, stop) = (client.clone(), session.clone(), lost.clone(), stop.clone());
        std::thread::spawn(move || renew(&client, &session, &lost, &stop))
    };
    let held =
        Held { client: client.clone(), prefix: prefix.clone(), session: session.clone(), limit: args.limit };
    say("Attempting lock acquisition");
    let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
    let acquired = held.acquire(deadline, &interrupted);
    // Not acquired: the error is the outcome, printed once the session is destroyed.
    let outcome = match acquired {
        Err(error) => {
            held.abandon();
            Err(CliError::Lock(error))
        }
        Ok(false) => {
            held.abandon();
            Err(CliError::LockAbandoned)
        }
        Ok(true) => {
            let monitor = {
                let (held, lost, stop, retries) =
                    (held.clone(), lost.clone(), stop.clone(), args.monitor_retry);
                std::thread::spawn(move || held.monitor(&lost, &stop, retries))
            };
            say("Starting handler");
            // The child's failure is reported now, not as the outcome: what the release says
            // must follow it.
            let code = match run_child(args, command, &lost, &interrupted) {
                Ok(code) => code,
                Err(error) => {
                    eprintln!("{error}");
                    1
                }
            };
            if lost.load(Ordering::SeqCst) {
                eprintln!("Lock lost, killed child");
            }
            let code = if interrupted.load(Ordering::SeqCst) { 1 } else { code };
            // Released before the monitor is joined: the release is the change that ends the
            // monitor's blocking query.
            stop.store(true, Ordering::SeqCst);
            if let Err(error) = held.release() {
                eprintln!("Lock release failed: {error}");
            }
            let _ = monitor.join();
            Ok(code)
        }
    };
    stop.store(true, Ordering::SeqCst);
    let _ = renewer.join();
    let _ = client.put(&format!("/v1/session/destroy/{session}"), &[], b"");
    outcome
}

/// Why the lock (or a semaphore slot) could not be taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    /// A request to the agent failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The semaphore's contender key could not be written.
    #[error("failed to make contender entry")]
    NoContender,
    /// The lock's key is there, written by something other than a lock (its flags differ).
    #[error("Existing key does not match lock use")]
    NotALock,
    /// The semaphore's key is there, written by something other than a semaphore.
    #[error("Existing key does not match semaphore use")]
    NotASemaphore,
    /// The semaphore's holder list does not decode.
    #[error("failed to decode lock: {0}")]
    Holders(#[source] serde_json::Error),
    /// The semaphore was made with another `-n`.
    #[error("semaphore limit conflict (lock: {held}, local: {local})")]
    LimitConflict {
        /// The holder list's limit.
        held: u32,
        /// This command's `-n`.
        local: u32,
    },
}

fn create_session(client: &Client, name: &str) -> Result<String, ClientError> {
    #[derive(Deserialize)]
    struct Created {
        #[serde(rename = "ID")]
        id: String,
    }
    let body = serde_json::json!({
        "Name": name,
        "TTL": format!("{}s", SESSION_TTL.as_secs()),
        "Behavior": "release",
        "LockDelay": "15s",
    });
    let created: Created =
        client.put("/v1/session/create", &[], body.to_string().as_bytes()).and_then(|reply| reply.json())?;
    Ok(created.id)
}

/// Renews the session every half TTL until `stop`; a session the servers no longer know is a
/// lost lock.
fn renew(client: &Client, session: &str, lost: &AtomicBool, stop: &AtomicBool) {
    let mut next = Instant::now() + SESSION_TTL / 2;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if Instant::now() < next {
            continue;
        }
        match client.put(&format!("/v1/session/renew/{session}"), &[], b"") {
            Ok(reply) if reply.status == 404 => {
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // A failed renewal is tried again sooner; the TTL leaves room for a few.
            Ok(reply) if reply.status == 200 => next = Instant::now() + SESSION_TTL / 2,
            _ => next = Instant::now() + Duration::from_secs(1),
        }
    }
}

/// What the holder of a lock or semaphore slot knows of it.
#[derive(Clone)]
struct Held {
    client: Arc<Client>,
    prefix: String,
    session: String,
    limit: u32,
}

impl Held {
    fn lock_key(&self) -> String {
        format!("{}/.lock", self.prefix)
    }

    fn contender_key(&self) -> String {
        format!("{}/{}", self.prefix, self.session)
    }

    /// Tries until acquired (`true`), or past `deadline` or interrupted (`false`).
    fn acquire(&self, deadline: Option<Instant>, interrupted: &AtomicBool) -> Result<bool, LockError> {
        if self.limit > 1 {
            let flags = SEMAPHORE_FLAG.to_string();
            let query = [("acquire", self.session.as_str()), ("flags", flags.as_str())];
            let contended = self
                .client
                .put(&format!("/v1/kv/{}", self.contender_key()), &query, b"")
                .and_then(|r| r.json::<bool>())?;
            if !contended {
                return Err(LockError::NoContender);
            }
        }
        let mut index = 0u64;
        loop {
            if deadline.is_some_and(|at| Instant::now() >= at) || interrupted.load(Ordering::SeqCst) {
                return Ok(false);
            }
            let (acquired, seen) = if self.limit > 1 { self.try_semaphore()? } else { self.try_lock()? };
            if acquired {
                return Ok(true);
            }
            // Wait for the key (or prefix) to change, no longer than the deadline allows.
            index = self.wait_for_change(seen.max(index), deadline)?;
        }
    }

    /// One attempt at the single lock: `(acquired, the key's index)`. The key is read before
    /// the attempt, so a release after the read moves the index past the one returned and
    /// wakes the wait that follows a failed attempt.
    fn try_lock(&self) -> Result<(bool, u64), LockError> {
        let path = format!("/v1/kv/{}", self.lock_key());
        let reply = self.client.get(&path, &[])?;
        let index = reply.index.unwrap_or(0);
        if reply.status == 200 {
            let pairs: Vec<Pair> = reply.json()?;
            // A semaphore's holder list, or some other use of the key, is not a lock to take.
            if pairs.first().is_some_and(|p| p.flags != LOCK_FLAG) {
                return Err(LockError::NotALock);
            }
            if pairs.first().is_some_and(|p| p.session.as_deref().is_some_and(|s| !s.is_empty())) {
                return Ok((false, index));
            }
        }
        let flags = LOCK_FLAG.to_string();
        let query = [("acquire", self.session.as_str()), ("flags", flags.as_str())];
        let acquired = self.client.put(&path, &query, b"").and_then(|r| r.json::<bool>())?;
        Ok((acquired, index))
    }

    /// One attempt at a semaphore slot: prunes holders whose contender entry lost its session,
    /// then adds this session if there is room, by check-and-set on the holder list.
    fn try_semaphore(&self) -> Result<(bool, u64), LockError> {
        let reply = self.client.get(&format!("/v1/kv/{}/", self.prefix), &[("recurse", "")])?;
        let index = reply.index.unwrap_or(0);
        let pairs: Vec<Pair> = if reply.status == 404 { Vec::new() } else { reply.json()? };
        let lock_key = self.lock_key();
        let lock = pairs.iter().find(|p| p.key == lock_key);
        if lock.is_some_and(|p| p.flags != SEMAPHORE_FLAG) {
            return Err(LockError::NotASemaphore);
        }
        let mut holders = match lock.and_then(|p| p.value.as_deref()) {
            Some(value) => {
                let raw = base64::engine::general_purpose::STANDARD.decode(value).unwrap_or_default();
                serde_json::from_slice::<Holders>(&raw).map_err(LockError::Holders)?
            }
            None => Holders { limit: self.limit, holders: BTreeMap::new() },
        };
        if holders.limit != self.limit {
            return Err(LockError::LimitConflict { held: holders.limit, local: self.limit });
        }
        let live: Vec<&str> = pairs
            .iter()
            .filter(|p| p.session.as_deref().is_some_and(|s| !s.is_empty()))
            .filter_map(|p| p.key.strip_prefix(&format!("{}/", self.prefix)))
            .collect();
        holders.holders.retain(|session, _| live.contains(&session.as_str()));
        if holders.holders.len() as u32 >= self.limit {
            return Ok((false, index));
        }
        holders.holders.insert(self.session.clone(), true);
        let cas = lock.map_or(0, |p| p.modify_index).to_string();
        let flags = SEMAPHORE_FLAG.to_string();
        let body = serde_json::to_vec(&holders).expect("holders serialize");
        let written = self
            .client
            .put(&format!("/v1/kv/{lock_key}"), &[("cas", cas.as_str()), ("flags", flags.as_str())], &body)
            .and_then(|r| r.json::<bool>())?;
        Ok((written, index))
    }

    /// Blocks until the lock's key (or the semaphore's prefix) moves past `index`, or the
    /// wait or the deadline runs out; the index seen.
    fn wait_for_change(&self, index: u64, deadline: Option<Instant>) -> Result<u64, ClientError> {
        // Short waits, so that a signal or the deadline is noticed soon.
        let left = deadline
            .map_or(ACQUIRE_WAIT, |at| at.saturating_duration_since(Instant::now()).min(ACQUIRE_WAIT));
        let wait = format!("{}ms", left.as_millis().max(1));
        let index_text = index.to_string();
        let (path, recurse) = if self.limit > 1 {
            (format!("/v1/kv/{}/", self.prefix), true)
        } else {
            (format!("/v1/kv/{}", self.lock_key()), false)
        };
        let mut query = vec![("index", index_text.as_str()), ("wait", wait.as_str())];
        if recurse {
            query.push(("recurse", ""));
        }
        let reply = self.client.get(&path, &query)?;
        Ok(reply.index.unwrap_or(index))
    }

    /// Whether this session still holds the lock (or its semaphore slot).
    fn still_held(&self, index: u64, wait: bool) -> Result<(bool, u64), ClientError> {
        let index_text = index.to_string();
        let mut query = Vec::new();
        if wait && index > 0 {
            query.extend([("index", index_text.as_str()), ("wait", WAIT)]);
        }
        let reply = self.client.get(&format!("/v1/kv/{}", self.lock_key()), &query)?;
        let seen = reply.index.unwrap_or(0);
        if reply.status == 404 {
            return Ok((false, seen));
        }
        let pairs: Vec<Pair> = reply.json()?;
        let Some(pair) = pairs.first() else { return Ok((false, seen)) };
        if self.limit == 1 {
            return Ok((pair.session.as_deref() == Some(self.session.as_str()), seen));
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(pair.value.as_deref().unwrap_or(""))
            .unwrap_or_default();
        let holders: Holders = serde_json::from_slice(&raw).unwrap_or_default();
        Ok((holders.holders.contains_key(&self.session), seen))
    }

    /// Watches the lock until `stop`; sets `lost` when it is no longer held (after `retries`
    /// failed checks in a row).
    fn monitor(&self, lost: &AtomicBool, stop: &AtomicBool, retries: u32) {
        let mut index = 0;
        let mut failures = 0;
        while !stop.load(Ordering::SeqCst) && !lost.load(Ordering::SeqCst) {
            match self.still_held(index, true) {
                Ok((true, seen)) => {
                    failures = 0;
                    index = seen;
                }
                Ok((false, _)) => lost.store(true, Ordering::SeqCst),
                Err(_) => {
                    failures += 1;
                    if failures > retries {
                        lost.store(true, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// Takes back what an acquisition that failed or gave up left: the semaphore's contender
    /// key.
    fn abandon(&self) {
        if self.limit > 1 {
            let _ = self.client.delete(&format!("/v1/kv/{}", self.contender_key()), &[]);
        }
    }

    /// Gives the lock (or slot) back, and deletes the lock's key if nobody else holds it
    /// (Consul's `Unlock` then `Destroy`).
    fn release(&self) -> Result<(), ClientError> {
        let lock_path = format!("/v1/kv/{}", self.lock_key());
        if self.limit == 1 {
            // The flags go with the release: a write without them would set them to 0.
            let flags = LOCK_FLAG.to_string();
            self.client.put(
                &lock_path,
                &[("release", self.session.as_str()), ("flags", flags.as_str())],
                b"",
            )?;
            let reply = self.client.get(&lock_path, &[])?;
            if reply.status == 200 {
                let pairs: Vec<Pair> = reply.json()?;
                if let Some(pair) = pairs.first().filter(|p| p.session.as_deref().is_none_or(str::is_empty)) {
                    // Check-and-set: a contender that took the lock meanwhile keeps it.
                    self.client.delete(&lock_path, &[("cas", &pair.modify_index.to_string())])?;
                }
            }
            return Ok(());
        }
        // Take this session off the holder list by check-and-set, then drop the contender key.
        for _ in 0..10 {
            let reply = self.client.get(&format!("/v1/kv/{}", self.lock_key()), &[])?;
            if reply.status == 404 {
                break;
            }
            let pairs: Vec<Pair> = reply.json()?;
            let Some(pair) = pairs.first() else { break };
            let raw = base64::engine::general_purpose::STANDARD
                .decode(pair.value.as_deref().unwrap_or(""))
                .unwrap_or_default();
            let mut holders: Holders = serde_json::from_slice(&raw).unwrap_or_default();
            if holders.holders.remove(&self.session).is_none() {
                break;
            }
            let cas = pair.modify_index.to_string();
            if holders.holders.is_empty() {
                let deleted = self
                    .client
                    .delete(&lock_path, &[("cas", cas.as_str())])
                    .and_then(|r| r.json::<bool>())?;
                if deleted {
                    break;
                }
                continue;
            }
            let flags = SEMAPHORE_FLAG.to_string();
            let body = serde_json::to_vec(&holders).expect("holders serialize");
            let written = self
                .client
                .put(
                    &format!("/v1/kv/{}", self.lock_key()),
                    &[("cas", cas.as_str()), ("flags", flags.as_str())],
                    &body,
                )
                .and_then(|r| r.json::<bool>())?;
            if written {
                break;
            }
        }
        self.client.delete(&format!("/v1/kv/{}", self.contender_key()), &[])?;
        Ok(())
    }
}

/// Runs the child with `CONSUL_LOCK_HELD=true` until it exits or the lock is lost; the exit
/// code `muster lock` ends with.
fn run_child(
    args: &LockArgs,
    command: &[String],
    lost: &AtomicBool,
    interrupted: &AtomicBool,
) -> Result<u8, HandlerError> {
    let mut child = if args.shell {
        let mut child = Command::new("/bin/sh");
        child.arg("-c").arg(command.join(" "));
        child
    } else {
        let mut child = Command::new(&command[0]);
        child.args(&command[1..]);
        child
    };
    child.env("CONSUL_LOCK_HELD", "true");
    if !args.pass_stdin {
        child.stdin(Stdio::null());
    }
    let mut child = child.spawn().map_err(HandlerError::Execute)?;
    let mut terminated: Option<Instant> = None;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(HandlerError::Wait)? {
            break status;
        }
        if lost.load(Ordering::SeqCst) || interrupted.load(Ordering::SeqCst) {
            match terminated {
                None => {
                    signal(child.id(), rustix::process::Signal::TERM);
                    terminated = Some(Instant::now());
                }
                Some(at) if at.elapsed() >= KILL_GRACE => {
                    let _ = child.kill();
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if status.success() || !args.child_exit_code {
        return Ok(0);
    }
    eprintln!("Error running handler: {}", super::watch::go_exit(&status));
    Ok(2)
}

fn signal(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}
