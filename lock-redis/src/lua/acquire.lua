-- KEYS: lock, counter. ARGV: owner, ttl (ms)[, proposed token].
-- {1, token}: a new hold. {2, token}: a re-entry of a hold this owner has
-- in the store (count + 1, expiry at least the ttl). {0, pttl}: held by
-- someone else, or foreign data sits there. {-1, message}: the counter
-- holds foreign data.
-- Without a proposal a new hold's token is INCR of the counter. With one
-- (Redlock), the counter is raised to the proposal only if the proposal
-- exceeds it: {1, proposal}; otherwise the hold is taken all the same, the
-- counter is left as it is, and the answer is {3, counter}.
local lock, counter, owner, ttl = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
local kind = redis.call('type', lock)['ok']
if kind == 'none' then
  local token, status = nil, 1
  if ARGV[3] then
    local c = redis.pcall('get', counter)
    if c == false then c = 0 else c = tonumber(c) end
    if c == nil then
      return {-1, 'the fencing counter ' .. counter .. ' holds foreign data'}
    end
    if tonumber(ARGV[3]) > c then
      redis.call('set', counter, ARGV[3])
      token = tonumber(ARGV[3])
    else
      token, status = c, 3
    end
  else
    token = redis.pcall('incr', counter)
    if type(token) ~= 'number' then
      return {-1, 'the fencing counter ' .. counter .. ' holds foreign data: ' .. tostring(token['err'])}
    end
  end
  redis.call('hset', lock, owner, 1)
  redis.call('pexpire', lock, ttl)
  return {status, token}
end
if kind == 'hash' then
  local c = tonumber(redis.call('hget', lock, owner))
  local t = redis.pcall('get', counter)
  if c ~= nil and c >= 1 and c == math.floor(c) and type(t) == 'string' and tonumber(t) then
    redis.call('hincrby', lock, owner, 1)
    local p = redis.call('pttl', lock)
    if p >= 0 and p < ttl then redis.call('pexpire', lock, ttl) end
    return {2, tonumber(t)}
  end
end
return {0, redis.call('pttl', lock)}
