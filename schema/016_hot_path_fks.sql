-- Foreign keys off the results path. Each applied result inserts or updates its number_state row,
-- and each charged one a wallet_ledger row; their foreign keys cost a lookup with a row lock per
-- row (SELECT … FOR KEY SHARE of the company and of the number): ~4 µs and ~2.3 µs, 1,169,236 and
-- 800,000 of them for 800,000 results in bench/results-ingest.sh with PG_PROFILE=1. With two
-- workers, every result's lock of the same companies row also made a multixact. Without these three
-- keys one worker drained 15,893 results/s instead of 12,582 (docs/benchmarks.md, "Results
-- ingested"). What the keys guaranteed is kept another way (docs/decisions.md):
--   * the cascades: the statement-level triggers below delete a deleted number's number_state rows
--     and a deleted company's number_state and wallet_ledger rows, as ON DELETE CASCADE did;
--   * no row for a company or number that is gone: the results worker locks the companies of a
--     batch (FOR KEY SHARE, once per company, step 1) and its numbers (FOR UPDATE, step 9) and
--     dead-letters an entry whose number was deleted meanwhile; a status change locks the
--     company it writes for; a billing change writes its ledger rows only with the company's
--     config row updated (and so locked).
ALTER TABLE number_state DROP CONSTRAINT IF EXISTS number_state_company_id_fkey,
                         DROP CONSTRAINT IF EXISTS number_state_number_id_fkey;
ALTER TABLE wallet_ledger DROP CONSTRAINT IF EXISTS wallet_ledger_company_id_fkey;

-- One function for both tables (TG_TABLE_NAME says which), run once per DELETE statement.
CREATE FUNCTION deleted_cascade() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'numbers' THEN
        DELETE FROM number_state s USING old_rows o WHERE s.number_id = o.id;
    ELSE
        DELETE FROM number_state s USING old_rows o WHERE s.company_id = o.id;
        DELETE FROM wallet_ledger l USING old_rows o WHERE l.company_id = o.id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER numbers_deleted_cascade AFTER DELETE ON numbers
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION deleted_cascade();
CREATE TRIGGER companies_deleted_cascade AFTER DELETE ON companies
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION deleted_cascade();
