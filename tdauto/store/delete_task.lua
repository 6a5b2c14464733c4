-- delete_task(keys=[tasks, task_names, task_state, due] args=[task_id])
-- Removes a task's definition, name, run state and due entry in one step; its executions stay.
-- Returns 1 if the task existed, 0 if not (its run state and due entry are cleared anyway).
local id = ARGV[1]
local old = redis.call('HGET', KEYS[1], id)
redis.call('HDEL', KEYS[3], id)
redis.call('ZREM', KEYS[4], id)
if not old then
  return 0
end
local name = cjson.decode(old)['name']
if redis.call('HGET', KEYS[2], name) == id then
  redis.call('HDEL', KEYS[2], name)
end
redis.call('HDEL', KEYS[1], id)
return 1
