-- wrk: the POSTs of bench/idempotency.py. Arguments: the mode (none: no key; new: a new key
-- each request; replay: one key, already answered), a prefix unique to the run, and "item" when
-- the body names an item (a new name each request, but one name for the replays).
local mode, prefix, item
local counter = 0

function init(args)
  mode, prefix, item = args[1], args[2], args[3] == "item"
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
  if item then
    body = '{"name": "bench ' .. id .. '"}'
  end
  return wrk.format("POST", nil, headers, body)
end
