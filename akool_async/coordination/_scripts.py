"""The shared request budget, as Lua run atomically inside Redis.

One token bucket per Akool account for every worker, and the same adaptive rules as the
single-process `Pace` (see `akool_async._pace`): a told limit is a ceiling paced at 97 %; a
cluster of 429s over the last 2, 10 or 60 seconds, counted over *every* worker's answers, sets
the limit to what the server accepted then, paced at 95 %, and pauses everyone for
``Retry-After``; probes now and then run 2 s a little above a discovered limit to see whether it
rose. Each script reads Redis' own clock (``TIME``), so the workers' clocks never have to agree.

Keys: ``KEYS[1]`` the account's state (a hash), ``KEYS[2]`` the prefix of its per-second
counters (``<prefix>:<second>``, a hash of ``a`` answered and ``r`` refused, expiring after a
minute and a bit). The bucket is a GCRA: ``tat`` is when the next request may start; taking a
turn moves it on by ``1 / rate``, so the workers' requests interleave at the shared rate and a
worker that waits has its turn reserved (no polling of the store while it waits).
"""

from __future__ import annotations

from string import Template
from typing import Final

from akool_async._pace import TUNING

_LONGEST_WAIT_MS: Final = 300_000
"""The longest wait a script hands out, in ms: as long as the longest pause between probes."""

__all__ = ["COUNT", "REFUSED", "TAKE"]

_COMMON: Final = """
local state, counts = KEYS[1], KEYS[2]
local told = tonumber(ARGV[1])
local answered = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local second = math.floor(now / 1000)
-- When the budget was first used: no window has lasted longer than that.
redis.call('HSETNX', state, 'started', now)

-- A field as a finite number; anything else (missing, or written by someone else) is the
-- default: the state repairs itself instead of failing every call.
local function num(field, default)
  local value = tonumber(redis.call('HGET', state, field))
  if value == nil or value ~= value or value == math.huge or value == -math.huge then
    return default
  end
  return value
end

-- No wait handed out is longer than this (ms; a worker's own longest pause, when shorter),
-- whatever the state says: a pause or a queue written further ahead (by a bug, or by someone
-- with access to Redis) is dropped, and the next turn goes at once.
local longest = $longest_wait_ms

local function count(field, amount)
  if amount > 0 then
    local key = counts .. ':' .. second
    redis.call('HINCRBY', key, field, amount)
    redis.call('EXPIRE', key, 70)
  end
end

local function ceiling()
  if told > 0 then return told * $told_share end
  return nil
end

local function settled_rate()
  local limit = num('limit', nil)
  local top = ceiling()
  if limit == nil then return top end
  local rate = math.max($min_rate, limit * $settle_share)
  if top ~= nil and top < rate then rate = top end
  return rate
end

local function settle()
  redis.call('HDEL', state, 'probe_started', 'probe_ends', 'probe_rate', 'probe_sent',
             'probe_refused', 'probe_sending')
  redis.call('HSET', state, 'steady_since', now, 'saturated', 0)
  local limit, top = num('limit', nil), ceiling()
  if limit ~= nil and top ~= nil and limit * $settle_share >= top then
    redis.call('HDEL', state, 'limit')
  end
end

local function end_probe()
  local limit = num('limit', nil)
  local started, ends = num('probe_started', now), num('probe_ends', now)
  local sent, refused = num('probe_sent', 0), num('probe_refused', 0)
  local rate = num('probe_rate', 1)
  local every, step = num('probe_every', $probe_first), num('probe_step', $probe_step)
  local span = (math.min(now, ends) - started) / 1000
  local busy = span > 0 and sent >= $probe_busy * rate * $probe_span
  if refused >= $probe_fails_at then
    redis.call('HSET', state, 'probe_every', math.min($probe_longest, every * 2),
               'probe_step', $probe_step, 'passes', 0)
  elseif busy and refused == 0 and limit ~= nil then
    local passes = num('passes', 0) + 1
    redis.call('HSET', state, 'limit', math.max(limit, sent / span),
               'probe_every', math.max($probe_shortest, every / 2),
               'probe_step', math.min($probe_step_most, step * 2), 'passes', passes)
    if passes >= $forget_after then redis.call('HDEL', state, 'limit') end
  end
  settle()
end
"""

TAKE: Final = Template(
    _COMMON
    + """
-- ARGV: told limit (0: none), answers this worker saw since its last call, the longest pause
-- this worker honours (ms).
-- Returns {wait in ms, 1 if that wait is a pause (ask again after it), rate in mHz (0: none)}.
longest = math.max(1000, math.min(longest, tonumber(ARGV[3]) or longest))
count('a', answered)
local paused = num('paused_until', 0)
if paused > now + longest then  -- no pause is that long: not ours to honour
  redis.call('HDEL', state, 'paused_until')
  paused = 0
end
if now < paused then return {paused - now, 1, 0} end
local started = num('probe_started', nil)
if started ~= nil then
  local ends = num('probe_ends', now)
  if num('probe_sending', 0) == 1 and now >= ends then
    redis.call('HSET', state, 'probe_sending', 0)
  end
  if now >= ends + ($probe_span * 1000) then end_probe() end
else
  local limit = num('limit', nil)
  local every = num('probe_every', $probe_first)
  local steady = now - num('steady_since', now)
  if limit ~= nil and num('saturated', 0) == 1 and steady >= every * 1000 then
    local step = num('probe_step', $probe_step)
    local rate = math.max(limit * (1 + step), limit + 1)
    local top = ceiling()
    if top ~= nil and top < rate then rate = top end
    redis.call('HSET', state, 'probe_started', now, 'probe_ends', now + ($probe_span * 1000),
               'probe_rate', rate, 'probe_sent', 0, 'probe_refused', 0, 'probe_sending', 1)
  end
end
local rate
if num('probe_sending', 0) == 1 then
  rate = num('probe_rate', nil)
  redis.call('HINCRBY', state, 'probe_sent', 1)
else
  rate = settled_rate()
end
if rate == nil then return {0, 0, 0} end
local tat = math.max(num('tat', now), now)
if tat > now + longest then tat = now end  -- no queue is that long: start it afresh
local wait = tat - now
if wait > 0 then redis.call('HSET', state, 'saturated', 1) end
redis.call('HSET', state, 'tat', tat + 1000 / rate)
return {math.floor(wait), 0, math.floor(rate * 1000)}
"""
).substitute(TUNING, longest_wait_ms=_LONGEST_WAIT_MS)

REFUSED: Final = Template(
    _COMMON
    + """
-- ARGV: told limit (0: none), answers this worker saw since its last call (this refusal's
-- included), the pause the refusal asked for in ms.
-- Returns 1 when the refusals made a cluster (the pace changed and everyone pauses), else 0.
local pause = tonumber(ARGV[3])
count('a', answered)
count('r', 1)
local paused = math.min(num('paused_until', 0), now + longest)
if now < paused then
  redis.call('HSET', state, 'paused_until', math.max(paused, now + pause))
  return 0
end
if num('probe_started', nil) ~= nil then
  local refused = redis.call('HINCRBY', state, 'probe_refused', 1)
  if refused >= $probe_fails_at then end_probe() end
  return 0
end
local since = num('since', 0)
local windows = {$short_window, $long_window, $longest_window}
for _, seconds in ipairs(windows) do
  local first = math.max(second - seconds + 1, math.floor(since / 1000) + 1)
  local a, r = 0, 0
  for s = first, second do
    local got = redis.call('HMGET', counts .. ':' .. s, 'a', 'r')
    a = a + (tonumber(got[1]) or 0)
    r = r + (tonumber(got[2]) or 0)
  end
  local expected = $sporadic_share * a
  local threshold = math.max($cluster_min, expected + 3 * math.sqrt(expected) + 1)
  if r >= threshold then
    local accepted = math.max(0, a - r)
    local begun = math.max(since, num('started', now))
    local spent = math.max(math.min(seconds, (now - begun) / 1000), $window)
    redis.call('HSET', state, 'since', now, 'paused_until', now + pause, 'tat', now + pause)
    if accepted >= $meaningful then
      local again = num('limit', nil) ~= nil
      local every = num('probe_every', $probe_first)
      if again then every = math.min($probe_longest, every * 2) else every = $probe_first end
      redis.call('HSET', state, 'limit', math.max(accepted / spent, $min_rate / $settle_share),
                 'probe_every', every, 'probe_step', $probe_step, 'passes', 0)
      settle()
    end
    return 1
  end
end
return 0
"""
).substitute(TUNING, longest_wait_ms=_LONGEST_WAIT_MS)

COUNT: Final = Template(
    _COMMON
    + """
-- ARGV: (unused), answers this worker saw since it last told them.
count('a', answered)
return 0
"""
).substitute(TUNING, longest_wait_ms=_LONGEST_WAIT_MS)
