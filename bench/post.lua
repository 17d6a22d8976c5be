-- wrk: POST an empty JSON object (bench/jobs.py).
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
