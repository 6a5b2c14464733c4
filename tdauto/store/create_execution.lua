-- create_execution(keys=[execution, executions, task_executions, status_executions, queue...]
--                  args=[execution_json, created_ts, execution_id, message...])
-- Writes a new execution and its three index entries, or nothing if the id exists: a slot's
-- execution id derives from the slot, so this is the exactly-once claim of the slot.
-- KEYS[5..] and ARGV[4..] are messages that announce the run (tdauto.engine.outbox): each is
-- LPUSHed onto its list only when the record is created.
-- Returns 1 if created, 0 if it already existed.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[3])
for i = 5, #KEYS do
  redis.call('LPUSH', KEYS[i], ARGV[i - 1])
end
return 1
