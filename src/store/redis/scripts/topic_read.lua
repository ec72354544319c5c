-- A topic's bounds and retained messages, for a subscriber.
-- KEYS[1] the stream. ARGV[1]: '-' for every retained message, '' for none, or an id to read
-- after (exclusive).
-- Returns {last_generated_id, first_retained_id, entries} ('' for what does not exist),
-- entries being {id, fields} pairs as XRANGE gives them.
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {'', '', {}}
end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local last, first = '', ''
for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
        last = info[i + 1]
    elseif info[i] == 'first-entry' and info[i + 1] then
        first = info[i + 1][1]
    end
end
local entries = {}
if ARGV[1] == '-' then
    entries = redis.call('XRANGE', KEYS[1], '-', '+')
elseif ARGV[1] ~= '' then
    entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+')
end
return {last, first, entries}
