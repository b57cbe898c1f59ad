"""Rep load, rotation, lead assignments and SLA deadlines in Redis, changed by Lua scripts.

Each script runs atomically in Redis, so several route workers (on different partitions) pick
reps from one rotation, never push a rep past capacity and never give one lead to two reps.
The pick in `_PICK` is `domain.Rotation.pick` written in Lua; a test checks they agree.

Keys (all under the configured prefix; not cluster-safe, the scripts build key names):
  load              hash  rep -> open leads
  vft:<team>        hash  rep -> virtual finish time
  clock:<team>      str   the team's virtual clock
  lead:<lead_id>    hash  rep, team, handoff_id, published, state (JSON of the open hand-off);
                        breach_of (the breached hand-off) while a breach waits for its state (_BREACH),
                        and contact when a contact came meanwhile (_CONTACT); pending (JSON of a
                        breach's records), pending_due (its new deadline's ms, '' to stop the clock)
                        and pending_breach (its breach count) until the broker acknowledged them
                        (_SAVE_BREACH, _BREACH_PUBLISHED)
  seen:<handoff_id> str   a hand-off id already made (replays are dropped)
  activity:<event_id> str a sales activity that closed a lead or took effect as its contact
                        (_RELEASE, _CONTACT): its replay is dropped, whatever hand-off the lead has now
  sla               zset  lead_id -> deadline in epoch ms (durable timers): the deadline of the
                        candidate group the rep came from, else of the primary team's queue; while
                        a breach is under way, its claim's lease (services/runtime/due_claims.py)
  status            hash  rep -> JSON of run-time availability, capacity and out-of-office, merged
                        in one step per update (_SET_STATUS)
  remind:<digest>   str   a running deadline (lead id, deadline ms; an opaque digest) the SLA timer
                        has dealt with: `done` (reminded, or no reminder due), or the ms of its
                        reminder still to come; expires a little after the deadline (`Reminders`)
`erase` removes a lead from `lead:`, `sla` and its rep's `load`; no other key names a lead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from redis.asyncio import Redis

from schemas.handoff import Handoff, SlaEvent
from services.route.crm_queue import CrmKeys
from services.route.domain import Group, LeadState, Output, Pick, RepStatus
from services.runtime.due_claims import DueClaims
from services.runtime.redis_client import text_of

_PICK = """
local function pick(prefix, argv, i)
  local ngroups = tonumber(argv[i]); i = i + 1
  for _ = 1, ngroups do
    local team = argv[i]; local due = argv[i + 1]; local n = tonumber(argv[i + 2]); i = i + 3
    local vft_key = prefix .. 'vft:' .. team
    local clock = tonumber(redis.call('GET', prefix .. 'clock:' .. team) or '0')
    local best_start, best_rep, best_stride = nil, nil, nil
    for _ = 1, n do
      local rep = argv[i]; local stride = tonumber(argv[i + 1]); local cap = tonumber(argv[i + 2]); i = i + 3
      local load = tonumber(redis.call('HGET', prefix .. 'load', rep) or '0')
      if load < cap then
        local start = math.max(tonumber(redis.call('HGET', vft_key, rep) or '0'), clock)
        if best_start == nil or start < best_start or (start == best_start and stride < best_stride) then
          best_start, best_rep, best_stride = start, rep, stride
        end
      end
    end
    if best_rep ~= nil then
      redis.call('SET', prefix .. 'clock:' .. team, string.format('%.0f', best_start))
      redis.call('HSET', vft_key, best_rep, string.format('%.0f', best_start + best_stride))
      redis.call('HINCRBY', prefix .. 'load', best_rep, 1)
      return team, best_rep, due
    end
  end
  return nil, nil, nil
end

local function release(prefix, rep)
  if rep ~= nil and rep ~= '' then
    local load = tonumber(redis.call('HGET', prefix .. 'load', rep) or '0')
    if load > 0 then redis.call('HINCRBY', prefix .. 'load', rep, -1) end
  end
end
"""

# ARGV: prefix, lead_id, handoff_id, primary team, its queue's due_ms, seen_ttl, the stage change's
# occurred_ms, groups (with due_ms)... A change from before the lead's erasure (`erased:<sha1 of the
# lead id>`, set by _ERASE) is refused in the same step, so it cannot slip in beside an erasure.
_ASSIGN = (
    _PICK
    + """
local prefix, lead, hid = ARGV[1], ARGV[2], ARGV[3]
local erased = redis.call('GET', prefix .. 'erased:' .. redis.sha1hex(lead))
if erased and tonumber(ARGV[7]) <= tonumber(erased) then return {'erased'} end
local lead_key = prefix .. 'lead:' .. lead
if redis.call('EXISTS', lead_key) == 1 then
  local cur = redis.call('HMGET', lead_key, 'handoff_id', 'published', 'team', 'rep')
  local due = redis.call('ZSCORE', prefix .. 'sla', lead)
  return {'existing', cur[1], cur[2], cur[3], cur[4], due}
end
if redis.call('EXISTS', prefix .. 'seen:' .. hid) == 1 then return {'duplicate'} end
redis.call('SET', prefix .. 'seen:' .. hid, '1', 'EX', tonumber(ARGV[6]))
local team, rep, due = pick(prefix, ARGV, 8)
if team == nil then team, rep, due = ARGV[4], '', ARGV[5] end
redis.call('HSET', lead_key, 'rep', rep, 'team', team, 'handoff_id', hid, 'published', '0')
redis.call('ZADD', prefix .. 'sla', tonumber(due), lead)
return {'assigned', team, rep}
"""
)

# ARGV: prefix, lead_id, expected handoff_id, new handoff_id, reassign (1/0), primary team, its queue's
# due_ms, groups (with due_ms)... The script moves (or keeps) the lead and marks it `breach_of` the
# breached hand-off, but leaves its clock as the claim left it (due again after the lease);
# _SAVE_BREACH then stores the new state with the records to publish. A breach that failed in between
# comes due again, and the script, finding its own move or keep (`breach_of`), answers it again
# instead of 'stale', so the retry stores and publishes the same breach (its ids are deterministic:
# consumers drop the repeat). A lead whose last breach still waits for the broker is not breached.
_BREACH = (
    _PICK
    + """
local prefix, lead, expected, hid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local lead_key = prefix .. 'lead:' .. lead
local held = redis.call('HMGET', lead_key, 'handoff_id', 'breach_of', 'team', 'rep', 'pending_breach')
if not redis.call('ZSCORE', prefix .. 'sla', lead) or held[5] then return {'stale'} end
if held[2] == expected then
  if held[1] == hid then return {'assigned', held[3], held[4]} end
  if held[1] == expected then return {'kept'} end
end
if held[1] ~= expected then return {'stale'} end
redis.call('HSET', lead_key, 'breach_of', expected)
if ARGV[5] ~= '1' then return {'kept'} end
release(prefix, held[4])
local team, rep, due = pick(prefix, ARGV, 8)
if team == nil then team, rep, due = ARGV[6], '', ARGV[7] end
redis.call('HSET', lead_key, 'rep', rep, 'team', team, 'handoff_id', hid, 'published', '0')
return {'assigned', team, rep}
"""
)

# ARGV: prefix, lead_id, the handoff_id the breach left the lead with, the breached handoff_id, the
# breach count, the new deadline's ms ('' stops the clock), the state JSON, the records JSON, the
# state JSON as contacted, the `met` record JSON ('' for none). Only while the breach script's mark
# is there: not for an erased lead (its hash is not recreated), not twice for one breach. Stores the
# state and the records, pending until the broker acknowledged them (_BREACH_PUBLISHED); the clock
# stays at the claim's lease meanwhile, so a failed publish comes due again within it. A contact
# taken while the breach was half-way (`contact`, see _CONTACT) is stored with it: the contacted
# state, the `met` added to the records, and the clock stopped once they are published. 0 when not
# stored, 1 when stored, 2 when stored with the contact.
_SAVE_BREACH = """
local lead_key = ARGV[1] .. 'lead:' .. ARGV[2]
local held = redis.call('HMGET', lead_key, 'handoff_id', 'breach_of', 'contact')
if held[1] ~= ARGV[3] or held[2] ~= ARGV[4] then return 0 end
local saved, due, state, records = 1, ARGV[6], ARGV[7], ARGV[8]
if held[3] then
  saved, due, state = 2, '', ARGV[9]
  if ARGV[10] ~= '' then records = string.sub(records, 1, -2) .. ',' .. ARGV[10] .. ']' end
end
redis.call('HSET', lead_key, 'state', state, 'pending', records)
redis.call('HSET', lead_key, 'pending_due', due, 'pending_breach', ARGV[5])
redis.call('HDEL', lead_key, 'breach_of', 'contact')
return saved
"""

# ARGV: prefix, lead_id, handoff_id, breach count. The broker acknowledged that breach's records: they
# are dropped, and the clock is armed at the new deadline only while it still runs (ZADD XX: an erasure
# or a release since must not be undone), or stopped ('' : a kept breach, or a contact meanwhile).
# Nothing when the lead no longer holds that breach (erased, released, or published already).
_BREACH_PUBLISHED = """
local lead_key = ARGV[1] .. 'lead:' .. ARGV[2]
local held = redis.call('HMGET', lead_key, 'handoff_id', 'pending_breach', 'pending_due')
if held[1] ~= ARGV[3] or held[2] ~= ARGV[4] then return 0 end
redis.call('HDEL', lead_key, 'pending', 'pending_breach', 'pending_due')
if held[3] == '' then
  redis.call('ZREM', ARGV[1] .. 'sla', ARGV[2])
else
  redis.call('ZADD', ARGV[1] .. 'sla', 'XX', tonumber(held[3]), ARGV[2])
end
return 1
"""

# ARGV: prefix, lead_id, the handoff_id of the state the caller read, that state as contacted (JSON),
# the activity's event id ('' for none) and how long to remember it (s). A rep's contact, in one step:
# stores the contacted state and stops the clock; 'duplicate' for an activity that took effect before.
# While a breach is half-way (its script moved the lead, `breach_of`, its state is not stored yet) the
# contact is left to it ('deferred': _SAVE_BREACH stores it, and the breach's retry still comes due, as
# the clock stays). While a breach's records wait for the broker, its clock is their retry: the contact
# stops it by clearing `pending_due` (stopped once they are published) and gets the records to publish
# ahead of its `met`. 'moved' when the lead holds another hand-off than the one read (a breach
# finished in between: read again), 'gone' when it holds none. Else 'stopped' (this contact stopped a
# running clock) or 'idle' (none ran), each with the pending breach's count and records, if any.
_CONTACT = """
local prefix, lead, hid = ARGV[1], ARGV[2], ARGV[3]
local seen = prefix .. 'activity:' .. ARGV[5]
if ARGV[5] ~= '' and redis.call('EXISTS', seen) == 1 then return {'duplicate'} end
local lead_key = prefix .. 'lead:' .. lead
local held = redis.call(
  'HMGET', lead_key, 'handoff_id', 'breach_of', 'pending_breach', 'pending_due', 'pending'
)
if not held[1] then return {'gone'} end
if held[2] and held[2] ~= hid then return {'moved'} end
if not held[2] and held[1] ~= hid then return {'moved'} end
if ARGV[5] ~= '' then redis.call('SET', seen, '1', 'EX', tonumber(ARGV[6])) end
if held[2] then
  redis.call('HSET', lead_key, 'contact', '1')
  return {'deferred'}
end
redis.call('HSET', lead_key, 'state', ARGV[4])
if held[3] then
  if held[4] == '' then return {'idle', held[3], held[5]} end
  redis.call('HSET', lead_key, 'pending_due', '')
  return {'stopped', held[3], held[5]}
end
if redis.call('ZREM', prefix .. 'sla', lead) == 1 then return {'stopped'} end
return {'idle'}
"""

# ARGV: prefix, lead_id, handoff_id
_MARK_PUBLISHED = """
local lead_key = ARGV[1] .. 'lead:' .. ARGV[2]
if redis.call('HGET', lead_key, 'handoff_id') == ARGV[3] then
  redis.call('HSET', lead_key, 'published', '1')
end
return 1
"""

# ARGV: prefix, lead_id, expected handoff_id, the closing activity's event id ('' for none) and how long
# to remember it (s). Also while a breach of that hand-off is half-way (moved, `breach_of`, its state
# not stored: the caller read the old one): the rep the breach moved the lead to is freed, and the
# breach finds the lead gone. Answers the records of a breach still waiting for the broker, which go
# with the lead's hash: the caller publishes them. 'stale' when the lead holds another hand-off (a
# breach finished since the caller read it: read again), 'duplicate' for an activity seen before.
_RELEASE = (
    _PICK
    + """
local prefix, lead = ARGV[1], ARGV[2]
local seen = prefix .. 'activity:' .. ARGV[4]
if ARGV[4] ~= '' and redis.call('EXISTS', seen) == 1 then return {'duplicate'} end
local lead_key = prefix .. 'lead:' .. lead
local held = redis.call('HMGET', lead_key, 'handoff_id', 'rep', 'pending', 'breach_of')
if held[1] ~= ARGV[3] and held[4] ~= ARGV[3] then return {'stale'} end
if ARGV[4] ~= '' then redis.call('SET', seen, '1', 'EX', tonumber(ARGV[5])) end
release(prefix, held[2])
redis.call('DEL', lead_key)
redis.call('ZREM', prefix .. 'sla', lead)
return {'released', held[3]}
"""
)

# ARGV: prefix, rep_id, the fields an update names (a JSON object; null resets one). Merged into the
# rep's status in one step, so two updates at once each keep their field; answers the merged JSON.
_SET_STATUS = """
local key = ARGV[1] .. 'status'
local raw = redis.call('HGET', key, ARGV[2])
local status = raw and cjson.decode(raw) or {}
for name, value in pairs(cjson.decode(ARGV[3])) do status[name] = value end
local merged = cjson.encode(status)
if merged == '[]' then merged = '{}' end
redis.call('HSET', key, ARGV[2], merged)
return merged
"""

# ARGV: prefix, then (lead_id, handoff_id, state JSON) per state. A state is stored only while the
# lead still holds that hand-off: an erasure (or a newer hand-off) since the assign or breach script
# ran must not be undone by writing the old one back. 1 per state stored, 0 per state dropped.
_SAVE_STATES = """
local saved = {}
for i = 2, #ARGV, 3 do
  local lead_key = ARGV[1] .. 'lead:' .. ARGV[i]
  if redis.call('HGET', lead_key, 'handoff_id') == ARGV[i + 1] then
    redis.call('HSET', lead_key, 'state', ARGV[i + 2])
    saved[#saved + 1] = 1
  else
    saved[#saved + 1] = 0
  end
end
return saved
"""

# ARGV: prefix, lead_id, then the lead's CRM jobs key, the CRM due sets' prefix and the CRM failed
# set (crm_queue.CrmKeys), the erasure's ms and how long to guard it (s). Erasure: the rep's load
# drops as on a release, the lead's hash, SLA deadline and CRM deliveries waiting or given up go.
# `seen:<handoff_id>` and `crm:done:<handoff_id>` stay: opaque digests that keep a replay from making
# or posting the hand-off again; `erased:<sha1 of the lead id>` keeps a stage change from before
# the erasure, still in flight, from assigning the lead again (services/privacy/guard.py says why).
_ERASE = """
local prefix, lead = ARGV[1], ARGV[2]
local guard = prefix .. 'erased:' .. redis.sha1hex(lead)
local before = tonumber(redis.call('GET', guard) or '0')
redis.call('SET', guard, math.max(before, tonumber(ARGV[6])), 'EX', tonumber(ARGV[7]))
local lead_key = prefix .. 'lead:' .. lead
local found, released = 0, 0
if redis.call('EXISTS', lead_key) == 1 then
  found = 1
  local rep = redis.call('HGET', lead_key, 'rep')
  if rep and rep ~= '' and tonumber(redis.call('HGET', prefix .. 'load', rep) or '0') > 0 then
    redis.call('HINCRBY', prefix .. 'load', rep, -1)
    released = 1
  end
  redis.call('DEL', lead_key)
end
local deadlines = redis.call('ZREM', prefix .. 'sla', lead)
local jobs = ARGV[3]
local deliveries = redis.call('HGETALL', jobs)
for i = 1, #deliveries, 2 do
  local member = deliveries[i] .. ':' .. lead
  redis.call('ZREM', ARGV[4] .. cjson.decode(deliveries[i + 1])['team'], member)
  redis.call('ZREM', ARGV[5], member)
end
redis.call('DEL', jobs)
return {found, deadlines, released, #deliveries / 2}
"""


def _group_args(groups: Sequence[Group], dues: Mapping[str, datetime], due: datetime) -> list[str | int]:
    """The groups as the pick script reads them, each with the deadline its team's rep would get."""
    args: list[str | int] = [len(groups)]
    for group in groups:
        args += [group.team, _ms(dues.get(group.team, due)), len(group.candidates)]
        for candidate in group.candidates:
            args += [candidate.rep_id, candidate.stride, candidate.capacity]
    return args


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _state_json(state: LeadState) -> str:
    data = {
        "handoff": state.handoff.model_dump(mode="json"),
        "breach_count": state.breach_count,
        "contacted": state.contacted,
        "previous_reps": list(state.previous_reps),
        "chain_id": state.chain_id,
        "chain_started_at": state.chain_started_at.isoformat() if state.chain_started_at else None,
    }
    return json.dumps(data)


def _state_of(raw: Any) -> LeadState:
    """A stored state; one stored before chains were kept begins its own, unless a breach moved it:
    then its chain began before this hand-off, at the latest when the lead became sales-ready."""
    data = json.loads(raw)
    handoff = Handoff.model_validate(data["handoff"])
    started = data.get("chain_started_at")
    if started is None and "chain_started_at" not in data and data["breach_count"]:
        started = handoff.trigger.occurred_at.isoformat()
    return LeadState(
        handoff=handoff,
        breach_count=data["breach_count"],
        contacted=data["contacted"],
        previous_reps=tuple(data["previous_reps"]),
        chain_id=data.get("chain_id"),
        chain_started_at=datetime.fromisoformat(started) if started else None,
    )


def _status_of(raw: Any) -> RepStatus:
    data = json.loads(raw)
    until = data.get("out_of_office_until")
    capacity = data.get("capacity")
    return RepStatus(
        available=data.get("available"),
        capacity=int(capacity) if capacity is not None else None,
        out_of_office_until=datetime.fromisoformat(until) if until else None,
    )


def _record_json(record: Output) -> str:
    """One record of a pending breach: its kind (the topic it goes to) and its JSON document."""
    return json.dumps(["handoff" if isinstance(record, Handoff) else "sla", record.model_dump(mode="json")])


def _records_of(raw: Any) -> tuple[Output, ...]:
    """A pending breach's records as `_SAVE_BREACH` stored them (the `met` it may have added included)."""
    return tuple(
        Handoff.model_validate(body) if kind == "handoff" else SlaEvent.model_validate(body)
        for kind, body in json.loads(raw)
    )


@dataclass(frozen=True)
class PendingBreach:
    """A breach whose records wait in the lead's hash until the broker acknowledged them."""

    lead_id: str
    handoff_id: str  # the hand-off the lead holds after the breach
    breach_count: int
    records: tuple[Output, ...] = field(default=(), compare=False)


def _pending(lead_id: str, handoff_id: Any, count: Any, records: Any) -> PendingBreach | None:
    if count is None or records is None or handoff_id is None:
        return None
    return PendingBreach(lead_id, text_of(handoff_id), int(count), _records_of(records))


@dataclass(frozen=True)
class Held:
    """What the SLA timer reads of a claimed lead, in one round trip."""

    state: LeadState | None
    pending: PendingBreach | None  # its last breach, still to publish


_HELD_FIELDS = ["state", "handoff_id", "pending_breach", "pending"]


def held_of(lead_id: str, raw: list[Any]) -> Held:
    """A lead's `_HELD_FIELDS` as read: raises on a state that cannot be read."""
    state, hid, count, records = raw
    return Held(None if state is None else _state_of(state), _pending(lead_id, hid, count, records))


@dataclass(frozen=True)
class Deadline:
    """A running SLA clock as the `sla` sorted set holds it: the lead and its score (epoch ms)."""

    lead_id: str
    due_ms: int


REMINDED = b"done"


class Reminders:
    """Which running deadlines the SLA timer has dealt with (`remind:<digest>`), so each costs one
    read of its lead's state, not one per tick: a busy window is one MGET a tick. Keyed by (lead,
    deadline ms), so a new deadline (a reassignment's hand-off) is a new entry, and by a digest, so no
    key names a lead (an erasure need not find them); each expires `keep_seconds` after its deadline,
    which covers workers whose clocks disagree a little."""

    def __init__(self, redis: Redis, prefix: str, *, keep_seconds: float) -> None:
        self.redis = redis
        self.prefix = prefix
        self.keep_ms = int(keep_seconds * 1000)

    def key(self, deadline: Deadline) -> str:
        digest = hashlib.sha256(f"{deadline.lead_id}|{deadline.due_ms}".encode()).hexdigest()[:32]
        return f"{self.prefix}remind:{digest}"

    async def marks(self, deadlines: Sequence[Deadline]) -> list[bytes | None]:
        """Each deadline's mark: None (not seen yet), `REMINDED`, or its reminder's ms; one round trip."""
        if not deadlines:
            return []
        return cast(list[bytes | None], await self.redis.mget([self.key(d) for d in deadlines]))

    async def mark(self, marks: Sequence[tuple[Deadline, datetime | None]], now: datetime) -> None:
        """Remember each deadline as dealt with (None), or to look at again at the time given (its
        reminder's); one round trip. The expiry is relative to `now`, the worker's clock the deadline
        was read by, not Redis's."""
        if not marks:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for deadline, later in marks:
                value = REMINDED if later is None else str(_ms(later)).encode()
                keep = max(deadline.due_ms - _ms(now), 0) + self.keep_ms
                pipe.set(self.key(deadline), value, px=keep)
            await pipe.execute()


@dataclass(frozen=True)
class BreachSave:
    """A breach's outcome, to store after the breach script moved (or kept) the lead."""

    state: LeadState  # the lead's state after the breach
    breached: str  # the hand-off id the breach script moved the lead from (or kept it on)
    records: Sequence[Output]  # what the breach publishes
    due: datetime | None  # the new deadline, armed once the records are published; None stops the clock
    met: SlaEvent | None = None  # published too when a contact came while the breach was half-way


@dataclass(frozen=True)
class Contact:
    """What `_CONTACT` did: see the script."""

    outcome: str  # stopped | idle | deferred | moved | gone | duplicate
    pending: PendingBreach | None = None


@dataclass(frozen=True)
class Closed:
    """What `_RELEASE` did: see the script."""

    outcome: str  # released | stale | duplicate
    records: tuple[Output, ...] = ()  # released: the breach records that waited for the broker


@dataclass(frozen=True)
class Assignment:
    """What the assign or breach script did."""

    outcome: str  # assigned | existing | duplicate | erased | stale | kept
    pick: Pick | None = None
    team: str | None = None
    handoff_id: str | None = None
    published: bool = False
    due: datetime | None = None  # existing: the running SLA clock's deadline


@dataclass(frozen=True)
class AssignRequest:
    """One lead's hand-off to place: the assign script's input."""

    lead_id: str
    hid: str
    team: str
    groups: Sequence[Group]
    due: datetime  # while the lead waits in `team`'s queue
    dues: Mapping[str, datetime] = field(default_factory=dict)  # team -> for a rep of it; missing: `due`
    occurred_at: datetime | None = None  # the stage change's: refused when the lead was erased since

    def due_for(self, team: str | None) -> datetime:
        """The deadline the script stored for a lead it gave to `team` (a rep of it, or its queue)."""
        return self.dues.get(team, self.due) if team else self.due


def _assignment(reply: list[Any]) -> Assignment:
    outcome = text_of(reply[0])
    if outcome == "assigned":
        team, rep = text_of(reply[1]), text_of(reply[2])
        return Assignment(outcome, Pick(team, rep) if rep else None, team)
    if outcome == "existing":
        held_team = text_of(reply[3]) if reply[3] is not None else None
        held_rep = text_of(reply[4]) if reply[4] is not None else None
        due = datetime.fromtimestamp(float(reply[5]) / 1000, UTC) if reply[5] is not None else None
        return Assignment(
            outcome,
            Pick(held_team, held_rep) if held_team and held_rep else None,
            held_team,
            handoff_id=text_of(reply[1]),
            published=text_of(reply[2]) == "1",
            due=due,
        )
    return Assignment(outcome)


class RedisStore:
    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        seen_ttl_seconds: int = 90 * 24 * 3600,
        erasure_guard_seconds: int = 7 * 24 * 3600,
        reminder_keep_seconds: float = 60.0,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.seen_ttl = seen_ttl_seconds
        self.erasure_guard = erasure_guard_seconds  # config/privacy.yaml's erasure_guard
        self.reminders = Reminders(redis, prefix, keep_seconds=reminder_keep_seconds)
        self._assign = redis.register_script(_ASSIGN)
        self._breach = redis.register_script(_BREACH)
        self._release = redis.register_script(_RELEASE)
        self._claim = DueClaims(redis)
        self._erase = redis.register_script(_ERASE)
        self._mark_published = redis.register_script(_MARK_PUBLISHED)
        self._save_states = redis.register_script(_SAVE_STATES)
        self._save_breach = redis.register_script(_SAVE_BREACH)
        self._breach_published = redis.register_script(_BREACH_PUBLISHED)
        self._contact = redis.register_script(_CONTACT)
        self._set_status = redis.register_script(_SET_STATUS)

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def assign(
        self,
        lead_id: str,
        hid: str,
        team: str,
        groups: Sequence[Group],
        due: datetime,
        *,
        dues: Mapping[str, datetime] | None = None,
    ) -> Assignment:
        """Pick-and-increment in one step, unless the lead already has an open hand-off."""
        args = self._assign_args(AssignRequest(lead_id, hid, team, groups, due, dues or {}))
        return _assignment(cast(list[Any], await self._assign(keys=[], args=args)))

    async def assign_many(self, requests: Sequence[AssignRequest]) -> list[Assignment]:
        """`assign` for each request, in order, in one round trip for a whole batch. Redis still runs
        the scripts one at a time, so each sees the loads the ones before it left."""
        if not requests:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for request in requests:
                await self._assign(keys=[], args=self._assign_args(request), client=pipe)
            replies = await pipe.execute()
        return [_assignment(cast(list[Any], reply)) for reply in replies]

    def _assign_args(self, request: AssignRequest) -> list[str | int]:
        args: list[str | int] = [self.prefix, request.lead_id, request.hid, request.team]
        occurred = _ms(request.occurred_at) if request.occurred_at is not None else 0
        args += [_ms(request.due), self.seen_ttl, occurred]
        return args + _group_args(request.groups, request.dues, request.due)

    async def breach(
        self,
        lead_id: str,
        expected: str,
        hid: str,
        *,
        reassign: bool,
        team: str,
        groups: Sequence[Group],
        due: datetime,
        dues: Mapping[str, datetime] | None = None,
    ) -> Assignment:
        """Stop the breached clock and, if asked, move the lead to the next rep with a new deadline:
        `dues[team]` for a rep of that team, `due` for `team`'s queue."""
        args: list[str | int] = [self.prefix, lead_id, expected, hid, "1" if reassign else "0", team]
        args.append(_ms(due))
        args += _group_args(groups, dues or {}, due)
        return _assignment(cast(list[Any], await self._breach(keys=[], args=args)))

    async def release(self, lead_id: str, hid: str) -> bool:
        return (await self.close(lead_id, hid)).outcome == "released"

    async def close(self, lead_id: str, hid: str, activity_id: str = "") -> Closed:
        """Free the rep and forget the lead, while it holds `hid` (`_RELEASE`), once per closing
        activity; released, with the records of a breach still waiting for the broker, gone with the
        lead's hash: publish them."""
        args: list[str | int] = [self.prefix, lead_id, hid, activity_id, self.seen_ttl]
        reply = cast(list[Any], await self._release(keys=[], args=args))
        outcome = text_of(reply[0])
        if outcome != "released":
            return Closed(outcome)
        return Closed(outcome, _records_of(reply[1]) if len(reply) > 1 and reply[1] is not None else ())

    async def contact(self, state: LeadState, activity_id: str = "") -> Contact:
        """A rep contacted the lead whose `state` was read: store it as contacted and stop its clock in
        one step, once per activity (`_CONTACT` says what happens while a breach is under way)."""
        handoff = state.handoff
        contacted = _state_json(replace(state, contacted=True))
        args: list[str | int] = [self.prefix, handoff.lead_id, handoff.handoff_id, contacted, activity_id]
        args.append(self.seen_ttl)
        reply = cast(list[Any], await self._contact(keys=[], args=args))
        outcome = text_of(reply[0])
        if len(reply) < 3:
            return Contact(outcome)
        return Contact(outcome, _pending(handoff.lead_id, handoff.handoff_id, reply[1], reply[2]))

    async def open_clocks(self) -> int:
        """SLA clocks still running: hand-offs no rep has contacted yet."""
        return int(await self.redis.zcard(self._key("sla")))

    async def claim_due(self, now: datetime, lease_seconds: float, limit: int = 100) -> list[str]:
        """Deadlines due by `now`, each moved out by the lease (services/runtime/due_claims.py)."""
        claimed = await self._claim(self._key("sla"), _ms(now), int(lease_seconds * 1000), limit)
        return [text_of(lead) for lead in claimed]

    async def save_state(self, state: LeadState) -> bool:
        return (await self.save_states([state]))[0]

    async def save_states(self, states: Sequence[LeadState]) -> list[bool]:
        """Store open hand-offs' states, in one round trip for a whole batch; whether each was
        stored: one whose lead no longer holds its hand-off (erased, or handed off anew since) is not."""
        if not states:
            return []
        args: list[str] = [self.prefix]
        for state in states:
            args += [state.handoff.lead_id, state.handoff.handoff_id, _state_json(state)]
        saved = cast(list[Any], await self._save_states(keys=[], args=args))
        return [int(flag) == 1 for flag in saved]

    async def save_breach(self, breach: BreachSave) -> PendingBreach | None:
        """Store a breach's new state with its records, pending until the broker acknowledged them
        (`mark_published`), after the breach script moved or kept the lead; until then a retry of the
        breach finds the move and redoes this. The clock stays at the claim's lease meanwhile. None
        when the lead no longer holds the move (erased since, or stored already); else the pending
        breach, its records with the `met` of a contact taken meanwhile (see `_SAVE_BREACH`)."""
        state, handoff = breach.state, breach.state.handoff
        records = "[" + ",".join(_record_json(record) for record in breach.records) + "]"
        deadline = "" if breach.due is None else str(_ms(breach.due))
        met = "" if breach.met is None else _record_json(breach.met)
        args: list[str | int] = [self.prefix, handoff.lead_id, handoff.handoff_id, breach.breached]
        args += [
            state.breach_count,
            deadline,
            _state_json(state),
            records,
            _state_json(replace(state, contacted=True)),
            met,
        ]
        saved = int(await self._save_breach(keys=[], args=args))
        if saved == 0:
            return None
        published = (*breach.records, breach.met) if saved == 2 and breach.met else tuple(breach.records)
        return PendingBreach(handoff.lead_id, handoff.handoff_id, state.breach_count, published)

    async def state(self, lead_id: str) -> LeadState | None:
        raw = await self.redis.hget(self._key("lead", lead_id), "state")
        return None if raw is None else _state_of(raw)

    async def held(self, lead_id: str) -> Held:
        """The lead's state and its breach still waiting for the broker, if any, in one round trip."""
        raw = cast(list[Any], await self.redis.hmget(self._key("lead", lead_id), _HELD_FIELDS))
        return held_of(lead_id, raw)

    async def held_raw(self, lead_ids: Sequence[str]) -> list[list[Any]]:
        """`held` of many leads in one round trip, unparsed: `held_of` each, so one unreadable lead
        costs the caller only that lead."""
        if not lead_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for lead_id in lead_ids:
                pipe.hmget(self._key("lead", lead_id), _HELD_FIELDS)
            return cast(list[list[Any]], await pipe.execute())

    async def deadlines_within(self, now: datetime, horizon: timedelta) -> list[Deadline]:
        """The running clocks whose score lies in (now, now + horizon], soonest first: the deadlines
        a reminder may be due for (and claimed ones, moved out by their lease, which get none)."""
        start, end = _ms(now), _ms(now + horizon)
        found = cast(
            list[tuple[Any, float]],
            await self.redis.zrangebyscore(self._key("sla"), f"({start}", end, withscores=True),
        )
        return [Deadline(text_of(lead), int(score)) for lead, score in found]

    async def mark_published(
        self, handoffs: Sequence[tuple[str, str]], breaches: Sequence[PendingBreach] = ()
    ) -> None:
        """Record (lead id, hand-off id) pairs as on the broker, where the lead still has that hand-off,
        and settle the breaches whose records the broker acknowledged (`_BREACH_PUBLISHED`); one round
        trip for a whole batch."""
        if not handoffs and not breaches:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for lead_id, hid in handoffs:
                await self._mark_published(keys=[], args=[self.prefix, lead_id, hid], client=pipe)
            for breach in breaches:
                settle: list[str | int] = [
                    self.prefix,
                    breach.lead_id,
                    breach.handoff_id,
                    breach.breach_count,
                ]
                await self._breach_published(keys=[], args=settle, client=pipe)
            await pipe.execute()

    async def loads(self) -> dict[str, int]:
        raw = cast(dict[Any, Any], await self.redis.hgetall(self._key("load")))
        return {text_of(rep): int(count) for rep, count in raw.items()}

    async def statuses(self) -> dict[str, RepStatus]:
        raw = cast(dict[Any, Any], await self.redis.hgetall(self._key("status")))
        return {text_of(rep): _status_of(value) for rep, value in raw.items()}

    async def update_status(self, rep_id: str, patch: Mapping[str, Any]) -> RepStatus:
        """Merge the fields an update names (`domain.status_patch`) into the rep's status in one step;
        the status merged."""
        args = [self.prefix, rep_id, json.dumps(patch)]
        return _status_of(await self._set_status(keys=[], args=args))

    async def set_status(self, rep_id: str, status: RepStatus) -> None:
        data = {
            "available": status.available,
            "capacity": status.capacity,
            "out_of_office_until": status.out_of_office_until.isoformat()
            if status.out_of_office_until
            else None,
        }
        await self.redis.hset(self._key("status"), rep_id, json.dumps(data))

    async def erase(self, lead_id: str, at: datetime) -> dict[str, int]:
        """Remove the lead from every key it is in, and guard it against stage changes from before
        `at`, in one step; counts per store (no data)."""
        crm = CrmKeys(self.prefix)
        args: list[str | int] = [self.prefix, lead_id, crm.jobs(lead_id), crm.due_prefix, crm.failed]
        args += [_ms(at), self.erasure_guard]
        erased = cast(list[Any], await self._erase(keys=[], args=args))
        found, deadlines, released, deliveries = (int(count) for count in erased)
        return {
            "assignments": found,
            "sla_deadlines": deadlines,
            "rep_load": released,
            "crm_deliveries": deliveries,
        }

    async def export(self, lead_id: str) -> dict[str, Any]:
        """What route holds about the lead: its open hand-off, SLA deadline and CRM deliveries."""
        raw = cast(dict[Any, Any], await self.redis.hgetall(self._key("lead", lead_id)))
        assignment = {text_of(k): text_of(v) for k, v in raw.items()}
        for name in ("state", "pending"):  # JSON documents: exported as such
            if name in assignment:
                assignment[name] = json.loads(assignment[name])
        deadline = await self.redis.zscore(self._key("sla"), lead_id)
        deliveries = cast(dict[Any, Any], await self.redis.hgetall(CrmKeys(self.prefix).jobs(lead_id)))
        return {
            "assignment": assignment or None,
            "sla_deadline_ms": int(deadline) if deadline is not None else None,
            "crm_deliveries": [json.loads(job) for job in deliveries.values()],  # waiting or given up
        }

    async def ping(self) -> bool:
        return bool(await self.redis.ping())
