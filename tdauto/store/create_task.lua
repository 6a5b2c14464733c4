-- create_task(keys=[tasks, task_names, task_state, due, upstream, dependents] args=[task_id, name, task_json, state_json, next_ts, upstream_name])
-- Stores a task's definition, name, run state, due entry and run_after dependency in one step,
-- so no reader sees a task without its name or schedule, two creators of one name cannot both
-- win, and a task never runs after an upstream that did not exist when it was made.
-- next_ts is a decimal number, or "" for a task outside the due index; upstream_name is the
-- run_after task's name or "" (then KEYS[5] and KEYS[6] are not touched).
-- Following upstreams from upstream_name must not come back to this task's name (a task that
-- ran after a deleted task of that name would close a loop; records.run_after_cycle).
-- Returns {"created"}; {"id_taken"}; {"no_upstream"}; {"loop", name, upstream, ...}; or,
-- writing nothing, {"exists",
-- holder_id, holder_json, holder_state_json} when the name is held (the caller compares
-- definitions).
local holder = redis.call('HGET', KEYS[2], ARGV[2])
if holder then
  return {'exists', holder, redis.call('HGET', KEYS[1], holder) or '',
          redis.call('HGET', KEYS[3], holder) or ''}
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return {'id_taken'}
end
local upstream = ARGV[6] or ''
if upstream ~= '' and redis.call('HEXISTS', KEYS[2], upstream) == 0 then
  return {'no_upstream'}
end
if upstream ~= '' then
  local chain = {ARGV[2], upstream}
  local current = upstream
  for _ = 1, redis.call('HLEN', KEYS[1]) + 1 do
    local held = redis.call('HGET', KEYS[2], current)
    if not held then
      chain = nil
      break
    end
    current = redis.call('HGET', KEYS[5], held)
    if not current then
      chain = nil
      break
    end
    table.insert(chain, current)
    if current == ARGV[2] then
      break
    end
  end
  if chain then
    return {'loop', unpack(chain)}
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
if ARGV[5] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
end
if upstream ~= '' then
  redis.call('HSET', KEYS[5], ARGV[1], upstream)
  redis.call('SADD', KEYS[6], ARGV[1])
end
return {'created'}
