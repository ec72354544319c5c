-- A topic's bounds and the first page of its retained messages, for a subscriber.
-- KEYS[1] the stream. ARGV[1]: '-' for the retained messages from the first, '' for none, or
-- an id to read after (exclusive); ARGV[2]: most messages to return (one page).
-- Returns {last_generated_id, first_retained_id, entries, held} ('' for what does not
-- exist), entries being {id, fields} pairs as XRANGE gives them, and held 1 when ARGV[1] is
-- an id the stream holds (or its last id), else 0 (1 for '-' and ''). An id the stream never
-- held, within its bounds, was made by a master a failover deposed: the caller resets. An id
-- Redis cannot read after (the largest there is) returns no entries: the bounds tell the
-- caller it is unknown.
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {'', '', {}, 1}
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
local held = 1
if ARGV[1] ~= '-' and ARGV[1] ~= '' and ARGV[1] ~= last then
    local found = redis.pcall('XRANGE', KEYS[1], ARGV[1], ARGV[1], 'COUNT', 1)
    if found.err or #found == 0 then
        held = 0
    end
end
if ARGV[1] == '-' then
    entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[2])
elseif ARGV[1] ~= '' then
    entries = redis.pcall('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
    if entries.err then
        entries = {}
    end
end
return {last, first, entries, held}
