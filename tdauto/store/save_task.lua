-- save_task(keys=[tasks, task_names, upstream, dependents_old, dependents_new] args=[task_id, name, task_json, upstream_name, expected_old_upstream])
-- Replaces a task's definition, moves its name and its run_after link in one step; run state
-- is not touched. upstream_name is the run_after task's name or ""; expected_old_upstream is
-- the link the caller read (to name dependents_old): if it moved since, nothing is written.
-- A changed link (or name) is checked: its upstream must exist, and following upstreams from
-- it must not come back to this task (records.run_after_cycle walks the same way).
-- Returns {"saved"}, {"not_found"}, {"name_taken", holder_id}, {"retry"}, {"no_upstream"}
-- or {"loop", name, upstream, ...} (then nothing is written).
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then
  return {'not_found'}
end
local holder = redis.call('HGET', KEYS[2], ARGV[2])
if holder and holder ~= ARGV[1] then
  return {'name_taken', holder}
end
local old_upstream = redis.call('HGET', KEYS[3], ARGV[1]) or ''
if old_upstream ~= ARGV[5] then
  return {'retry'}
end
local old_name = cjson.decode(old)['name']
local upstream = ARGV[4]
if upstream ~= old_upstream or old_name ~= ARGV[2] then
  if upstream ~= '' and upstream ~= old_upstream and upstream ~= ARGV[2] then
    if upstream == old_name or redis.call('HEXISTS', KEYS[2], upstream) == 0 then
      return {'no_upstream'}
    end
  end
  local chain = {ARGV[2]}
  local current = upstream
  local limit = redis.call('HLEN', KEYS[1]) + 1
  for _ = 1, limit do
    if not current or current == '' then
      chain = nil
      break
    end
    table.insert(chain, current)
    local held
    if current == ARGV[2] then
      held = ARGV[1]
    elseif current == old_name then
      held = false
    else
      held = redis.call('HGET', KEYS[2], current)
    end
    if not held then
      chain = nil
      break
    end
    if held == ARGV[1] then
      break
    end
    current = redis.call('HGET', KEYS[3], held)
  end
  if chain then
    return {'loop', unpack(chain)}
  end
  if old_upstream ~= '' then
    redis.call('SREM', KEYS[4], ARGV[1])
  end
  if upstream ~= '' then
    redis.call('HSET', KEYS[3], ARGV[1], upstream)
    redis.call('SADD', KEYS[5], ARGV[1])
  else
    redis.call('HDEL', KEYS[3], ARGV[1])
  end
end
if old_name ~= ARGV[2] and redis.call('HGET', KEYS[2], old_name) == ARGV[1] then
  redis.call('HDEL', KEYS[2], old_name)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return {'saved'}
