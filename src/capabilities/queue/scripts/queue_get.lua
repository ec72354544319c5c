-- ARGV: job id. Returns the job's hash (HGETALL), empty when there is none.
return redis.call('HGETALL', jkey(ARGV[1]))
