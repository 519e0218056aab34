-- A journal entry posted in one call (`ledger::post` on PostgreSQL). Posting takes
-- `ledger_head` and the accounts' rows, and holds them until COMMIT: every other settlement
-- waits for that. As one call the locks are held across one round trip to the client, plus the
-- COMMIT, where the statements one by one would hold them across one round trip each.
-- Same effects as the statements `ledger::post` runs on SQLite: `p_lines` is a JSON array of
-- [account, amount] pairs sorted by account; an overdraft undoes what the call wrote.
CREATE FUNCTION numport_post_journal(p_key TEXT, p_kind TEXT, p_order_id BIGINT, p_now BIGINT, p_lines TEXT)
RETURNS TABLE (post_outcome TEXT, post_ref BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
    v_journal BIGINT;
    v_line RECORD;
    v_done_accounts BIGINT[] := '{}';
    v_done_amounts BIGINT[] := '{}';
BEGIN
    UPDATE ledger_head SET journals = journals + 1 WHERE ledger_head.id = 1;
    INSERT INTO journals (idempotency_key, kind, order_id, created_at) VALUES (p_key, p_kind, p_order_id, p_now)
        ON CONFLICT (idempotency_key) DO NOTHING RETURNING journals.id INTO v_journal;
    IF v_journal IS NULL THEN
        SELECT journals.id INTO v_journal FROM journals WHERE journals.idempotency_key = p_key;
        RETURN QUERY SELECT 'already'::TEXT, v_journal;
        RETURN;
    END IF;
    FOR v_line IN
        SELECT (e ->> 0)::BIGINT AS account, (e ->> 1)::BIGINT AS amount
        FROM jsonb_array_elements(p_lines::jsonb) WITH ORDINALITY AS l(e, n) ORDER BY n
    LOOP
        UPDATE accounts SET balance = balance + v_line.amount
        WHERE accounts.id = v_line.account AND (accounts.operator_id IS NULL OR accounts.balance + v_line.amount >= 0);
        IF NOT FOUND THEN
            FOR i IN 1 .. coalesce(array_length(v_done_accounts, 1), 0) LOOP
                UPDATE accounts SET balance = balance - v_done_amounts[i] WHERE accounts.id = v_done_accounts[i];
            END LOOP;
            DELETE FROM journals WHERE journals.id = v_journal;
            RETURN QUERY SELECT 'insufficient_funds'::TEXT, v_line.account;
            RETURN;
        END IF;
        v_done_accounts := v_done_accounts || v_line.account;
        v_done_amounts := v_done_amounts || v_line.amount;
    END LOOP;
    INSERT INTO postings (journal_id, account_id, amount)
        SELECT v_journal, (e ->> 0)::BIGINT, (e ->> 1)::BIGINT
        FROM jsonb_array_elements(p_lines::jsonb) WITH ORDINALITY AS l(e, n) ORDER BY n;
    RETURN QUERY SELECT 'new'::TEXT, v_journal;
END;
$$;
