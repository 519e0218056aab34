-- A compare-and-set sent without waiting for its answer (pipelined: `orders::transition`)
-- cannot tell a caller that has moved on that it changed nothing. This makes "nothing
-- changed" an error the server raises: the transaction aborts, so nothing written after the
-- compare-and-set can commit, and the caller learns it with its next statement or COMMIT.
-- SQLSTATE NPCAS (`numport_db::STATE_CHANGED_SQLSTATE`) identifies it.
CREATE FUNCTION numport_expect_changed(changed BIGINT, what TEXT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
BEGIN
    IF changed = 0 THEN
        RAISE EXCEPTION '%', what USING ERRCODE = 'NPCAS';
    END IF;
    RETURN changed;
END;
$$;
