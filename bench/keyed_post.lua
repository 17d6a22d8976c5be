-- wrk: the POSTs of bench/idempotency.py. Arguments: the mode (none: no key; new: a new key
-- each request; replay: one key, already answered), a prefix unique to the run, and "named"
-- when the body carries a name (a new one each request, but one name for the replays).
local mode, prefix, named
local counter = 0

function init(args)
  mode, prefix, named = args[1], args[2], args[3] == "named"
end

function request()
  counter = counter + 1
  local id = prefix .. "-" .. counter
  if mode == "replay" then
    id = prefix
  end
  local headers = { ["Content-Type"] = "application/json" }
  if mode ~= "none" then
    headers["Idempotency-Key"] = '"' .. id .. '"'
  end
  local body = "{}"
  if named then
    body = '{"name": "bench ' .. id .. '"}'
  end
  return wrk.format("POST", nil, headers, body)
end
