-- (after ours.lua) KEYS: lock, counter. ARGV: owner, token, ttl (ms).
-- The new count, or -1 if the hold is gone.
local c = ours(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
if c == nil then return -1 end
local n = redis.call('hincrby', KEYS[1], ARGV[1], '1')
extend(KEYS[1], ARGV[3])
return n
