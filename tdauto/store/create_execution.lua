-- create_execution(keys=[execution, executions, task_executions, status_executions] args=[execution_json, created_ts, execution_id])
-- Writes a new execution and its three index entries, or nothing if the id exists: a slot's
-- execution id derives from the slot, so this is the exactly-once claim of the slot.
-- Returns 1 if created, 0 if it already existed.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[3])
return 1
