-- set_run_state(keys=[tasks, task_state, due] args=[task_id, field, ts])
-- Sets one field ("next_ts" or "last_ts") of a task's run state; ts is a decimal number, or ""
-- for none. Setting next_ts also places the task in the due index (or, for "", removes it).
-- A task deleted meanwhile is not brought back: only its removal from the due index happens.
-- The JSON is written by hand with %.17g because cjson.encode keeps 14 significant digits,
-- which would move an epoch time with sub-millisecond digits (and so its slot id).
-- Returns 1 if the task exists, else 0.
local id, field, ts = ARGV[1], ARGV[2], ARGV[3]
if field == 'next_ts' and ts == '' then
  redis.call('ZREM', KEYS[3], id)
end
if redis.call('HEXISTS', KEYS[1], id) == 0 then
  return 0
end
local values = {next_ts = 'null', last_ts = 'null'}
local raw = redis.call('HGET', KEYS[2], id)
if raw then
  local state = cjson.decode(raw)
  for _, name in ipairs({'next_ts', 'last_ts'}) do
    if type(state[name]) == 'number' then
      values[name] = string.format('%.17g', state[name])
    end
  end
end
if ts == '' then
  values[field] = 'null'
else
  values[field] = ts
end
redis.call('HSET', KEYS[2], id,
  '{"next_ts": ' .. values.next_ts .. ', "last_ts": ' .. values.last_ts .. '}')
if field == 'next_ts' and ts ~= '' then
  redis.call('ZADD', KEYS[3], ts, id)
end
return 1
