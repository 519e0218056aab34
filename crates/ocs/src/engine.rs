//! The OCS's working copy of its accounts and open sessions, in memory, and the group commit
//! that makes their changes durable.
//!
//! One OCS process owns its database, so the accounts it has loaded are the authoritative
//! copy: a credit-control request reads and changes its account here, under the account's own
//! lock ([`Engine::lock`]), instead of reading the row, locking it and writing it back in a
//! transaction of its own. Its effects (the account's row, the journal lines, the session with
//! its answer) go to one writer task, which writes what has queued up (up to [`MAX_GROUP`]) in
//! one transaction and then resolves each effect's [`Ticket`]. Why that is
//! as safe as a transaction per request:
//!
//! - **Credit limit**: requests on one account are serialised on its lock, and each sees the
//!   changes of those before it, committed or not; the pure logic checks the limit on that.
//! - **Durability**: an answer is returned only once its ticket says committed. The effects of
//!   one account reach the writer in the order they were made (sent under the lock), so a
//!   committed effect never rests on one that was not.
//! - **Retransmissions**: a session with a change in flight stays in memory with that change's
//!   ticket; a copy of its request gets the stored answer once that ticket resolves, never
//!   before. Sessions not in memory (closed ones once committed, all of them after a restart)
//!   are read from the database, which then holds their last answer.
//! - **A failed commit** fails every effect of the group, and the writer marks the
//!   (account, generation) pairs it held: effects queued after them, computed on the same
//!   copy, fail too. The next use of such an account finds its last ticket failed and loads it
//!   again from the database, as a new generation: memory never stays ahead of the database.
//!   A group that fails is retried one effect at a time, so one bad effect fails alone.
//! - **Other writers** (recharges, data records, partial CDRs, credit limits) take the
//!   account's lock, wait for its changes in flight ([`Held::settle`]), write in a transaction
//!   of their own, and put the result in memory after it commits, or drop the copy (reloaded
//!   at next use) if it did not.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use numport_core::Millis;
use numport_db::{Db, StoreError};
use tokio::sync::{OwnedMutexGuard, mpsc, watch};

use crate::balance::{Account, AccountId};
use crate::metrics::GroupCommitMetrics;
use crate::session::{Session, SessionState};
use crate::store;

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Most effects one group commit writes: enough that the commit's fixed cost is spread thin,
/// few enough that one group's answers are not held back long behind its statements.
pub const MAX_GROUP: usize = 512;

type Outcome = Option<std::result::Result<(), Arc<str>>>;

/// The commit of one change, which whoever relies on it waits for: the request that made it,
/// the retransmissions that replay its answer, the account's next writers.
#[derive(Debug, Clone)]
pub struct Ticket(watch::Receiver<Outcome>);

impl Ticket {
    fn new() -> (watch::Sender<Outcome>, Ticket) {
        let (tx, rx) = watch::channel(None);
        (tx, Ticket(rx))
    }

    /// Wait until the change is committed, or failed.
    pub async fn committed(&self) -> Result<()> {
        let mut rx = self.0.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(o) => o.clone().unwrap_or(Ok(())).map_err(|why| StoreError::CommitFailed(why.to_string())),
            Err(_) => Err(StoreError::CommitFailed("the OCS's writer stopped".into())),
        }
    }

    /// Resolved as failed (or its writer gone without a word).
    fn failed(&self) -> bool {
        match &*self.0.borrow() {
            Some(outcome) => outcome.is_err(),
            None => self.0.has_changed().is_err(),
        }
    }
}

/// One request's changes, as rows rendered by the request.
struct Effect {
    account: AccountId,
    generation: u64,
    /// The account's row after the change, if it changed.
    account_row: Option<store::AccountRow>,
    postings: Vec<store::PostingRow>,
    session: Option<store::SessionRow>,
    done: watch::Sender<Outcome>,
}

enum Job {
    Effect(Box<Effect>),
    /// Resolved once everything queued before it is written.
    Flush(watch::Sender<Outcome>),
}

/// An account in memory: its balance, its sessions held in memory, and its last change.
pub struct Cell {
    account: Account,
    sessions: HashMap<String, Cached>,
    /// Which load of the account this copy is: effects of a failed generation fail.
    generation: u64,
    last: Option<Ticket>,
}

struct Cached {
    session: Session,
    /// The commit of this version; `None` when it was read from the database.
    ticket: Option<Ticket>,
}

/// A session as a request finds it, with the commit its version waits for.
#[derive(Debug, Clone)]
pub struct Known {
    pub session: Session,
    pub ticket: Option<Ticket>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cell>>>;

struct Shared {
    db: Db,
    slots: Mutex<HashMap<AccountId, Slot>>,
    msisdns: Mutex<HashMap<String, AccountId>>,
    /// The account of each session held in memory.
    owners: Mutex<HashMap<String, AccountId>>,
    generations: AtomicU64,
    jobs: mpsc::UnboundedSender<Job>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The working copy and its writer; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

impl Engine {
    /// The working copy of `db` (empty: accounts load at first use) and its writer task,
    /// which ends when the last clone is dropped.
    pub fn start(db: Db, metrics: GroupCommitMetrics) -> Engine {
        let (jobs, queue) = mpsc::unbounded_channel();
        // On SQLite the writer's statements run on the thread that calls them: on the
        // database's own `db-tx` thread (`Db::run`) they never hold a runtime worker, and the
        // requests' tasks keep both workers.
        let writer_db = db.clone();
        tokio::spawn(async move { writer_db.clone().run(write_groups(writer_db, queue, metrics)).await });
        let shared = Shared {
            db,
            slots: Mutex::default(),
            msisdns: Mutex::default(),
            owners: Mutex::default(),
            generations: AtomicU64::new(1),
            jobs,
        };
        Engine { shared: Arc::new(shared) }
    }

    /// The account of `msisdn`: from memory, else from the database.
    pub async fn account_id(&self, msisdn: &str) -> Result<Option<AccountId>> {
        if let Some(id) = locked(&self.shared.msisdns).get(msisdn) {
            return Ok(Some(*id));
        }
        let id = store::account_id(&mut *self.shared.db.read().await?, msisdn).await?;
        if let Some(id) = id {
            locked(&self.shared.msisdns).insert(msisdn.to_owned(), id);
        }
        Ok(id)
    }

    /// Lock account `id` in memory, loading it if it is not there or its copy is of a failed
    /// generation; `None` if there is no such account.
    pub async fn lock(&self, id: AccountId) -> Result<Option<Held>> {
        let slot = locked(&self.shared.slots).entry(id).or_default().clone();
        let guard = slot.lock_owned().await;
        let mut held = Held { guard, shared: self.shared.clone(), unload_on_drop: false };
        let stale = match &*held.guard {
            None => true,
            Some(c) => c.last.as_ref().is_some_and(Ticket::failed),
        };
        if stale && !held.reload(id).await? {
            return Ok(None);
        }
        Ok(Some(held))
    }

    /// Lock the account a credit-control request is for, with its session: the session's
    /// account if the OCS knows the session, else `msisdn`'s. `None` if neither has an account.
    pub async fn lock_for_request(&self, session_id: &str, msisdn: &str) -> Result<Option<(Held, Option<Known>)>> {
        let owner = locked(&self.shared.owners).get(session_id).copied();
        let mut id = match owner {
            Some(id) => id,
            None => match self.account_id(msisdn).await? {
                Some(id) => id,
                None => match store::session(&mut *self.shared.db.read().await?, session_id).await? {
                    Some(s) => s.account_id,
                    None => return Ok(None),
                },
            },
        };
        // A session is always found on its own account, so the second turn settles it.
        for _ in 0..2 {
            let Some(mut held) = self.lock(id).await? else { return Ok(None) };
            let known = held.session(session_id).await?;
            match &known {
                Some(k) if k.session.account_id != id => id = k.session.account_id,
                _ => return Ok(Some((held, known))),
            }
        }
        Err(StoreError::Corrupt(format!("session {session_id} moves between accounts")))
    }

    /// Lock `msisdn`'s account for a writer of its own (a recharge, a data record, …), once
    /// its changes in flight are committed. Dropped without [`Held::set`] or [`Held::keep`],
    /// the copy is dropped, to be loaded again from what the database holds.
    pub async fn hold(&self, msisdn: &str) -> Result<Option<Held>> {
        let Some(id) = self.account_id(msisdn).await? else { return Ok(None) };
        let Some(mut held) = self.lock(id).await? else { return Ok(None) };
        held.settle().await?;
        held.unload_on_drop = true;
        Ok(Some(held))
    }

    /// Forget a closed session whose last change committed: it is read from the database
    /// from now on.
    pub async fn evict(&self, account: AccountId, session_id: &str, request_number: u32) {
        let slot = locked(&self.shared.slots).get(&account).cloned();
        let Some(slot) = slot else { return };
        let mut guard = slot.lock().await;
        let Some(cell) = guard.as_mut() else { return };
        let done = cell
            .sessions
            .get(session_id)
            .is_some_and(|c| c.session.state != SessionState::Open && c.session.last_request_number == request_number);
        if done {
            cell.sessions.remove(session_id);
            locked(&self.shared.owners).remove(session_id);
        }
    }

    /// Wait until every change made so far is committed (or failed).
    pub async fn flush(&self) -> Result<()> {
        let (done, ticket) = Ticket::new();
        self.shared.jobs.send(Job::Flush(done)).map_err(|_| StoreError::Closed)?;
        ticket.committed().await
    }
}

/// An account locked in memory.
pub struct Held {
    guard: OwnedMutexGuard<Option<Cell>>,
    shared: Arc<Shared>,
    unload_on_drop: bool,
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.unload_on_drop {
            self.forget();
        }
    }
}

impl Held {
    fn cell(&self) -> &Cell {
        self.guard.as_ref().unwrap_or_else(|| unreachable!("a held account is loaded"))
    }

    fn cell_mut(&mut self) -> &mut Cell {
        self.guard.as_mut().unwrap_or_else(|| unreachable!("a held account is loaded"))
    }

    pub fn account(&self) -> &Account {
        &self.cell().account
    }

    /// The account's last change, still in flight or not.
    pub fn last(&self) -> Option<Ticket> {
        self.cell().last.clone()
    }

    /// Drop the copy (and its sessions) from memory.
    fn forget(&mut self) {
        if let Some(cell) = self.guard.take() {
            let mut owners = locked(&self.shared.owners);
            for id in cell.sessions.keys() {
                owners.remove(id);
            }
        }
    }

    /// Load the account from the database as a new generation; false if it does not exist.
    async fn reload(&mut self, id: AccountId) -> Result<bool> {
        self.forget();
        let account = store::account(&mut *self.shared.db.read().await?, id).await?;
        let Some(account) = account else { return Ok(false) };
        let generation = self.shared.generations.fetch_add(1, Ordering::Relaxed);
        *self.guard = Some(Cell { account, sessions: HashMap::new(), generation, last: None });
        Ok(true)
    }

    /// Wait for the account's changes in flight; if they failed, load it again.
    pub async fn settle(&mut self) -> Result<()> {
        let Some(last) = self.cell().last.clone() else { return Ok(()) };
        if last.committed().await.is_err() {
            let id = self.account().id;
            if !self.reload(id).await? {
                return Err(StoreError::NotFound("account"));
            }
        }
        self.cell_mut().last = None;
        Ok(())
    }

    /// Session `id`: from memory, else from the database (kept in memory if open).
    pub async fn session(&mut self, id: &str) -> Result<Option<Known>> {
        if let Some(c) = self.cell().sessions.get(id) {
            return Ok(Some(Known { session: c.session.clone(), ticket: c.ticket.clone() }));
        }
        let Some(session) = store::session(&mut *self.shared.db.read().await?, id).await? else { return Ok(None) };
        let account = self.account().id;
        if session.state == SessionState::Open && session.account_id == account {
            locked(&self.shared.owners).insert(id.to_owned(), account);
            self.cell_mut().sessions.insert(id.to_owned(), Cached { session: session.clone(), ticket: None });
        }
        Ok(Some(Known { session, ticket: None }))
    }

    /// Make `after` (with the journal lines `postings` and the `session` to store) the
    /// account's state, and queue it for the group commit: the returned ticket says when it
    /// is durable. Nothing is queued when nothing changed.
    pub fn apply(
        &mut self,
        after: Account,
        postings: Vec<store::PostingRow>,
        session: Option<Session>,
        now: Millis,
    ) -> Result<Ticket> {
        let account_row = if after != self.cell().account { Some(store::AccountRow::of(&after)?) } else { None };
        let session_row = session.as_ref().map(|s| store::SessionRow::of(s, now)).transpose()?;
        if account_row.is_none() && postings.is_empty() && session_row.is_none() {
            let (done, ticket) = Ticket::new();
            done.send_replace(Some(Ok(())));
            return Ok(self.last().unwrap_or(ticket));
        }
        let (done, ticket) = Ticket::new();
        let cell = self.cell();
        let effect = Effect {
            account: after.id,
            generation: cell.generation,
            account_row,
            postings,
            session: session_row,
            done,
        };
        self.shared.jobs.send(Job::Effect(Box::new(effect))).map_err(|_| StoreError::Closed)?;
        if let Some(s) = &session {
            locked(&self.shared.owners).insert(s.id.clone(), s.account_id);
        }
        let cell = self.cell_mut();
        cell.account = after;
        cell.last = Some(ticket.clone());
        if let Some(s) = session {
            cell.sessions.insert(s.id.clone(), Cached { session: s, ticket: Some(ticket.clone()) });
        }
        Ok(ticket)
    }

    /// Make `account` the copy in memory, after the caller's own transaction committed it.
    pub fn set(&mut self, account: Account) {
        self.cell_mut().account = account;
        self.unload_on_drop = false;
    }

    /// Keep the copy as it is (the caller changed nothing).
    pub fn keep(&mut self) {
        self.unload_on_drop = false;
    }
}

/// The writer: take what has queued, write it as one group, tell each effect, again.
async fn write_groups(db: Db, mut queue: mpsc::UnboundedReceiver<Job>, metrics: GroupCommitMetrics) {
    let mut failed: HashSet<(AccountId, u64)> = HashSet::new();
    let mut jobs = Vec::new();
    while let Some(job) = queue.recv().await {
        jobs.push(job);
        while jobs.len() < MAX_GROUP
            && let Ok(job) = queue.try_recv()
        {
            jobs.push(job);
        }
        let mut effects = Vec::with_capacity(jobs.len());
        let mut flushes = Vec::new();
        for job in jobs.drain(..) {
            match job {
                Job::Effect(e) => effects.push(*e),
                Job::Flush(f) => flushes.push(f),
            }
        }
        let (started, n) = (std::time::Instant::now(), effects.len());
        commit_group(&db, effects, &mut failed).await;
        if n > 0 {
            metrics.latency.observe(started.elapsed().as_secs_f64());
            metrics.effects.inc_by(n as u64);
        }
        for f in flushes {
            f.send_replace(Some(Ok(())));
        }
    }
}

/// Commit `effects` as one transaction; if that fails, one by one, in order.
async fn commit_group(db: &Db, effects: Vec<Effect>, failed: &mut HashSet<(AccountId, u64)>) {
    let (effects, stale): (Vec<Effect>, Vec<Effect>) =
        effects.into_iter().partition(|e| !failed.contains(&(e.account, e.generation)));
    for e in stale {
        e.done.send_replace(Some(Err(Arc::from("a change it rests on failed to commit"))));
    }
    if effects.is_empty() {
        return;
    }
    let why = match write(db, &effects).await {
        Ok(()) => {
            for e in &effects {
                e.done.send_replace(Some(Ok(())));
            }
            return;
        }
        Err(e) => e.to_string(),
    };
    tracing::warn!(error = %why, effects = effects.len(), "OCS group commit failed");
    if effects.len() == 1 {
        fail(&effects[0], &why, failed);
        return;
    }
    for e in &effects {
        if failed.contains(&(e.account, e.generation)) {
            e.done.send_replace(Some(Err(Arc::from("a change it rests on failed to commit"))));
            continue;
        }
        match write(db, std::slice::from_ref(e)).await {
            Ok(()) => {
                e.done.send_replace(Some(Ok(())));
            }
            Err(err) => fail(e, &err.to_string(), failed),
        }
    }
}

fn fail(e: &Effect, why: &str, failed: &mut HashSet<(AccountId, u64)>) {
    failed.insert((e.account, e.generation));
    e.done.send_replace(Some(Err(Arc::from(why))));
}

/// One transaction: each account's and session's last row, and every journal line.
async fn write(db: &Db, effects: &[Effect]) -> Result<()> {
    let (mut accounts, mut sessions) = (Vec::new(), Vec::new());
    let (mut seen_accounts, mut seen_sessions) = (HashSet::new(), HashSet::new());
    for e in effects.iter().rev() {
        if let Some(row) = &e.account_row
            && seen_accounts.insert(e.account)
        {
            accounts.push(row);
        }
        if let Some(row) = &e.session
            && seen_sessions.insert(row.id.as_str())
        {
            sessions.push(row);
        }
    }
    let postings: Vec<&store::PostingRow> = effects.iter().flat_map(|e| &e.postings).collect();
    let mut tx = db.begin().await?;
    store::write_batch(&mut tx, &accounts, &postings, &sessions).await?;
    tx.commit().await
}
