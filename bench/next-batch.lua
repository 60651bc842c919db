-- wrk: GET /api/dialer/next-batch?size=100 for company "bench" (token in DIALER_TOKEN).
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("DIALER_TOKEN")
wrk.path = "/api/dialer/next-batch?size=100&company=bench"
