-- save_task(keys=[tasks, task_names] args=[task_id, name, task_json])
-- Replaces a task's definition and moves its name in one step; run state is not touched.
-- Returns {"saved"}, {"not_found"} or {"name_taken", holder_id} (then nothing is written).
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then
  return {'not_found'}
end
local holder = redis.call('HGET', KEYS[2], ARGV[2])
if holder and holder ~= ARGV[1] then
  return {'name_taken', holder}
end
local old_name = cjson.decode(old)['name']
if old_name ~= ARGV[2] and redis.call('HGET', KEYS[2], old_name) == ARGV[1] then
  redis.call('HDEL', KEYS[2], old_name)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return {'saved'}
