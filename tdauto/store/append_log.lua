-- append_log(keys=[log] args=[text, max_bytes, note])
-- Appends text to a log so it never exceeds max_bytes: text fits whole until the log reaches
-- max_bytes minus the note; then the part that fits (cut on a UTF-8 character boundary) and the
-- note are appended, and nothing after. Same arithmetic as records.log_piece (the file store).
-- Returns the number of bytes appended.
local data, max_bytes, note = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local size = redis.call('STRLEN', KEYS[1])
local budget = max_bytes - string.len(note)
if size + string.len(data) <= budget then
  redis.call('APPEND', KEYS[1], data)
  return string.len(data)
end
if size > budget then
  return 0
end
local keep = budget - size
while keep > 0 do
  local byte = string.byte(data, keep + 1)
  if byte < 128 or byte >= 192 then
    break
  end
  keep = keep - 1
end
local piece = string.sub(data, 1, keep) .. note
redis.call('APPEND', KEYS[1], piece)
return string.len(piece)
