-- reserve(keys=[ledger, reservations] args=[key, reservation_json, capacity, cpu, memory, storage])
-- Adds the amounts to the host's ledger only if every resource stays within capacity, and
-- records the reservation under key. Idempotent: a key already reserved returns 1 unchanged.
-- Returns 1 when reserved, 0 when it does not fit.
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return 1
end
local capacity = tonumber(ARGV[3])
local names = {'cpu', 'memory', 'storage'}
for i, name in ipairs(names) do
  local used = tonumber(redis.call('HGET', KEYS[1], name) or '0')
  if used + tonumber(ARGV[3 + i]) > capacity + 1e-9 then
    return 0
  end
end
for i, name in ipairs(names) do
  local amount = tonumber(ARGV[3 + i])
  if amount > 0 then
    redis.call('HINCRBYFLOAT', KEYS[1], name, amount)
  end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
