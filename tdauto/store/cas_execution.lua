-- cas_execution(keys=[execution, old_status_index, new_status_index, waiting_index, dependents, active_task, active_lock, rollup_journal, timer..., queue_list...] args=[expected_sha1, new_json, execution_id, created_ts, want_waiting, want_dependents, release, rollup_entry, n_timers, (op, member, due_ts)..., n_messages, message...])
-- Compare-and-set of an execution record with its bookkeeping (tdauto.store.effects): writes
-- new_json only if the stored record is still the one whose SHA-1 is expected_sha1 (the
-- caller hashes what it last read, rather than sending it back), moves the id between status
-- indexes when the status changed (the two index keys differ), then, in the same step:
-- release = '1' removes the id from active_task, '2' from active_task and active_lock; each of
-- the n_timers ops ('set' or 'take', on KEYS[8 + i]) sets or removes a timer member; a
-- rollup_entry (a run's end, for the statistics) is queued on the rollup journal, which
-- rollup.lua folds into the buckets a few hundred at a time: counted once, as the record is
-- written once (a resent call finds its own record and conflicts). The n_messages messages
-- (tdauto.engine.outbox: the next action this write sends) are pushed onto their queue lists
-- (KEYS after the timers'), as kombu's publish would (LPUSH): only with the written record.
-- Read-backs: the number of WAITING executions (want_waiting = '1') and the members of the
-- dependents set (want_dependents = '1').
-- Returns {'ok', waiting_count or -1, journal_length or -1, dependent...}, {'missing'}, or {'conflict', current_json}.
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
if ARGV[7] ~= '0' then
  redis.call('SREM', KEYS[6], ARGV[3])
  if ARGV[7] == '2' then
    redis.call('SREM', KEYS[7], ARGV[3])
  end
end
local n = tonumber(ARGV[9])
for i = 1, n do
  local base = 9 + (i - 1) * 3
  if ARGV[base + 1] == 'set' then
    redis.call('ZADD', KEYS[8 + i], ARGV[base + 3], ARGV[base + 2])
  else
    redis.call('ZREM', KEYS[8 + i], ARGV[base + 2])
  end
end
local pushed = 9 + n * 3 + 1
for i = 1, tonumber(ARGV[pushed] or '0') do
  redis.call('LPUSH', KEYS[8 + n + i], ARGV[pushed + i])
end
local reply = {'ok', -1, -1}
if ARGV[5] == '1' then
  reply[2] = redis.call('ZCARD', KEYS[4])
end
if ARGV[8] ~= '' then
  reply[3] = redis.call('RPUSH', KEYS[8], ARGV[8])
end
if ARGV[6] == '1' then
  for _, member in ipairs(redis.call('SMEMBERS', KEYS[5])) do
    reply[#reply + 1] = member
  end
end
return reply
