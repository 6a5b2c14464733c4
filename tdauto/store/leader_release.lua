-- leader_release(keys=[leader] args=[owner_token])
-- Deletes the beat leader lock, only if owner_token holds it, so a beat shutting down after
-- it lost the lock cannot delete the new leader's lease.
-- Returns 1 if the lock was deleted, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
