-- Returns {delayed, ready, leased, done, dead}.
return {redis.call('ZCARD', delayed), redis.call('ZCARD', ready), redis.call('ZCARD', leased),
  redis.call('ZCARD', done), redis.call('ZCARD', dead)}
