"""Per-lead score state, stored as JSON in the `lead-scores` table (changelog-backed)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model
from typing_extensions import TypedDict

from schemas.interaction import Source
from schemas.profile import LeadProfile
from schemas.stage import LifecycleStage, Temperature
from services.runtime.codec import encode


class BantState(BaseModel):
    """Each criterion: None unknown, True met, False known and not met."""

    model_config = ConfigDict(frozen=True)

    budget: bool | None = None
    authority: bool | None = None
    need: bool | None = None
    timing: bool | None = None
    answered_at: dict[str, float] | None = Field(
        None, description="Epoch seconds of each criterion's answer (form or rep): an older one loses."
    )

    def answered(self, answers: dict[str, bool], at: float) -> BantState:
        """These answers given at `at`, each unless the criterion was answered later already (a form
        or an assessment reported late); an answer of the same value still moves its time on."""
        times = dict(self.answered_at or {})
        taken = {name: met for name, met in answers.items() if at >= times.get(name, at)}
        if not taken:
            return self
        times.update(dict.fromkeys(taken, at))
        changed = {name: met for name, met in taken.items() if getattr(self, name) is not met}
        if not changed and times == (self.answered_at or {}):
            return self
        return self.model_copy(update={**changed, "answered_at": times})


class CapSlot(TypedDict):
    """The earliest scored events of one rule on one UTC day, at most the rule's cap.

    A typed dict, not a model: a lead holds a slot per rule and day, and building a model for each,
    on every load and for every scored event, cost about 4 of score's 116 µs per event
    (docs/performance.md, sixteenth pass). The JSON is the same."""

    times: tuple[float, ...]
    event_ids: tuple[str, ...]


class LeadState(BaseModel):
    """Everything score knows about one lead. Engagement is held decayed to `engagement_at`."""

    model_config = ConfigDict(frozen=True)

    lead_id: str
    profile: LeadProfile | None = None
    source: Source = Field(default_factory=Source)
    engagement_at: float | None = Field(None, description="Epoch seconds of the newest scored event.")
    engagement_by_rule: dict[str, float] = Field(
        default_factory=dict, description="Decayed to engagement_at."
    )
    points_by_rule: dict[str, float] = Field(
        default_factory=dict, description="Undecayed points, for reasons."
    )
    cap_slots: dict[str, CapSlot] = Field(default_factory=dict, description="'rule|YYYY-MM-DD' -> slot.")
    recent_event_ids: tuple[str, ...] = ()
    temperature: Temperature = Temperature.COLD
    lifecycle: LifecycleStage = LifecycleStage.RAW
    hand_raised_at: float | None = None
    recycled_engagement: float = Field(0.0, description="Engagement when recycled, decayed alike.")
    trial: bool = False
    usage: float = 0.0
    recycled_usage: float | None = Field(
        None, description="Usage when last recycled: product-qualified again only above it."
    )
    bant: BantState = Field(default_factory=BantState)
    sales_moved_at: float | None = Field(
        None, description="Epoch seconds of the sales activity that last moved the lifecycle."
    )
    evaluated_at: float | None = Field(None, description="Epoch seconds of the latest stage evaluation.")
    rules: str | None = Field(None, description="The digest of the rules of that evaluation.")
    next_due: float | None = Field(None, description="Epoch seconds when temperature next drops.")

    @classmethod
    def new(cls, lead_id: str) -> LeadState:
        return cls(lead_id=lead_id)

    def dumps(self) -> bytes:
        """The changelog's JSON. Absent values are left out (`exclude_none`), which loses nothing:
        every field that may be None defaults to None (a unit test walks the model tree). Leaving out
        defaults instead cost pydantic a default instance and a Python `__eq__` per nested model:
        a third of the dump (docs/performance.md, twelfth pass)."""
        return encode(self, exclude_none=True)

    @classmethod
    def loads(cls, raw: bytes | str) -> LeadState:
        return cls.model_validate_json(raw)

    @classmethod
    def loads_without_profile(cls, raw: bytes | str) -> LeadState:
        """The stored state with `profile` left None, its JSON skipped, not parsed: for an
        interaction, whose new state takes the event's profile and never reads the stored one (a
        property test holds `apply_interaction` to that). The profile with its provenance is about
        half of a state's JSON and of its load (docs/performance.md, fifteenth pass). Anything
        else that reads a state (decay checks, sales activities, exports) must use `loads`."""
        values = _WithoutProfile.model_validate_json(raw)
        # in the fields' order (lead_id, profile, ...), which the serializer writes the JSON in
        ordered = {"lead_id": values.lead_id, "profile": None, **values.__dict__}  # type: ignore[attr-defined]
        return _assembled(cls, ordered, values.model_fields_set)


# LeadState's fields but the profile; its JSON is skipped as an unknown key (extra="ignore").
_FIELDS: dict[str, Any] = {
    name: (info.annotation, info) for name, info in LeadState.model_fields.items() if name != "profile"
}
_WithoutProfile = create_model(
    "LeadStateWithoutProfile", __config__=ConfigDict(frozen=True, extra="ignore"), **_FIELDS
)
_set = object.__setattr__


def _assembled(cls: type[LeadState], values: dict[str, Any], fields_set: set[str]) -> LeadState:
    """A LeadState of values validated already, put together as pydantic's own copy does it:
    `model_construct` would run each field's default logic again and cost most of what skipping the
    profile saves (79 against 60 µs per load, measured)."""
    state = cls.__new__(cls)
    _set(state, "__dict__", values)
    _set(state, "__pydantic_fields_set__", set(fields_set))
    _set(state, "__pydantic_extra__", None)
    _set(state, "__pydantic_private__", None)
    return state


class IndexEntry(BaseModel):
    """What the decay index's rebuild reads of a stored state: its due time and rules digest, the
    rest of the JSON skipped unparsed (10 against 25 µs per state of `loads_without_profile`,
    measured on the bench's states of about 3 KB)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    next_due: float | None = None
    rules: str | None = None

    @classmethod
    def loads(cls, raw: bytes | str) -> IndexEntry:
        return cls.model_validate_json(raw)
