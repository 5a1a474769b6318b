-- KEYS: lock, counter. ARGV: owner, ttl (ms).
-- {1, token}: a new hold. {2, token}: a re-entry of a hold this owner has
-- in the store (count + 1, expiry at least the ttl). {0, pttl}: held by
-- someone else, or foreign data sits there. {-1, message}: the counter
-- holds foreign data.
local lock, counter, owner, ttl = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
local kind = redis.call('type', lock)['ok']
if kind == 'none' then
  local token = redis.pcall('incr', counter)
  if type(token) ~= 'number' then
    return {-1, 'the fencing counter ' .. counter .. ' holds foreign data: ' .. tostring(token['err'])}
  end
  redis.call('hset', lock, owner, 1)
  redis.call('pexpire', lock, ttl)
  return {1, token}
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
