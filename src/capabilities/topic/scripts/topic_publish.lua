-- Appends a message to a topic's stream, trims it and sets its expiry.
-- KEYS[1] the stream. ARGV: event name ('' for none), data (JSON text), max_len,
-- retention in ms.
local id
if ARGV[1] == '' then
    id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'd', ARGV[2])
else
    id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'd', ARGV[2], 'e', ARGV[1])
end
local now = redis.call('TIME')
local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[4])
if oldest > 0 then
    redis.call('XTRIM', KEYS[1], 'MINID', '~', oldest)
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return id
