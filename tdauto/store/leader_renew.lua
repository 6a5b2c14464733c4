-- leader_renew(keys=[leader] args=[owner_token, ttl_ms])
-- Extends the beat leader lock by ttl_ms, only if owner_token still holds it. A holder whose
-- key expired (it was paused past the TTL) or was taken by another beat must not extend
-- someone else's lease: it gets 0 and stops dispatching.
-- Returns 1 if the lease was extended, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
