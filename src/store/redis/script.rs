//! A Lua script with its name, so that an error reply from inside it is logged as coming from
//! `cache_incr` rather than from an anonymous SHA.

use redis::ToRedisArgs;

/// A script loaded once per Redis and called by SHA (`EVALSHA`, loading it on `NOSCRIPT`).
pub struct Script {
    name: &'static str,
    inner: redis::Script,
}

impl Script {
    pub fn new(name: &'static str, code: &str) -> Self {
        Self {
            name,
            inner: redis::Script::new(code),
        }
    }

    pub fn prepare_invoke(&self) -> Invocation<'_> {
        Invocation {
            name: self.name,
            inner: self.inner.prepare_invoke(),
            first_key: None,
        }
    }

    pub fn key<T: ToRedisArgs>(&self, key: T) -> Invocation<'_> {
        let mut invocation = self.prepare_invoke();
        invocation.key(key);
        invocation
    }
}

/// One call of a [`Script`] with its keys and arguments.
pub struct Invocation<'a> {
    name: &'static str,
    inner: redis::ScriptInvocation<'a>,
    /// Where a Cluster routes the call (every key shares its slot), for a `WAIT` after it.
    first_key: Option<Vec<u8>>,
}

impl<'a> Invocation<'a> {
    pub fn key<T: ToRedisArgs>(&mut self, key: T) -> &mut Self {
        if self.first_key.is_none() {
            self.first_key = key.to_redis_args().into_iter().next();
        }
        self.inner.key(key);
        self
    }

    pub fn first_key(&self) -> Option<&[u8]> {
        self.first_key.as_deref()
    }

    pub fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.inner.arg(arg);
        self
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn inner(&self) -> &redis::ScriptInvocation<'a> {
        &self.inner
    }
}
