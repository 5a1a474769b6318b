-- KEYS: lock, counter. ARGV: owner, ttl (ms)[, proposed token].
-- {1, token}: a new hold. {2, token}: a re-entry of a hold this owner has
-- in the store (count + 1, expiry at least the ttl). {0, pttl}: held by
-- someone else, or foreign data sits there. {-1, message}: the counter
-- holds foreign data (nothing was changed).
-- Without a proposal a new hold's token is INCR of the counter. With one
-- (Redlock), the counter is raised to the proposal only if the proposal
-- exceeds it: {1, proposal}; otherwise the hold is taken all the same, the
-- counter is left as it is, and the answer is {3, counter}.
-- The common case (a free lock) is four calls: EXISTS, INCR or SET ... GET,
-- HSET, PEXPIRE. Arguments go to Redis as the strings they came as (a Lua
-- number would be formatted back into a string on every call).
local lock, counter, owner = KEYS[1], KEYS[2], ARGV[1]
if redis.call('exists', lock) == 0 then
  local token, status = nil, 1
  local proposal = ARGV[3]
  if proposal then
    -- Raise to the proposal and read the old value in one call (Redis 6.2+);
    -- an old value at least the proposal, or not a number, is put back as
    -- it was (KEEPTTL: with any expiry it had), so the counter never goes
    -- down. A counter of another type is a WRONGTYPE error: nothing set.
    local old = redis.pcall('set', counter, proposal, 'keepttl', 'get')
    if type(old) == 'table' then
      return {-1, 'the fencing counter ' .. counter .. ' holds foreign data: ' .. tostring(old['err'])}
    end
    token = tonumber(proposal)
    if old then
      local c = tonumber(old)
      if c == nil or c >= token then
        redis.call('set', counter, old, 'keepttl')
        if c == nil then
          return {-1, 'the fencing counter ' .. counter .. ' holds foreign data'}
        end
        token, status = c, 3
      end
    end
  else
    token = redis.pcall('incr', counter)
    if type(token) ~= 'number' then
      return {-1, 'the fencing counter ' .. counter .. ' holds foreign data: ' .. tostring(token['err'])}
    end
  end
  redis.call('hset', lock, owner, '1')
  redis.call('pexpire', lock, ARGV[2])
  return {status, token}
end
if redis.call('type', lock)['ok'] == 'hash' then
  local c = tonumber(redis.call('hget', lock, owner))
  local t = redis.pcall('get', counter)
  if c ~= nil and c >= 1 and c == math.floor(c) and type(t) == 'string' and tonumber(t) then
    redis.call('hincrby', lock, owner, '1')
    local p = redis.call('pttl', lock)
    if p >= 0 and p < tonumber(ARGV[2]) then redis.call('pexpire', lock, ARGV[2]) end
    return {2, tonumber(t)}
  end
end
return {0, redis.call('pttl', lock)}
