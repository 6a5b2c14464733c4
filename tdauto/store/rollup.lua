-- rollup(keys=[latest, bucket_1..bucket_n, index_1..index_n, guard?, guard_done?] args=[delta_json, guard_sha1?])
-- With a guard (an execution key and the SHA-1 of the record just written to it, sent in the
-- same MULTI as its compare-and-set), the delta is applied only if that record is what the
-- key holds, and only once for that record (guard_done, kept 10 minutes, marks it applied):
-- an update that lost its compare-and-set, or a MULTI the client sent again after a lost
-- reply, counts nothing (returns -1).
-- Applies one monitoring delta to n rollup buckets at once (one round trip per execution end).
-- delta_json: {"b": [{"end": ts|-1, "exp": ts|-1}, ...] (one per bucket, in KEYS order),
--   "i": {field: add}, "mx": {field: value}, "mn": {field: value}, "l": {field: [ts, value]}}
-- "i" adds (HINCRBYFLOAT), "mx"/"mn" keep the larger/smaller value, a bucket with "end" is
-- indexed in its tier's index (scored by its end, for purging), one with "exp" expires then;
-- "l" sets latest[field] = "<ts>|<value>" unless a newer ts is already there.
local d = cjson.decode(ARGV[1])
local n = #d.b
if ARGV[2] and ARGV[2] ~= '' then
  local record = redis.call('GET', KEYS[2 + 2 * n])
  if not record or redis.sha1hex(record) ~= ARGV[2] then
    return -1
  end
  if not redis.call('SET', KEYS[3 + 2 * n], '1', 'NX', 'EX', 600) then
    return -1
  end
end
for i = 1, n do
  local key = KEYS[1 + i]
  for f, v in pairs(d.i) do
    redis.call('HINCRBYFLOAT', key, f, v)
  end
  for f, v in pairs(d.mx) do
    local cur = tonumber(redis.call('HGET', key, f))
    if cur == nil or v > cur then
      redis.call('HSET', key, f, string.format('%.6f', v))
    end
  end
  for f, v in pairs(d.mn) do
    local cur = tonumber(redis.call('HGET', key, f))
    if cur == nil or v < cur then
      redis.call('HSET', key, f, string.format('%.6f', v))
    end
  end
  local b = d.b[i]
  if b['end'] >= 0 then
    redis.call('ZADD', KEYS[1 + n + i], b['end'], key)
  end
  if b['exp'] >= 0 then
    redis.call('EXPIREAT', key, math.ceil(b['exp']))
  end
end
for f, pair in pairs(d.l) do
  local ts = tonumber(pair[1])
  local cur = redis.call('HGET', KEYS[1], f)
  local cur_ts = cur and tonumber(string.match(cur, '^([^|]*)')) or nil
  if cur_ts == nil or cur_ts <= ts then
    redis.call('HSET', KEYS[1], f, string.format('%.6f', ts) .. '|' .. pair[2])
  end
end
return n
