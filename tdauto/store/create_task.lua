-- create_task(keys=[tasks, task_names, task_state, due, upstream, dependents] args=[task_id, name, task_json, state_json, next_ts, upstream_name])
-- Stores a task's definition, name, run state, due entry and run_after dependency in one step,
-- so no reader sees a task without its name or schedule, two creators of one name cannot both
-- win, and a task never runs after an upstream that did not exist when it was made.
-- next_ts is a decimal number, or "" for a task outside the due index; upstream_name is the
-- run_after task's name or "" (then KEYS[5] and KEYS[6] are not touched).
-- Returns {"created"}; {"id_taken"}; {"no_upstream"}; or, writing nothing, {"exists",
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
