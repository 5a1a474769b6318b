-- KEYS: lock, counter. {type, pttl, counter or '', body}: body is the
-- hash's fields and values, the first 64 bytes of a string, or empty.
-- Read-only.
local kind = redis.call('type', KEYS[1])['ok']
local pttl = redis.call('pttl', KEYS[1])
local counter = redis.pcall('get', KEYS[2])
if type(counter) ~= 'string' then counter = '' end
local body = {}
if kind == 'hash' then
  body = redis.call('hgetall', KEYS[1])
elseif kind == 'string' then
  body = {string.sub(redis.call('get', KEYS[1]), 1, 64)}
end
return {kind, pttl, counter, body}
