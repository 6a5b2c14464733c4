-- admit(keys=[task_active, lock_active] args=[execution_id, max_concurrent, use_lock])
-- Registers execution_id as active for its task (and lock) when the task has fewer than
-- max_concurrent active executions (0: no limit) and no other execution holds the lock.
-- Returns an empty array when admitted (or already admitted), else the blocking ids.
local id = ARGV[1]
local max_concurrent = tonumber(ARGV[2])
local use_lock = ARGV[3] == '1'
if redis.call('SISMEMBER', KEYS[1], id) == 1 then
  return {}
end
local blockers = {}
if max_concurrent > 0 and redis.call('SCARD', KEYS[1]) >= max_concurrent then
  blockers = redis.call('SMEMBERS', KEYS[1])
end
if use_lock then
  for _, holder in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if holder ~= id then
      table.insert(blockers, holder)
    end
  end
end
if #blockers > 0 then
  return blockers
end
redis.call('SADD', KEYS[1], id)
if use_lock then
  redis.call('SADD', KEYS[2], id)
end
return {}
