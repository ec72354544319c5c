-- Ends a live reservation, returning all of it. ARGV: metric, reservation id.
-- Returns 1 when it was live, else 0.
reserved_sum(now_us())
if take(ARGV[2]) then
    return 1
end
return 0
