-- (after ours.lua) KEYS: lock1, counter1, lock2, counter2, ...
-- ARGV: owner1, token1, ttl1, owner2, ... One 1 (extended) or 0 (gone) per
-- hold.
local out = {}
for i = 1, #KEYS / 2 do
  local lock, counter = KEYS[2 * i - 1], KEYS[2 * i]
  if ours(lock, counter, ARGV[3 * i - 2], ARGV[3 * i - 1]) then
    extend(lock, ARGV[3 * i])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
