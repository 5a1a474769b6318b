-- KEYS: lock, channel. ARGV: owner. Takes back the count an acquire whose
-- answer never reached its caller may have added (sent after it on the same
-- connection, so it runs after it). The count left, or -1.
local c = redis.pcall('hget', KEYS[1], ARGV[1])
if type(c) ~= 'string' then return -1 end
c = tonumber(c)
if c == nil or c < 1 or c ~= math.floor(c) then return -1 end
if c <= 1 then
  redis.call('del', KEYS[1])
  redis.call('publish', KEYS[2], '0')
  return 0
end
return redis.call('hincrby', KEYS[1], ARGV[1], '-1')
