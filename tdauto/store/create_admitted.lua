-- create_admitted(keys=[execution, executions, task_executions, admitted_index, task_active, lock_active, tasks, queue_list...] args=[admitted_json, created_ts, execution_id, max_concurrent, use_lock, task_id, definition_sha1, message...])
-- A new run recorded and admitted in one step (create_execution.lua and admit.lua at once):
-- when its task has fewer than max_concurrent active runs (0: no limit) and no other run
-- holds the lock, it is registered active and written as admitted_json (queued, its first
-- action sent). Otherwise nothing is written (the caller records the run PENDING and applies
-- the task's overlap policy), nor if the id exists, nor if the task's stored definition is
-- no longer the one (SHA-1 definition_sha1, when given) the run was made from.
-- The admitted run's held messages (tdauto.engine.outbox) are pushed with it: message i onto
-- KEYS[7 + i], as kombu's own publish would (LPUSH); a run not written sends nothing.
-- Returns {'admitted'}, {'blocked', blocker...}, {'exists'} or {'stale'}.
if ARGV[7] ~= '' and redis.sha1hex(redis.call('HGET', KEYS[7], ARGV[6]) or '') ~= ARGV[7] then
  return {'stale'}
end
local id = ARGV[3]
local max_concurrent = tonumber(ARGV[4])
local use_lock = ARGV[5] == '1'
local blockers = {}
if max_concurrent > 0 and redis.call('SCARD', KEYS[5]) >= max_concurrent then
  blockers = redis.call('SMEMBERS', KEYS[5])
end
if use_lock then
  for _, holder in ipairs(redis.call('SMEMBERS', KEYS[6])) do
    table.insert(blockers, holder)
  end
end
if #blockers > 0 then
  table.insert(blockers, 1, 'blocked')
  return blockers
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  return {'exists'}
end
redis.call('ZADD', KEYS[2], ARGV[2], id)
redis.call('ZADD', KEYS[3], ARGV[2], id)
redis.call('ZADD', KEYS[4], ARGV[2], id)
redis.call('SADD', KEYS[5], id)
if use_lock then
  redis.call('SADD', KEYS[6], id)
end
for i = 8, #ARGV do
  redis.call('LPUSH', KEYS[i], ARGV[i])
end
return {'admitted'}
