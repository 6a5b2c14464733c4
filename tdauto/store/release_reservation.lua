-- release_reservation(keys=[reservations, ledger] args=[key, cpu, memory, storage])
-- Gives the amounts back to the host's ledger and forgets the reservation, once: a second
-- call finds no reservation and returns 0. The caller read the reservation first to name
-- the ledger key and the amounts.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local names = {'cpu', 'memory', 'storage'}
for i, name in ipairs(names) do
  local amount = tonumber(ARGV[1 + i])
  if amount > 0 then
    local left = tonumber(redis.call('HINCRBYFLOAT', KEYS[2], name, -amount))
    if left < 1e-9 then
      redis.call('HDEL', KEYS[2], name)
    end
  end
end
return 1
