-- cas_execution(keys=[execution, old_status_index, new_status_index] args=[expected_sha1, new_json, execution_id, created_ts])
-- Compare-and-set of an execution record: writes new_json only if the stored record is still
-- the one whose SHA-1 is expected_sha1 (the caller hashes what it last read, rather than
-- sending it back), and moves the id between status indexes when the status changed (the
-- two index keys differ). One round trip instead of WATCH/GET/MULTI/SET/EXEC.
-- Returns {'ok'}, {'missing'}, or {'conflict', current_json} for the caller to retry on.
local current = redis.call('GET', KEYS[1])
if not current then
  return {'missing'}
end
if redis.sha1hex(current) ~= ARGV[1] then
  return {'conflict', current}
end
redis.call('SET', KEYS[1], ARGV[2])
if KEYS[2] ~= KEYS[3] then
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
end
return {'ok'}
