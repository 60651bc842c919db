-- wrk: POST /api/dialer/report-result as the original agents send it (token in DIALER_TOKEN).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("DIALER_TOKEN")
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"phone_number":"0912%07d","status":"MISSED",' ..
    '"attempted_at":"2026-02-18T10:00:00.123456+00:00","batch_id":"0123456789abcdef0123456789abcdef",' ..
    '"agent_id":null,"user_message":null}', n % 10000000)
  return wrk.format(nil, "/api/dialer/report-result", nil, body)
end
