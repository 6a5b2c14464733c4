-- create_admitted(keys=[execution, executions, task_executions, pending_index, admitted_index, task_active, lock_active] args=[pending_json, admitted_json, created_ts, execution_id, max_concurrent, use_lock])
-- A new run recorded and admitted in one step (create_execution.lua and admit.lua at once):
-- when its task has fewer than max_concurrent active runs (0: no limit) and no other run
-- holds the lock, it is registered active and written as admitted_json (queued, its first
-- action sent); otherwise it is written as pending_json and nothing is registered, for the
-- engine to apply the task's overlap policy. Nothing is written if the id exists.
-- Returns {'admitted'}, {'blocked', blocker...} or {'exists'}.
local id = ARGV[4]
local max_concurrent = tonumber(ARGV[5])
local use_lock = ARGV[6] == '1'
local blockers = {}
if max_concurrent > 0 and redis.call('SCARD', KEYS[6]) >= max_concurrent then
  blockers = redis.call('SMEMBERS', KEYS[6])
end
if use_lock then
  for _, holder in ipairs(redis.call('SMEMBERS', KEYS[7])) do
    table.insert(blockers, holder)
  end
end
local admitted = #blockers == 0
local body, index = ARGV[2], KEYS[5]
if not admitted then
  body, index = ARGV[1], KEYS[4]
end
if not redis.call('SET', KEYS[1], body, 'NX') then
  return {'exists'}
end
redis.call('ZADD', KEYS[2], ARGV[3], id)
redis.call('ZADD', KEYS[3], ARGV[3], id)
redis.call('ZADD', index, ARGV[3], id)
if not admitted then
  table.insert(blockers, 1, 'blocked')
  return blockers
end
redis.call('SADD', KEYS[6], id)
if use_lock then
  redis.call('SADD', KEYS[7], id)
end
return {'admitted'}
