-- The dialer path (issue 5).

-- `call_allowed` in a report flips the company's switch (COMPAT §3.5 step 7):
-- when it differs from `enabled`, enabled := it and version + 1; in every case
-- disabled_by_dialer := NOT it. Runs in the API before the report is
-- accepted, so a next-batch that starts after the 202 sees it. Returns the
-- version.
CREATE FUNCTION company_call_allowed_set(cid integer, allowed boolean, skip_default boolean) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE v integer;
BEGIN
    PERFORM company_config_get(cid, skip_default);
    UPDATE company_config
       SET version = version + CASE WHEN enabled <> allowed THEN 1 ELSE 0 END,
           enabled = allowed,
           disabled_by_dialer = NOT allowed,
           updated_at = now()
     WHERE company_id = cid
    RETURNING version INTO v;
    RETURN v;
END
$$;
