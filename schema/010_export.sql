-- Export (issue 6): the scenario and outbound line of a company's last attempt kept on its
-- number_state row, beside last_attempt_id, by the same trigger. The export then reads numbers,
-- number_state and three small tables, never a lookup into call_attempts per row (1,000,000
-- probes cost more than the rest of the export's query; docs/architecture.md, "Export").

ALTER TABLE number_state
    ADD COLUMN last_scenario_id      integer,
    ADD COLUMN last_outbound_line_id integer;

UPDATE number_state s
   SET last_scenario_id = a.scenario_id, last_outbound_line_id = a.outbound_line_id
  FROM call_attempts a
 WHERE a.id = s.last_attempt_id AND (a.scenario_id IS NOT NULL OR a.outbound_line_id IS NOT NULL);

-- As in 002_numbers.sql, plus the two columns.
CREATE OR REPLACE FUNCTION call_attempts_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO number_state AS s (company_id, number_id, status, total_attempts, last_attempt_at,
                                   last_attempt_id, last_user_message, assigned_agent_id, updated_at,
                                   last_scenario_id, last_outbound_line_id)
    SELECT DISTINCT ON (company_id, number_id)
           company_id, number_id, status, (count(*) OVER w)::integer, attempted_at, id, user_message,
           agent_id, now(), scenario_id, outbound_line_id
      FROM new_rows
    WINDOW w AS (PARTITION BY company_id, number_id)
     ORDER BY company_id, number_id, id DESC
    ON CONFLICT (company_id, number_id) DO UPDATE
       SET status = EXCLUDED.status,
           total_attempts = s.total_attempts + EXCLUDED.total_attempts,
           last_attempt_at = EXCLUDED.last_attempt_at,
           last_attempt_id = EXCLUDED.last_attempt_id,
           last_user_message = EXCLUDED.last_user_message,
           assigned_agent_id = EXCLUDED.assigned_agent_id,
           last_scenario_id = EXCLUDED.last_scenario_id,
           last_outbound_line_id = EXCLUDED.last_outbound_line_id,
           updated_at = now();

    UPDATE numbers n
       SET last_called_at = GREATEST(n.last_called_at, r.attempted_at),
           last_called_company_id = r.company_id,
           global_status = global_status_for(r.status),
           assigned_at = NULL, assigned_batch_id = NULL, assigned_company_id = NULL
      FROM (SELECT DISTINCT ON (number_id) number_id, attempted_at, company_id, status
              FROM new_rows ORDER BY number_id, id DESC) r
     WHERE n.id = r.number_id;

    UPDATE scenarios SET has_results = true
     WHERE NOT has_results AND id IN (SELECT scenario_id FROM new_rows WHERE scenario_id IS NOT NULL);
    UPDATE outbound_lines SET has_results = true
     WHERE NOT has_results AND id IN (SELECT outbound_line_id FROM new_rows WHERE outbound_line_id IS NOT NULL);
    RETURN NULL;
END
$$;
