-- Every applied call result updates its number's row (last_called_at, last_called_company_id,
-- global_status, the lock columns). The btree on last_called_at made each of those updates a
-- non-HOT one: a new row version elsewhere, and new entries in all four indexes of numbers,
-- twelve of them in the trigram GIN. Without it, and with room left on each page, the update
-- stays on its page (HOT) and touches no index: 20,000 such updates went from 670 ms to 140 ms
-- (docs/benchmarks.md, "Results ingested"). The index served one filter only: the numbers list
-- without a company, by date range, which now reads numbers in id order (docs/decisions.md).
DROP INDEX IF EXISTS numbers_last_called_at_idx;

-- New pages keep 10% free for those updates; existing pages get it back as old versions are
-- pruned (VACUUM FULL numbers applies it at once, under an exclusive lock).
ALTER TABLE numbers SET (fillfactor = 90);
