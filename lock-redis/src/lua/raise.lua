-- KEYS: lock, counter. ARGV: owner, proposed token. Redlock's second
-- round: where this owner holds the lock, raises the counter to the
-- proposal if the proposal exceeds it: {1, proposal}; {0, counter} if it
-- does not (the counter is left as it is); {-1, 0} if the owner does not
-- hold the lock here (or the counter holds foreign data).
local c = redis.pcall('hget', KEYS[1], ARGV[1])
if type(c) ~= 'string' then return {-1, 0} end
c = tonumber(c)
if c == nil or c < 1 or c ~= math.floor(c) then return {-1, 0} end
local t = redis.pcall('get', KEYS[2])
if t == false then t = 0 else t = tonumber(t) end
if t == nil then return {-1, 0} end
if tonumber(ARGV[2]) > t then
  redis.call('set', KEYS[2], ARGV[2])
  return {1, tonumber(ARGV[2])}
end
return {0, t}
