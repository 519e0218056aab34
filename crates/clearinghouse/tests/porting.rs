//! The porting order through the real HTTP API, on SQLite and PostgreSQL: the happy path, every
//! rejection, every timeout rule, cancellation, port-back, number return, idempotency and the
//! confinement of each operator to its own orders.

mod common;

use clearinghouse_api::messages::Message;
use clearinghouse_api::model::*;
use common::{T0, Terminal, TestCh};
use numport_core::porting::{CreditInfo, OrderKind, OrderState, Reason};
use numport_core::{Money, Msisdn};
use numport_db::Backend;

fn credit(arrears: i64, unbilled: i64, contract: i64, deposit: i64) -> CreditInformationRequest {
    CreditInformationRequest {
        credit: CreditInfo {
            arrears: Money(arrears),
            unbilled_usage: Money(unbilled),
            contract_remaining: Money(contract),
            deposit_held: Money(deposit),
        },
    }
}

/// Run a port from `donor` to `recipient` up to the recipient's decision; returns the order.
async fn up_to_decision(
    t: &TestCh,
    term: &Terminal,
    donor: &common::Operator,
    recipient: &common::Operator,
    info: CreditInformationRequest,
) -> Order {
    let req = term.request(&recipient.name, t.clock.now());
    let order = recipient.client.request_port(&req, &format!("req-{}", req.nonce)).await.unwrap();
    assert_eq!(order.state, OrderState::AwaitingDeposit, "{order:?}");
    let dep = term.deposit_for(&req, &recipient.name);
    let acc = donor.client.deposit(&dep, &format!("dep-{}", req.nonce)).await.unwrap();
    assert_eq!(acc.order_id, Some(order.id));
    let order = donor.client.credit_information(order.id, &info, &format!("ci-{}", order.id)).await.unwrap();
    assert_eq!(order.state, OrderState::AwaitingDecision);
    order
}

trait Now {
    fn now(&self) -> i64;
}
impl Now for numport_core::ManualClock {
    fn now(&self) -> i64 {
        numport_core::Clock::now_ms(self)
    }
}

async fn happy_path(backend: Backend) {
    let Some(t) = TestCh::start(backend).await else { return };
    let term = Terminal::new("4790000001");
    let req = term.request(&t.b.name, T0);
    let order = t.b.client.request_port(&req, "k1").await.unwrap();
    assert_eq!((order.state, order.kind), (OrderState::AwaitingDeposit, OrderKind::Port));
    assert_eq!(order.donor.as_ref().map(|d| d.as_str()), Some("opa"));

    // The donor is asked for its deposit, with the nonce.
    let asked = t.messages(&t.a, "deposit_requested").await;
    assert!(
        matches!(&asked[..], [Message::DepositRequested { order_id, nonce, .. }] if *order_id == order.id && *nonce == req.nonce)
    );
    t.a.client.deposit(&term.deposit_for(&req, &t.b.name), "d1").await.unwrap();
    assert_eq!(t.b.client.order(order.id).await.unwrap().state, OrderState::AwaitingCreditInfo);
    // The deposit came within the reminder's grace time: the reminder callback is cancelled.
    let mut conn = t.ch.db.acquire().await.unwrap();
    let pending: i64 = numport_db::sql::query_scalar(
        "SELECT COUNT(*) FROM messages WHERE kind = 'deposit_requested' AND delivered_at IS NULL",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(pending, 0);
    drop(conn);
    assert_eq!(t.messages(&t.a, "credit_query").await.len(), 1);

    let order = t.a.client.credit_information(order.id, &credit(100, 50, 1000, 300), "c1").await.unwrap();
    assert_eq!(order.compensation, Some(Money(850)));
    let offered = t.messages(&t.b, "credit_information").await;
    assert!(matches!(
        &offered[..],
        [Message::CreditInformation { compensation: Money(850), donor_defaulted: false, .. }]
    ));

    let done =
        t.b.client
            .decide(order.id, &DecisionRequest { accept: true, compensation: Some(Money(850)) }, "x1")
            .await
            .unwrap();
    assert_eq!(done.state, OrderState::Settling);
    let done = t.settled(&t.b, order.id).await;
    assert_eq!(done.state, OrderState::Completed);
    assert!(done.completed_at.is_some());

    let status = t.c.client.number(&term.msisdn).await.unwrap();
    assert_eq!(
        (status.serving_operator.as_str(), status.routing_number.as_str(), status.ported),
        ("opb", "D002", true)
    );
    assert_eq!(t.b.client.account().await.unwrap().balance, Money(1_000_000 - 850));
    assert_eq!(t.a.client.account().await.unwrap().balance, Money(1_000_000 + 850));
    assert_eq!(t.messages(&t.a, "compensation_confirmed").await.len(), 1);
    let completed = t.messages(&t.b, "port_completed").await;
    assert!(
        matches!(&completed[..], [Message::PortCompleted { seq: 1, routing_number, .. }] if routing_number == "D002")
    );
    assert!(t.ledger_sound().await);

    let trail = t.b.client.audit(order.id).await.unwrap();
    let states: Vec<_> = trail.entries.iter().filter_map(|e| e.to_state.clone()).collect();
    assert_eq!(states, ["awaiting_deposit", "awaiting_credit_info", "awaiting_decision", "settling", "completed"]);
    // Each state change is recorded with where it came from, who made it and why.
    let changes: Vec<_> = trail
        .entries
        .iter()
        .filter(|e| e.action == "state_changed")
        .map(|e| (e.from_state.as_deref().unwrap_or("?"), e.to_state.as_deref().unwrap_or("?"), e.actor.as_str()))
        .collect();
    assert_eq!(
        changes,
        [
            ("awaiting_deposit", "awaiting_credit_info", "operator:opa"),
            ("awaiting_credit_info", "awaiting_decision", "operator:opa"),
            ("awaiting_decision", "settling", "operator:opb"),
            ("settling", "completed", "settler"),
        ]
    );
    let settled = trail.entries.iter().find(|e| e.to_state.as_deref() == Some("completed")).unwrap();
    assert_eq!((settled.detail["seq"].as_i64(), settled.detail["compensation"].as_i64()), (Some(1), Some(850)));
    let informed = trail.entries.iter().find(|e| e.to_state.as_deref() == Some("awaiting_decision")).unwrap();
    assert!(informed.detail["credit"].is_object(), "the credit information is in the trail: {:?}", informed.detail);
    assert!(t.a.client.violations().await.unwrap().violations.is_empty());
    // The port's milestones, as the porting benchmark reads them, are its trail's.
    let at = |state: &str| trail.entries.iter().find(|e| e.to_state.as_deref() == Some(state)).map(|e| e.at);
    let mut conn = t.ch.db.read().await.unwrap();
    let milestones = clearinghouse::store::audit::milestones(&mut conn).await.unwrap();
    drop(conn);
    assert_eq!(
        milestones,
        [clearinghouse::store::audit::Milestones {
            msisdn: term.msisdn.to_string(),
            created_at: done.created_at,
            credit_info_at: at("awaiting_decision"),
            accepted_at: at("settling"),
            completed_at: done.completed_at,
        }]
    );

    // The audit trail is append-only, whatever SQL is tried on it.
    let mut conn = t.ch.db.acquire().await.unwrap();
    assert!(numport_db::sql::query("UPDATE audit_log SET actor = 'forger'").execute(&mut conn).await.is_err());
    assert!(numport_db::sql::query("DELETE FROM audit_log").execute(&mut conn).await.is_err());
}

async fn deposit_before_request(backend: Backend) {
    let Some(t) = TestCh::start(backend).await else { return };
    let term = Terminal::new("4790000002");
    let req = term.request(&t.b.name, T0);
    assert_eq!(t.a.client.deposit(&term.deposit_for(&req, &t.b.name), "d").await.unwrap().order_id, None);
    let order = t.b.client.request_port(&req, "r").await.unwrap();
    assert_eq!(order.state, OrderState::AwaitingCreditInfo);
    assert!(t.messages(&t.a, "deposit_requested").await.is_empty());
}

async fn request_rejections(backend: Backend) {
    let Some(t) = TestCh::start(backend).await else { return };
    let rejected = |o: &Order| (o.state, o.reason);
    // A number no range holds.
    let o = t.b.client.request_port(&Terminal::new("4799000001").request(&t.b.name, T0), "u").await.unwrap();
    assert_eq!(rejected(&o), (OrderState::Rejected, Some(Reason::UnknownNumber)));
    // The recipient already serves it.
    let term = Terminal::new("4790000003");
    let o = t.a.client.request_port(&term.request(&t.a.name, T0), "s").await.unwrap();
    assert_eq!(rejected(&o), (OrderState::Rejected, Some(Reason::AlreadyServed)));
    // Expired proof, and one valid for longer than allowed.
    let mut req = term.request(&t.b.name, T0);
    req.expiry = T0 - 1;
    let o = t.b.client.request_port(&req, "e1").await.unwrap();
    assert_eq!(rejected(&o), (OrderState::Rejected, Some(Reason::ProofExpired)));
    req = term.request(&t.b.name, T0);
    req.expiry = T0 + 24 * 3_600_000;
    assert_eq!(
        rejected(&t.b.client.request_port(&req, "e2").await.unwrap()),
        (OrderState::Rejected, Some(Reason::ProofExpired))
    );
    // A second order while one is open.
    let first = t.b.client.request_port(&term.request(&t.b.name, T0), "p1").await.unwrap();
    assert_eq!(first.state, OrderState::AwaitingDeposit);
    let o = t.c.client.request_port(&term.request(&t.c.name, T0), "p2").await.unwrap();
    assert_eq!(rejected(&o), (OrderState::Rejected, Some(Reason::PortInProgress)));
    // A nonce used before is refused outright.
    let again = t.b.client.request_port(&req, "e3").await.unwrap_err();
    assert_eq!(again.code(), Some("nonce_reused"));
    // Malformed nonce and proof.
    let mut bad = term.request(&t.b.name, T0);
    bad.nonce = "xyz".into();
    assert_eq!(t.b.client.request_port(&bad, "m1").await.unwrap_err().code(), Some("invalid_nonce"));
    let mut bad = term.request(&t.b.name, T0);
    bad.proof = "00".into();
    assert_eq!(t.b.client.request_port(&bad, "m2").await.unwrap_err().code(), Some("invalid_proof"));
}

async fn proof_mismatch_and_attempt_limit(backend: Backend) {
    let Some(t) = TestCh::start(backend).await else { return };
    let term = Terminal::new("4790000004");
    let impostor = Terminal { msisdn: term.msisdn.clone(), key: Terminal::new("4790000999").key };
    for i in 0..3 {
        // Someone without the subscriber's key asks; the donor deposits the true proof.
        let req = impostor.request(&t.b.name, T0);
        let o = t.b.client.request_port(&req, &format!("i{i}")).await.unwrap();
        t.a.client.deposit(&term.deposit_for(&req, &t.b.name), &format!("d{i}")).await.unwrap();
        let o = t.b.client.order(o.id).await.unwrap();
        assert_eq!((o.state, o.reason), (OrderState::Rejected, Some(Reason::ProofMismatch)));
    }
    let o = t.b.client.request_port(&term.request(&t.b.name, T0), "real").await.unwrap();
    assert_eq!((o.state, o.reason), (OrderState::Rejected, Some(Reason::TooManyAttempts)));
    // After the window the genuine subscriber may try again.
    t.clock.advance_ms(t.ch.config.verification.failure_window_ms + 1);
    let o = t.b.client.request_port(&term.request(&t.b.name, t.clock.now()), "later").await.unwrap();
    assert_eq!(o.state, OrderState::AwaitingDeposit);
}

async fn decision_outcomes(backend: Backend) {
    let Some(t) = TestCh::start(backend).await else { return };
    // Refusal.
    let term = Terminal::new("4790000005");
    let o = up_to_decision(&t, &term, &t.a, &t.b, credit(0, 0, 500, 0)).await;
    let err =
        t.b.client
            .decide(o.id, &DecisionRequest { accept: true, compensation: Some(Money(499)) }, "w")
            .await
            .unwrap_err();
    assert_eq!(err.code(), Some("compensation_mismatch"));
    let o = t.b.client.decide(o.id, &DecisionRequest { accept: false, compensation: None }, "r").await.unwrap();
    assert_eq!((o.state, o.reason), (OrderState::Refused, Some(Reason::RefusedByRecipient)));
    assert_eq!(t.messages(&t.a, "order_closed").await.len(), 1);
    // Insufficient funds: more than the recipient's whole balance.
    let term = Terminal::new("4790000006");
    let o = up_to_decision(&t, &term, &t.a, &t.b, credit(0, 0, 2_000_000, 0)).await;
    let o =
        t.b.client
            .decide(o.id, &DecisionRequest { accept: true, compensation: Some(Money(2_000_000)) }, "f")
            .await
            .unwrap();
    assert_eq!((o.state, o.reason), (OrderState::Rejected, Some(Reason::InsufficientFunds)));
    assert_eq!(t.b.client.account().await.unwrap().balance, Money(1_000_000));
    assert_eq!(t.c.client.number(&term.msisdn).await.unwrap().serving_operator.as_str(), "opa");
    // Negative credit figures are refused.
    let term = Terminal::new("4790000007");
    let req = term.request(&t.b.name, T0);
    let o = t.b.client.request_port(&req, "n").await.unwrap();
    t.a.client.deposit(&term.deposit_for(&req, &t.b.name), "nd").await.unwrap();
    let err = t.a.client.credit_information(o.id, &credit(-1, 0, 0, 0), "nc").await.unwrap_err();
    assert_eq!(err.code(), Some("invalid_credit_information"));
    // A decision out of turn.
    let err =
        t.b.client.decide(o.id, &DecisionRequest { accept: false, compensation: None }, "early").await.unwrap_err();
    assert_eq!(err.code(), Some("invalid_state"));
    assert!(t.ledger_sound().await);
}

/// Two acceptances by one recipient at once, with funds for only one: one port completes, the
/// other is rejected for insufficient funds, and no money appears or disappears. Both may read
/// the funds before either is settled; the settler then finds them gone for the second.
async fn settlements_racing_for_the_last_funds(backend: Backend) {
    let Some(t) = TestCh::start(backend).await else { return };
    let (first, second) = (Terminal::new("4790000031"), Terminal::new("4790000032"));
    let o1 = up_to_decision(&t, &first, &t.a, &t.b, credit(0, 0, 600_000, 0)).await;
    let o2 = up_to_decision(&t, &second, &t.a, &t.b, credit(0, 0, 600_000, 0)).await;
    let accept = DecisionRequest { accept: true, compensation: Some(Money(600_000)) };
    let (r1, r2) =
        tokio::join!(t.b.client.decide(o1.id, &accept, "race-1"), t.b.client.decide(o2.id, &accept, "race-2"));
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    let mut outcomes = [t.settled(&t.b, r1.id).await, t.settled(&t.b, r2.id).await].map(|o| (o.state, o.reason));
    outcomes.sort_by_key(|(state, _)| state.as_str());
    assert_eq!(outcomes, [(OrderState::Completed, None), (OrderState::Rejected, Some(Reason::InsufficientFunds))]);
    assert_eq!(t.b.client.account().await.unwrap().balance, Money(400_000));
    assert_eq!(t.a.client.account().await.unwrap().balance, Money(1_600_000));
    assert!(t.ledger_sound().await);
}

/// `ledger::post` itself, which on PostgreSQL is one call to `numport_post_journal`: an
/// overdraft writes nothing and leaves the transaction usable, whichever line fails; a key
/// posts once.
async fn ledger_post_refuses_an_overdraft_and_posts_a_key_once(backend: Backend) {
    use clearinghouse::store::ledger::{self, PostError, Posted};
    use numport_core::JournalEntry;
    use numport_db::sql;
    let Some(t) = TestCh::start(backend).await else { return };
    let mut tx = t.ch.db.begin().await.unwrap();
    let accounts: Vec<(i64, i64)> =
        sql::query_as("SELECT id, balance FROM accounts WHERE operator_id IS NOT NULL ORDER BY id")
            .fetch_all(&mut tx)
            .await
            .unwrap();
    let ((low, low_balance), (high, high_balance)) = (accounts[0], accounts[1]);
    // The debit is the first line written, then the last (after a credit that must be undone).
    for (from, to, amount) in [(low, high, low_balance + 1), (high, low, high_balance + 1)] {
        let entry = JournalEntry::transfer(from, to, Money(amount)).unwrap();
        match ledger::post(&mut tx, &format!("overdraft:{from}"), "test", None, &entry, T0).await {
            Err(PostError::InsufficientFunds { account }) => assert_eq!(account, from),
            other => panic!("an overdraft was posted: {other:?}"),
        }
    }
    let entry = JournalEntry::transfer(low, high, Money(250)).unwrap();
    let Ok(Posted::New(journal)) = ledger::post(&mut tx, "once", "test", None, &entry, T0).await else {
        panic!("the first post of a key is new")
    };
    let again = ledger::post(&mut tx, "once", "test", None, &entry, T0).await.unwrap();
    assert_eq!(again, Posted::Already(journal));
    tx.commit().await.unwrap();
    let mut conn = t.ch.db.read().await.unwrap();
    let after: Vec<(i64, i64)> =
        sql::query_as("SELECT id, balance FROM accounts WHERE operator_id IS NOT NULL ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(&after[..2], &[(low, low_balance - 250), (high, high_balance + 250)]);
    let journals: i64 =
        sql::query_scalar("SELECT COUNT(*) FROM journals WHERE kind = 'test'").fetch_one(&mut conn).await.unwrap();
    let postings: i64 = sql::query_scalar("SELECT COUNT(*) FROM postings WHERE journal_id = $1")
        .bind(journal)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!((journals, postings), (1, 2));
    drop(conn);
    assert!(t.ledger_sound().await);
}

/// The settler's writes: `ledger::post_batch` posts journals in their order and refuses each
/// one an operator account can no longer pay, writing nothing for it; `routing::record_changes`
/// numbers a batch's changes in order, routing a port and un-routing a port-back.
async fn a_batch_posts_what_is_funded_and_numbers_its_changes(backend: Backend) {
    use clearinghouse::store::ledger::{self, NewJournal, PostError};
    use clearinghouse::store::routing::{self, NewChange};
    use numport_core::porting::ChangeKind;
    use numport_core::{JournalEntry, RoutingNumber};
    use numport_db::sql;
    let Some(t) = TestCh::start(backend).await else { return };
    let mut conn = t.ch.db.read().await.unwrap();
    let accounts: Vec<(i64, i64, i64)> = sql::query_as(
        "SELECT id, operator_id, balance FROM accounts WHERE operator_id IS NOT NULL ORDER BY operator_id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let head = routing::head(&mut conn).await.unwrap();
    drop(conn);
    let ((a_acct, a_op, a_balance), (b_acct, b_op, b_balance)) = (accounts[0], accounts[1]);
    // B pays 250, then all it had (no longer there), then 100; A pays B 40.
    let entries = [(b_acct, a_acct, 250), (b_acct, a_acct, b_balance), (b_acct, a_acct, 100), (a_acct, b_acct, 40)]
        .map(|(from, to, amount)| JournalEntry::transfer(from, to, Money(amount)).unwrap());
    let journals: Vec<NewJournal<'_>> = entries
        .iter()
        .enumerate()
        .map(|(i, entry)| NewJournal { idempotency_key: format!("batch:{i}"), kind: "test", order_id: None, entry })
        .collect();
    let (port, back): (Msisdn, Msisdn) = ("4790000040".parse().unwrap(), "4791000041".parse().unwrap());
    let (rn_b, rn_a): (RoutingNumber, RoutingNumber) = ("D002".parse().unwrap(), "D001".parse().unwrap());
    let mut tx = t.ch.db.begin().await.unwrap();
    // The settlers' lock order: the change log's head, then the ledger's.
    let locked = routing::lock_head(&mut tx).await.unwrap();
    let held = ledger::hold(&mut tx).await.unwrap();
    let locked = locked.last_seq(&mut tx).await.unwrap();
    let posted = ledger::post_batch(&mut tx, held, &journals, T0).await.unwrap();
    assert!(
        matches!(posted[..], [Ok(_), Err(PostError::InsufficientFunds { account }), Ok(_), Ok(_)] if account == b_acct)
    );
    // The second number is B's, ported to A before: a port-back makes it B's own again.
    sql::query("INSERT INTO ported_numbers (msisdn, operator_id, order_id, ported_at) VALUES ($1, $2, NULL, $3)")
        .bind(back.as_str())
        .bind(a_op)
        .bind(T0)
        .execute(&mut tx)
        .await
        .unwrap();
    let changes = [
        NewChange {
            msisdn: &port,
            operator_id: b_op,
            routing_number: &rn_b,
            kind: ChangeKind::Port,
            order_id: Some(7),
            at: T0,
        },
        NewChange {
            msisdn: &back,
            operator_id: b_op,
            routing_number: &rn_a,
            kind: ChangeKind::PortBack,
            order_id: Some(8),
            at: T0,
        },
    ];
    assert_eq!(locked, head);
    routing::record_changes(&mut tx, locked, &changes).await.unwrap();
    tx.commit().await.unwrap();

    let mut conn = t.ch.db.read().await.unwrap();
    let after: Vec<(i64, i64)> =
        sql::query_as("SELECT id, balance FROM accounts WHERE operator_id IS NOT NULL ORDER BY operator_id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(&after[..2], &[(a_acct, a_balance + 350 - 40), (b_acct, b_balance - 350 + 40)]);
    let counts: (i64, i64) = sql::query_as(
        "SELECT (SELECT COUNT(*) FROM journals WHERE kind = 'test'), \
         (SELECT COUNT(*) FROM postings p JOIN journals j ON j.id = p.journal_id WHERE j.kind = 'test')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(counts, (3, 6));
    let log = routing::changes_after(&mut conn, head, 10).await.unwrap().changes;
    let log: Vec<_> = log.iter().map(|c| (c.seq, c.msisdn.as_str(), c.kind, c.order_id)).collect();
    assert_eq!(
        log,
        [(head + 1, "4790000040", ChangeKind::Port, Some(7)), (head + 2, "4791000041", ChangeKind::PortBack, Some(8))]
    );
    assert_eq!(routing::ported_to(&mut conn, &port).await.unwrap(), Some(b_op));
    assert_eq!(routing::ported_to(&mut conn, &back).await.unwrap(), None);
    drop(conn);
    assert!(t.ledger_sound().await);
    // Whatever writes it, the schema refuses an operator account below zero.
    let mut conn = t.ch.db.acquire().await.unwrap();
    let overdraft = sql::query("UPDATE accounts SET balance = -1 WHERE id = $1").bind(b_acct).execute(&mut conn).await;
    assert!(overdraft.is_err(), "an overdraft was written");
}

/// Settlers side by side, as several clearinghouse processes on one database would run them
/// (each process runs two): every accepted order is settled exactly once, the change log has
/// no gap and no repeat, and no money appears or disappears.
async fn settlers_side_by_side_settle_each_order_once(backend: Backend) {
    use numport_db::sql;
    let Some(t) = TestCh::start(backend).await else { return };
    let mut orders = Vec::new();
    for i in 0..12 {
        let term = Terminal::new(&format!("47900001{i:02}"));
        orders.push(up_to_decision(&t, &term, &t.a, &t.b, credit(0, 0, 100, 0)).await);
    }
    // Three more settlers, as if from other processes, settling as fast as they can.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let extra: Vec<_> = (0..3)
        .map(|_| {
            let (ch, stop) = (t.ch.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    ch.settle_once().await.expect("a settlement batch");
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let accept = DecisionRequest { accept: true, compensation: Some(Money(100)) };
    let keys: Vec<String> = orders.iter().map(|o| format!("accept-{}", o.id)).collect();
    let decided =
        futures::future::join_all(orders.iter().zip(&keys).map(|(o, key)| t.b.client.decide(o.id, &accept, key))).await;
    for d in decided {
        assert_eq!(d.unwrap().state, OrderState::Settling);
    }
    for o in &orders {
        assert_eq!(t.settled(&t.b, o.id).await.state, OrderState::Completed);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in extra {
        task.await.unwrap();
    }
    assert_eq!(t.b.client.account().await.unwrap().balance, Money(1_000_000 - 12 * 100));
    assert_eq!(t.a.client.account().await.unwrap().balance, Money(1_000_000 + 12 * 100));
    let mut conn = t.ch.db.read().await.unwrap();
    let log = clearinghouse::store::routing::changes_after(&mut conn, 0, 100).await.unwrap().changes;
    assert_eq!(log.iter().map(|c| c.seq).collect::<Vec<_>>(), (1..=12).collect::<Vec<_>>());
    let mut numbers: Vec<_> = log.iter().map(|c| c.msisdn.as_str().to_owned()).collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), 12, "each number once");
    let journals: i64 = sql::query_scalar("SELECT COUNT(*) FROM journals WHERE kind = 'compensation'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(journals, 12);
    drop(conn);
    assert_eq!(t.ch.metrics.ports_completed.get(), 12, "each settlement counted once");
    assert!(t.ledger_sound().await);
}

async fn ported_too_recently(backend: Backend) {
    let config = clearinghouse::ClearinghouseConfig { min_port_interval_ms: 86_400_000, ..common::test_config() };
    let Some(t) = TestCh::start_with(backend, config).await else { return };
    let term = Terminal::new("4790000008");
    let o = up_to_decision(&t, &term, &t.a, &t.b, credit(0, 0, 0, 0)).await;
    t.b.client.decide(o.id, &DecisionRequest { accept: true, compensation: Some(Money(0)) }, "x").await.unwrap();
    t.settled(&t.b, o.id).await;
    let o = t.c.client.request_port(&term.request(&t.c.name, T0), "again").await.unwrap();
    assert_eq!((o.state, o.reason), (OrderState::Rejected, Some(Reason::PortedTooRecently)));
    t.clock.advance_ms(86_400_001);
    let o = t.c.client.request_port(&term.request(&t.c.name, t.clock.now()), "later").await.unwrap();
    assert_eq!(o.state, OrderState::AwaitingDeposit);
    assert_eq!(o.donor.as_ref().map(|d| d.as_str()), Some("opb"));
}

async fn timeout_rules(backend: Backend) {
    let Some(t) = TestCh::start(backend).await else { return };
    let d = t.ch.config.deadlines;
    // Donor never deposits: the order fails and the donor is charged.
    let term = Terminal::new("4790000010");
    let o = t.b.client.request_port(&term.request(&t.b.name, T0), "1").await.unwrap();
    t.clock.advance_ms(d.deposit_ms + 5);
    assert_eq!(t.ch.supervise_once().await.unwrap(), 1);
    let o = t.b.client.order(o.id).await.unwrap();
    assert_eq!((o.state, o.reason), (OrderState::Failed, Some(Reason::DepositTimeout)));
    let v = t.a.client.violations().await.unwrap().violations;
    assert_eq!(v.len(), 1);
    assert_eq!((v[0].order_id, v[0].step, v[0].lateness_ms), (o.id, OrderState::AwaitingDeposit, 5));
    assert!(t.b.client.violations().await.unwrap().violations.is_empty());

    // Donor silent on the credit query: the order goes on with zero credit information.
    let term = Terminal::new("4790000011");
    let now = t.clock.now();
    let req = term.request(&t.b.name, now);
    let o = t.b.client.request_port(&req, "2").await.unwrap();
    t.a.client.deposit(&term.deposit_for(&req, &t.b.name), "2d").await.unwrap();
    t.clock.advance_ms(d.credit_info_ms + 1);
    assert_eq!(t.ch.supervise_once().await.unwrap(), 1);
    let o = t.b.client.order(o.id).await.unwrap();
    assert_eq!((o.state, o.compensation), (OrderState::AwaitingDecision, Some(Money(0))));
    let offers = t.messages(&t.b, "credit_information").await;
    assert!(matches!(
        offers.last(),
        Some(Message::CreditInformation { donor_defaulted: true, compensation: Money(0), .. })
    ));
    assert_eq!(t.a.client.violations().await.unwrap().violations.len(), 2);
    // A late answer changes nothing.
    assert_eq!(
        t.a.client.credit_information(o.id, &credit(1, 1, 1, 0), "late").await.unwrap_err().code(),
        Some("invalid_state")
    );

    // Recipient never decides: the order fails and the recipient is charged.
    t.clock.advance_ms(d.decision_ms + 1);
    assert_eq!(t.ch.supervise_once().await.unwrap(), 1);
    let o = t.b.client.order(o.id).await.unwrap();
    assert_eq!((o.state, o.reason), (OrderState::Failed, Some(Reason::DecisionTimeout)));
    assert_eq!(t.b.client.violations().await.unwrap().violations.len(), 1);
    // Nothing left to supervise: no order hangs.
    t.clock.advance_ms(10 * d.decision_ms);
    assert_eq!(t.ch.supervise_once().await.unwrap(), 0);
    assert!(t.ledger_sound().await);
}

async fn cancellation(backend: Backend) {
    let Some(t) = TestCh::start(backend).await else { return };
    let term = Terminal::new("4790000012");
    let o = up_to_decision(&t, &term, &t.a, &t.b, credit(0, 0, 100, 0)).await;
    let err = t.a.client.cancel(o.id, &CancelRequest { by_subscriber: true }, "a").await.unwrap_err();
    assert_eq!(err.code(), Some("forbidden"), "the donor cannot cancel");
    let o = t.b.client.cancel(o.id, &CancelRequest { by_subscriber: true }, "b").await.unwrap();
    assert_eq!((o.state, o.reason), (OrderState::Cancelled, Some(Reason::CancelledBySubscriber)));
    // Once accepted there is nothing to cancel, settled or not.
    let term = Terminal::new("4790000013");
    let o = up_to_decision(&t, &term, &t.a, &t.b, credit(0, 0, 100, 0)).await;
    t.b.client.decide(o.id, &DecisionRequest { accept: true, compensation: Some(Money(100)) }, "d").await.unwrap();
    assert_eq!(
        t.b.client.cancel(o.id, &CancelRequest { by_subscriber: false }, "c").await.unwrap_err().code(),
        Some("invalid_state")
    );
}

async fn port_back_and_number_return(backend: Backend) {
    let Some(t) = TestCh::start(backend).await else { return };
    let term = Terminal::new("4790000014");
    let o = up_to_decision(&t, &term, &t.a, &t.b, credit(0, 0, 0, 0)).await;
    t.b.client.decide(o.id, &DecisionRequest { accept: true, compensation: Some(Money(0)) }, "1").await.unwrap();
    t.settled(&t.b, o.id).await;
    // Back to the range holder.
    let o = up_to_decision(&t, &term, &t.b, &t.a, credit(10, 0, 0, 0)).await;
    assert_eq!(o.kind, OrderKind::PortBack);
    t.a.client.decide(o.id, &DecisionRequest { accept: true, compensation: Some(Money(10)) }, "2").await.unwrap();
    t.settled(&t.a, o.id).await;
    let s = t.c.client.number(&term.msisdn).await.unwrap();
    assert_eq!((s.serving_operator.as_str(), s.ported), ("opa", false));

    // Ported to C, then terminated there: the number returns to A.
    let term = Terminal::new("4790000015");
    let o = up_to_decision(&t, &term, &t.a, &t.c, credit(0, 0, 0, 0)).await;
    t.c.client.decide(o.id, &DecisionRequest { accept: true, compensation: Some(Money(0)) }, "3").await.unwrap();
    t.settled(&t.c, o.id).await;
    assert_eq!(t.b.client.return_number(&term.msisdn, "r1").await.unwrap_err().code(), Some("forbidden"));
    let r = t.c.client.return_number(&term.msisdn, "r2").await.unwrap();
    assert_eq!((r.range_holder.as_str(), r.seq), ("opa", 4));
    let s = t.b.client.number(&term.msisdn).await.unwrap();
    assert_eq!((s.serving_operator.as_str(), s.ported), ("opa", false));
    assert!(matches!(&t.messages(&t.a, "number_returned").await[..], [Message::NumberReturned { seq: 4, .. }]));
    // A number that is not ported cannot be returned.
    assert_eq!(t.a.client.return_number(&term.msisdn, "r3").await.unwrap_err().code(), Some("forbidden"));

    let mut conn = t.ch.db.acquire().await.unwrap();
    let log = clearinghouse::store::routing::changes_after(&mut conn, 0, 100).await.unwrap().changes;
    let kinds: Vec<_> = log.iter().map(|c| (c.seq, c.kind.as_str(), c.operator.to_string())).collect();
    assert_eq!(
        kinds,
        [
            (1, "port", "opb".into()),
            (2, "port_back", "opa".into()),
            (3, "port", "opc".into()),
            (4, "return", "opa".into())
        ]
    );
}

async fn idempotent_retries(backend: Backend) {
    let Some(t) = TestCh::start(backend).await else { return };
    let term = Terminal::new("4790000016");
    let req = term.request(&t.b.name, T0);
    let first = t.b.client.request_port(&req, "same").await.unwrap();
    let again = t.b.client.request_port(&req, "same").await.unwrap();
    assert_eq!(first, again, "a retry returns the stored answer");
    let mut other = term.request(&t.b.name, T0);
    other.expiry += 1;
    assert_eq!(t.b.client.request_port(&other, "same").await.unwrap_err().code(), Some("idempotency_key_reused"));
    // Another operator may use the same key for its own request.
    let o = t.c.client.request_port(&Terminal::new("4790000017").request(&t.c.name, T0), "same").await.unwrap();
    assert_ne!(o.id, first.id);

    t.a.client.deposit(&term.deposit_for(&req, &t.b.name), "d").await.unwrap();
    t.a.client.credit_information(first.id, &credit(0, 0, 700, 0), "c").await.unwrap();
    let decision = DecisionRequest { accept: true, compensation: Some(Money(700)) };
    let paid = t.b.client.decide(first.id, &decision, "pay").await.unwrap();
    let paid_again = t.b.client.decide(first.id, &decision, "pay").await.unwrap();
    assert_eq!(paid, paid_again);
    assert_eq!(t.settled(&t.b, first.id).await.state, OrderState::Completed);
    assert_eq!(t.b.client.account().await.unwrap().balance, Money(1_000_000 - 700), "paid once");
    // A fresh key on a settled order acts on nothing.
    assert_eq!(t.b.client.decide(first.id, &decision, "pay2").await.unwrap_err().code(), Some("invalid_state"));
    assert_eq!(t.b.client.account().await.unwrap().balance, Money(1_000_000 - 700));

    // The replay is marked.
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/v1/porting-orders/{}/decision", t.url, first.id))
        .bearer_auth(token_of(&t, "opb").await)
        .header("idempotency-key", "pay")
        .json(&decision)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers().get("idempotent-replay").map(|v| v.to_str().unwrap()), Some("true"));
    assert!(t.ledger_sound().await);
}

/// Issue a fresh token for raw HTTP tests (keys are only shown at issue).
async fn token_of(t: &TestCh, name: &str) -> String {
    let creds =
        clearinghouse::admin::issue_credentials(&t.ch.db, &[7u8; 32], name, 3_600_000, t.clock.now()).await.unwrap();
    creds.api_token
}

async fn operators_are_confined(backend: Backend) {
    let Some(t) = TestCh::start(backend).await else { return };
    let term = Terminal::new("4790000018");
    let req = term.request(&t.b.name, T0);
    let o = t.b.client.request_port(&req, "1").await.unwrap();
    // C is no party to A→B: it cannot read, answer, decide, cancel or deposit.
    assert_eq!(t.c.client.order(o.id).await.unwrap_err().code(), Some("not_found"));
    assert_eq!(t.c.client.audit(o.id).await.unwrap_err().code(), Some("not_found"));
    assert_eq!(
        t.c.client.deposit(&term.deposit_for(&req, &t.b.name), "2").await.unwrap_err().code(),
        Some("forbidden")
    );
    t.a.client.deposit(&term.deposit_for(&req, &t.b.name), "3").await.unwrap();
    assert_eq!(
        t.c.client.credit_information(o.id, &credit(0, 0, 0, 0), "4").await.unwrap_err().code(),
        Some("not_found")
    );
    assert_eq!(
        t.c.client.cancel(o.id, &CancelRequest { by_subscriber: false }, "5").await.unwrap_err().code(),
        Some("not_found")
    );
    // The recipient cannot answer for the donor.
    assert_eq!(
        t.b.client.credit_information(o.id, &credit(0, 0, 0, 0), "6").await.unwrap_err().code(),
        Some("forbidden")
    );
    t.a.client.credit_information(o.id, &credit(0, 0, 5, 0), "7").await.unwrap();
    let d = DecisionRequest { accept: true, compensation: Some(Money(5)) };
    assert_eq!(t.c.client.decide(o.id, &d, "8").await.unwrap_err().code(), Some("not_found"));
    assert_eq!(t.a.client.decide(o.id, &d, "9").await.unwrap_err().code(), Some("forbidden"));
    assert!(t.c.client.orders().await.unwrap().orders.is_empty());
    assert!(t.c.client.inbox(0, 100).await.unwrap().messages.is_empty());
    assert_eq!(t.c.client.account().await.unwrap().operator.as_str(), "opc");
    assert_eq!(t.a.client.orders().await.unwrap().orders.len(), 1);
}

async fn credentials_and_bad_requests(backend: Backend) {
    let Some(t) = TestCh::start(backend).await else { return };
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", t.url);
    let token = token_of(&t, "opb").await;
    let code = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap();
        (status, body["error"].as_str().unwrap_or_default().to_owned())
    };
    // No, malformed and wrong credentials.
    assert_eq!(code(http.get(url("/v1/accounts/me")).send().await.unwrap()).await, (401, "unauthorized".into()));
    assert_eq!(
        code(http.get(url("/v1/accounts/me")).bearer_auth("garbage").send().await.unwrap()).await,
        (401, "unauthorized".into())
    );
    let forged = format!("{}.{}", token.split_once('.').unwrap().0, "0".repeat(64));
    assert_eq!(
        code(http.get(url("/v1/accounts/me")).bearer_auth(forged).send().await.unwrap()).await,
        (401, "unauthorized".into())
    );
    // Malformed JSON, wrong fields, oversized body, no idempotency key.
    let post = |body: Vec<u8>| {
        http.post(url("/v1/porting-orders"))
            .bearer_auth(&token)
            .header("idempotency-key", "k")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(code(post(b"{not json".to_vec()).await.unwrap()).await, (400, "malformed_json".into()));
    assert_eq!(code(post(br#"{"msisdn":"12"}"#.to_vec()).await.unwrap()).await, (422, "invalid_request".into()));
    assert_eq!(
        code(
            post(br#"{"msisdn":"4790000001","nonce":"00","expiry":1,"proof":"00","extra":1}"#.to_vec()).await.unwrap()
        )
        .await,
        (422, "invalid_request".into())
    );
    assert_eq!(code(post(vec![b' '; 70_000]).await.unwrap()).await, (413, "body_too_large".into()));
    let r = http.post(url("/v1/porting-orders")).bearer_auth(&token).body("{}").send().await.unwrap();
    assert_eq!(code(r).await, (400, "missing_idempotency_key".into()));
    assert_eq!(code(http.get(url("/v1/nowhere")).send().await.unwrap()).await, (404, "not_found".into()));
    assert_eq!(
        code(http.get(url("/v1/porting-orders/abc")).bearer_auth(&token).send().await.unwrap()).await,
        (404, "not_found".into())
    );
    assert_eq!(
        code(http.delete(url("/v1/deposits")).bearer_auth(&token).send().await.unwrap()).await,
        (405, "method_not_allowed".into())
    );
    assert_eq!(
        code(http.get(url("/v1/numbers/12ab")).bearer_auth(&token).send().await.unwrap()).await,
        (422, "invalid_msisdn".into())
    );
    assert_eq!(
        code(http.get(url("/v1/inbox?after=x")).bearer_auth(&token).send().await.unwrap()).await,
        (422, "invalid_query".into())
    );
    let r = http
        .put(url("/v1/operators/me/callback"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"url": "ftp://x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (422, "invalid_callback_url".into()));

    // Rotation: the old key stops working once its grace ends (and the auth cache expires).
    let old = token_of(&t, "opc").await;
    assert_eq!(http.get(url("/v1/accounts/me")).bearer_auth(&old).send().await.unwrap().status(), 200);
    let new = clearinghouse::admin::issue_credentials(&t.ch.db, &[7u8; 32], "opc", 0, t.clock.now()).await.unwrap();
    t.clock.advance_ms(clearinghouse::auth::CACHE_TTL_MS + 1);
    assert_eq!(http.get(url("/v1/accounts/me")).bearer_auth(&old).send().await.unwrap().status(), 401);
    assert_eq!(http.get(url("/v1/accounts/me")).bearer_auth(&new.api_token).send().await.unwrap().status(), 200);

    // The OpenAPI document, metrics and health are served.
    let doc: serde_json::Value = http.get(url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let metrics = http.get(url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("numport_http_requests_total"));
    assert_eq!(http.get(url("/healthz")).send().await.unwrap().status(), 200);
    let _ = Msisdn::try_from("4790000001".to_owned()).unwrap();
}

async fn routing_change_feed(backend: Backend) {
    let Some(t) = TestCh::start(backend).await else { return };
    // A follower waiting on an empty log is woken by the settlement.
    let follower = t.c.client.clone();
    let waiting = tokio::spawn(async move { follower.routing_changes(0, 100, 10_000).await });
    let term = Terminal::new("4790000019");
    let o = up_to_decision(&t, &term, &t.a, &t.b, credit(0, 0, 0, 0)).await;
    let started = std::time::Instant::now();
    t.b.client.decide(o.id, &DecisionRequest { accept: true, compensation: Some(Money(0)) }, "x").await.unwrap();
    let page = waiting.await.unwrap().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "long-poll answered at once");
    assert_eq!(page.head, 1);
    assert!(
        matches!(&page.changes[..], [c] if c.seq == 1 && c.msisdn == term.msisdn && c.operator.as_str() == "opb" && c.routing_number.as_str() == "D002")
    );
    // Resuming after the last change: nothing new, an empty page when the wait ends.
    let page = t.a.client.routing_changes(1, 100, 50).await.unwrap();
    assert_eq!((page.changes.len(), page.head), (0, 1));
    // The snapshot: the ranges, the ported number, valid at seq 1, complete.
    let body = t.c.client.routing_snapshot().await.unwrap().bytes().await.unwrap();
    let (index, header) = npdb::snapshot::read_index(&body[..], |_| {}).unwrap();
    assert_eq!((header.seq, header.ported, index.len(), index.range_count()), (1, Some(1), 1, 3));
    let route = index.lookup(&term.msisdn).unwrap();
    assert_eq!((route.name.as_str(), route.routing_number.as_str(), route.ported), ("opb", "D002", true));
    // The feed is for authenticated operators only.
    for path in ["/v1/routing/changes", "/v1/routing/snapshot"] {
        let r = reqwest::get(format!("{}{path}", t.url)).await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
}

/// A compare-and-set that lost (the order moved on since it was read) fails its transaction,
/// and nothing written after it commits: on SQLite it fails at once; on PostgreSQL it is
/// pipelined, and the server aborts the transaction, so the COMMIT reports it.
async fn a_lost_compare_and_set_commits_nothing(backend: Backend) {
    use clearinghouse::store::{audit, orders};
    use numport_db::sql;
    let Some(t) = TestCh::start(backend).await else { return };
    let term = Terminal::new("4790000041");
    let o = up_to_decision(&t, &term, &t.a, &t.b, credit(0, 0, 0, 0)).await;
    let audit_rows = || async {
        let mut conn = t.ch.db.read().await.unwrap();
        sql::query_scalar::<i64>("SELECT COUNT(*) FROM audit_log WHERE order_id = $1")
            .bind(o.id)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    let before = audit_rows().await;
    // The recipient refuses meanwhile: the order is closed.
    t.b.client.decide(o.id, &DecisionRequest { accept: false, compensation: None }, "refuse").await.unwrap();
    let after_refusal = audit_rows().await;
    assert!(after_refusal > before);

    // A writer that read it awaiting the decision, too late.
    let mut tx = t.ch.db.begin().await.unwrap();
    let stale = orders::transition(
        &mut tx,
        o.id,
        OrderState::AwaitingDecision,
        OrderState::Failed,
        Some(numport_core::porting::Reason::DecisionTimeout),
        None,
        None,
        T0,
        "test",
        "{}",
    )
    .await;
    let outcome = match stale {
        Err(e) => Err(e),
        // Pipelined on PostgreSQL: the next statement or the COMMIT reports it.
        Ok(()) => {
            match audit::append(&mut tx, T0, "test", "state_changed", Some(o.id), None, Some("failed"), "{}").await {
                Ok(()) => tx.commit().await,
                Err(e) => Err(e),
            }
        }
    };
    let e = outcome.expect_err("a lost compare-and-set must fail its transaction");
    assert!(e.is_state_changed(), "{e}");
    assert_eq!(audit_rows().await, after_refusal, "nothing after the lost compare-and-set committed");
    assert_eq!(t.b.client.order(o.id).await.unwrap().state, OrderState::Refused);
}

on_both_backends!(
    a_lost_compare_and_set_commits_nothing,
    routing_change_feed,
    happy_path,
    deposit_before_request,
    request_rejections,
    proof_mismatch_and_attempt_limit,
    decision_outcomes,
    settlements_racing_for_the_last_funds,
    ledger_post_refuses_an_overdraft_and_posts_a_key_once,
    a_batch_posts_what_is_funded_and_numbers_its_changes,
    settlers_side_by_side_settle_each_order_once,
    ported_too_recently,
    timeout_rules,
    cancellation,
    port_back_and_number_return,
    idempotent_retries,
    operators_are_confined,
    credentials_and_bad_requests,
);
