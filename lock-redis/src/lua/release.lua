-- (after ours.lua) KEYS: lock, counter, channel. ARGV: owner, token, the
-- locker's count before this release. The count left (0: deleted, and 0
-- published on the channel); the stored count unchanged when it is already
-- below ARGV[3] (an earlier try of this very release took effect); -1 if
-- the hold is gone.
local c = ours(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
if c == nil then return -1 end
if c < tonumber(ARGV[3]) then return c end
if c <= 1 then
  redis.call('del', KEYS[1])
  redis.call('publish', KEYS[3], '0')
  return 0
end
return redis.call('hincrby', KEYS[1], ARGV[1], '-1')
