//! Property test of porting, settlement and supervision through the real HTTP API.
//!
//! Each case plays a random sequence of porting orders over a handful of numbers and the three
//! operators, every order on a random path (accept, refuse, cancel at some step, a proof
//! mismatch, a deadline passing at some step, an order abandoned half-way, accept retried with
//! the same or a new idempotency key, deposit before request), with random credit figures (some
//! larger than the recipient's funds), interleaved with time passing and extra funding.
//! A model predicts every answer as it goes; at the end, after enough deadlines, it checks:
//!
//! - every order is terminal, in the state and with the reason the model predicts;
//! - the ledger is sound (balances and postings sum to zero, balances match postings);
//! - the operators' balances sum to what was funded, and each is what the model predicts;
//! - each completed order with a compensation has exactly one `compensation` journal (none
//!   when the compensation is zero), and no other order has one; the donor's gain and the
//!   recipient's loss on it both equal the order's compensation;
//! - the routing change log is gap-free, holds exactly the completed orders in completion
//!   order, and every number is served by the operator the model says;
//! - each operator is charged exactly the violations the model predicts: deadlines missed,
//!   requests over its failure limits, deposits held responsible for a failed verification.
//!
//! SQLite always; PostgreSQL with fewer cases when `NUMPORT_TEST_POSTGRES_URL` is set (under
//! `CI=true` it must be).

mod common;

use std::collections::{BTreeMap, HashMap};

use clearinghouse::store::ledger::Posted;
use clearinghouse_api::model::{CancelRequest, CreditInformationRequest, DecisionRequest, Order};
use common::{Operator, Terminal, TestCh};
use numport_core::porting::{CreditInfo, OrderKind, OrderState, Reason};
use numport_core::{Clock, Millis, Money};
use numport_db::Backend;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// The numbers the orders pick from, and the operator (index into [opa, opb, opc]) holding
/// each one's range.
const NUMBERS: [&str; 4] = ["4790000101", "4790000102", "4791000103", "4792000104"];
const HOLDERS: [usize; 4] = [0, 0, 1, 2];
const OPS: [&str; 3] = ["opa", "opb", "opc"];
/// What `TestCh` funds each operator with.
const INITIAL: i64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Deposit,
    CreditInfo,
    Decision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    None,
    /// The same request again, same key, after the first answer.
    SameKey,
    /// The same request twice at once, same key.
    SameKeyConcurrent,
    /// The same request again under a fresh key: must act on nothing.
    NewKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Accept(Retry),
    Refuse,
    Cancel {
        at: Step,
        by_subscriber: bool,
    },
    /// Someone without the subscriber's key asks; the donor deposits the true proof.
    Mismatch,
    /// The deadline of this step passes; after a credit-information timeout the recipient
    /// accepts the zero compensation.
    Timeout(Step),
    /// Nobody acts from this step on; later deadlines settle the order.
    Abandon(Step),
}

#[derive(Debug, Clone)]
enum Action {
    Order {
        number: usize,
        recipient: usize,
        credit: CreditInfo,
        deposit_first: bool,
        path: Path,
    },
    /// Time passes and the supervisor runs.
    Tick(Millis),
    /// The portability center pays into an account; `reuse_key` repeats the initial funding key.
    Fund {
        op: usize,
        amount: i64,
        reuse_key: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![Just(Step::Deposit), Just(Step::CreditInfo), Just(Step::Decision)]
}

/// `concurrent_retry`: include two simultaneous copies of a decision under one key (see
/// [`concurrent_retry_same_key`] for why the PostgreSQL run leaves it out).
fn path(concurrent_retry: bool) -> impl Strategy<Value = Path> {
    let retry = if concurrent_retry {
        prop_oneof![Just(Retry::None), Just(Retry::SameKey), Just(Retry::SameKeyConcurrent), Just(Retry::NewKey)]
            .boxed()
    } else {
        prop_oneof![Just(Retry::None), Just(Retry::SameKey), Just(Retry::NewKey)].boxed()
    };
    prop_oneof![
        4 => retry.prop_map(Path::Accept),
        1 => Just(Path::Refuse),
        1 => (step(), any::<bool>()).prop_map(|(at, by_subscriber)| Path::Cancel { at, by_subscriber }),
        1 => Just(Path::Mismatch),
        2 => step().prop_map(Path::Timeout),
        1 => step().prop_map(Path::Abandon),
    ]
}

fn credit() -> impl Strategy<Value = CreditInfo> {
    let small = (0i64..5_000, 0i64..5_000, 0i64..20_000, 0i64..10_000);
    // Contract remainders around the recipient's whole balance: some cannot be paid.
    let large = (0i64..1_000, 0i64..1_000, 400_000i64..1_600_000, 0i64..1_000);
    prop_oneof![3 => small, 1 => large].prop_map(|(a, u, c, d)| CreditInfo {
        arrears: Money(a),
        unbilled_usage: Money(u),
        contract_remaining: Money(c),
        deposit_held: Money(d),
    })
}

fn action(concurrent_retry: bool) -> impl Strategy<Value = Action> {
    prop_oneof![
        8 => (0..NUMBERS.len(), 0..3usize, credit(), prop::bool::weighted(0.2), path(concurrent_retry)).prop_map(
            |(number, recipient, credit, deposit_first, path)| Action::Order { number, recipient, credit, deposit_first, path }
        ),
        1 => (0i64..90_000).prop_map(Action::Tick),
        1 => (0..3usize, 1i64..300_000, prop::bool::weighted(0.3)).prop_map(|(op, amount, reuse_key)| Action::Fund { op, amount, reuse_key }),
    ]
}

/// An order the model knows to be open.
#[derive(Debug, Clone)]
struct Open {
    number: usize,
    recipient: usize,
    donor: usize,
    state: OrderState,
    deadline: Millis,
    compensation: i64,
    mismatch: bool,
}

/// How an order must end.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    state: OrderState,
    reason: Option<Reason>,
    number: usize,
    recipient: usize,
    donor: usize,
    kind: OrderKind,
    /// Compensation settled (0 unless completed).
    paid: i64,
}

/// A failed verification: of which number, between which requester and donor, charged to whom.
#[derive(Debug, Clone, Copy)]
struct Failure {
    number: usize,
    requester: usize,
    donor: usize,
    charged: usize,
    at: Millis,
}

/// What the clearinghouse should have done, maintained beside it.
struct Model {
    now: Millis,
    deadlines: numport_core::porting::Deadlines,
    failure_window: Millis,
    max_failures_per_number: usize,
    max_failures_total: usize,
    serving: [usize; NUMBERS.len()],
    balance: [i64; 3],
    funded: i64,
    failures: Vec<Failure>,
    open: BTreeMap<i64, Open>,
    kinds: HashMap<i64, OrderKind>,
    closed: BTreeMap<i64, Outcome>,
    violations: [usize; 3],
    /// Completed orders, in completion order: the routing change log.
    completed: Vec<i64>,
}

impl Model {
    fn deadline(&self, state: OrderState) -> Millis {
        self.deadlines.deadline(state, self.now).expect("an open state has a deadline")
    }

    fn open_for(&self, number: usize) -> Option<i64> {
        self.open.iter().find(|(_, o)| o.number == number).map(|(id, _)| *id)
    }

    fn state(&self, id: i64) -> OrderState {
        match (self.open.get(&id), self.closed.get(&id)) {
            (Some(o), _) => o.state,
            (None, Some(c)) => c.state,
            (None, None) => panic!("order {id} unknown to the model"),
        }
    }

    fn close(&mut self, id: i64, state: OrderState, reason: Option<Reason>) {
        let o = self.open.remove(&id).expect("closing an open order");
        let mut paid = 0;
        if state == OrderState::Completed {
            paid = o.compensation;
            self.balance[o.recipient] -= paid;
            self.balance[o.donor] += paid;
            self.serving[o.number] = o.recipient;
            self.completed.push(id);
        }
        let kind = self.kinds[&id];
        self.closed.insert(
            id,
            Outcome { state, reason, number: o.number, recipient: o.recipient, donor: o.donor, kind, paid },
        );
    }

    fn move_to(&mut self, id: i64, state: OrderState) {
        let deadline = self.deadline(state);
        let o = self.open.get_mut(&id).expect("moving an open order");
        o.state = state;
        o.deadline = deadline;
    }

    /// One supervisor pass: the timeout rule on every open order past its deadline.
    fn supervise(&mut self) -> usize {
        let now = self.now;
        let due: Vec<i64> = self.open.iter().filter(|(_, o)| o.deadline <= now).map(|(id, _)| *id).collect();
        for &id in &due {
            let o = self.open[&id].clone();
            match o.state {
                OrderState::AwaitingDeposit => {
                    self.violations[o.donor] += 1;
                    self.close(id, OrderState::Failed, Some(Reason::DepositTimeout));
                }
                OrderState::AwaitingCreditInfo => {
                    self.violations[o.donor] += 1;
                    self.move_to(id, OrderState::AwaitingDecision);
                    self.open.get_mut(&id).expect("open").compensation = 0;
                }
                OrderState::AwaitingDecision => {
                    self.violations[o.recipient] += 1;
                    self.close(id, OrderState::Failed, Some(Reason::DecisionTimeout));
                }
                s => panic!("open order {id} in terminal state {s}"),
            }
        }
        due.len()
    }

    fn recent_failures(&self) -> impl Iterator<Item = &Failure> {
        let since = self.now - self.failure_window;
        self.failures.iter().filter(move |f| f.at >= since)
    }

    /// Whether `requester` is over its failure limits for `number` (or in all).
    fn over_limits(&self, number: usize, requester: usize) -> bool {
        let charged: Vec<&Failure> = self.recent_failures().filter(|f| f.charged == requester).collect();
        charged.iter().filter(|f| f.number == number).count() >= self.max_failures_per_number
            || charged.len() >= self.max_failures_total
    }

    /// A deposit disagreed with a proof: charged to the requester, unless the donor's deposits
    /// for the number disagreed with another requester in the window.
    fn mismatch(&mut self, number: usize, requester: usize, donor: usize) {
        let donor_at_fault =
            self.recent_failures().any(|f| f.number == number && f.donor == donor && f.requester != requester);
        let charged = if donor_at_fault { donor } else { requester };
        if donor_at_fault {
            self.violations[donor] += 1;
        }
        self.failures.push(Failure { number, requester, donor, charged, at: self.now });
    }
}

/// One case: the clearinghouse, the handsets, and the model.
struct Run {
    t: TestCh,
    m: Model,
    terms: Vec<Terminal>,
    impostors: Vec<Terminal>,
    keys: u64,
    fundings: u64,
}

type Check<T = ()> = Result<T, TestCaseError>;

impl Run {
    fn op(&self, i: usize) -> &Operator {
        match i {
            0 => &self.t.a,
            1 => &self.t.b,
            _ => &self.t.c,
        }
    }

    fn key(&mut self) -> String {
        self.keys += 1;
        format!("k{}", self.keys)
    }

    fn advance(&mut self, ms: Millis) {
        self.t.clock.advance_ms(ms);
        self.m.now += ms;
        assert_eq!(self.t.clock.now_ms(), self.m.now);
    }

    /// Run the supervisor on both sides and compare how many orders each moved.
    async fn supervise(&mut self) -> Check {
        let applied =
            self.t.ch.supervise_once().await.map_err(|e| TestCaseError::fail(format!("supervise_once: {e}")))?;
        let expected = self.m.supervise();
        prop_assert_eq!(applied, expected, "orders the supervisor moved at {}", self.m.now);
        Ok(())
    }

    /// The order's state as the clearinghouse reports it equals the model's.
    fn same(&self, id: i64, got: &Order) -> Check {
        prop_assert_eq!(got.id, id);
        prop_assert_eq!(got.state, self.m.state(id), "order {}: {:?}", id, got);
        if let Some(c) = self.m.closed.get(&id) {
            prop_assert_eq!(got.reason, c.reason, "order {}: {:?}", id, got);
        }
        Ok(())
    }

    async fn action(&mut self, a: &Action) -> Check {
        match *a {
            Action::Tick(ms) => {
                self.advance(ms);
                self.supervise().await
            }
            Action::Fund { op, amount, reuse_key } => {
                let key = if reuse_key {
                    format!("initial-{}", OPS[op])
                } else {
                    self.fundings += 1;
                    format!("extra-{}", self.fundings)
                };
                let (posted, balance) =
                    clearinghouse::admin::fund(&self.t.ch.db, OPS[op], Money(amount), &key, self.m.now)
                        .await
                        .map_err(|e| TestCaseError::fail(format!("fund: {e}")))?;
                prop_assert_eq!(matches!(posted, Posted::Already(_)), reuse_key, "funding under key {}", key);
                if !reuse_key {
                    self.m.balance[op] += amount;
                    self.m.funded += amount;
                }
                prop_assert_eq!(balance, Money(self.m.balance[op]));
                Ok(())
            }
            Action::Order { number, recipient, credit, deposit_first, path } => {
                self.order(number, recipient, credit, deposit_first, path).await
            }
        }
    }

    async fn order(
        &mut self,
        number: usize,
        recipient: usize,
        credit: CreditInfo,
        deposit_first: bool,
        path: Path,
    ) -> Check {
        let now = self.m.now;
        let donor = self.m.serving[number];
        let rname = self.op(recipient).name.clone();
        let mismatch = path == Path::Mismatch;
        let req = if mismatch {
            self.impostors[number].request(&rname, now)
        } else {
            self.terms[number].request(&rname, now)
        };
        let deposit = self.terms[number].deposit_for(&req, &rname);
        if deposit_first {
            let key = self.key();
            let acc = self.op(donor).client.deposit(&deposit, &key).await.map_err(fail("early deposit"))?;
            prop_assert_eq!(acc.order_id, None, "a deposit before any request matches nothing");
        }
        let key = self.key();
        let order = self.op(recipient).client.request_port(&req, &key).await.map_err(fail("request_port"))?;
        let id = order.id;
        let kind = if recipient == HOLDERS[number] { OrderKind::PortBack } else { OrderKind::Port };
        self.m.kinds.insert(id, kind);
        self.m.open.insert(
            id,
            Open {
                number,
                recipient,
                donor,
                state: OrderState::AwaitingDeposit,
                deadline: self.m.deadline(OrderState::AwaitingDeposit),
                compensation: 0,
                mismatch,
            },
        );

        // The request's own checks, in the clearinghouse's order.
        let rejection = if self.m.over_limits(number, recipient) {
            self.m.violations[recipient] += 1;
            Some(Reason::TooManyAttempts)
        } else if donor == recipient {
            Some(Reason::AlreadyServed)
        } else if self.m.open_for(number).is_some_and(|other| other != id) {
            Some(Reason::PortInProgress)
        } else {
            None
        };
        if let Some(reason) = rejection {
            self.m.close(id, OrderState::Rejected, Some(reason));
            return self.same(id, &order);
        }
        prop_assert_eq!(order.kind, kind);
        prop_assert_eq!(order.donor.as_ref().map(|d| d.as_str()), Some(OPS[donor]));
        if deposit_first {
            self.deposit_outcome(id);
        }
        self.same(id, &order)?;

        let plan: Vec<Op> = match path {
            Path::Accept(r) => vec![Op::Deposit, Op::Credit, Op::Accept(r)],
            Path::Refuse => vec![Op::Deposit, Op::Credit, Op::Refuse],
            Path::Cancel { at: Step::Deposit, by_subscriber } => vec![Op::Cancel(by_subscriber)],
            Path::Cancel { at: Step::CreditInfo, by_subscriber } => vec![Op::Deposit, Op::Cancel(by_subscriber)],
            Path::Cancel { at: Step::Decision, by_subscriber } => {
                vec![Op::Deposit, Op::Credit, Op::Cancel(by_subscriber)]
            }
            Path::Mismatch => vec![Op::Deposit],
            Path::Timeout(Step::Deposit) => vec![Op::Timeout, Op::Accept(Retry::None)],
            Path::Timeout(Step::CreditInfo) => {
                vec![Op::Deposit, Op::Timeout, Op::Accept(Retry::None)]
            }
            Path::Timeout(Step::Decision) => vec![Op::Deposit, Op::Credit, Op::Timeout, Op::Accept(Retry::None)],
            Path::Abandon(Step::Deposit) => vec![],
            Path::Abandon(Step::CreditInfo) => vec![Op::Deposit],
            Path::Abandon(Step::Decision) => vec![Op::Deposit, Op::Credit],
        };
        for op in plan {
            self.op_on(id, op, credit, &deposit).await?;
        }
        Ok(())
    }

    /// The deposit met the order: matched or not.
    fn deposit_outcome(&mut self, id: i64) {
        let o = &self.m.open[&id];
        if o.mismatch {
            let (number, recipient, donor) = (o.number, o.recipient, o.donor);
            self.m.mismatch(number, recipient, donor);
            self.m.close(id, OrderState::Rejected, Some(Reason::ProofMismatch));
        } else {
            self.m.move_to(id, OrderState::AwaitingCreditInfo);
        }
    }

    /// One step of a path; skipped when the order is no longer where that step applies
    /// (deposited early, rejected, settled by a deadline).
    async fn op_on(
        &mut self,
        id: i64,
        op: Op,
        credit: CreditInfo,
        deposit: &clearinghouse_api::model::DepositRequest,
    ) -> Check {
        let Some(o) = self.m.open.get(&id).cloned() else {
            return Ok(());
        };
        match op {
            Op::Deposit if o.state == OrderState::AwaitingDeposit => {
                let key = self.key();
                let acc = self.op(o.donor).client.deposit(deposit, &key).await.map_err(fail("deposit"))?;
                prop_assert_eq!(acc.order_id, Some(id));
                self.deposit_outcome(id);
                let got = self.op(o.recipient).client.order(id).await.map_err(fail("order"))?;
                self.same(id, &got)
            }
            Op::Credit if o.state == OrderState::AwaitingCreditInfo => {
                let key = self.key();
                let got = self
                    .op(o.donor)
                    .client
                    .credit_information(id, &CreditInformationRequest { credit }, &key)
                    .await
                    .map_err(fail("credit_information"))?;
                self.m.move_to(id, OrderState::AwaitingDecision);
                self.m.open.get_mut(&id).expect("open").compensation = credit.compensation().0;
                prop_assert_eq!(got.compensation, Some(credit.compensation()));
                self.same(id, &got)
            }
            Op::Accept(retry) if o.state == OrderState::AwaitingDecision => self.accept(id, &o, retry).await,
            Op::Refuse if o.state == OrderState::AwaitingDecision => {
                let key = self.key();
                let got = self
                    .op(o.recipient)
                    .client
                    .decide(id, &DecisionRequest { accept: false, compensation: None }, &key)
                    .await
                    .map_err(fail("refuse"))?;
                self.m.close(id, OrderState::Refused, Some(Reason::RefusedByRecipient));
                self.same(id, &got)
            }
            Op::Cancel(by_subscriber) => {
                let key = self.key();
                let got = self
                    .op(o.recipient)
                    .client
                    .cancel(id, &CancelRequest { by_subscriber }, &key)
                    .await
                    .map_err(fail("cancel"))?;
                let reason = if by_subscriber { Reason::CancelledBySubscriber } else { Reason::CancelledByRecipient };
                self.m.close(id, OrderState::Cancelled, Some(reason));
                self.same(id, &got)
            }
            Op::Timeout => {
                // Just past this step's deadline.
                self.advance(o.deadline - self.m.now + 1);
                self.supervise().await?;
                let got = self.op(o.recipient).client.order(id).await.map_err(fail("order"))?;
                self.same(id, &got)
            }
            _ => Ok(()),
        }
    }

    async fn accept(&mut self, id: i64, o: &Open, retry: Retry) -> Check {
        let client = self.op(o.recipient).client.clone();
        let decision = DecisionRequest { accept: true, compensation: Some(Money(o.compensation)) };
        let key = self.key();
        let got = if retry == Retry::SameKeyConcurrent {
            let (a, b) = tokio::join!(client.decide(id, &decision, &key), client.decide(id, &decision, &key));
            let (a, b) = (a.map_err(fail("decide (concurrent 1)"))?, b.map_err(fail("decide (concurrent 2)"))?);
            prop_assert_eq!(&a, &b, "two concurrent requests under one key get one answer");
            a
        } else {
            client.decide(id, &decision, &key).await.map_err(fail("decide"))?
        };
        let answered = got.clone();
        if o.compensation > self.m.balance[o.recipient] {
            self.m.close(id, OrderState::Rejected, Some(Reason::InsufficientFunds));
        } else {
            // Accepted: the settler completes it (one acceptance at a time here, so the funds
            // read at acceptance are still there when it settles).
            prop_assert_eq!(got.state, OrderState::Settling);
            self.m.close(id, OrderState::Completed, None);
        }
        let got = self.t.settled(self.op(o.recipient), id).await;
        self.same(id, &got)?;
        match retry {
            Retry::SameKey => {
                let again = client.decide(id, &decision, &key).await.map_err(fail("decide retried"))?;
                prop_assert_eq!(&again, &answered, "a retry under the same key gets the stored answer");
            }
            Retry::NewKey => {
                let key = self.key();
                let err = client.decide(id, &decision, &key).await.expect_err("a decision on a closed order");
                prop_assert_eq!(err.code(), Some("invalid_state"));
            }
            Retry::None | Retry::SameKeyConcurrent => {}
        }
        Ok(())
    }

    /// Let every deadline pass until nothing is open.
    async fn settle(&mut self) -> Check {
        for _ in 0..4 {
            if self.m.open.is_empty() {
                break;
            }
            self.advance(120_001);
            self.supervise().await?;
        }
        prop_assert!(self.m.open.is_empty(), "the model still has open orders: {:?}", self.m.open);
        Ok(())
    }

    async fn check_end(&self) -> Check {
        let db = &self.t.ch.db;
        let mut conn = db.acquire().await.map_err(fail("acquire"))?;

        // Every order terminal, as predicted.
        prop_assert_eq!(clearinghouse::store::orders::count_open(&mut conn).await.map_err(fail("count_open"))?, 0);
        for (&id, want) in &self.m.closed {
            let got =
                clearinghouse::store::orders::get(&mut conn, id).await.map_err(fail("get"))?.expect("order stored");
            prop_assert!(got.state.is_terminal());
            prop_assert_eq!((got.state, got.reason, got.kind), (want.state, want.reason, want.kind), "order {}", id);
            prop_assert_eq!(got.completed_at.is_some(), want.state == OrderState::Completed, "order {}", id);
            if want.state == OrderState::Completed {
                prop_assert_eq!(got.compensation, Some(Money(want.paid)), "order {}", id);
            }
        }

        // The ledger.
        let check = clearinghouse::store::ledger::check(&mut conn).await.map_err(fail("ledger check"))?;
        prop_assert!(check.is_sound(), "{:?}", check);
        let mut op_accounts = Vec::new();
        let mut sum = 0;
        for (i, name) in OPS.iter().enumerate() {
            let op = clearinghouse::store::operators::by_name(&mut conn, name)
                .await
                .map_err(fail("operator"))?
                .expect("registered");
            let (acct, balance) =
                clearinghouse::store::ledger::operator_account(&mut conn, op.id).await.map_err(fail("account"))?;
            prop_assert_eq!(balance, Money(self.m.balance[i]), "balance of {}", name);
            sum += balance.0;
            op_accounts.push(acct);
        }
        prop_assert_eq!(sum, self.m.funded, "operators hold exactly what was paid in");
        let balances = clearinghouse::store::ledger::balances(&mut conn).await.map_err(fail("balances"))?;
        let funding =
            balances.iter().find(|(n, _)| n == clearinghouse::store::ledger::FUNDING_ACCOUNT).map(|(_, m)| m.0);
        prop_assert_eq!(funding, Some(-self.m.funded));

        // Exactly one compensation journal per paid order, none for any other; each moves the
        // compensation from the recipient to the donor and nothing else.
        let per_order: Vec<(i64, i64)> = numport_db::sql::query_as(
            "SELECT order_id, COUNT(*) FROM journals WHERE kind = 'compensation' GROUP BY order_id ORDER BY order_id",
        )
        .fetch_all(&mut conn)
        .await
        .map_err(fail("journals"))?;
        let expected: Vec<(i64, i64)> =
            self.m.closed.iter().filter(|(_, c)| c.paid > 0).map(|(&id, _)| (id, 1)).collect();
        prop_assert_eq!(&per_order, &expected, "compensation journals per order");
        let with_order: i64 = numport_db::sql::query_scalar(
            "SELECT COUNT(*) FROM journals WHERE order_id IS NOT NULL AND kind <> 'compensation'",
        )
        .fetch_one(&mut conn)
        .await
        .map_err(fail("journals"))?;
        prop_assert_eq!(with_order, 0);
        let mut lines: HashMap<(usize, i64), Vec<i64>> = HashMap::new();
        for (i, acct) in op_accounts.iter().enumerate() {
            for l in
                clearinghouse::store::ledger::statement(&mut conn, *acct, 10_000).await.map_err(fail("statement"))?
            {
                if l.kind == "compensation" {
                    lines.entry((i, l.order_id.expect("a compensation names its order"))).or_default().push(l.amount.0);
                }
            }
        }
        let mut gained = [0i64; 3];
        let mut lost = [0i64; 3];
        for (&id, c) in self.m.closed.iter().filter(|(_, c)| c.paid > 0) {
            prop_assert_eq!(lines.remove(&(c.donor, id)), Some(vec![c.paid]), "donor's side of order {}", id);
            prop_assert_eq!(lines.remove(&(c.recipient, id)), Some(vec![-c.paid]), "recipient's side of order {}", id);
            gained[c.donor] += c.paid;
            lost[c.recipient] += c.paid;
        }
        prop_assert!(lines.is_empty(), "compensation postings for no paid order: {:?}", lines);
        let total_paid: i64 = self.m.closed.values().map(|c| c.paid).sum();
        prop_assert_eq!(gained.iter().sum::<i64>(), total_paid);
        prop_assert_eq!(lost.iter().sum::<i64>(), total_paid);

        // Routing: the change log is gap-free and holds the completed orders in order.
        let changes =
            clearinghouse::store::routing::changes_after(&mut conn, 0, 10_000).await.map_err(fail("changes"))?.changes;
        let seqs: Vec<i64> = changes.iter().map(|c| c.seq).collect();
        prop_assert_eq!(seqs, (1..=self.m.completed.len() as i64).collect::<Vec<_>>());
        for (c, id) in changes.iter().zip(&self.m.completed) {
            let want = &self.m.closed[id];
            prop_assert_eq!(c.order_id, Some(*id));
            prop_assert_eq!(c.operator.as_str(), OPS[want.recipient]);
            prop_assert_eq!(c.msisdn.as_str(), NUMBERS[want.number]);
            let kind = if want.kind == OrderKind::PortBack { "port_back" } else { "port" };
            prop_assert_eq!(c.kind.as_str(), kind);
        }
        drop(conn);
        for (i, n) in NUMBERS.iter().enumerate() {
            let status = self.t.a.client.number(&n.parse().expect("number")).await.map_err(fail("number"))?;
            prop_assert_eq!(status.serving_operator.as_str(), OPS[self.m.serving[i]], "serving {}", n);
            prop_assert_eq!(status.ported, self.m.serving[i] != HOLDERS[i], "ported flag of {}", n);
        }

        // Violations, charged to whoever was late.
        for (i, name) in OPS.iter().enumerate() {
            let v = self.op(i).client.violations().await.map_err(fail("violations"))?.violations;
            prop_assert_eq!(v.len(), self.m.violations[i], "violations of {}", name);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Deposit,
    Credit,
    Accept(Retry),
    Refuse,
    Cancel(bool),
    Timeout,
}

fn fail<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> TestCaseError {
    move |e| TestCaseError::fail(format!("{what}: {e}"))
}

async fn run_case(backend: Backend, actions: Vec<Action>) -> Check {
    let Some(t) = TestCh::start(backend).await else {
        return Ok(());
    };
    // Let the background supervisor's first pass (at start, nothing due) go by, so that only
    // this test's explicit passes move orders.
    t.a.client.account().await.map_err(fail("account"))?;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let policy = t.ch.config.verification;
    let m = Model {
        now: t.clock.now_ms(),
        deadlines: t.ch.config.deadlines,
        failure_window: policy.failure_window_ms,
        max_failures_per_number: policy.max_failures_per_number as usize,
        max_failures_total: policy.max_failures_total as usize,
        serving: HOLDERS,
        balance: [INITIAL; 3],
        funded: 3 * INITIAL,
        failures: Vec::new(),
        open: BTreeMap::new(),
        kinds: HashMap::new(),
        closed: BTreeMap::new(),
        violations: [0; 3],
        completed: Vec::new(),
    };
    let terms: Vec<Terminal> = NUMBERS.iter().map(|n| Terminal::new(n)).collect();
    let impostors: Vec<Terminal> = NUMBERS
        .iter()
        .map(|n| Terminal { msisdn: n.parse().expect("number"), key: Terminal::new("4799999999").key })
        .collect();
    let mut run = Run { t, m, terms, impostors, keys: 0, fundings: 0 };
    for a in &actions {
        run.action(a).await?;
    }
    run.settle().await?;
    run.check_end().await
}

fn run_blocking(backend: Backend, actions: Vec<Action>) -> Check {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(run_case(backend, actions))
}

/// Cases per run: `PROPTEST_CASES` if set (for a soak run), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(32), max_shrink_iters: 64, ..ProptestConfig::default() })]
    #[test]
    fn sqlite_ledger_and_settlement(actions in prop::collection::vec(action(true), 1..=10)) {
        run_blocking(Backend::Sqlite, actions)?;
    }
}

/// Each case on a database of its own on `NUMPORT_TEST_POSTGRES_URL`'s server; asked for once
/// before the cases, so a run without it prints one skip line (or, under `CI=true`, fails).
#[test]
fn postgres_ledger_and_settlement() {
    if testkit::postgres_url().is_none() {
        return;
    }
    let config = ProptestConfig { cases: cases(8), max_shrink_iters: 32, ..ProptestConfig::default() };
    proptest!(config, |(actions in prop::collection::vec(action(false), 1..=10))| {
        run_blocking(Backend::Postgres, actions)?;
    });
}

/// A fixed sequence through every path once, so each is exercised on every run whatever the
/// random cases pick.
#[test]
fn every_path_once() {
    use Path::*;
    let c = |contract: i64| CreditInfo {
        arrears: Money(10),
        unbilled_usage: Money(5),
        contract_remaining: Money(contract),
        deposit_held: Money(3),
    };
    let o = |number, recipient, credit, deposit_first, path| Action::Order {
        number,
        recipient,
        credit,
        deposit_first,
        path,
    };
    let actions = vec![
        o(0, 1, c(100), false, Accept(Retry::None)),
        o(0, 2, c(200), false, Accept(Retry::SameKey)),
        o(0, 0, c(50), true, Accept(Retry::NewKey)),
        o(2, 0, c(70), false, Accept(Retry::SameKeyConcurrent)),
        o(2, 2, c(1_500_000), false, Accept(Retry::None)),
        o(3, 1, c(0), false, Refuse),
        o(3, 1, c(0), false, Cancel { at: Step::Deposit, by_subscriber: true }),
        o(3, 1, c(0), false, Cancel { at: Step::CreditInfo, by_subscriber: false }),
        o(3, 1, c(0), false, Cancel { at: Step::Decision, by_subscriber: true }),
        o(1, 2, c(0), false, Mismatch),
        o(1, 2, c(0), true, Mismatch),
        o(1, 2, c(0), false, Mismatch),
        o(1, 2, c(0), false, Accept(Retry::None)),
        o(3, 0, c(10), false, Timeout(Step::Deposit)),
        o(3, 0, c(10), false, Timeout(Step::CreditInfo)),
        o(3, 1, c(10), false, Timeout(Step::Decision)),
        o(3, 1, c(10), false, Abandon(Step::CreditInfo)),
        o(3, 2, c(10), false, Accept(Retry::None)),
        Action::Tick(31_000),
        o(2, 1, c(10), false, Abandon(Step::Deposit)),
        o(0, 1, c(10), false, Abandon(Step::Decision)),
        Action::Fund { op: 1, amount: 500, reuse_key: false },
        Action::Fund { op: 2, amount: 500, reuse_key: true },
    ];
    if let Err(e) = run_blocking(Backend::Sqlite, actions) {
        panic!("{e}");
    }
}

/// Two copies of one request, sent at once under one idempotency key (a client retrying
/// after a timeout while the first attempt is still running): one acts, and both get its
/// answer; the compensation is paid once. On PostgreSQL the copy that loses waits for the
/// winner on the rows both change (the number's open order, the order's state) or on the key's
/// row, written last with the answer, then fails, rolls back and replays the stored answer.
/// Tried with a zero and a non-zero compensation (the latter writes a journal, whose own
/// idempotency key then collides).
async fn concurrent_retry_same_key(backend: Backend) {
    let Some(t) = TestCh::start(backend).await else {
        return;
    };
    let mut problems = Vec::new();
    let mut paid = 0;
    for (i, contract) in [(0u32, 0i64), (1, 700), (2, 0), (3, 900)] {
        let term = Terminal::new(&format!("479000020{i}"));
        let req = term.request(&t.b.name, t.clock.now_ms());
        // The request itself, twice at once under one key.
        let key = format!("r{i}");
        let (first, second) = tokio::join!(t.b.client.request_port(&req, &key), t.b.client.request_port(&req, &key));
        let o = match (first, second) {
            (Ok(a), Ok(b)) if a == b => a,
            (a, b) => {
                problems.push(format!(
                    "request_port: answers {:?} / {:?}",
                    a.as_ref().map(|o| o.state),
                    b.as_ref().map(|o| o.state)
                ));
                a.or(b).expect("one copy opened the order")
            }
        };
        assert_eq!(o.state, OrderState::AwaitingDeposit);
        t.a.client.deposit(&term.deposit_for(&req, &t.b.name), &format!("d{i}")).await.unwrap();
        let info = CreditInformationRequest {
            credit: CreditInfo { contract_remaining: Money(contract), ..CreditInfo::default() },
        };
        t.a.client.credit_information(o.id, &info, &format!("c{i}")).await.unwrap();
        let decision = DecisionRequest { accept: true, compensation: Some(Money(contract)) };
        let key = format!("x{i}");
        let (first, second) =
            tokio::join!(t.b.client.decide(o.id, &decision, &key), t.b.client.decide(o.id, &decision, &key));
        match (first, second) {
            (Ok(a), Ok(b)) if a == b && a.state == OrderState::Settling => {}
            (a, b) => problems.push(format!(
                "compensation {contract}: answers {:?} / {:?}",
                a.map(|o| o.state),
                b.map(|o| o.state)
            )),
        }
        // Whatever the answers, the order is settled once.
        assert_eq!(t.settled(&t.b, o.id).await.state, OrderState::Completed);
        paid += contract;
    }
    assert_eq!(t.b.client.account().await.unwrap().balance, Money(INITIAL - paid), "paid once");
    assert!(t.ledger_sound().await);
    // Counted once each, though every request ran twice: a copy that rolled back counts nothing.
    let m = &t.ch.metrics;
    assert_eq!((m.orders_requested.get(), m.ports_completed.get()), (4, 4));
    assert_eq!(m.compensation_minor_units.get(), paid as u64);
    assert!(
        problems.is_empty(),
        "a concurrent retry under the same key did not get the stored answer:\n{}",
        problems.join("\n")
    );
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_retry_same_key() {
        super::concurrent_retry_same_key(numport_db::Backend::Sqlite).await
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_retry_same_key() {
        super::concurrent_retry_same_key(numport_db::Backend::Postgres).await
    }
}
