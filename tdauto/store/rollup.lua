-- rollup(keys=[latest, bucket_1..bucket_n, index_1..index_n, journal?] args=[payload_json, head?, count?])
-- Applies monitoring deltas to n rollup buckets at once (one round trip).
-- payload_json: {"b": [{"end": ts|-1, "exp": ts|-1}, ...] (one per bucket, in KEYS order),
--   "g": [{"k": [bucket number, ...], "i": {field: add}, "mx": {field: value},
--          "mn": {field: value}}, ...],
--   "l": {field: [ts, value]}}
-- Each group of "g" applies to the buckets it names (1-based, in KEYS order): "i" adds
-- (HINCRBYFLOAT), "mx"/"mn" keep the larger/smaller value. A bucket with "end" is indexed in
-- its tier's index (scored by its end, for purging), one with "exp" expires then; "l" sets
-- latest[field] = "<ts>|<value>" unless a newer ts is already there.
-- With a journal (the run ends cas_execution.lua queued), the payload is the fold of its
-- first `count` entries, `head` being the first: applied, and those entries removed, only if
-- the journal still starts with `head` (entries are unique), so two folders racing count
-- each entry once; otherwise nothing is done and -1 returned.
local d = cjson.decode(ARGV[1])
local n = #d.b
if ARGV[2] then
  local journal = KEYS[2 + 2 * n]
  if redis.call('LINDEX', journal, 0) ~= ARGV[2] then
    return -1
  end
  redis.call('LTRIM', journal, tonumber(ARGV[3]), -1)
end
for _, g in ipairs(d.g) do
  for _, i in ipairs(g.k) do
    local key = KEYS[1 + i]
    for f, v in pairs(g.i) do
      redis.call('HINCRBYFLOAT', key, f, v)
    end
    for f, v in pairs(g.mx) do
      local cur = tonumber(redis.call('HGET', key, f))
      if cur == nil or v > cur then
        redis.call('HSET', key, f, string.format('%.6f', v))
      end
    end
    for f, v in pairs(g.mn) do
      local cur = tonumber(redis.call('HGET', key, f))
      if cur == nil or v < cur then
        redis.call('HSET', key, f, string.format('%.6f', v))
      end
    end
  end
end
for i = 1, n do
  local b = d.b[i]
  if b['end'] >= 0 then
    redis.call('ZADD', KEYS[1 + n + i], b['end'], KEYS[1 + i])
  end
  if b['exp'] >= 0 then
    redis.call('EXPIREAT', KEYS[1 + i], math.ceil(b['exp']))
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
