-- Helpers put in front of the scripts that act on a hold this client has.

-- The stored count of this owner's hold, or nil when the lock is not a hash
-- (HGET's error is caught: foreign data is never a WRONGTYPE to the
-- caller), the owner has no count there, or the counter no longer carries
-- the hold's token (the hold ended and another began).
local function ours(lock, counter, owner, token)
  local c = redis.pcall('hget', lock, owner)
  if type(c) ~= 'string' then return nil end
  c = tonumber(c)
  if c == nil or c < 1 or c ~= math.floor(c) then return nil end
  if redis.pcall('get', counter) ~= token then return nil end
  return c
end

-- Sets the lock's expiry to at least ttl ms from now (never shortens a
-- longer one another client of the same owner asked for). ttl is the
-- argument string, passed on as it came (no number formatting).
local function extend(lock, ttl)
  local p = redis.call('pttl', lock)
  if p >= 0 and p < tonumber(ttl) then redis.call('pexpire', lock, ttl) end
end
