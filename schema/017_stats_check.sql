-- Stats: whether the rollups must be rebuilt is decided in one place, stats_rebuild_needed, and a
-- rebuild is requested in one place, stats_rebuild_request (docs/architecture.md, "Stats").
--
-- * dialer-stats asks stats_rebuild_needed directly on every take-over and every 5 s, instead of
--   calling stats_apply with no entries (which needed the results group's frontier from Redis
--   first, only to pass it along unread); stats_apply tests the same condition under its row lock.
-- * When the worker finds its consumer group gone, it commits stats_rebuild_request before it
--   re-creates the group: a copy that dies between the new group and the rebuild's COMMIT then
--   leaves the rebuild requested, so the next holder rebuilds instead of counting only what the
--   new group delivers (the entries between the last one counted and the new group's start were
--   lost before). `dialerctl stats-rebuild` calls the same function.

-- True when the rollups must be counted again from call_attempts before any entry is applied: a
-- new installation, a requested rebuild, or p_tz (the worker's TIMEZONE) not the zone they were
-- cut in.
CREATE FUNCTION stats_rebuild_needed(p_tz text) RETURNS boolean
LANGUAGE sql STABLE AS
$$ SELECT NOT backfilled OR timezone IS DISTINCT FROM p_tz FROM stats_state WHERE id = 1 $$;

-- Asks dialer-stats to rebuild (it sees it within 5 s, or at its next batch); committed by the
-- caller.
CREATE FUNCTION stats_rebuild_request() RETURNS void
LANGUAGE sql AS
$$ UPDATE stats_state SET backfilled = false, updated_at = now() WHERE id = 1 $$;

-- stats_apply (011) tests the same condition itself, under its row lock; its one line is left as
-- it is rather than the function written out again (keep the two in step).
